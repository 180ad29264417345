"""The vocabulary of a v1 conformance case, shared by the catalogue and the generator.

A case is declared, never computed from our verifier: the expected verdict
is written by hand next to the inputs, so the bundle checks the
implementation instead of echoing it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "BUCKETS",
    "DEFAULT_ARGS",
    "DROP",
    "IAT",
    "IAT_EPOCH",
    "INTENT",
    "ISS",
    "KIDS",
    "NOW",
    "OLD_HS_KID",
    "OTHER_SERVER",
    "SERVER",
    "SUB",
    "Call",
    "Case",
    "Entry",
    "Expect",
    "Transport",
    "fixed_nonce",
    "no",
    "ok",
]

BUCKETS = ("normative/positive", "normative/negative", "verifier-policy")

ISS = "https://agent.example"
SUB = "agent:planner-7"
KIDS = {"HS256": "hs-2026-06", "ES256": "es-2026-06", "RS256": "rs-2026-06"}
OLD_HS_KID = "hs-2026-01"
# Opaque to a verifier (V5 compares strings; the draft leaves the derivation
# open), so fixed literals rather than the output of any helper.
SERVER = "sha256:5a0c1e2a6c1d43f6a0b4b1f5e9f2d2c7b3a4e5f60718293a4b5c6d7e8f901234"
OTHER_SERVER = "sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0"
IAT = "2026-06-01T12:00:00Z"
IAT_EPOCH = 1780315200
NOW = IAT_EPOCH + 60
INTENT = "Archive the Q2 report per the retention policy"

Transport = Literal["meta", "header", "both", "none"]


class _Drop:
    """Marks an issuer or planner field the case removes."""

    def __repr__(self) -> str:
        return "DROP"


DROP: Any = _Drop()


def fixed_nonce(case_id: str) -> str:
    """32 bytes derived from the case id: unique per case, identical on every run."""
    digest = hashlib.sha256(b"mcp-attest/conformance/v1/nonce/" + case_id.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class Expect:
    """What a conformant verifier decides; ``detail`` codes are mcp-attest's own."""

    accepted: bool
    reason: str | None = None
    detail: str | None = None
    binding: str | None = None
    index: int | None = None
    unknown_fields: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "accepted": self.accepted,
            "reason": self.reason,
            "detail": self.detail,
            "argsBinding": self.binding,
            "toolCallIndex": self.index,
        }
        if self.unknown_fields is not None:
            out["unknownFields"] = list(self.unknown_fields)
        return out


def ok(binding: str = "identity", index: int = 0, **kw: Any) -> Expect:
    """An accepted call."""
    return Expect(True, None, None, binding, index, **kw)


def no(reason: str, detail: str) -> Expect:
    """A rejected call."""
    return Expect(False, reason, detail)


DEFAULT_ARGS: Mapping[str, Any] = {"path": "/srv/reports/q2.pdf", "mode": "read"}


@dataclass(frozen=True)
class Entry:
    """One planned tool call and how its arguments are committed."""

    tool: str = "read_file"
    args: Any = field(default_factory=lambda: dict(DEFAULT_ARGS))
    commit: Literal["projection", "ref", "both"] = "projection"
    server: str = SERVER
    projection: str | None = None  # literal text instead of JCS(args)
    ref_uri: str | None = None  # instead of a data: URI holding JCS(args)
    ref_digest: str | None = None  # instead of base64url(SHA-256(JCS(args)))


@dataclass(frozen=True)
class Call:
    """One tools/call of a replay sequence, in order."""

    expect: Expect
    args: bytes | None = None  # runtime arguments file; None: the case's
    tool: str = "read_file"
    at: int = NOW
    transport: Transport = "meta"


@dataclass(frozen=True)
class Case:
    """One conformance case: inputs, context and the declared verdict."""

    name: str
    bucket: str
    title: str
    rules: tuple[str, ...]
    expect: Expect | None = None
    entries: tuple[Entry, ...] = (Entry(),)
    # Runtime arguments: bytes as sent, or a JSON value; None: the planned
    # arguments of the first entry for the called tool.
    args: Any = None
    alg: str = "HS256"
    kid: str | None = None
    issuer: Mapping[str, Any] = field(default_factory=dict)
    planner: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    edit: Callable[[dict[str, Any]], None] | None = None  # before signing
    signer: tuple[str, str] | None = None  # (iss, kid) of the signing key
    sign: Callable[[bytes, Any], str] | None = None  # custom signature over C1 bytes
    sig_edit: Callable[[str], str] | None = None
    tamper: Callable[[dict[str, Any]], None] | None = None  # after signing
    text: Callable[[str], str | bytes] | None = None  # edit the envelope text as sent
    transport: Transport = "meta"
    header_variant: Callable[[dict[str, Any]], None] | None = None  # header carries another envelope
    header_text: Callable[[str], str] | None = None
    tool: str = "read_file"
    at: int = NOW
    policy: Mapping[str, Any] = field(default_factory=dict)
    keyring: str = "keys/keyring.public.json"
    calls: tuple[Call, ...] | None = None

    @property
    def case_id(self) -> str:
        return f"{self.bucket}/{self.name}"

    @property
    def key_id(self) -> str:
        return self.kid or KIDS[self.alg]
