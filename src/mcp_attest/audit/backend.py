"""What ``AuditLog`` needs from a database, and nothing more.

Hashing, sealing, checkpoint signing and verification live once in
``AuditLog``; a backend only serializes appends on the chain's head,
stores rows and reads them back. That keeps the chain's rules in one place
whatever the database, and makes a new backend a small file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from mcp_attest.audit.record import AuditConfigError, RecordDraft, StoredRow

__all__ = ["SCHEMA_VERSION", "AuditBackend", "RecordQuery", "pending_migrations"]

SCHEMA_VERSION = 1


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


class AuditBackend(Protocol):
    """Storage for one chain. Every method raises ``AuditUnavailableError`` on faults."""

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

    def add_checkpoint(self, seq: int, body: bytes) -> None:
        """Store a checkpoint; a second one for the same seq is ignored."""
        ...

    def checkpoints(self) -> list[tuple[int, bytes]]:
        """(seq, body) of every stored checkpoint, by ascending seq."""
        ...

    def close(self) -> None:
        """Release connections."""
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
