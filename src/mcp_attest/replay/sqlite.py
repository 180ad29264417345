"""A replay store in one SQLite file: survives restarts, shared by processes on one host.

Each claim is one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired``
statement, which SQLite runs under its database write lock, so exactly one
of any number of concurrent claimers sees a changed row (R3). WAL mode lets
readers (V7) proceed while a claim writes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

from mcp_attest.replay.base import StoreUnavailableError

__all__ = ["SQLiteReplayStore"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS replay_claims ( key BLOB PRIMARY KEY, expires_at REAL NOT NULL) WITHOUT ROWID"
)
_CLAIM = (
    "INSERT INTO replay_claims(key, expires_at) VALUES (?, ?) "
    "ON CONFLICT(key) DO UPDATE SET expires_at = excluded.expires_at "
    "WHERE replay_claims.expires_at <= ?"
)
_PURGE_EVERY = 4096


class SQLiteReplayStore:
    """Replay claims in ``path``; ``durable=True`` also survives power loss.

    The default (``synchronous=NORMAL`` in WAL mode) survives any process
    crash; only an operating-system crash can lose the latest claims.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 10.0, durable: bool = False) -> None:
        self.path = os.fspath(path)
        self._timeout = timeout
        self._durable = durable
        self._lock = threading.Lock()
        self._claims = 0
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        """Connect on first use, and again after a failure.

        Opening lazily makes an unreachable file a per-call ``store.unavailable``
        verdict (V12) that heals once the file is reachable, not a crash.
        """
        if self._conn is None:
            conn = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            try:
                self._setup(conn)
            except sqlite3.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _setup(self, conn: sqlite3.Connection) -> None:
        """WAL, sync level and schema, retried while other processes do the same.

        Switching a fresh file to WAL needs an exclusive lock, and SQLite
        answers a concurrent switch with an immediate "database is locked"
        instead of waiting on the busy timeout; several processes opening a
        new file at once would otherwise fail their first claim.
        """
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={'FULL' if self._durable else 'NORMAL'}")
                conn.execute(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    def is_claimed(self, key: bytes, now: float) -> bool:
        try:
            with self._lock:
                row = (
                    self._connection()
                    .execute("SELECT 1 FROM replay_claims WHERE key = ? AND expires_at > ?", (key, now))
                    .fetchone()
                )
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"replay store {self.path}: {exc}") from None
        return row is not None

    def claim(self, key: bytes, expires_at: float, now: float) -> bool:
        try:
            with self._lock:
                conn = self._connection()
                won = conn.execute(_CLAIM, (key, expires_at, now)).rowcount == 1
                self._claims += 1
                if self._claims % _PURGE_EVERY == 0:
                    conn.execute("DELETE FROM replay_claims WHERE expires_at <= ?", (now,))
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"replay store {self.path}: {exc}") from None
        return won

    def close(self) -> None:
        """Release the connection; the next use reconnects."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
