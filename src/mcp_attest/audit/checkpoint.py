"""Signed checkpoints: the writer's signed word on where the chain's head was.

Links alone cannot reveal a log whose newest records were cut off, nor one
re-sealed after an edit: the result is still a valid chain. A checkpoint
is a signed tree head: it signs (seq, hash of record seq, Merkle root of
records 1..seq, time) with a key the database never holds, so a verifier
that finds a checkpoint naming a record it cannot find, a different hash
at that seq, or a different root, knows records were removed or
rewritten, and a third party can check one record's inclusion proof
against it without the database. Checkpoints use the core's
key types and signing input (JCS minus ``signature``), so the same keyring
format and tools serve envelopes and checkpoints alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from mcp_attest.algorithms import Key
from mcp_attest.canonical import canonicalize
from mcp_attest.envelope import b64url_encode, signing_input
from mcp_attest.keys import KeySource
from mcp_attest.verdict import format_rfc3339

__all__ = ["CHECKPOINT_TYPE", "Checkpoint", "CheckpointSigner", "jwk_thumbprint"]

CHECKPOINT_TYPE = "mcp-attest/audit-checkpoint"


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638: base64url SHA-256 of the JCS of the key's required public members."""
    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "oct": ("k", "kty")}
    members = {name: jwk[name] for name in required[str(jwk["kty"])]}
    return b64url_encode(hashlib.sha256(canonicalize(members)).digest())


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A parsed checkpoint; ``body`` is the signed document as stored."""

    seq: int
    hash: str
    chain_id: str
    body: Mapping[str, Any]
    root: str | None = None

    @classmethod
    def parse(cls, data: bytes) -> Checkpoint:
        """Read a stored checkpoint; ``ValueError`` names what is wrong with it."""
        body = orjson.loads(data)
        if not isinstance(body, dict) or body.get("type") != CHECKPOINT_TYPE:
            raise ValueError("not an audit checkpoint")
        seq, head, chain = body.get("seq"), body.get("hash"), body.get("chainId")
        if type(seq) is not int or not isinstance(head, str) or not isinstance(chain, str):
            raise ValueError("checkpoint lacks seq, hash or chainId")
        root = body.get("root")
        if body.get("v") != 1 and not isinstance(root, str):
            raise ValueError("checkpoint lacks its Merkle root")
        return cls(seq, head, chain, body, root if isinstance(root, str) else None)

    def signature_problem(self, keyring: KeySource) -> str | None:
        """Why the signature does not verify with ``keyring``, or None when it does."""
        iss, kid, alg, sig = (self.body.get(k) for k in ("iss", "kid", "alg", "signature"))
        if not all(isinstance(v, str) for v in (iss, kid, alg, sig)):
            return "checkpoint signature fields are missing"
        key = keyring.get(str(iss), str(kid))
        if key is None:
            return f"no checkpoint key {iss}/{kid} in the keyring"
        if key.alg != alg:
            return f"checkpoint key {iss}/{kid} is {key.alg}, checkpoint says {alg}"
        if not key.verify(str(sig), signing_input(self.body)):
            return "checkpoint signature does not verify"
        return None


@dataclass(frozen=True, slots=True)
class CheckpointSigner:
    """Signs checkpoints with one key, named by (issuer, kid) like an envelope key."""

    key: Key
    issuer: str = "mcp-attest-audit"

    def __post_init__(self) -> None:
        if not self.key.can_sign:
            raise ValueError(f"checkpoint key {self.issuer}/{self.key.kid} has no private part")
        if self.key.alg == "HS256":
            # Whoever can check an HS256 signature can also forge one: auditors
            # would hold a key that rewrites the history they audit.
            raise ValueError(f"checkpoint key {self.issuer}/{self.key.kid} is HS256; use ES256 or RS256")

    @property
    def thumbprint(self) -> str:
        """RFC 7638 thumbprint of the public key: what operators compare out of band."""
        return jwk_thumbprint(self.key.public_jwk())

    def sign(self, *, chain_id: str, seq: int, head_hash: str, root: str, now: float) -> bytes:
        """The JCS bytes of a signed tree head for (seq, head_hash, Merkle root)."""
        body: dict[str, Any] = {
            "type": CHECKPOINT_TYPE,
            "v": 2,
            "chainId": chain_id,
            "seq": seq,
            "hash": head_hash,
            "root": root,
            "time": format_rfc3339(now),
            "iss": self.issuer,
            "kid": self.key.kid,
            "alg": self.key.alg,
        }
        body["signature"] = self.key.sign(signing_input(body))
        return canonicalize(body)
