"""What ``AuditLog`` needs from a database, and nothing more.

Hashing, sealing, checkpoint signing and verification live once in
``AuditLog``; a backend only serializes appends on the chain's head,
stores rows and reads them back. That keeps the chain's rules in one place
whatever the database, and makes a new backend a small file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

from mcp_attest.audit.record import AuditConfigError, RecordDraft, StoredRow

__all__ = [
    "AuditBackend",
    "CheckpointSink",
    "GroupCommit",
    "QueuedBackend",
    "RecordQuery",
    "pending_migrations",
]

_In = TypeVar("_In")
_Out = TypeVar("_Out")


@dataclass(frozen=True, slots=True)
class RecordQuery:
    """Filters for reading records; ``None`` means no filter on that field.

    ``reason="accepted"`` selects accepted decisions (their reason is null).
    """

    since: float | None = None
    until: float | None = None
    sub: str | None = None
    tool: str | None = None
    reason: str | None = None
    after_seq: int = 0
    limit: int | None = None
    newest_first: bool = False


class CheckpointSink(Protocol):
    """Where signed tree heads go: the log's own table, or a witness outside it."""

    def add_checkpoint(self, seq: int, body: bytes) -> None:
        """Store a checkpoint; a second one for the same seq may be ignored."""
        ...

    def checkpoints(self) -> list[tuple[int, bytes]]:
        """(seq, body) of every stored checkpoint, by ascending seq."""
        ...

    def close(self) -> None:
        """Release files or connections."""
        ...


class AuditBackend(CheckpointSink, Protocol):
    """Storage for one chain. Every method raises ``AuditUnavailableError`` on faults."""

    remote: bool  # an append is a network round trip (and a server's flush)

    @property
    def chain_id(self) -> str:
        """Random id fixed when the chain was created; every record carries it."""
        ...

    @property
    def location(self) -> str:
        """Where the chain lives, for messages (never includes a password)."""
        ...

    def append(self, draft: RecordDraft, now: float) -> StoredRow:
        """Under the chain's head lock: seal ``draft`` after the head, store, commit."""
        ...

    def rows(self, query: RecordQuery) -> list[StoredRow]:
        """One page of rows matching ``query``, by ascending seq (descending if ``newest_first``).

        A list, not a cursor: ``AuditLog`` pages with ``after_seq`` so no
        database cursor stays open while a caller works through records
        (and perhaps appends more from the same thread).
        """
        ...

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the newest record; (0, genesis) for an empty chain."""
        ...


@runtime_checkable
class QueuedBackend(AuditBackend, Protocol):
    """A backend that can acknowledge a record before sealing it (PostgreSQL).

    ``enqueue`` returns once the draft is durable; a sequencer seals queued
    drafts into the chain in batches within a bounded delay, calling
    ``on_sequenced(before, after)`` with the head seq around each batch it
    sealed. Many writer processes then never queue on the chain's lock.
    """

    on_sequenced: Callable[[int, int], None] | None

    def enqueue(self, draft: RecordDraft, now: float) -> None:
        """Durable on return; sealed later, by this process or another writer."""
        ...

    def pending(self) -> int:
        """Acknowledged drafts not yet sealed into the chain."""
        ...

    def sequence(self, *, wait: bool = False) -> int:
        """Seal queued drafts now; without ``wait``, leave them to a sealer already at work."""
        ...


def pending_migrations(found: int, migrations: Sequence[Sequence[str]], location: str) -> Sequence[str]:
    """The statements that bring a schema from version ``found`` to the newest.

    A schema newer than this code is refused: silently writing old-format
    rows into it could corrupt a chain another version relies on.
    """
    if found > len(migrations):
        raise AuditConfigError(
            f"audit log {location} has schema version {found}; this mcp-attest knows up to "
            f"{len(migrations)}: upgrade mcp-attest"
        )
    return [stmt for step in migrations[found:] for stmt in step]


def query_clauses(query: RecordQuery, placeholder: str) -> tuple[str, list[object]]:
    """WHERE and ORDER/LIMIT text shared by the SQL backends.

    ``placeholder`` is the driver's parameter marker (``?`` or ``%s``);
    values are always bound, never formatted into the text.
    """
    where = ["seq > " + placeholder]
    params: list[object] = [query.after_seq]
    filters: Sequence[tuple[str, object]] = (
        ("ts >= ", query.since),
        ("ts < ", query.until),
        ("sub = ", query.sub),
        ("tool = ", query.tool),
    )
    for clause, value in filters:
        if value is not None:
            where.append(clause + placeholder)
            params.append(value)
    if query.reason == "accepted":
        where.append("reason IS NULL")
    elif query.reason is not None:
        where.append("reason = " + placeholder)
        params.append(query.reason)
    text = " WHERE " + " AND ".join(where) + (" ORDER BY seq DESC" if query.newest_first else " ORDER BY seq")
    if query.limit is not None:
        text += " LIMIT " + placeholder
        params.append(query.limit)
    return text, params


class _Slot(Generic[_Out]):
    """One caller's place in a batch: its result or its error, once the batch is written."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = False
        self.result: _Out | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[_In, _Out]):
    """Leader/follower batching: concurrent callers share one ``flush`` (one commit).

    A caller that finds no flush in flight becomes the leader: it takes
    every item waiting at that moment, its own included, and flushes them
    together; the others wait, and return with their own result once their
    batch is written. A lone caller therefore pays no delay at all, and
    under load each flush carries everything that arrived during the last
    one. ``flush`` returns one result per item, in order; if it raises,
    every caller of that batch gets the error (none of them is acknowledged).
    """

    def __init__(self, flush: Callable[[Sequence[_In]], Sequence[_Out]], *, max_batch: int = 512) -> None:
        self._flush = flush
        self._max = max_batch
        # The lone caller's path takes the bare lock (a C call); only a caller
        # that has to wait goes through the Condition, and only then is it notified.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiting: list[tuple[_In, _Slot[_Out]]] = []
        self._busy = False
        self._sleepers = 0
        self.flushes = 0  # items / flushes is the mean batch: how many callers shared each commit

    def submit(self, item: _In) -> _Out:
        with self._lock:
            lone = not (self._busy or self._waiting)
            if lone:
                self._busy = True
                self.flushes += 1
        if lone:
            try:
                return self._flush((item,))[0]
            finally:
                self._release(())
        return self._follow(item)

    def _follow(self, item: _In) -> _Out:
        """Someone is flushing: wait to be written in a batch, or to lead the next one."""
        slot: _Slot[_Out] = _Slot()
        with self._lock:
            self._waiting.append((item, slot))
            self._sleepers += 1
            try:
                while not slot.done and self._busy:
                    self._cond.wait()
            finally:
                self._sleepers -= 1
            if slot.done:
                return self._outcome(slot)
            batch, self._waiting = self._waiting[: self._max], self._waiting[self._max :]
            self._busy = True
            self.flushes += 1
        try:
            results = self._flush([i for i, _ in batch])
        except BaseException as exc:
            for _, waiter in batch:
                waiter.error = exc
        else:
            for (_, waiter), result in zip(batch, results, strict=True):
                waiter.result = result
        self._release(batch)
        return self._outcome(slot)

    def _release(self, batch: Sequence[tuple[_In, _Slot[_Out]]]) -> None:
        """End a flush: its callers' results are set; wake them and whoever waits to lead next."""
        with self._lock:
            for _, waiter in batch:
                waiter.done = True
            self._busy = False
            if self._sleepers:
                self._cond.notify_all()

    @staticmethod
    def _outcome(slot: _Slot[_Out]) -> _Out:
        if slot.error is not None:
            raise slot.error
        assert slot.result is not None
        return slot.result
