"""PostgreSQL's queued records: durable before sealed, sealed once, by whichever writer is there.

``AuditLog.submit`` (what the guard and the gateway call) queues a record
with one INSERT and returns; sequencers seal queued records into the chain
in batches. These tests hold the queue to the log's promises: nothing
acknowledged is lost, nothing is sealed twice, both ways of queueing store
the same bytes, and a database fault is an error, never an acknowledgement.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest

from _servers import Decisions
from mcp_attest.audit import AuditLog, AuditUnavailableError
from mcp_attest.audit.backend import GroupCommit, RecordQuery
from mcp_attest.audit.checkpoint import CheckpointSigner
from mcp_attest.audit.postgres import PostgresAuditBackend
from mcp_attest.audit.record import RecordDraft
from mcp_attest.keys import generate_key
from mcp_attest.verdict import Reason, Verdict, format_rfc3339


@pytest.fixture
def decisions() -> Decisions:
    return Decisions.create()


def _log(pg_url: str, schema: str, interval: float = 3600.0, **options: Any) -> AuditLog:
    """A log whose sequencer waits ``interval`` between rounds (by default: never, within a test)."""
    return AuditLog(PostgresAuditBackend(pg_url, schema=schema, sequence_interval=interval), **options)


def _count(pg_url: str, schema: str, table: str) -> int:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{schema}".{table}').fetchone()
        assert row is not None
        return int(row[0])


def _unsealed(pg_url: str, schema: str) -> int:
    """Drafts no seal points at: counted from the tables, not by the backend under test."""
    sealed = f'SELECT 1 FROM "{schema}".audit_seals s WHERE s.draft = d.id'
    return _count(pg_url, schema, f"audit_drafts d WHERE NOT EXISTS ({sealed})")


def _submit(log: AuditLog, decisions: Decisions, count: int) -> list[str]:
    ids = []
    for i in range(count):
        verdict, wire = decisions.rejected() if i % 3 == 2 else decisions.accepted(q=f"query {i}")
        log.submit(verdict, tool="search", arguments={"q": f"query {i}"}, envelope=wire)
        ids.append(str(verdict.attestation_id))
    return ids


def _abandon(log: AuditLog) -> None:
    """What a kill -9 leaves: connections gone, queued records never sealed by this writer."""
    backend = log.backend
    assert isinstance(backend, PostgresAuditBackend)
    backend._sequencer.stop()
    backend._sequencer.close()
    assert backend._main.conn is not None
    backend._main.conn.close()


def test_audit_postgres_submit_is_durable_before_it_is_sealed(
    pg_url: str, pg_schema: str, decisions: Decisions
) -> None:
    log = _log(pg_url, pg_schema)
    ids = _submit(log, decisions, 5)
    assert _unsealed(pg_url, pg_schema) == 5
    assert _count(pg_url, pg_schema, "audit_records") == 0
    report = log.verify(decisions.keyring)
    assert report.accepted and report.records == 0
    assert any("5 acknowledged record(s) queued" in w for w in report.warnings), report.warnings
    backend = log.backend
    assert isinstance(backend, PostgresAuditBackend)
    assert backend.pending() == 5
    assert backend.sequence() == 5
    assert backend.pending() == 0 and _unsealed(pg_url, pg_schema) == 0
    report = log.verify(decisions.keyring)
    assert report.accepted and report.records == 5 and report.envelopes_verified == 5
    assert not [w for w in report.warnings if "queued" in w]
    assert [r.facts["attestationId"] for r in log.records()] == ids  # sealed in the order queued
    log.close()


def test_audit_postgres_sequencer_seals_within_its_interval(
    pg_url: str, pg_schema: str, decisions: Decisions
) -> None:
    log = _log(pg_url, pg_schema, interval=0.05)
    _submit(log, decisions, 3)
    deadline = time.monotonic() + 5
    while _count(pg_url, pg_schema, "audit_records") < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _count(pg_url, pg_schema, "audit_records") == 3
    assert _unsealed(pg_url, pg_schema) == 0
    log.close()


def test_audit_postgres_close_seals_what_this_writer_queued(
    pg_url: str, pg_schema: str, decisions: Decisions
) -> None:
    with _log(pg_url, pg_schema) as log:
        _submit(log, decisions, 4)
    assert _count(pg_url, pg_schema, "audit_records") == 4
    assert _unsealed(pg_url, pg_schema) == 0


def test_audit_postgres_log_close_seals_once_and_a_bare_backend_close_still_seals(
    pg_url: str, pg_schema: str, decisions: Decisions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AuditLog.close seals before its last checkpoint; the backend's close then has nothing left to seal."""
    log = _log(pg_url, pg_schema)
    _submit(log, decisions, 3)
    backend = log.backend
    assert isinstance(backend, PostgresAuditBackend)
    waits: list[bool] = []
    seal = backend.sequence

    def counted(*, wait: bool = False) -> int:
        waits.append(wait)
        return seal(wait=wait)

    monkeypatch.setattr(backend, "sequence", counted)
    log.close()
    assert waits.count(True) == 1
    assert _count(pg_url, pg_schema, "audit_records") == 3
    bare = PostgresAuditBackend(pg_url, schema=pg_schema, sequence_interval=3600)
    bare.enqueue(_draft("agent-7", "search", None), time.time())
    bare.close()  # no AuditLog in front: the backend's own close seals what it queued
    assert (_count(pg_url, pg_schema, "audit_records"), _unsealed(pg_url, pg_schema)) == (4, 0)


def test_audit_postgres_writer_opening_seals_what_a_dead_writer_queued(
    pg_url: str, pg_schema: str, decisions: Decisions
) -> None:
    dead = _log(pg_url, pg_schema)
    ids = _submit(dead, decisions, 6)
    _abandon(dead)
    assert _unsealed(pg_url, pg_schema) == 6
    reader = PostgresAuditBackend(pg_url, schema=pg_schema, create=False)
    assert reader.pending() == 6  # readers never write: the records stay queued
    reader.close()
    assert _unsealed(pg_url, pg_schema) == 6
    with _log(pg_url, pg_schema) as log:
        assert [r.facts["attestationId"] for r in log.records()] == ids
        assert log.verify(decisions.keyring).accepted


def test_audit_postgres_queued_and_inline_records_share_one_chain(
    pg_url: str, pg_schema: str, decisions: Decisions
) -> None:
    with _log(pg_url, pg_schema) as log:
        _submit(log, decisions, 2)
        verdict, wire = decisions.accepted()
        record = log.append(verdict, tool="search", arguments={"q": "weather"}, envelope=wire)
        assert record.seq == 1  # an inline append does not wait for the queue
        _submit(log, decisions, 2)
    with _log(pg_url, pg_schema) as log:
        report = log.verify(decisions.keyring)
        assert report.accepted and report.records == 5, report.broken


def _draft(sub: str | None, tool: str, reason: str | None) -> RecordDraft:
    verdict = Verdict(
        accepted=reason is None,
        reason=None if reason is None else Reason(reason),
        detail=None,
        verified_at=1e9,
        verifier_fingerprint="sha256:v",
        attestation_id=None,
        sub=sub,
    )
    return RecordDraft.build(verdict, chain_id="c", tool=tool, arguments={"q": "é"}, envelope=None)


def test_audit_postgres_both_ways_of_queueing_store_the_same_record(pg_url: str, pg_schema: str) -> None:
    """The lone writer's libpq path and the batch's psycopg path: byte-identical sealed records."""
    drafts = [
        _draft("agent-7", "search", None),
        _draft(None, "tøøl \u2028", "nonce_replay"),
        _draft("\U0001f600 sub", "t", "expired"),
    ]
    backend = PostgresAuditBackend(pg_url, schema=pg_schema, sequence_interval=3600)
    now = 1_700_000_000.123456
    for draft in drafts:
        backend._enqueue_many([(draft, now)])  # one at a time: libpq
    backend._enqueue_many([(draft, now) for draft in drafts])  # a batch: psycopg
    assert backend.sequence() == 6
    rows = backend.rows(RecordQuery())
    prev = "0" * 64
    for row, draft in zip(rows, drafts + drafts, strict=True):
        expected = draft.seal(row.seq, prev, now)
        assert (row.body, row.hash, row.ts, row.sub, row.tool, row.reason) == (
            expected.body,
            expected.hash,
            expected.ts,
            expected.sub,
            expected.tool,
            expected.reason,
        )
        prev = row.hash
    backend.close()


@pytest.mark.parametrize("batch", [1, 2], ids=["libpq", "psycopg"])
def test_audit_postgres_a_record_the_database_refuses_is_an_error(
    pg_url: str, pg_schema: str, batch: int
) -> None:
    """A NUL in an index column (PostgreSQL text cannot hold one): refused, never acknowledged."""
    backend = PostgresAuditBackend(pg_url, schema=pg_schema, sequence_interval=3600)
    with pytest.raises(AuditUnavailableError):
        backend._enqueue_many([(_draft("agent\x00", "t", None), 1e9)] * batch)
    assert backend.pending() == 0
    backend._enqueue_many([(_draft("agent", "t", None), 1e9)])  # the connection is still usable
    assert backend.pending() == 1
    backend.close()


def test_audit_postgres_submit_fails_closed_then_recovers_after_a_lost_connection(
    pg_url: str, pg_schema: str, decisions: Decisions
) -> None:
    log = _log(pg_url, pg_schema)
    _submit(log, decisions, 1)
    backend = log.backend
    assert isinstance(backend, PostgresAuditBackend) and backend._main.conn is not None
    pid = backend._main.conn.info.backend_pid
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    verdict, wire = decisions.accepted()
    with pytest.raises(AuditUnavailableError):
        log.submit(verdict, tool="search", arguments={"q": "weather"}, envelope=wire)
    _submit(log, decisions, 1)  # a new connection, on the next call
    log.close()
    assert _count(pg_url, pg_schema, "audit_records") == 2


def test_audit_postgres_sealed_batches_sign_checkpoints(
    pg_url: str, pg_schema: str, decisions: Decisions
) -> None:
    """Every N records still means a checkpoint once a batch crosses a multiple of N."""
    signer = CheckpointSigner(generate_key("ES256", "cp"))
    log = _log(pg_url, pg_schema, checkpoint_signer=signer, checkpoint_every=5, checkpoint_interval=0)
    _submit(log, decisions, 4)
    backend = log.backend
    assert isinstance(backend, PostgresAuditBackend)
    backend.sequence()
    assert backend.checkpoints() == []
    _submit(log, decisions, 3)
    backend.sequence()
    assert [seq for seq, _ in backend.checkpoints()] == [7]
    log.close()
    assert [seq for seq, _ in backend.checkpoints()] == [7]  # closing: nothing new to sign


def test_audit_postgres_sequencer_survives_losing_its_connection(
    pg_url: str, pg_schema: str, decisions: Decisions, caplog: pytest.LogCaptureFixture
) -> None:
    """A sequencer whose connection dies logs it, reconnects next round, and loses nothing queued."""
    log = _log(pg_url, pg_schema, interval=0.05)
    _submit(log, decisions, 1)
    backend = log.backend
    assert isinstance(backend, PostgresAuditBackend)
    deadline = time.monotonic() + 5
    while backend._sequencer._session.conn is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend._sequencer._session.conn is not None
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend._sequencer._session.conn.info.backend_pid,))
    with caplog.at_level("WARNING", logger="mcp_attest.audit"):
        _submit(log, decisions, 2)
        while _count(pg_url, pg_schema, "audit_records") < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert _count(pg_url, pg_schema, "audit_records") == 3
    assert any("audit sequencer" in r.getMessage() for r in caplog.records)
    log.close()


def test_audit_postgres_close_with_the_database_gone_leaves_records_queued(
    pg_url: str, pg_schema: str, decisions: Decisions, caplog: pytest.LogCaptureFixture
) -> None:
    """Closing cannot seal without the database: it says so and returns; the records stay durable."""
    log = _log(pg_url, pg_schema)
    ids = _submit(log, decisions, 2)
    backend = log.backend
    assert isinstance(backend, PostgresAuditBackend)
    backend._conninfo = "postgresql://nobody@127.0.0.1:1/none"  # every reconnect now fails
    assert backend._sequencer._session.conn is not None and backend._main.conn is not None
    backend._sequencer._session.conn.close()
    with caplog.at_level("WARNING", logger="mcp_attest.audit"):
        log.close()
    assert any("not sealed at close" in r.getMessage() for r in caplog.records)
    assert not any("left queued at close" in r.getMessage() for r in caplog.records)  # said once, not twice
    assert _unsealed(pg_url, pg_schema) == 2
    with _log(pg_url, pg_schema) as again:
        assert [r.facts["attestationId"] for r in again.records()] == ids


class _Recorder:
    """A flush that notes each batch and can be held open, to place callers around it."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail = fail

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        self.entered.set()
        self.release.wait(5)
        if self.fail:
            raise AuditUnavailableError("database gone")
        return [item * 10 for item in items]


def test_audit_group_commit_lone_caller_flushes_alone_and_errors_reach_it() -> None:
    """One writer thread: its own one-item flush, its own result; a failed flush leaves nothing busy."""
    flush = _Recorder()
    commits: GroupCommit[int, int] = GroupCommit(flush)
    assert [commits.submit(1), commits.submit(2)] == [10, 20]
    assert flush.batches == [[1], [2]] and commits.flushes == 2
    flush.fail = True
    with pytest.raises(AuditUnavailableError):
        commits.submit(3)
    flush.fail = False
    assert commits.submit(4) == 40  # the failed flush released the queue


def test_audit_group_commit_callers_arriving_during_a_lone_flush_share_the_next() -> None:
    """Regression for the uncontended fast path: whoever arrives while it flushes is not stranded."""
    flush = _Recorder()
    flush.release.clear()
    commits: GroupCommit[int, int] = GroupCommit(flush)
    results: dict[int, int] = {}

    def call(item: int) -> None:
        results[item] = commits.submit(item)

    first = threading.Thread(target=call, args=(1,))
    first.start()
    assert flush.entered.wait(5)
    others = [threading.Thread(target=call, args=(i,)) for i in (2, 3, 4)]
    for thread in others:
        thread.start()
    deadline = time.monotonic() + 5
    while len(commits._waiting) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    flush.release.set()
    for thread in (first, *others):
        thread.join(5)
    assert results == {1: 10, 2: 20, 3: 30, 4: 40}
    assert flush.batches[0] == [1] and sorted(flush.batches[1]) == [2, 3, 4]
    assert commits.flushes == 2


def test_audit_postgres_schema_v4_log_with_queued_drafts_migrates_to_write_once(
    pg_url: str, pg_schema: str, decisions: Decisions
) -> None:
    """A schema 4 log (full bodies in audit_records, drafts in audit_queue) keeps both under schema 5.

    Its sealed records stay as they were, its queued drafts are sealed after
    them, and new records continue the same chain.
    """
    from mcp_attest.audit.postgres import _MIGRATIONS  # noqa: PLC0415 - builds a v4 schema by hand
    from mcp_attest.audit.record import COLUMNS, GENESIS_HASH  # noqa: PLC0415

    ident = psycopg.sql.Identifier(pg_schema)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE SCHEMA {s}").format(s=ident))
        conn.execute(psycopg.sql.SQL("CREATE TABLE {s}.schema_version (version integer)").format(s=ident))
        for step in _MIGRATIONS[:4]:
            for stmt in step:
                conn.execute(psycopg.sql.SQL(stmt).format(s=ident))
        conn.execute(psycopg.sql.SQL("INSERT INTO {s}.schema_version VALUES (4)").format(s=ident))
        conn.execute(psycopg.sql.SQL("INSERT INTO {s}.audit_meta VALUES ('chain_id', 'c4')").format(s=ident))
        prev = GENESIS_HASH
        for seq in (1, 2):
            verdict, wire = decisions.accepted(q=f"sealed {seq}")
            draft = RecordDraft.build(
                verdict, chain_id="c4", tool="search", arguments={"q": f"sealed {seq}"}, envelope=wire
            )
            row = draft.seal(seq, prev, 1e9 + seq)
            conn.execute(
                psycopg.sql.SQL(
                    f"INSERT INTO {{s}}.audit_records ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                ).format(s=ident),
                row.db_values(),
            )
            prev = row.hash
        for n in range(3):
            verdict, wire = decisions.accepted(q=f"queued {n}")
            draft = RecordDraft.build(
                verdict, chain_id="c4", tool="search", arguments={"q": f"queued {n}"}, envelope=wire
            )
            conn.execute(
                psycopg.sql.SQL(
                    "INSERT INTO {s}.audit_queue (prefix, recorded_at, suffix, ts, sub, tool, reason) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
                ).format(s=ident),
                (
                    draft.prefix.decode(),
                    format_rfc3339(1e9 + 5),
                    draft.suffix.decode(),
                    1e9 + 5,
                    draft.sub,
                    "search",
                    None,
                ),
            )
    with _log(pg_url, pg_schema) as log:  # opening migrates, then seals what the v4 writers queued
        assert [r.seq for r in log.records()] == [1, 2, 3, 4, 5]
        _submit(log, decisions, 2)
    assert _count(pg_url, pg_schema, "audit_records_v4") == 2
    assert _count(pg_url, pg_schema, "audit_seals") == 5
    with _log(pg_url, pg_schema) as log:
        report = log.verify(decisions.keyring)
        assert report.accepted and report.records == 7, report.broken
        assert [r.facts["attestationId"] is not None for r in log.records()] == [True] * 7
