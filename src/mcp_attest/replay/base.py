"""The replay-store contract (PROFILE R1-R3) shared by every backend."""

from __future__ import annotations

import hashlib
import struct
from typing import Protocol, runtime_checkable

from mcp_attest.errors import Error

__all__ = ["ReplayStore", "StoreUnavailableError", "replay_key"]

_U32 = struct.Struct(">I")


class StoreUnavailableError(Error):
    """The store cannot answer; the verifier fails closed on it (V12)."""


def replay_key(iss: str, nonce: str, index: int) -> bytes:
    """R1: length-prefixed so that no two (iss, nonce, index) triples collide."""
    iss_b = iss.encode("utf-8")
    nonce_b = nonce.encode("utf-8")
    return hashlib.sha256(
        _U32.pack(len(iss_b)) + iss_b + _U32.pack(len(nonce_b)) + nonce_b + _U32.pack(index)
    ).digest()


@runtime_checkable
class ReplayStore(Protocol):
    """Remembers claimed replay keys until they expire.

    ``claim`` must be atomic: of N concurrent claims of one key, in any
    number of threads or processes sharing the store, exactly one returns
    True (R3). Both methods raise ``StoreUnavailableError`` rather than guess.
    """

    def is_claimed(self, key: bytes, now: float) -> bool:
        """V7: a cheap read that never writes."""
        ...

    def claim(self, key: bytes, expires_at: float, now: float) -> bool:
        """V9: True for the one caller that claims ``key`` first."""
        ...
