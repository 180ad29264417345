"""Replay protection: one nonce entry is consumed once per deployment (PROFILE section 6)."""

from mcp_attest.replay.base import ReplayStore, StoreUnavailableError, replay_key
from mcp_attest.replay.memory import InMemoryReplayStore
from mcp_attest.replay.sqlite import SQLiteReplayStore

__all__ = [
    "InMemoryReplayStore",
    "ReplayStore",
    "SQLiteReplayStore",
    "StoreUnavailableError",
    "replay_key",
]
