"""Server-side verification, PROFILE V0-V12, one small function per step.

Steps run cheap and local first; the replay key is claimed last (V9) so a
request rejected for any other reason never burns a nonce. Every step
either returns what the next one needs or raises ``_Reject``; ``verify``
turns that into a ``Verdict``. Nothing a client sends can escape as an
exception (V12).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, NoReturn

from mcp_attest.algorithms import ALGORITHMS, Key
from mcp_attest.canonical import (
    CanonicalizationError,
    canonicalize,
    canonicalize_arguments,
    check_envelope_value,
    parse_arguments,
    parse_envelope_json,
)
from mcp_attest.details import VERDICT_DETAILS
from mcp_attest.envelope import (
    DEFAULT_MAX_TTL,
    Envelope,
    MalformedEnvelopeError,
    ToolCall,
    _from_json,
    _from_parsed,
    b64url_encode,
    parse_iat,
)
from mcp_attest.errors import ConfigurationError
from mcp_attest.keys import KeySource
from mcp_attest.replay import InMemoryReplayStore, ReplayStore, replay_key
from mcp_attest.resolvers import MAX_REF_BYTES, Resolver, resolve_data_uri
from mcp_attest.transport import HeaderError, decode_header
from mcp_attest.verdict import ArgsBinding, AttestationRejectedError, Reason, Verdict

__all__ = ["EnvelopeInput", "EnvelopeReader", "Verifier", "VerifierPolicy"]

logger = logging.getLogger("mcp_attest.verifier")

EnvelopeInput = bytes | bytearray | str | Mapping[str, Any] | None
EnvelopeReader = Callable[[Mapping[str, Any], int], Envelope]
"""Turns a strictly parsed (C2) object into an ``Envelope``, given ``max_ttl``.

The hook for older dialects (PROFILE section 10): only the schema step
differs, so V0 and V2-V12 stay the spec's.
"""
_ARGS_MISMATCH: Final = Reason.ARGS_COMMITMENT_MISMATCH


@dataclass(frozen=True, slots=True)
class VerifierPolicy:
    """What this verifier accepts; every default is the profile's.

    ``args_binding="strict"`` refuses calls whose arguments are only covered
    by a redacted projection; ``include_detail=False`` keeps detail codes
    out of tool results for public servers (verdicts and logs keep them).
    """

    required: bool = True
    algorithms: tuple[str, ...] = ALGORITHMS
    skew: int = 30
    max_ttl: int = DEFAULT_MAX_TTL
    args_binding: Literal["spec", "strict"] = "strict"
    multi_server: bool = True
    resolve_refs: bool = False
    include_detail: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.algorithms) - set(ALGORITHMS)
        if unknown or not self.algorithms:
            raise ConfigurationError(f"algorithms must be a non-empty subset of {ALGORITHMS}")
        if self.args_binding not in ("spec", "strict"):
            raise ConfigurationError("args_binding must be 'spec' or 'strict'")
        if not 0 <= self.skew <= 300:
            raise ConfigurationError("skew must be 0..300 seconds")
        if not 1 <= self.max_ttl <= 86400:
            raise ConfigurationError("max_ttl must be 1..86400 seconds")


class _Reject(Exception):  # noqa: N818 - internal control flow, never escapes
    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        self.detail = detail


def _reject(reason: Reason, detail: str) -> NoReturn:
    raise _Reject(reason, detail)


class _Call:
    """Working state of one verification, filled step by step.

    A plain class rather than a dataclass: mypyc compiles this ``__init__``,
    whereas a dataclass's generated one stays interpreted.
    """

    __slots__ = (
        "args_jcs",
        "args_text",
        "arguments",
        "attestation_id",
        "envelope",
        "key",
        "now",
        "projection_binding",
        "tool",
        "unknown_fields",
    )

    def __init__(self, now: float, tool: str, arguments: Any) -> None:
        self.now = now
        self.tool = tool
        self.arguments = arguments
        self.envelope: Envelope | None = None
        self.attestation_id: str | None = None
        self.key: Key | None = None
        self.args_jcs: bytes | None = None
        self.args_text: str | None = None
        self.unknown_fields: tuple[str, ...] = ()
        self.projection_binding: ArgsBinding | None = None


class Verifier:
    """Verifies envelopes for one server (its fingerprint) against a keyring."""

    def __init__(
        self,
        keyring: KeySource,
        server_fingerprint: str,
        *,
        replay_store: ReplayStore | None = None,
        policy: VerifierPolicy | None = None,
        clock: Callable[[], float] = time.time,
        resolvers: Mapping[str, Resolver] | None = None,
        reader: EnvelopeReader | None = None,
    ) -> None:
        if not server_fingerprint:
            raise ConfigurationError("server_fingerprint must be non-empty")
        self.keyring = keyring
        self.server_fingerprint = server_fingerprint
        self.replay_store: ReplayStore = replay_store if replay_store is not None else InMemoryReplayStore()
        self.policy = policy or VerifierPolicy()
        self._clock = clock
        self._algorithms = frozenset(self.policy.algorithms)
        self._reader = reader
        self._resolvers: dict[str, Resolver] = {"data": resolve_data_uri}
        self._resolvers.update({k.lower(): v for k, v in (resolvers or {}).items()})

    def replace_keyring(self, keyring: KeySource) -> None:
        """Swap in a reloaded keyring (rotation without a restart).

        One attribute assignment, so a verification in flight sees either
        the old or the new ring, never a mix. Load the new ring first: a
        ring that fails to load must not reach here (V12).
        """
        self.keyring = keyring

    @property
    def algorithms(self) -> tuple[str, ...]:
        """Allowed algorithms, in the order a capability advertises them."""
        return self.policy.algorithms

    # -- public entry points -------------------------------------------------

    def verify(
        self,
        envelope: EnvelopeInput = None,
        *,
        tool: str,
        arguments: Mapping[str, Any] | bytes | None,
        header: str | None = None,
    ) -> Verdict:
        """Decide one tools/call. ``envelope`` is ``_meta.attestation`` (bytes,
        text or an already-parsed object), ``header`` the ``X-MCP-Attestation``
        value; either may be absent. ``arguments`` may be the parsed object
        or the raw JSON bytes as received, which lets C3 see what a lenient
        parser would have hidden (duplicate keys, ``-0``, inexact integers).
        """
        call = _Call(now=self._clock(), tool=tool, arguments={} if arguments is None else arguments)
        try:
            return self._run(call, envelope, header)
        except _Reject as rej:
            return self._rejected(call, rej.reason, rej.detail)
        except Exception:  # V12: a bug must fail closed, never crash the server
            logger.exception("internal error while verifying an attestation; rejecting")
            return self._rejected(call, Reason.SIGNATURE_INVALID, "internal.error")

    def require(
        self,
        envelope: EnvelopeInput = None,
        *,
        tool: str,
        arguments: Mapping[str, Any] | bytes | None,
        header: str | None = None,
    ) -> Verdict:
        """Like ``verify`` but raises ``AttestationRejectedError`` unless accepted."""
        verdict = self.verify(envelope, tool=tool, arguments=arguments, header=header)
        if not verdict.accepted:
            assert verdict.reason is not None
            raise AttestationRejectedError(verdict.reason, verdict.detail, verdict)
        return verdict

    # -- the steps ----------------------------------------------------------

    def _run(self, call: _Call, envelope: EnvelopeInput, header: str | None) -> Verdict:
        if envelope is None and header is None:
            return self._v0_absent(call)
        env = call.envelope = self._v1_parse(envelope, header)
        call.unknown_fields = env.unknown_fields
        call.key = self._v2_key(env)
        self._v3_signature(call, env, call.key)
        expires_at = self._v4_time(call, env)
        on_server = self._v5_server(env)
        named = self._v6_tool(call, env, on_server)
        unclaimed = self._v7_unclaimed(call, env, named)
        entry, binding = self._v8_arguments(call, env, unclaimed)
        self._v9_claim(call, env, entry, expires_at)
        ia = env.issuer_asserted
        return _accepted_verdict(
            verified_at=call.now,
            verifier_fingerprint=self.server_fingerprint,
            attestation_id=call.attestation_id,
            iss=ia.iss,
            sub=ia.sub,
            secret_version=ia.secret_version,
            alg=ia.alg,
            tool_call_index=entry[0],
            args_binding=binding,
            unknown_fields=call.unknown_fields,
            projection_binding=call.projection_binding,
        )

    def _v0_absent(self, call: _Call) -> Verdict:
        """V0: no attestation at all is a rejection only where one is required."""
        if self.policy.required:
            _reject(Reason.ATTESTATION_REQUIRED, "attestation.absent")
        return Verdict(
            accepted=True,
            reason=None,
            detail="attestation.absent",
            verified_at=call.now,
            verifier_fingerprint=self.server_fingerprint,
        )

    def _v1_parse(self, envelope: EnvelopeInput, header: str | None) -> Envelope:
        """V1 with V11: strict parse of each transport, which must then agree."""
        from_header = None
        if header is not None:
            try:
                raw = decode_header(header)
            except HeaderError:
                _reject(Reason.SIGNATURE_INVALID, "malformed.header")
            from_header = self._envelope(raw)
        if envelope is None:
            assert from_header is not None  # V0 handled "neither transport"
            return from_header
        env = self._envelope(envelope)
        if from_header is not None and canonicalize(env.wire) != canonicalize(from_header.wire):
            _reject(Reason.SIGNATURE_INVALID, "transport.conflict")
        return env

    def _envelope(self, envelope: bytes | bytearray | str | Mapping[str, Any]) -> Envelope:
        """C2 and E1-E8 for every way an envelope can arrive."""
        max_ttl = self.policy.max_ttl
        try:
            if self._reader is not None:
                return self._reader(_strict_object(envelope), max_ttl)
            if type(envelope) is bytes:  # first: mypyc builds ``bytes | bytearray`` anew on every call
                return _from_json(envelope, max_ttl)
            if isinstance(envelope, bytes | bytearray):
                return _from_json(bytes(envelope), max_ttl)
            if isinstance(envelope, str):
                try:
                    data = envelope.encode("utf-8")
                except UnicodeEncodeError:
                    _reject(Reason.SIGNATURE_INVALID, "malformed.surrogate")
                return _from_json(data, max_ttl)
            return _from_parsed(envelope, max_ttl)
        except (MalformedEnvelopeError, CanonicalizationError) as exc:
            _reject(Reason.SIGNATURE_INVALID, exc.detail)

    def _v2_key(self, env: Envelope) -> Key:
        """V2 (K1): the allowlist first, then the key and its bound algorithm."""
        ia = env.issuer_asserted
        if ia.alg not in self._algorithms:
            _reject(Reason.KEY_UNAVAILABLE, "alg.not_allowed")
        key = self.keyring.get(ia.iss, ia.secret_version)
        if key is None:
            _reject(Reason.KEY_UNAVAILABLE, "key.unknown")
        if key.alg != ia.alg:
            _reject(Reason.KEY_UNAVAILABLE, "key.alg_mismatch")
        return key

    def _v3_signature(self, call: _Call, env: Envelope, key: Key) -> None:
        """V3 over the C1 bytes; A1's id is the hash of the same bytes, which ES256 and RS256 reuse."""
        data = env.signing_input()
        digest = hashlib.sha256(data).digest()
        call.attestation_id = digest.hex()
        if not key._verify_hashed(env.signature, data, digest):
            _reject(Reason.SIGNATURE_INVALID, "signature.mismatch")

    def _v4_time(self, call: _Call, env: Envelope) -> float:
        """V4; returns the absolute replay-key lifetime (R2)."""
        ia = env.issuer_asserted
        iat = parse_iat(ia.iat)
        skew = self.policy.skew
        if call.now < iat - skew:
            _reject(Reason.EXPIRED, "ttl.not_yet_valid")
        expires_at = iat + ia.exp_seconds + skew
        if call.now > expires_at:
            _reject(Reason.EXPIRED, "ttl.expired")
        return expires_at

    def _v5_server(self, env: Envelope) -> list[int]:
        """V5: entries meant for this server, and the multi-server policy."""
        mine = [i for i, c in enumerate(env.tool_calls) if c.server_fingerprint == self.server_fingerprint]
        if not mine:
            _reject(Reason.SERVER_MISMATCH, "server.not_in_plan")
        if not self.policy.multi_server and len(mine) != len(env.tool_calls):
            _reject(Reason.SERVER_MISMATCH, "server.multi_server_plan")
        return mine

    def _v6_tool(self, call: _Call, env: Envelope, on_server: list[int]) -> list[int]:
        """V6: of those, the entries naming the called tool."""
        named = [i for i in on_server if env.tool_calls[i].name == call.tool]
        if not named:
            _reject(Reason.TOOL_MISMATCH, "tool.not_in_plan")
        return named

    def _v7_unclaimed(self, call: _Call, env: Envelope, named: list[int]) -> list[tuple[int, bytes]]:
        """V7: a read-only replay check, so V8's work is skipped for replays."""
        ia = env.issuer_asserted
        keys = [(i, replay_key(ia.iss, ia.nonce, i)) for i in named]
        try:
            unclaimed = [(i, k) for i, k in keys if not self.replay_store.is_claimed(k, call.now)]
        except Exception as exc:  # V12: any store fault (not only StoreUnavailableError) fails closed
            logger.error("replay store unavailable, rejecting (fail closed): %s", exc)
            _reject(Reason.NONCE_REPLAY, "store.unavailable")
        if not unclaimed:
            _reject(Reason.NONCE_REPLAY, "nonce.replayed")
        return unclaimed

    def _v8_arguments(
        self, call: _Call, env: Envelope, unclaimed: list[tuple[int, bytes]]
    ) -> tuple[tuple[int, bytes], ArgsBinding]:
        """V8 (A2-A4, R1): the first unclaimed entry whose commitment holds."""
        try:
            call.args_jcs = _arguments_jcs(call.arguments)
        except CanonicalizationError:
            _reject(_ARGS_MISMATCH, "args.not_canonicalizable")
        first_failure = ""
        for entry in unclaimed:
            binding, failure = self._commitment(call, env.tool_calls[entry[0]])
            if binding is not None:
                return entry, binding
            first_failure = first_failure or failure
        _reject(_ARGS_MISMATCH, first_failure)

    def _v9_claim(self, call: _Call, env: Envelope, entry: tuple[int, bytes], expires_at: float) -> None:
        """V9: the atomic claim; losing a race is a replay, with no retry."""
        try:
            won = self.replay_store.claim(entry[1], expires_at, call.now)
        except Exception as exc:  # V12: any store fault (not only StoreUnavailableError) fails closed
            logger.error("replay store unavailable, rejecting (fail closed): %s", exc)
            _reject(Reason.NONCE_REPLAY, "store.unavailable")
        if not won:
            _reject(Reason.NONCE_REPLAY, "nonce.race")

    # -- argument commitments (A2-A4) ----------------------------------------

    def _commitment(self, call: _Call, entry: ToolCall) -> tuple[ArgsBinding | None, str]:
        """Classify one entry's commitment; (binding, "") or (None, failure detail)."""
        binding: ArgsBinding | None = None
        projection: ArgsBinding | None = None
        if entry.args_projection is not None:
            projection, failure = self._projection(call, entry.args_projection)
            if projection is None:
                return None, failure
            binding = projection
        if entry.args_ref is not None:
            binding, failure = self._reference(call, entry.args_ref.uri, entry.args_ref.digest)
            if binding is None:
                return None, failure
        if binding is ArgsBinding.REDACTED and self.policy.args_binding == "strict":
            return None, "args.not_bound"
        # A4: with both commitments the ref decides; the projection's class is recorded too.
        call.projection_binding = projection if entry.args_ref is not None else None
        return binding, ""

    def _projection(self, call: _Call, projection: str) -> tuple[ArgsBinding | None, str]:
        """A3: identity when the projection is the arguments, else redacted."""
        assert call.args_jcs is not None
        if call.args_text is None:
            call.args_text = call.args_jcs.decode("utf-8")
        if projection == call.args_text:
            return ArgsBinding.IDENTITY, ""
        try:
            parsed = canonicalize(parse_arguments(projection))
        except CanonicalizationError:
            return None, "projection.not_json"
        if parsed == call.args_jcs:
            return ArgsBinding.IDENTITY, ""
        return ArgsBinding.REDACTED, ""

    def _reference(self, call: _Call, uri: str, digest: str) -> tuple[ArgsBinding | None, str]:
        """A2: the digest shortcut, else (or always, with resolve_refs) a fetch."""
        assert call.args_jcs is not None
        if not self.policy.resolve_refs:
            mine = b64url_encode(hashlib.sha256(call.args_jcs).digest())
            if hmac.compare_digest(mine, digest):
                return ArgsBinding.REF_DIGEST, ""
        resolver = self._resolvers.get(uri.partition(":")[0].lower())
        if resolver is None:
            return None, "ref.unresolvable" if self.policy.resolve_refs else "ref.digest_mismatch"
        try:
            content = resolver(uri)
        except Exception as exc:  # resolvers are pluggable; any failure is a mismatch
            logger.info("argsRef could not be resolved: %s", type(exc).__name__)
            return None, "ref.unresolvable"
        if len(content) > MAX_REF_BYTES:
            return None, "ref.unresolvable"
        if not hmac.compare_digest(b64url_encode(hashlib.sha256(content).digest()), digest):
            return None, "ref.digest_mismatch"
        try:
            resolved = canonicalize(parse_arguments(content))
        except CanonicalizationError:
            return None, "ref.not_json"
        if resolved != call.args_jcs:
            return None, "ref.content_mismatch"
        return ArgsBinding.REF_RESOLVED, ""

    # -- results -------------------------------------------------------------

    def _rejected(self, call: _Call, reason: Reason, detail: str) -> Verdict:
        """A rejection carries only facts the verifier established itself.

        Issuer identity appears only once the signature has verified, so a
        forged envelope cannot write a chosen ``iss`` or ``sub`` into the
        audit trail.
        """
        assert VERDICT_DETAILS[detail].reason is reason, f"{detail!r} is registered under another reason"
        logger.debug("attestation rejected: %s (%s)", reason.value, detail)
        ia = call.envelope.issuer_asserted if call.envelope is not None else None
        signed = ia is not None and call.key is not None and reason is not Reason.SIGNATURE_INVALID
        return Verdict(
            accepted=False,
            reason=reason,
            detail=detail,
            verified_at=call.now,
            verifier_fingerprint=self.server_fingerprint,
            attestation_id=call.attestation_id,
            iss=ia.iss if signed and ia else None,
            sub=ia.sub if signed and ia else None,
            secret_version=ia.secret_version if signed and ia else None,
            alg=ia.alg if signed and ia else None,
            unknown_fields=call.unknown_fields,
        )


def _strict_object(envelope: bytes | bytearray | str | Mapping[str, Any]) -> dict[str, Any]:
    """C2 alone, for readers of other dialects."""
    if isinstance(envelope, bytes | bytearray):
        return parse_envelope_json(bytes(envelope))
    if isinstance(envelope, str):
        try:
            return parse_envelope_json(envelope.encode("utf-8"))
        except UnicodeEncodeError:
            _reject(Reason.SIGNATURE_INVALID, "malformed.surrogate")
    return check_envelope_value(envelope)


def _arguments_jcs(arguments: Mapping[str, Any] | bytes) -> bytes:
    """JCS of the runtime arguments, given parsed or as the raw JSON received (C3)."""
    if isinstance(arguments, bytes):
        return canonicalize(parse_arguments(arguments))
    return canonicalize_arguments(arguments)


def _accepted_verdict(
    *,
    verified_at: float,
    verifier_fingerprint: str,
    attestation_id: str | None,
    iss: str,
    sub: str,
    secret_version: str,
    alg: str,
    tool_call_index: int,
    args_binding: ArgsBinding,
    unknown_fields: tuple[str, ...],
    projection_binding: ArgsBinding | None,
) -> Verdict:
    """The verdict of an attested call, built from a tuple in one C call.

    Calling the class runs the interpreted ``__new__`` that namedtuple
    generates, keyword parsing included: a measurable share of a whole
    HS256 verify. The tuple follows ``Verdict``'s field order, which a
    test pins against the keyword form.
    """
    return tuple.__new__(
        Verdict,
        (
            True,
            None,
            None,
            verified_at,
            verifier_fingerprint,
            attestation_id,
            iss,
            sub,
            secret_version,
            alg,
            tool_call_index,
            args_binding,
            unknown_fields,
            projection_binding,
        ),
    )
