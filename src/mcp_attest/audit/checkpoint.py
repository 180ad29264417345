"""Signed checkpoints: the writer's signed word on where the chain's head was.

Links alone cannot reveal a log whose newest records were cut off: the
shorter chain is still a valid chain. A checkpoint signs (seq, hash, time)
of the head with a key the log's writer holds, so a verifier that finds a
checkpoint naming a record it cannot find, or a different hash at that
seq, knows records were removed or rewritten. Checkpoints use the core's
key types and signing input (JCS minus ``signature``), so the same keyring
format and tools serve envelopes and checkpoints alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from mcp_attest.algorithms import Key
from mcp_attest.canonical import canonicalize
from mcp_attest.envelope import signing_input
from mcp_attest.keys import Keyring
from mcp_attest.verdict import format_rfc3339

__all__ = ["CHECKPOINT_TYPE", "Checkpoint", "CheckpointSigner"]

CHECKPOINT_TYPE = "mcp-attest/audit-checkpoint"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A parsed checkpoint; ``body`` is the signed document as stored."""

    seq: int
    hash: str
    chain_id: str
    body: Mapping[str, Any]

    @classmethod
    def parse(cls, data: bytes) -> Checkpoint:
        """Read a stored checkpoint; ``ValueError`` names what is wrong with it."""
        body = orjson.loads(data)
        if not isinstance(body, dict) or body.get("type") != CHECKPOINT_TYPE:
            raise ValueError("not an audit checkpoint")
        seq, head, chain = body.get("seq"), body.get("hash"), body.get("chainId")
        if type(seq) is not int or not isinstance(head, str) or not isinstance(chain, str):
            raise ValueError("checkpoint lacks seq, hash or chainId")
        return cls(seq, head, chain, body)

    def signature_problem(self, keyring: Keyring) -> str | None:
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

    def sign(self, *, chain_id: str, seq: int, head_hash: str, now: float) -> bytes:
        """The JCS bytes of a signed checkpoint for head (seq, head_hash)."""
        body: dict[str, Any] = {
            "type": CHECKPOINT_TYPE,
            "v": 1,
            "chainId": chain_id,
            "seq": seq,
            "hash": head_hash,
            "time": format_rfc3339(now),
            "iss": self.issuer,
            "kid": self.key.kid,
            "alg": self.key.alg,
        }
        body["signature"] = self.key.sign(signing_input(body))
        return canonicalize(body)
