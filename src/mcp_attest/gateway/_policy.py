"""What the gateway does to a ``tools/call`` for one upstream: verify, or sign.

Verification uses the MCP integration's ``AttestationGuard`` (its verifier,
V10 rejection text and capability object), so a call is judged as an SDK
server judges it, with one difference in the gateway's favour: the
verifier sees the envelope and arguments as the client wrote them
(``rawcall``), so C2 and C3 apply to the bytes, not to orjson's reading.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import orjson

from mcp_attest import CAPABILITY, HEADER_NAME, META_KEY, Issuer, Keyring, Verdict, Verifier, VerifierPolicy
from mcp_attest.canonical import MAX_ENVELOPE_BYTES, CanonicalizationError, parse_arguments
from mcp_attest.gateway._jsonrpc import Message, gateway_error_result
from mcp_attest.gateway._metrics import Metrics
from mcp_attest.gateway._pins import PinStore
from mcp_attest.gateway._rawcall import CallInputs
from mcp_attest.gateway.config import GatewayConfig, UpstreamConfig
from mcp_attest.mcp import AttestationGuard
from mcp_attest.replay import ReplayStore
from mcp_attest.transport import encode_header
from mcp_attest.verdict import Reason

__all__ = ["AuditSink", "Decision", "Route", "build_guard", "build_issuer"]

logger = logging.getLogger("mcp_attest.gateway")

INTENT_HEADER = "x-mcp-intent"
_MAX_INTENT_BYTES = 4096
# Calls larger than this are judged (strict reading, digests) in a worker thread, so one
# big body does not stall every other client on the event loop.
_OFF_LOOP_BYTES = 64 * 1024
# The verdicts reached after V7: only these judged the arguments, so only their records
# carry a digest of them (computing one for a call refused earlier is work for an attacker).
_AFTER_V7 = frozenset({Reason.ARGS_COMMITMENT_MISMATCH, Reason.NONCE_REPLAY})
_MAX_TOOL_CHARS = 256


class AuditSink(Protocol):
    """The audit log's submit, as the gateway uses it (``mcp_attest.audit.AuditLog``): durable on return."""

    def submit(self, verdict: Verdict, *, tool: str, arguments: Any, envelope: Any) -> None: ...


@dataclass(slots=True)
class Decision:
    """Either a result the gateway answers itself, or the params to forward."""

    reply: Message | None = None
    params: Message | None = None
    headers: dict[str, str] = field(default_factory=dict)
    outcome: str = "forwarded"
    reason: str | None = None
    detail: str | None = None
    attestation_id: str | None = None


def _judged(verdict: Verdict, **kwargs: Any) -> Decision:
    """A decision carrying the verdict's facts, for the log line."""
    reason = "accepted" if verdict.accepted or verdict.reason is None else verdict.reason.value
    return Decision(reason=reason, detail=verdict.detail, attestation_id=verdict.attestation_id, **kwargs)


def build_guard(
    config: GatewayConfig, upstream: UpstreamConfig, keyring: Keyring, store: ReplayStore
) -> AttestationGuard:
    v = config.verify
    policy = VerifierPolicy(
        required=v.required,
        args_binding=v.args_binding,
        multi_server=v.multi_server,
        include_detail=v.include_detail,
        skew=v.skew,
        max_ttl=v.max_ttl,
    )
    return AttestationGuard(Verifier(keyring, upstream.fingerprint, replay_store=store, policy=policy))


def build_issuer(config: GatewayConfig, keyring: Keyring) -> Issuer:
    i = config.issue
    assert i.iss is not None
    return Issuer(keyring, iss=i.iss, sub=i.sub, kid=i.kid)


class Route:
    """Everything the gateway knows about one upstream besides the connection."""

    def __init__(
        self,
        config: UpstreamConfig,
        gateway: GatewayConfig,
        metrics: Metrics,
        *,
        guard: AttestationGuard | None = None,
        issuer: Issuer | None = None,
        audit: AuditSink | None = None,
        pins: PinStore | None = None,
    ) -> None:
        self.config = config
        self.gateway = gateway
        self.metrics = metrics
        self.guard = guard
        self.issuer = issuer
        self.audit = audit
        # An audit append that waits on a network round trip and a disk flush
        # (PostgreSQL) must not stall the event loop; off the loop, concurrent
        # calls also share the log's group commit.
        self._audit_off_loop = bool(getattr(audit, "remote", False))
        self.pins = pins

    @property
    def name(self) -> str:
        return self.config.name

    # -- negotiation (PROFILE section 8) --------------------------------------

    def advertise(self, result: Any) -> None:
        """Say what the client must do, in an ``initialize`` / ``server/discover`` result.

        Verify mode: the gateway is the verifier the client talks to, so it
        advertises its own capability. Issue mode: the gateway signs every
        call, so the client has to do nothing; the upstream's capability is
        passed on with ``required`` false (its algorithms stay, for a client
        that signs for itself), else an attesting client without a key
        would refuse to send a call the gateway would have signed.
        """
        capabilities = result.get("capabilities") if isinstance(result, dict) else None
        if not isinstance(capabilities, dict):
            return
        if self.guard is not None:
            self.guard.advertise(capabilities)
        elif self.issuer is not None:
            for place in ("extensions", "experimental"):
                entries = capabilities.get(place)
                if isinstance(entries, dict) and isinstance(entries.get(CAPABILITY), dict):
                    entries[CAPABILITY] = {**entries[CAPABILITY], "required": False}

    def prepare_initialize(self, message: Message) -> Message:
        """In issue mode, tell the upstream this client (the gateway) attests."""
        params = message.get("params")
        if self.issuer is None or not isinstance(params, dict):
            return message
        capabilities = dict(params.get("capabilities") or {})
        for place in ("extensions", "experimental"):
            existing = capabilities.get(place)
            merged = dict(existing) if isinstance(existing, dict) else {}
            merged[CAPABILITY] = {"algorithms": [self.issuer.alg]}
            capabilities[place] = merged
        return {**message, "params": {**params, "capabilities": capabilities}}

    def observe_tools(self, result: Any) -> None:
        if self.pins is not None and isinstance(result, dict):
            self.pins.observe(result.get("tools"))

    # -- tools/call -------------------------------------------------------------

    async def decide(self, params: Message, headers: Mapping[str, str], inputs: CallInputs) -> Decision:
        """Verify or sign one call; never raises for anything a client sends.

        ``inputs`` is what the call said on the wire (``rawcall``): the
        verifier judges that, and ``params`` is what gets forwarded.
        """
        tool, arguments = params.get("name"), params.get("arguments")
        if not isinstance(tool, str) or not (arguments is None or isinstance(arguments, dict)):
            return Decision(
                reply=gateway_error_result("invalid_params", "name must be a string and arguments an object"),
                outcome="invalid",
                reason="invalid_params",
            )
        args: dict[str, Any] = arguments or {}
        if self.pins is not None:
            why = self.pins.refusal(tool)
            if why is not None:
                return self.refuse(tool, Reason.TOOL_MISMATCH, "gateway.tool_definition_changed", why)
        if self.guard is not None:
            work = partial(self._judge, tool, inputs, headers.get(HEADER_NAME.lower()))
            off_loop = self._audit_off_loop or inputs.size > _OFF_LOOP_BYTES
            verdict = await asyncio.to_thread(work) if off_loop else work()
            return self._decision(verdict, params, headers)
        if self.issuer is not None:
            return self._sign(tool, args, params, headers)
        return Decision(params=params)

    def refuse(self, tool: Any, reason: Reason, detail: str, why: str) -> Decision:
        """A refusal of the gateway's own, recorded like a verdict (it judged no envelope)."""
        verdict = Verdict(
            accepted=False,
            reason=reason,
            detail=detail,
            verified_at=time.time(),
            verifier_fingerprint=self.config.fingerprint,
        )
        self.metrics.verdict(self.name, detail.removeprefix("gateway."))
        failed = self._record(verdict, str(tool), None, None)
        if failed is not None:
            return failed
        return _judged(
            verdict, reply=gateway_error_result(detail.removeprefix("gateway."), why), outcome="rejected"
        )

    def _judge(self, tool: str, inputs: CallInputs, header: str | None) -> Verdict | Decision:
        """The verdict and its audit record: run off the event loop for large calls."""
        assert self.guard is not None
        verdict = self.guard.verifier.verify(
            inputs.envelope, tool=tool, arguments=inputs.arguments, header=header
        )
        self.metrics.verdict(self.name, "accepted" if verdict.accepted else str(verdict.reason))
        judged_args = verdict.accepted or verdict.reason in _AFTER_V7
        envelope = inputs.envelope if verdict.detail != "malformed.too_large" else None
        failed = self._record(verdict, tool, inputs.arguments if judged_args else None, envelope)
        return verdict if failed is None else failed

    def _record(self, verdict: Verdict, tool: str, arguments: Any, envelope: Any) -> Decision | None:
        """Append to the audit log; a decision that cannot be recorded is refused (fail closed)."""
        if self.audit is None:
            return None
        if isinstance(envelope, Mapping) and len(orjson.dumps(envelope)) > MAX_ENVELOPE_BYTES:
            envelope = None
        if isinstance(arguments, bytes):
            try:
                arguments = parse_arguments(arguments)
            except CanonicalizationError:
                arguments = None  # refused by C3 (the verdict says so): there is nothing to digest
        try:
            self.audit.submit(verdict, tool=_bounded(tool), arguments=arguments, envelope=envelope)
        except Exception:
            logger.exception("audit record not kept; refusing the call")
            self.metrics.error("audit_unavailable")
            failed = _judged(
                verdict,
                reply=gateway_error_result("audit_unavailable", "the call could not be recorded"),
                outcome="failed",
            )
            failed.reason = "audit_unavailable"
            return failed
        return None

    def _decision(self, verdict: Verdict | Decision, params: Message, headers: Mapping[str, str]) -> Decision:
        if isinstance(verdict, Decision):
            return verdict
        assert self.guard is not None
        if not verdict.accepted:
            return _judged(
                verdict,
                reply=self.guard.rejection(verdict).model_dump(by_alias=True, exclude_none=True, mode="json"),
                outcome="rejected",
            )
        forward: dict[str, str] = {}
        header = headers.get(HEADER_NAME.lower())
        if header is not None and self.config.kind == "http":
            forward[HEADER_NAME] = header
        return _judged(verdict, params=params, headers=forward)

    def _sign(self, tool: str, args: dict[str, Any], params: Message, headers: Mapping[str, str]) -> Decision:
        assert self.issuer is not None
        meta = params.get("_meta")
        meta = dict(meta) if isinstance(meta, dict) else {}
        if META_KEY in meta:  # the client attests for itself; never overwrite its plan
            return Decision(params=params, outcome="passed", reason="client_attested")
        try:  # HTTP header bytes reach us as latin-1 text; an intent is UTF-8 (RFC 9110 allows it)
            intent = (headers.get(INTENT_HEADER) or "").encode("latin-1").decode("utf-8").strip()
        except (UnicodeEncodeError, UnicodeDecodeError):
            return Decision(
                reply=gateway_error_result("cannot_sign", "X-MCP-Intent is not UTF-8"),
                outcome="failed",
                reason="cannot_sign",
                detail="intent.not_utf8",
            )
        intent = intent or self.gateway.issue.default_intent
        if len(intent.encode("utf-8", "surrogatepass")) > _MAX_INTENT_BYTES:
            return Decision(
                reply=gateway_error_result("cannot_sign", "intent is longer than 4096 bytes"),
                outcome="failed",
                reason="cannot_sign",
                detail="intent.too_long",
            )
        issue = self.gateway.issue
        try:
            envelope = self.issuer.sign(
                tool=tool,
                arguments=args,
                server_fingerprint=self.config.fingerprint,
                intent=intent,
                commit=issue.commit,
                exp_seconds=issue.exp_seconds,
            )
        except CanonicalizationError as exc:
            return Decision(
                reply=gateway_error_result("cannot_sign", exc.detail),
                outcome="failed",
                reason="cannot_sign",
                detail=exc.detail,
            )
        meta[META_KEY] = envelope.to_wire()
        forward = (
            {HEADER_NAME: encode_header(envelope)} if issue.header and self.config.kind == "http" else {}
        )
        return Decision(
            params={**params, "_meta": meta},
            headers=forward,
            outcome="signed",
            attestation_id=hashlib.sha256(envelope.signing_input()).hexdigest(),
        )


def _bounded(tool: str) -> str:
    """A client-chosen tool name as the audit log keeps it: at most 256 characters, marked when cut."""
    if len(tool) <= _MAX_TOOL_CHARS:
        return tool
    return f"{tool[:_MAX_TOOL_CHARS]}...[{len(tool)} characters]"
