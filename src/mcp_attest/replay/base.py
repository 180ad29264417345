"""The replay-store contract (PROFILE R1-R3) shared by every backend."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from mcp_attest.errors import Error
from mcp_attest.replay.key import replay_key

__all__ = ["ReplayStore", "StoreUnavailableError", "replay_key"]


class StoreUnavailableError(Error):
    """The store cannot answer; the verifier fails closed on it (V12)."""


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
