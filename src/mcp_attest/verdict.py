"""The result of verification: verifier-asserted facts (PROFILE section 7)."""

from __future__ import annotations

import enum
import time
from typing import Any, NamedTuple

import orjson

from mcp_attest.errors import Error

__all__ = [
    "ArgsBinding",
    "AttestationRejectedError",
    "Reason",
    "Verdict",
    "format_rfc3339",
]


class Reason(enum.StrEnum):
    """The draft's eight rejection reasons; nothing else is ever sent as ``reason``."""

    ATTESTATION_REQUIRED = "attestation_required"
    SIGNATURE_INVALID = "signature_invalid"
    KEY_UNAVAILABLE = "key_unavailable"
    EXPIRED = "expired"
    SERVER_MISMATCH = "server_mismatch"
    TOOL_MISMATCH = "tool_mismatch"
    NONCE_REPLAY = "nonce_replay"
    ARGS_COMMITMENT_MISMATCH = "args_commitment_mismatch"


class ArgsBinding(enum.StrEnum):
    """How the runtime arguments relate to what the issuer signed (A2-A4).

    ``REDACTED`` means the arguments are NOT bound: the issuer signed a
    projection that differs from them, which the draft allows.
    """

    REF_DIGEST = "ref-digest"
    REF_RESOLVED = "ref-resolved"
    IDENTITY = "identity"
    REDACTED = "redacted"


_SECONDS: dict[int, str] = {}
_SECONDS_KEPT = 64


def format_rfc3339(epoch: float) -> str:
    """UTC timestamp with milliseconds, the form every fact and record uses.

    Every decision formats two (when verified, when recorded), nearly always
    within a second or two of each other: the text of recent seconds is
    kept, so ``strftime`` runs about once a second. One remembered second
    was not enough: a record whose verdict is a second old alternated
    between two and missed every time. Dict operations are atomic under
    the GIL, and a race only formats a second twice.
    """
    whole = int(epoch)
    text = _SECONDS.get(whole)
    if text is None:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        if len(_SECONDS) >= _SECONDS_KEPT:
            _SECONDS.clear()
        _SECONDS[whole] = text
    return f"{text}.{int((epoch - whole) * 1000):03d}Z"


def no_truth_value(result: object) -> TypeError:
    """What ``bool()`` of a result type raises, so ``if verdict:`` cannot pass a rejection.

    Every result type is a non-empty tuple or an object, hence always true;
    a caller who writes ``if verifier.verify(...)`` must be told at once.
    """
    return TypeError(f"a {type(result).__name__} has no truth value: read its .accepted field")


class Verdict(NamedTuple):
    """What the verifier asserts about one tools/call.

    A NamedTuple, not a frozen dataclass: one is built per call, and a
    frozen dataclass pays an ``object.__setattr__`` per field.

    Every identity field is filled only once the signature has verified
    (so a rejected envelope never contributes unauthenticated claims to the
    facts), except ``unknown_fields``, which helps operators see what a
    malformed-but-parsed envelope carried.
    """

    accepted: bool
    reason: Reason | None
    detail: str | None
    verified_at: float
    verifier_fingerprint: str
    attestation_id: str | None = None
    iss: str | None = None
    sub: str | None = None
    secret_version: str | None = None
    alg: str | None = None
    tool_call_index: int | None = None
    args_binding: ArgsBinding | None = None
    unknown_fields: tuple[str, ...] = ()
    projection_binding: ArgsBinding | None = None
    """A4: how the projection relates to the arguments when ``argsRef`` decided."""

    def __bool__(self) -> bool:
        raise no_truth_value(self)

    @property
    def attested(self) -> bool:
        """True when a verified attestation stands behind an accepted call.

        An optional server accepts calls without one; this is how callers
        tell those apart.
        """
        return self.accepted and self.attestation_id is not None

    def to_dict(self) -> dict[str, Any]:
        """The section 7 facts, camelCase, as the CLI and audit log show them."""
        return {
            "accepted": self.accepted,
            "reason": None if self.reason is None else self.reason.value,
            "detail": self.detail,
            "attestationId": self.attestation_id,
            "iss": self.iss,
            "sub": self.sub,
            "secretVersion": self.secret_version,
            "alg": self.alg,
            "toolCallIndex": self.tool_call_index,
            "argsBinding": None if self.args_binding is None else self.args_binding.value,
            "verifiedAt": format_rfc3339(self.verified_at),
            "verifierFingerprint": self.verifier_fingerprint,
            "unknownFields": list(self.unknown_fields),
            "projectionBinding": None if self.projection_binding is None else self.projection_binding.value,
        }

    def error_text(self, *, include_detail: bool = True) -> str:
        """The V10 rejection text a tool result carries."""
        body: dict[str, Any] = {
            "attestationError": True,
            "reason": None if self.reason is None else self.reason.value,
            "detail": self.detail if include_detail else None,
        }
        return orjson.dumps(body).decode()


class AttestationRejectedError(Error):
    """A call was refused for one of the eight reasons; the tool did not run.

    ``Verifier.require`` raises it with the local ``verdict``; the attesting
    client raises a subclass when a remote guard refused (then ``verdict``
    is None: only the server holds the facts). One ``except`` serves both.
    """

    def __init__(self, reason: Reason, detail: str | None, verdict: Verdict | None = None) -> None:
        super().__init__(f"attestation rejected: {reason.value}" + (f" ({detail})" if detail else ""))
        self.reason = reason
        self.detail = detail
        self.verdict = verdict
