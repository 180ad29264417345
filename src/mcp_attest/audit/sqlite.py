"""The default audit backend: one SQLite file, shared by processes on one host.

Appends run in ``BEGIN IMMEDIATE`` transactions, which take SQLite's write
lock before the head is read, so two processes can never read the same
head and fork the chain; ``seq`` is the rowid, so reading the head is one
B-tree probe. WAL mode lets ``verify``, ``export`` and ``tail`` read while
writers append. Writers queue on a sidecar ``flock`` before asking for the
write lock: SQLite's own busy handler polls with sleeps of up to 100 ms,
which under eight contending writers costs far more than the appends.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from mcp_attest.audit.backend import RecordQuery, pending_migrations, query_clauses
from mcp_attest.audit.record import (
    COLUMNS,
    GENESIS_HASH,
    AuditConfigError,
    AuditUnavailableError,
    RecordDraft,
    StoredRow,
)

__all__ = ["SQLiteAuditBackend"]

_MIGRATIONS: Sequence[Sequence[str]] = (
    (
        "CREATE TABLE audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE audit_records (seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, ts REAL NOT NULL, "
        "sub TEXT, tool TEXT NOT NULL, reason TEXT, body TEXT NOT NULL)",
        "CREATE INDEX audit_records_ts ON audit_records (ts)",
        "CREATE TABLE audit_checkpoints (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)

_HEAD = "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
_INSERT = f"INSERT INTO audit_records ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"  # noqa: S608 - constants
_SELECT = f"SELECT {COLUMNS} FROM audit_records"  # noqa: S608 - constant columns


class SQLiteAuditBackend:
    """A chain in ``path``; ``create=False`` opens an existing log read-mostly.

    ``durable=True`` (``synchronous=FULL``) also survives power loss; the
    default survives any process crash, which is what an acknowledged
    append promises.
    """

    remote = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        durable: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self._path = os.fspath(path)
        if not create and not Path(self._path).is_file():
            raise AuditConfigError(f"no audit log at {self._path}")
        self._lock = threading.Lock()
        self._flock_fd: int | None = None
        self._head: tuple[int, str] | None = None  # (seq, hash) of the last record this object wrote
        try:
            self._conn = sqlite3.connect(
                self._path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self._conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._chain_id = self._migrate() if create else self._check_schema()
        except sqlite3.Error as exc:
            raise AuditUnavailableError(f"audit log {self._path}: {exc}") from None

    @property
    def chain_id(self) -> str:
        return self._chain_id

    @property
    def location(self) -> str:
        return f"sqlite://{self._path}" if self._path.startswith("/") else f"sqlite:{self._path}"

    # -- schema ------------------------------------------------------------

    def _migrate(self) -> str:
        """Switch to WAL and migrate, one process at a time.

        Several processes opening a fresh file at once would otherwise race
        on the journal-mode switch, which SQLite answers with an immediate
        "database is locked" rather than a wait.
        """
        with self._writer_lock():
            self._conn.execute("PRAGMA journal_mode=WAL")
        with self._write_transaction():
            self._conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self._conn.execute("SELECT max(version) FROM schema_version").fetchone()
            found = row[0] or 0
            for stmt in pending_migrations(found, _MIGRATIONS, self._path):
                self._conn.execute(stmt)
            if found < SCHEMA_VERSION:
                self._conn.execute("DELETE FROM schema_version")
                self._conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            self._conn.execute(
                "INSERT OR IGNORE INTO audit_meta VALUES ('chain_id', ?)", (secrets.token_hex(16),)
            )
            return str(
                self._conn.execute("SELECT value FROM audit_meta WHERE key = 'chain_id'").fetchone()[0]
            )

    def _check_schema(self) -> str:
        try:
            row = self._conn.execute("SELECT max(version) FROM schema_version").fetchone()
            found = row[0] or 0
        except sqlite3.OperationalError:
            raise AuditConfigError(f"{self._path} is not an mcp-attest audit log") from None
        if found != SCHEMA_VERSION:
            pending_migrations(found, _MIGRATIONS, self._path)  # raises for a newer schema
            raise AuditConfigError(
                f"audit log {self._path} has schema version {found}; open it once with a writer to migrate"
            )
        row = self._conn.execute("SELECT value FROM audit_meta WHERE key = 'chain_id'").fetchone()
        return str(row[0])

    # -- writing -----------------------------------------------------------

    @contextmanager
    def _writer_lock(self) -> Iterator[None]:
        """This thread, then this process, at the head of the writers' queue."""
        with self._lock:
            self._writer_queue(fcntl.LOCK_EX)
            try:
                yield
            finally:
                self._writer_queue(fcntl.LOCK_UN)

    @contextmanager
    def _write_transaction(self) -> Iterator[None]:
        """Hold SQLite's write lock from the first read, so the head cannot move under us."""
        with self._writer_lock():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _writer_queue(self, op: int) -> None:
        """A blocking flock wakes the next writer at once instead of after a sleep.

        Only an optimization: correctness rests on ``BEGIN IMMEDIATE``, so a
        filesystem without flock (or a writer without the sidecar) is slower,
        never wrong.
        """
        if self._flock_fd is None and self._path == ":memory:":
            self._flock_fd = -1  # a private in-memory database has no other writers
        if self._flock_fd is None:
            try:
                self._flock_fd = os.open(self._path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                self._flock_fd = -1
        if self._flock_fd >= 0:
            with suppress(OSError):
                fcntl.flock(self._flock_fd, op)

    def append(self, draft: RecordDraft, now: float) -> StoredRow:
        """Optimistically after the head this process last wrote, else under a locked read.

        Seqs are contiguous, so when another process has appended since our
        last record, the slot after our cached head is taken and the
        primary key refuses the insert: nothing is written, and the append
        falls back to reading the head inside ``BEGIN IMMEDIATE``. A lone
        writer (the common SQLite case) so pays one statement, not four.
        """
        try:
            if self._head is not None:
                row = draft.seal(self._head[0] + 1, self._head[1], now)
                try:
                    with self._writer_lock():
                        self._conn.execute(_INSERT, row.db_values())
                except sqlite3.IntegrityError:
                    pass
                else:
                    self._head = (row.seq, row.hash)
                    return row
            with self._write_transaction():
                head = self._conn.execute(_HEAD).fetchone()
                row = draft.seal(head[0] + 1, head[1], now) if head else draft.seal(1, GENESIS_HASH, now)
                self._conn.execute(_INSERT, row.db_values())
        except sqlite3.Error as exc:
            self._head = None
            raise AuditUnavailableError(f"audit log {self._path}: {exc}") from None
        self._head = (row.seq, row.hash)
        return row

    def add_checkpoint(self, seq: int, body: bytes) -> None:
        try:
            with self._write_transaction():
                self._conn.execute(
                    "INSERT OR IGNORE INTO audit_checkpoints VALUES (?, ?)", (seq, body.decode("utf-8"))
                )
        except sqlite3.Error as exc:
            raise AuditUnavailableError(f"audit log {self._path}: {exc}") from None

    # -- reading -----------------------------------------------------------

    def _fetch(self, sql: str, params: Sequence[object]) -> list[Any]:
        try:
            with self._lock:
                return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise AuditUnavailableError(f"audit log {self._path}: {exc}") from None

    def rows(self, query: RecordQuery) -> list[StoredRow]:
        where, params = query_clauses(query, "?")
        return [StoredRow.from_db(r) for r in self._fetch(_SELECT + where, params)]

    def head(self) -> tuple[int, str]:
        found = self._fetch(_HEAD, ())
        return (int(found[0][0]), str(found[0][1])) if found else (0, GENESIS_HASH)

    def checkpoints(self) -> list[tuple[int, bytes]]:
        found = self._fetch("SELECT seq, body FROM audit_checkpoints ORDER BY seq", ())
        return [(int(seq), str(body).encode("utf-8")) for seq, body in found]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            if self._flock_fd is not None and self._flock_fd >= 0:
                os.close(self._flock_fd)
                self._flock_fd = -1
