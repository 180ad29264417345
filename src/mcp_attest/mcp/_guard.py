"""Framework-neutral half of the server guard.

Every adapter (SDK extension, low-level handler wrap, FastMCP middleware)
funnels into :meth:`AttestationGuard.check`, so the three integrations cannot
drift apart in how they find the envelope, what they hand the verifier, or
what a rejection looks like on the wire.
"""

from __future__ import annotations

import atexit
import inspect
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
from mcp_types import CallToolResult, TextContent

from mcp_attest import (
    CAPABILITY,
    HEADER_NAME,
    META_KEY,
    Keyring,
    Verdict,
    Verifier,
    VerifierPolicy,
    server_fingerprint,
)
from mcp_attest.errors import ConfigurationError
from mcp_attest.mcp._sdk import AttestationExtension, CapabilityMiddleware, install
from mcp_attest.receipts import ReceiptSigner
from mcp_attest.stores import open_keyed_audit_log, open_replay_store

if TYPE_CHECKING:
    from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
    from mcp.server.lowlevel import Server
    from mcp_types import CallToolRequestParams

    from mcp_attest.replay import ReplayStore

__all__ = [
    "AttestationGuard",
    "AuditSink",
    "ToolCall",
    "VerdictHook",
    "audit_hook",
    "current_verdict",
    "verdict_scope",
]

Source = Literal["meta", "header", "both", "none"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """What the guard saw of one ``tools/call``, handed to ``on_verdict``.

    ``source`` says where the envelope came from, which the verdict alone
    cannot tell and an auditor may want (a header-only client behind a proxy
    that strips ``_meta``, for example).
    """

    tool: str
    arguments: Mapping[str, Any]
    source: Source
    protocol_version: str | None = None
    envelope: bytes | Mapping[str, Any] | None = None
    """The ``_meta`` envelope as received (the header form is in ``source``)."""


VerdictHook = Callable[[Verdict, ToolCall], Awaitable[None] | None]


class AuditSink(Protocol):
    """What the guard needs of an audit log (``mcp_attest.audit.AuditLog`` fits).

    ``submit`` returns once the decision is durable and raises when it
    cannot be; the guard needs the record kept, not its place in a chain.
    """

    def submit(self, verdict: Verdict, *, tool: str, arguments: Any, envelope: Any) -> None: ...


def audit_hook(audit: AuditSink, then: VerdictHook | None = None) -> VerdictHook:
    """An ``on_verdict`` that records every decision before the tool may run.

    The append happens inside the hook, so a log that cannot commit aborts
    the call (fail closed): no record, no execution.
    """

    remote = bool(getattr(audit, "remote", False))  # PostgreSQL: a round trip and a flush

    async def record(verdict: Verdict, call: ToolCall) -> None:
        work = partial(
            audit.submit, verdict, tool=call.tool, arguments=call.arguments, envelope=call.envelope
        )
        # Off the event loop when the record waits on the network, so other
        # calls go on (and concurrent appends share the log's commit).
        if remote:
            await anyio.to_thread.run_sync(work)
        else:
            work()
        if then is not None:
            outcome = then(verdict, call)
            if inspect.isawaitable(outcome):
                await outcome

    return record


_current: ContextVar[Verdict | None] = ContextVar("mcp_attest_verdict", default=None)


def current_verdict() -> Verdict | None:
    """The verdict of the ``tools/call`` being served, or ``None`` outside one.

    A context variable rather than a field on the SDK context because the
    three frameworks have three different context objects and only a context
    variable reaches all of them, including sync tools run in worker threads
    (anyio copies the context into the thread).
    """
    return _current.get()


@contextmanager
def verdict_scope(verdict: Verdict) -> Iterator[None]:
    """Make ``verdict`` what :func:`current_verdict` returns inside the block."""
    token = _current.set(verdict)
    try:
        yield
    finally:
        _current.reset(token)


def _envelope_from_meta(meta: Mapping[str, Any] | None) -> bytes | Mapping[str, Any] | None:
    """Return the ``_meta.attestation`` value in a form the verifier takes.

    Anything other than an object is re-serialized to its JSON text, so the
    core rejects it under the same strict-parse rule (V1, "top level is not
    an object") as every other malformed envelope instead of this adapter
    inventing its own reason. A present ``null`` is a malformed envelope, not
    an absent one: the client did send the key.
    """
    if meta is None or META_KEY not in meta:
        return None
    value = meta[META_KEY]
    if isinstance(value, Mapping):
        return value
    try:
        return json.dumps(value, allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError):  # unserializable or nested past the stack
        return b"null"


def _header_value(headers: Any) -> str | None:
    """Read ``X-MCP-Attestation`` from Starlette headers or a plain mapping.

    Repeated headers are joined with "," as HTTP list semantics say; the
    result is never valid base64url, so the core rejects it (V11) rather than
    this code picking one of them.
    """
    if headers is None:
        return None
    getlist = getattr(headers, "getlist", None)
    if getlist is not None:
        values: list[str] = list(getlist(HEADER_NAME))
        return ",".join(values) if values else None
    lowered = HEADER_NAME.lower()
    for key, value in headers.items():
        if str(key).lower() == lowered:
            return str(value)
    return None


class AttestationGuard:
    """Verify every ``tools/call`` before its tool runs (PROFILE V0-V12).

    Holds one :class:`~mcp_attest.Verifier` (keys, replay store, policy) and
    produces the adapters for each server framework. One guard may serve
    several servers only if they share a fingerprint: the fingerprint lives
    in the verifier.
    """

    def __init__(
        self,
        verifier: Verifier,
        *,
        on_verdict: VerdictHook | None = None,
        receipt_signer: ReceiptSigner | None = None,
    ) -> None:
        self.verifier = verifier
        self.on_verdict = on_verdict
        self.receipt_signer = receipt_signer

    @classmethod
    def from_keyring(
        cls,
        keyring: Keyring,
        *,
        server_fingerprint: str | None = None,
        server_name: str | None = None,
        server_id: str | None = None,
        required: bool = True,
        replay_store: ReplayStore | str | None = None,
        args_binding: Literal["spec", "strict"] = "strict",
        multi_server: bool = True,
        include_detail: bool = True,
        on_verdict: VerdictHook | None = None,
        clock: Callable[[], float] | None = None,
        audit: AuditSink | str | None = None,
    ) -> AttestationGuard:
        """Build the verifier and the guard from one set of options.

        The fingerprint is either given or derived from ``server_name`` and
        ``server_id`` with the core's documented default, so that a client
        configured with the same two strings computes the same value.
        ``replay_store`` and ``audit`` also take store URLs (``sqlite:///path``,
        ``redis://...``, ``postgresql://...``); the audit log then records
        every verdict before the tool runs, and signs checkpoints with a key
        kept outside the database (``open_keyed_audit_log``: beside a SQLite
        file, else in the user's XDG state dir).
        """
        if isinstance(replay_store, str):
            replay_store = open_replay_store(replay_store)
        if isinstance(audit, str):
            log = open_keyed_audit_log(audit)
            atexit.register(log.close)  # a clean exit signs a last checkpoint, so a cut tail shows
            audit = log
        if audit is not None:
            on_verdict = audit_hook(audit, on_verdict)
        fingerprint = _resolve_fingerprint(server_fingerprint, server_name, server_id)
        policy = VerifierPolicy(
            required=required,
            args_binding=args_binding,
            multi_server=multi_server,
            include_detail=include_detail,
        )
        if clock is None:
            verifier = Verifier(keyring, fingerprint, replay_store=replay_store, policy=policy)
        else:
            verifier = Verifier(keyring, fingerprint, replay_store=replay_store, policy=policy, clock=clock)
        return cls(verifier, on_verdict=on_verdict)

    # -- capabilities (PROFILE section 8) ------------------------------------

    def capability(self) -> dict[str, Any]:
        """The object advertised under ``extensions`` and ``experimental``."""
        policy = self.verifier.policy
        return {
            "algorithms": list(self.verifier.algorithms),
            "required": policy.required,
            "multiServer": policy.multi_server,
        }

    def advertise(self, capabilities: dict[str, Any]) -> dict[str, Any]:
        """Add our capability to a wire ``capabilities`` dict (both places).

        ``extensions`` is written too because a low-level server, unlike
        ``MCPServer``, has no extension object that would put it there; on
        handshake-era results it is harmless (older clients ignore it) and
        ``experimental`` is what they read.
        """
        for place in ("extensions", "experimental"):
            existing = capabilities.get(place)
            merged = dict(existing) if isinstance(existing, Mapping) else {}
            merged[CAPABILITY] = self.capability()
            capabilities[place] = merged
        return capabilities

    # -- verification ---------------------------------------------------------

    async def check(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None,
        meta: Mapping[str, Any] | None,
        headers: Any = None,
        *,
        protocol_version: str | None = None,
    ) -> Verdict:
        """Verify one call and report the verdict to ``on_verdict``."""
        args: Mapping[str, Any] = {} if arguments is None else arguments
        envelope = _envelope_from_meta(meta)
        header = _header_value(headers)
        verdict = self.verifier.verify(envelope, tool=tool, arguments=args, header=header)
        if self.on_verdict is not None:
            source: Source = (
                "both"
                if envelope is not None and header is not None
                else "meta"
                if envelope is not None
                else "header"
                if header is not None
                else "none"
            )
            outcome = self.on_verdict(
                verdict,
                ToolCall(tool, args, source, protocol_version=protocol_version, envelope=envelope),
            )
            if inspect.isawaitable(outcome):
                await outcome
        return verdict

    def rejection(self, verdict: Verdict) -> CallToolResult:
        """The V10 tool result for a rejected verdict."""
        text = verdict.error_text(include_detail=self.verifier.policy.include_detail)
        return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)

    async def guard_sdk_call(
        self,
        params: CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        """Shared body of the SDK extension and the low-level handler wrap."""
        request = ctx.request
        verdict = await self.check(
            params.name,
            params.arguments,
            params.meta,
            getattr(request, "headers", None),
            protocol_version=ctx.protocol_version,
        )
        if not verdict.accepted:
            return self.rejection(verdict)
        with verdict_scope(verdict):
            result = await call_next(ctx)
        return self.with_receipt(verdict, params.name, result)

    def with_receipt(self, verdict: Verdict, tool: str, result: HandlerResult) -> HandlerResult:
        """Attach a signed execution receipt (PROFILE section 9) to ``_meta.receipt``.

        The digest covers the result as the SDK serializes it (by alias,
        without ``None`` members) minus ``_meta``, which is what a client
        re-serializing the received result reproduces.
        """
        if self.receipt_signer is None or not verdict.attested:
            return result
        if isinstance(result, CallToolResult):
            wire = result.model_dump(by_alias=True, exclude_none=True, mode="json")
            receipt = self.receipt_signer.sign(verdict, tool=tool, result=wire)
            return result.model_copy(update={"meta": {**(result.meta or {}), "receipt": receipt}})
        if isinstance(result, dict) and "content" in result:
            receipt = self.receipt_signer.sign(verdict, tool=tool, result=result)
            return {**result, "_meta": {**(result.get("_meta") or {}), "receipt": receipt}}
        return result

    # -- adapters -------------------------------------------------------------

    def extension(self) -> AttestationExtension:
        """The ``MCPServer(extensions=[...])`` adapter (verifies ``tools/call``)."""
        return AttestationExtension(self)

    def middleware(self) -> ServerMiddleware[Any]:
        """The SDK server middleware that advertises the capability.

        Needed next to :meth:`extension` because handshake-era ``initialize``
        results drop ``extensions``; this adds the ``experimental`` mirror.
        """
        return CapabilityMiddleware(self)

    def install(self, server: Server[Any]) -> None:
        """Guard a low-level ``mcp.server.Server`` in place."""
        install(self, server)


def _resolve_fingerprint(given: str | None, name: str | None, server_id: str | None) -> str:
    if given is not None:
        if name is not None or server_id is not None:
            raise ConfigurationError("give server_fingerprint or server_name/server_id, not both")
        return given
    if name is None or server_id is None:
        raise ConfigurationError("give server_fingerprint, or both server_name and server_id")
    return server_fingerprint(name, server_id)
