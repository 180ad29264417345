"""Execution receipts (PROFILE section 9, extension ``attestation/tool-receipt``).

A receipt is the server's signed statement of what happened to one
attested call: which attestation, which tool, whether it errored and a
digest of the result. It proves what the server says, and nothing more;
in particular it does not prove the tool did the right thing.

The server's keys live in an ordinary keyring (PROFILE K3) under the
server fingerprint as issuer name, so rotation works as for issuers.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import orjson

from mcp_attest.canonical import CanonicalizationError, canonicalize
from mcp_attest.envelope import b64url_encode
from mcp_attest.errors import ConfigurationError
from mcp_attest.keys import Keyring
from mcp_attest.verdict import Verdict, format_rfc3339, no_truth_value

__all__ = ["RECEIPT_CAPABILITY", "ReceiptCheck", "ReceiptSigner", "result_digest", "verify_receipt"]

RECEIPT_CAPABILITY = "attestation/tool-receipt"
_FIELDS = frozenset(
    {
        "attestationId",
        "toolName",
        "serverFingerprint",
        "resultDigest",
        "isError",
        "executedAt",
        "argsBinding",
        "alg",
        "kid",
        "signature",
    }
)


def result_digest(result: Mapping[str, Any]) -> str:
    """base64url SHA-256 of JCS(result minus ``_meta``), so the receipt can ride in ``_meta``."""
    body = {k: v for k, v in result.items() if k != "_meta"}
    return b64url_encode(hashlib.sha256(canonicalize(body)).digest())


class ReceiptSigner:
    """Signs receipts with the server's own key (never an issuer's)."""

    def __init__(
        self,
        keyring: Keyring,
        server_fingerprint: str,
        *,
        kid: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = keyring.signing_key(server_fingerprint, kid)
        self.server_fingerprint = server_fingerprint
        self._clock = clock

    def sign(self, verdict: Verdict, *, tool: str, result: Mapping[str, Any]) -> dict[str, Any]:
        """A receipt for an accepted, attested call and the result it produced."""
        if not verdict.attested or verdict.args_binding is None:
            raise ConfigurationError("receipts are issued only for accepted, attested calls")
        receipt: dict[str, Any] = {
            "attestationId": verdict.attestation_id,
            "toolName": tool,
            "serverFingerprint": self.server_fingerprint,
            "resultDigest": result_digest(result),
            "isError": bool(result.get("isError", False)),
            "executedAt": format_rfc3339(self._clock()),
            "argsBinding": verdict.args_binding.value,
            "alg": self._key.alg,
            "kid": self._key.kid,
        }
        receipt["signature"] = self._key.sign(canonicalize(receipt))
        return receipt


class ReceiptCheck(NamedTuple):
    """The outcome of checking a receipt; ``problem`` is a stable code when not accepted.

    ``accepted`` is named as on ``Verdict`` so every result type reads the same.
    """

    accepted: bool
    problem: str | None = None

    def __bool__(self) -> bool:
        raise no_truth_value(self)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the CLI prints."""
        return {"accepted": self.accepted, "problem": self.problem}


def verify_receipt(
    receipt: Any,
    keyring: Keyring,
    *,
    result: Mapping[str, Any] | None = None,
    attestation_id: str | None = None,
) -> ReceiptCheck:
    """Check signature, key binding and, when given, the result and attestation it claims.

    Never raises for a bad receipt: like the verifier, every input maps to
    valid or a problem code.
    """
    if not isinstance(receipt, dict) or set(receipt) != _FIELDS:
        return ReceiptCheck(False, "receipt.schema")
    if not all(isinstance(receipt[k], str) and receipt[k] for k in _FIELDS - {"isError"}):
        return ReceiptCheck(False, "receipt.schema")
    if not isinstance(receipt["isError"], bool):
        return ReceiptCheck(False, "receipt.schema")
    key = keyring.get(receipt["serverFingerprint"], receipt["kid"])
    if key is None:
        return ReceiptCheck(False, "key.unknown")
    if key.alg != receipt["alg"]:
        return ReceiptCheck(False, "key.alg_mismatch")
    body = {k: v for k, v in receipt.items() if k != "signature"}
    try:
        message = canonicalize(body)
    except CanonicalizationError:
        return ReceiptCheck(False, "receipt.schema")
    if not key.verify(receipt["signature"], message):
        return ReceiptCheck(False, "signature.mismatch")
    if attestation_id is not None and receipt["attestationId"] != attestation_id:
        return ReceiptCheck(False, "attestation.mismatch")
    if result is not None:
        try:
            digest = result_digest(result)
        except CanonicalizationError:
            return ReceiptCheck(False, "result.not_canonicalizable")
        if digest != receipt["resultDigest"]:
            return ReceiptCheck(False, "result.mismatch")
    return ReceiptCheck(True)


def load_receipt(data: bytes) -> Any:
    """Parse receipt bytes; ``None`` when they are not JSON (a schema problem)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
