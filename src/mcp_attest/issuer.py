"""Building and signing envelopes (the agent side)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mcp_attest.canonical import canonicalize_arguments
from mcp_attest.envelope import DEFAULT_MAX_TTL, Envelope, b64url_encode, signing_input
from mcp_attest.errors import ConfigurationError
from mcp_attest.keys import Keyring

__all__ = ["Commit", "Issuer", "PlannedCall", "data_uri"]

Commit = Literal["projection", "ref", "both"]
_COMMITS = ("projection", "ref", "both")


def data_uri(content: bytes) -> str:
    """A ``data:`` URI carrying the JCS bytes of the arguments, resolvable offline."""
    return "data:application/json;base64," + base64.b64encode(content).decode("ascii")


def format_iat(epoch: float) -> str:
    """E3 issuer form: ``YYYY-MM-DDTHH:MM:SSZ``, whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch)))


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One entry of a plan: tool, arguments and the server it is meant for."""

    tool: str
    arguments: Mapping[str, Any]
    server_fingerprint: str
    commit: Commit = "projection"
    ref_uri: str | None = None


class Issuer:
    """Signs envelopes for one issuer and subject with keys from a signing keyring."""

    def __init__(
        self,
        keyring: Keyring,
        *,
        iss: str,
        sub: str,
        kid: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = keyring.signing_key(iss, kid)
        self.iss = iss
        self.sub = sub
        self._clock = clock

    @property
    def alg(self) -> str:
        """The algorithm of the key this issuer signs with."""
        return self._key.alg

    @property
    def kid(self) -> str:
        """The secretVersion this issuer puts in envelopes."""
        return self._key.kid

    def sign(
        self,
        *,
        tool: str,
        arguments: Mapping[str, Any],
        server_fingerprint: str,
        intent: str,
        commit: Commit = "projection",
        ref_uri: str | None = None,
        exp_seconds: int = 300,
        requested_capability: str | None = None,
        planner_ref: str | None = None,
    ) -> Envelope:
        """Sign a one-call plan. Raises ``CanonicalizationError`` for arguments C3 refuses."""
        call = PlannedCall(tool, arguments, server_fingerprint, commit, ref_uri)
        return self.sign_plan(
            [call],
            intent=intent,
            exp_seconds=exp_seconds,
            requested_capability=requested_capability,
            planner_ref=planner_ref,
        )

    def sign_plan(
        self,
        calls: Sequence[PlannedCall],
        *,
        intent: str,
        exp_seconds: int = 300,
        requested_capability: str | None = None,
        planner_ref: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Envelope:
        """Sign a plan of one or more calls under one nonce.

        ``extra`` adds top-level members beyond the schema; they are signed
        like everything else (E8). The result is re-read through the
        verifier's own schema check, so an issuer can never emit an envelope
        that the profile would call malformed.
        """
        if not 1 <= exp_seconds <= DEFAULT_MAX_TTL:
            raise ConfigurationError(f"exp_seconds must be in 1..{DEFAULT_MAX_TTL}")
        planner: dict[str, Any] = {"intent": intent}
        if requested_capability:
            planner["requestedCapability"] = requested_capability
        if planner_ref:
            planner["plannerRef"] = planner_ref
        body: dict[str, Any] = {
            **(extra or {}),
            "issuerAsserted": {
                "alg": self._key.alg,
                "iss": self.iss,
                "sub": self.sub,
                "secretVersion": self._key.kid,
                "iat": format_iat(self._clock()),
                "expSeconds": exp_seconds,
                "nonce": b64url_encode(secrets.token_bytes(32)),
            },
            "plannerDeclared": planner,
            "payloadDerived": {"toolCalls": [_entry(c) for c in calls]},
        }
        body["signature"] = self._key.sign(signing_input(body))
        return Envelope.from_wire(body)


def _entry(call: PlannedCall) -> dict[str, Any]:
    if call.commit not in _COMMITS:
        raise ConfigurationError(f"commit must be one of {', '.join(_COMMITS)}")
    content = canonicalize_arguments(call.arguments)
    entry: dict[str, Any] = {"name": call.tool, "serverFingerprint": call.server_fingerprint}
    if call.commit in ("projection", "both"):
        entry["argsProjection"] = content.decode("utf-8")
    if call.commit in ("ref", "both"):
        entry["argsRef"] = {
            "uri": call.ref_uri or data_uri(content),
            "digest": b64url_encode(hashlib.sha256(content).digest()),
        }
    return entry
