"""A bounded in-process replay store in a compact open-addressing table.

A dict of 32-byte digests to expiry floats costs about 130-155 bytes per
entry; this table stores a 16-byte key prefix and a 32-bit expiry second
per slot (20 bytes) at a load factor of at most one half, about 40 bytes
per live entry. 128 bits of SHA-256 keep accidental collisions out of
reach (a forced one needs a second preimage of a 128-bit prefix).
"""

from __future__ import annotations

import math
import struct
import threading
from typing import Final

from mcp_attest.errors import ConfigurationError
from mcp_attest.replay.base import StoreUnavailableError

__all__ = ["InMemoryReplayStore"]

_KEY: Final = 16
_SLOT: Final = _KEY + 4
_EXP: Final = struct.Struct("<I")
_EMPTY: Final = b"\x00\x00\x00\x00"
_MIN_SLOTS: Final = 1024


class InMemoryReplayStore:
    """Single-process store; expired entries are dropped when the table fills.

    ``max_entries`` bounds memory: when that many keys are live, a new claim
    raises ``StoreUnavailableError`` (fail closed) instead of growing further.
    """

    def __init__(self, max_entries: int = 1_000_000) -> None:
        if max_entries < 1:
            raise ConfigurationError("max_entries must be positive")
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._full_until = 0.0
        self._reset(_MIN_SLOTS)

    def _reset(self, slots: int) -> None:
        self._slots = slots
        self._table = bytearray(slots * _SLOT)
        # One attribute, swapped atomically, so a lock-free reader never
        # pairs a new mask with an old table.
        self._state = (self._table, slots - 1)
        self._used = 0

    def __len__(self) -> int:
        """Occupied slots, expired ones included until the next cleanup."""
        return self._used

    def _find(self, k: bytes) -> tuple[int, int]:
        """Return (slot offset, stored expiry or 0 when the slot is empty).

        The first slot comes from ``hash(k)``, about 0.1 us cheaper per
        lookup (two per verification) than ``int.from_bytes`` of a slice in
        both builds; mypyc calls it natively. Keys are SHA-256 output and
        the table lives in one process, so the per-process seed is fine.
        """
        table, mask = self._state
        index = hash(k) & mask
        while True:
            off = index * _SLOT
            exp = _EXP.unpack_from(table, off + _KEY)[0]
            if exp == 0 or table[off : off + _KEY] == k:
                return off, exp
            index = (index + 1) & mask

    def is_claimed(self, key: bytes, now: float) -> bool:
        """Lock-free: a stale answer is harmless because ``claim`` decides under the lock."""
        _, exp = self._find(key[:_KEY])
        return exp > now

    def claim(self, key: bytes, expires_at: float, now: float) -> bool:
        k = key[:_KEY]
        expiry = min(max(1, math.ceil(expires_at)), 0xFFFFFFFF)
        with self._lock:
            off, exp = self._find(k)
            if exp > now:
                return False
            if exp == 0:
                if self._used >= self.max_entries and now < self._full_until:
                    full = f"in-memory replay store is full ({self.max_entries} live keys)"
                    raise StoreUnavailableError(full)
                if (self._used + 1) * 2 > self._slots or self._used >= self.max_entries:
                    self._compact(now)
                    off, _ = self._find(k)
                self._used += 1
            self._table[off : off + _KEY] = k
            _EXP.pack_into(self._table, off + _KEY, expiry)
            return True

    def _compact(self, now: float) -> None:
        """Drop expired slots; grow so live keys fill at most a third of the table.

        A third leaves room to reach the one-half load that triggers the next
        compaction, so at 1M live keys the table holds 2^21 slots (42 bytes a
        key). When full of live keys, remember when the first one expires so
        that claims until then fail fast instead of rescanning the table.
        """
        old = self._table
        live = [(k, exp) for k, exp in struct.iter_unpack(f"{_KEY}sI", old) if exp > now]
        if len(live) >= self.max_entries:
            self._full_until = min(exp for _, exp in live)
            raise StoreUnavailableError(f"in-memory replay store is full ({self.max_entries} live keys)")
        slots = self._slots
        while (len(live) + 1) * 3 > slots:
            slots *= 2
        self._reset(slots)
        for k, exp in live:
            off, _ = self._find(k)
            self._table[off : off + _KEY] = k
            _EXP.pack_into(self._table, off + _KEY, exp)
        self._used = len(live)
