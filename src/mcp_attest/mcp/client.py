"""The attesting client: sign every ``tools/call`` an agent makes.

Wraps ``mcp.Client`` rather than subclassing it: the SDK client is a
dataclass whose connection set-up is private, and everything attestation
needs (``meta=`` on ``call_tool``, the negotiated capabilities, the HTTP
client of the transport) is reachable from outside.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping
from types import TracebackType
from typing import Any, cast

import httpx2
from mcp import Client
from mcp.client.extension import advertise
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, RequestParamsMeta, ServerCapabilities, TextContent

from mcp_attest import CAPABILITY, HEADER_NAME, META_KEY, Issuer, Reason
from mcp_attest import AttestationRejectedError as CoreAttestationRejectedError
from mcp_attest.canonical import canonicalize
from mcp_attest.envelope import b64url_encode
from mcp_attest.errors import ConfigurationError, Error
from mcp_attest.issuer import Commit

__all__ = [
    "AttestationError",
    "AttestationRejectedError",
    "AttestationUnavailableError",
    "AttestingClient",
    "HeaderFromMeta",
    "attesting_http_transport",
    "parse_rejection",
    "server_capability",
]


class AttestationError(Error):
    """Base of the errors the attesting client raises."""


class AttestationUnavailableError(AttestationError):
    """The server requires attestation and this client cannot provide it.

    Raised before anything is sent, so a call that would be refused anyway
    never reaches the server (PROFILE section 8).
    """


class AttestationRejectedError(AttestationError, CoreAttestationRejectedError):
    """The server's guard rejected the call (a V10 result); the tool did not run.

    Also a ``mcp_attest.AttestationRejectedError``, so code that handles local
    and remote refusals alike catches both with one clause.
    """

    def __init__(self, reason: Reason, detail: str | None, result: CallToolResult) -> None:
        CoreAttestationRejectedError.__init__(self, reason, detail)
        self.result = result


def parse_rejection(result: CallToolResult) -> tuple[Reason, str | None] | None:
    """Recognize a V10 rejection result; ``None`` for any other result.

    Only the exact V10 shape counts (error result, JSON text with
    ``attestationError: true`` and a known reason), so a tool's own error that
    merely mentions attestation is never mistaken for a guard verdict.
    """
    if not result.is_error or len(result.content) != 1:
        return None
    block = result.content[0]
    if not isinstance(block, TextContent):
        return None
    try:
        body = json.loads(block.text)
    except (ValueError, RecursionError):  # a server's text may nest past the stack
        return None
    if not isinstance(body, dict) or body.get("attestationError") is not True:
        return None
    try:
        reason = Reason(str(body.get("reason")))
    except ValueError:
        return None
    detail = body.get("detail")
    return reason, detail if isinstance(detail, str) else None


def server_capability(capabilities: ServerCapabilities | None) -> dict[str, Any] | None:
    """The server's attestation capability, from ``extensions`` or ``experimental``.

    ``extensions`` wins when both are present; handshake-era servers only
    get the ``experimental`` copy through to us.
    """
    if capabilities is None:
        return None
    for place in (capabilities.extensions, capabilities.experimental):
        if place is not None:
            value = place.get(CAPABILITY)
            if isinstance(value, dict):
                return value
    return None


class HeaderFromMeta(httpx2.Auth):
    """Copy ``_meta.attestation`` of an outgoing ``tools/call`` into the header.

    Deriving the header from the message body (instead of passing it along
    separately) makes header and ``_meta`` the same envelope by construction,
    which is what V11 demands of them.
    """

    requires_request_body = True

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        if request.method == "POST":
            envelope = _attestation_in_body(request.content)
            if envelope is not None:
                request.headers[HEADER_NAME] = b64url_encode(canonicalize(envelope))
        yield request


def _attestation_in_body(body: bytes) -> Mapping[str, Any] | None:
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or message.get("method") != "tools/call":
        return None
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    envelope = meta.get(META_KEY) if isinstance(meta, dict) else None
    return envelope if isinstance(envelope, dict) else None


def attesting_http_transport(url: str, *, header: bool = True) -> Any:
    """A Streamable HTTP transport that also sends ``X-MCP-Attestation``.

    Returns the SDK's ``streamable_http_client`` over an ``httpx2`` client
    carrying :class:`HeaderFromMeta`; without ``header`` it is the plain
    transport.
    """
    auth = HeaderFromMeta() if header else None
    timeout = httpx2.Timeout(30.0, read=300.0)
    return streamable_http_client(url, http_client=httpx2.AsyncClient(auth=auth, timeout=timeout))


class AttestingClient:
    """An MCP client whose every ``call_tool`` carries a signed envelope.

    Use :meth:`connect` to build the underlying ``mcp.Client`` with the
    client capability advertised, or wrap a client you configured yourself.
    """

    def __init__(
        self,
        client: Client,
        issuer: Issuer | None,
        *,
        server_fingerprint: str,
        default_intent: str = "tool call requested by the agent",
        commit: Commit = "both",
        exp_seconds: int = 300,
    ) -> None:
        self.client = client
        self.issuer = issuer
        self.server_fingerprint = server_fingerprint
        self.default_intent = default_intent
        self.commit: Commit = commit
        self.exp_seconds = exp_seconds

    @classmethod
    def connect(
        cls,
        server: Any,
        *,
        issuer: Issuer | None,
        server_fingerprint: str,
        header: bool = False,
        default_intent: str = "tool call requested by the agent",
        commit: Commit = "both",
        exp_seconds: int = 300,
        **client_options: Any,
    ) -> AttestingClient:
        """Build the ``mcp.Client`` for ``server`` (URL, stdio params, Server...).

        ``header=True`` with a URL also sends ``X-MCP-Attestation``; it is
        refused for other targets, where there is no HTTP request to carry it.
        """
        if isinstance(server, str):
            server = attesting_http_transport(server, header=header)
        elif header:
            raise ConfigurationError("header=True needs a Streamable HTTP URL")
        extensions = list(client_options.pop("extensions", None) or ())
        if issuer is not None:
            extensions.append(advertise(CAPABILITY, {"algorithms": [issuer.alg]}))
        client = Client(server, extensions=extensions, **client_options)
        return cls(
            client,
            issuer,
            server_fingerprint=server_fingerprint,
            default_intent=default_intent,
            commit=commit,
            exp_seconds=exp_seconds,
        )

    async def __aenter__(self) -> AttestingClient:
        await self.client.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.client.__aexit__(exc_type, exc_val, exc_tb)

    @property
    def server_capability(self) -> dict[str, Any] | None:
        """What the server advertised for ``attestation/tool-call``, if anything."""
        return server_capability(self.client.server_capabilities)

    @property
    def server_requires_attestation(self) -> bool:
        capability = self.server_capability
        return capability is not None and capability.get("required") is True

    def can_attest(self) -> bool:
        """Whether this client can produce an envelope the server accepts."""
        return self._usable_issuer() is not None

    def _usable_issuer(self) -> Issuer | None:
        """The issuer, if its algorithm is one the server accepts.

        A server that lists no algorithms (or no capability at all) gets the
        benefit of the doubt; its verifier has the last word anyway.
        """
        if self.issuer is None:
            return None
        algorithms = (self.server_capability or {}).get("algorithms")
        if isinstance(algorithms, list) and self.issuer.alg not in algorithms:
            return None
        return self.issuer

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        *,
        intent: str | None = None,
        raise_on_rejection: bool = True,
        meta: RequestParamsMeta | None = None,
        **options: Any,
    ) -> CallToolResult:
        """Sign and send one ``tools/call``.

        Raises :class:`AttestationUnavailableError` before sending when the
        server requires attestation this client cannot give, and
        :class:`AttestationRejectedError` when the guard rejects the call
        (unless ``raise_on_rejection`` is false, then the result is returned).
        """
        args = {} if arguments is None else arguments
        outgoing: dict[str, Any] = dict(meta or {})
        issuer = self._usable_issuer()
        if issuer is not None:
            envelope = issuer.sign(
                tool=name,
                arguments=args,
                server_fingerprint=self.server_fingerprint,
                intent=intent or self.default_intent,
                commit=self.commit,
                exp_seconds=self.exp_seconds,
            )
            outgoing[META_KEY] = envelope.to_wire()
        elif self.server_requires_attestation:
            why = (
                "no issuer is configured"
                if self.issuer is None
                else (f"the server accepts {self.server_capability!r}, not {self.issuer.alg}")
            )
            raise AttestationUnavailableError(
                f"server requires tool-call attestation and this client cannot attest: {why}"
            )
        result = await self.client.call_tool(
            name, args, meta=cast(RequestParamsMeta, outgoing) if outgoing else None, **options
        )
        rejection = parse_rejection(result)
        if rejection is not None and raise_on_rejection:
            raise AttestationRejectedError(rejection[0], rejection[1], result)
        return result
