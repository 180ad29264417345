"""How PostgreSQL sealing finds new drafts (schema 6): by id, with the ids still in flight kept as gaps.

Writers only INSERT their draft. A sequencer seals the ids from where it
stopped up to the sequence's last value, and keeps any id it could not see
yet (an INSERT not committed, one rolled back) as a gap until every
transaction that could still commit it has ended. These tests play the
writers by hand, in open transactions, to put commits out of id order.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from _servers import Decisions
from mcp_attest.audit import AuditLog, AuditUnavailableError
from mcp_attest.audit.postgres import PostgresAuditBackend
from mcp_attest.audit.record import GENESIS_HASH, RecordDraft
from mcp_attest.verdict import format_rfc3339


@pytest.fixture
def decisions() -> Decisions:
    return Decisions.create()


@pytest.fixture
def backend(pg_url: str, pg_schema: str) -> Iterator[PostgresAuditBackend]:
    found = PostgresAuditBackend(pg_url, schema=pg_schema, sequence_interval=3600)
    yield found
    found.close()


@pytest.fixture
def writer(
    pg_url: str, backend: PostgresAuditBackend, decisions: Decisions
) -> Iterator[Callable[[], _Writer]]:
    """Opens writers, and closes them (rolling back what is open) before the schema is dropped."""
    opened: list[_Writer] = []

    def open_one() -> _Writer:
        opened.append(_Writer(pg_url, backend, decisions))
        return opened[-1]

    yield open_one
    for one in opened:
        one.close()


class _Writer:
    """A writer whose INSERT stays uncommitted until the test says: a draft in flight."""

    def __init__(self, pg_url: str, backend: PostgresAuditBackend, decisions: Decisions) -> None:
        self.conn = psycopg.connect(pg_url)
        self.schema = sql.Identifier(backend._schema)
        self.chain_id = backend.chain_id
        self.decisions = decisions

    def insert(self, label: str) -> int:
        verdict, wire = self.decisions.accepted(q=label)
        draft = RecordDraft.build(
            verdict, chain_id=self.chain_id, tool="search", arguments={"q": label}, envelope=wire
        )
        row = self.conn.execute(
            sql.SQL(
                "INSERT INTO {s}.audit_drafts (prefix, recorded_at, suffix, ts, sub, tool, reason) "
                "VALUES (%s, %s, %s, %s, %s, %s, NULL) RETURNING id"
            ).format(s=self.schema),
            _draft_values(draft),
        ).fetchone()
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        self.conn.close()


def _query(pg_url: str, text: str, schema: str) -> list[tuple[object, ...]]:
    """One statement with ``{s}`` for the schema; its rows, if it returns any."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        cur = conn.execute(sql.SQL(text).format(s=sql.Identifier(schema)))
        return cur.fetchall() if cur.description else []


def _draft_values(draft: RecordDraft) -> tuple[object, ...]:
    """A draft's queued columns (prefix .. tool), as a writer INSERTs them; reason is NULL."""
    return (draft.prefix.decode(), format_rfc3339(1e9), draft.suffix.decode(), 1e9, draft.sub, "search")


def _sealed_drafts(pg_url: str, schema: str) -> list[int]:
    return [int(r[0]) for r in _query(pg_url, "SELECT draft FROM {s}.audit_seals ORDER BY seq", schema)]


def _gaps(pg_url: str, schema: str) -> list[tuple[int, int]]:
    return [
        (int(lo), int(hi))
        for lo, hi in _query(pg_url, "SELECT lo, hi FROM {s}.audit_gaps ORDER BY lo", schema)
    ]


def test_audit_postgres_a_draft_committed_after_a_later_id_was_sealed_is_sealed_next_round(
    pg_url: str,
    pg_schema: str,
    backend: PostgresAuditBackend,
    writer: Callable[[], _Writer],
    decisions: Decisions,
) -> None:
    slow, fast = writer(), writer()
    low = slow.insert("slow")  # id taken, not committed
    assert backend.sequence() == 0
    assert _gaps(pg_url, pg_schema) == [(low, low)]
    assert backend.sequence() == 0  # still in flight: kept, not given up
    assert _gaps(pg_url, pg_schema) == [(low, low)]
    high = fast.insert("fast")
    fast.conn.commit()
    assert high > low
    assert backend.sequence() == 1
    assert _sealed_drafts(pg_url, pg_schema) == [high]
    assert _gaps(pg_url, pg_schema) == [(low, low)]
    assert backend.pending() == 0  # the gap's draft is invisible until it commits
    slow.conn.commit()
    assert backend.pending() == 1
    assert backend.sequence() == 1
    assert _sealed_drafts(pg_url, pg_schema) == [high, low]
    assert _gaps(pg_url, pg_schema) == []
    with AuditLog(PostgresAuditBackend(pg_url, schema=pg_schema, create=False)) as log:
        report = log.verify(decisions.keyring)
        assert report.accepted and report.records == 2, report.broken


def test_audit_postgres_a_rolled_back_draft_leaves_a_gap_that_is_dropped_once_its_writer_ended(
    pg_url: str, pg_schema: str, backend: PostgresAuditBackend, writer: Callable[[], _Writer]
) -> None:
    one = writer()
    lost = one.insert("rolled back")
    assert backend.sequence() == 0
    assert _gaps(pg_url, pg_schema) == [(lost, lost)]
    one.conn.rollback()
    kept = one.insert("kept")
    one.conn.commit()
    assert backend.sequence() == 1
    assert _sealed_drafts(pg_url, pg_schema) == [kept]
    assert _gaps(pg_url, pg_schema) == []  # the rolled-back id: given up, not waited on forever
    assert backend.pending() == 0


def test_audit_postgres_a_gap_is_kept_while_any_older_transaction_runs(
    pg_url: str, pg_schema: str, backend: PostgresAuditBackend, writer: Callable[[], _Writer]
) -> None:
    """A transaction elsewhere in the database holds the horizon back: the gap waits, nothing is lost."""
    bystander = writer().conn
    bystander.execute("SELECT pg_current_xact_id()")  # an unrelated writing transaction, left open
    one = writer()
    lost = one.insert("rolled back")
    backend.sequence()
    one.conn.rollback()
    backend.sequence()
    assert _gaps(pg_url, pg_schema) == [(lost, lost)]
    bystander.rollback()
    backend.sequence()
    assert _gaps(pg_url, pg_schema) == []


@pytest.mark.parametrize(
    "setup",
    [
        "ALTER SEQUENCE {s}.audit_drafts_id_seq CACHE 20",
        "ALTER SEQUENCE {s}.audit_drafts_id_seq CYCLE",
        "ALTER SEQUENCE {s}.audit_drafts_id_seq INCREMENT BY -1",
    ],
)
def test_audit_postgres_sealing_refuses_a_sequence_that_does_not_hand_out_ids_in_time_order(
    pg_url: str, pg_schema: str, backend: PostgresAuditBackend, setup: str
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL(setup).format(s=sql.Identifier(pg_schema)))
    with pytest.raises(AuditUnavailableError, match="CACHE 1, a positive INCREMENT and NO CYCLE"):
        backend.sequence()


@pytest.mark.parametrize("begin", ["BEGIN ISOLATION LEVEL REPEATABLE READ", "BEGIN"])
def test_audit_postgres_sealing_refuses_a_shared_transaction_or_one_snapshot_for_all(
    pg_url: str, pg_schema: str, backend: PostgresAuditBackend, begin: str
) -> None:
    """A horizon from a snapshot or a transaction id taken too early could lose drafts: refused."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(begin)
        conn.execute("SELECT pg_current_xact_id()")
        with pytest.raises(psycopg.errors.RaiseException, match=r"READ COMMITTED|transaction of its own"):
            conn.execute(sql.SQL("SELECT {s}.audit_sequence(10, true)").format(s=sql.Identifier(pg_schema)))


def test_audit_postgres_sealing_reads_only_the_new_ids(
    pg_url: str, pg_schema: str, backend: PostgresAuditBackend
) -> None:
    """Each round's query is an index range scan, however long the log: never a scan of every draft."""
    ident = sql.Identifier(pg_schema)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "INSERT INTO {s}.audit_drafts (id, prefix, recorded_at, suffix, ts, sub, tool, reason) "
                "SELECT -g, '{{', '', '}}', g, NULL, 'search', NULL FROM generate_series(1, 50000) g"
            ).format(s=ident)
        )
        conn.execute(sql.SQL("ANALYZE {s}.audit_drafts").format(s=ident))
        source = conn.execute(
            "SELECT prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = %s AND p.proname = 'audit_sequence'",
            (pg_schema,),
        ).fetchone()
        assert source is not None
        found = re.search(r"FOR q IN (SELECT .*?) LOOP", str(source[0]), re.S)
        assert found is not None
        query = found.group(1).replace("lo[k]", "$1").replace("hi[k]", "$2").replace("cap[k]", "$3")
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute("PREPARE round_query(bigint, bigint, integer) AS " + query)
        plan = "\n".join(
            line for (line,) in conn.execute("EXPLAIN EXECUTE round_query(1, 100, 5000)").fetchall()
        )
    assert "Index Scan using audit_drafts_pkey" in plan and "Seq Scan" not in plan, plan


def test_audit_postgres_every_committed_draft_is_sealed_once_under_racing_writers(
    pg_url: str, pg_schema: str, backend: PostgresAuditBackend, writer: Callable[[], _Writer]
) -> None:
    """Writers commit and roll back at random while rounds run: each committed draft sealed exactly once."""
    committed: list[int] = []
    lock = threading.Lock()
    rng = random.Random(2787)
    plans = [[rng.random() < 0.2 for _ in range(40)] for _ in range(4)]

    def write(one: _Writer, plan: list[bool]) -> None:
        for roll_back in plan:
            draft = one.insert("race")
            if roll_back:
                one.conn.rollback()
            else:
                one.conn.commit()
                with lock:
                    committed.append(draft)

    threads = [threading.Thread(target=write, args=(writer(), plan)) for plan in plans]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        backend.sequence()
    for t in threads:
        t.join()
    backend.sequence(wait=True)
    sealed = _sealed_drafts(pg_url, pg_schema)
    assert sorted(sealed) == sorted(committed) and len(sealed) == len(set(sealed))
    assert len(committed) == sum(not r for plan in plans for r in plan)
    assert _gaps(pg_url, pg_schema) == [] and backend.pending() == 0


def test_audit_postgres_schema_v5_log_with_queued_drafts_migrates_to_sealing_by_id(
    pg_url: str, pg_schema: str, decisions: Decisions
) -> None:
    """A schema 5 log: its queued drafts are sealed after its records, and no sealed draft twice.

    The draft with id 4 was sealed inline while 3 and 5 waited in the queue,
    as a schema 5 writer could leave it.
    """
    from mcp_attest.audit.postgres import _MIGRATIONS  # noqa: PLC0415 - builds a v5 schema by hand

    ident = sql.Identifier(pg_schema)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {s}").format(s=ident))
        conn.execute(sql.SQL("CREATE TABLE {s}.schema_version (version integer)").format(s=ident))
        for step in _MIGRATIONS[:5]:
            for stmt in step:
                conn.execute(sql.SQL(stmt).format(s=ident))
        conn.execute(sql.SQL("INSERT INTO {s}.schema_version VALUES (5)").format(s=ident))
        conn.execute(sql.SQL("INSERT INTO {s}.audit_meta VALUES ('chain_id', 'c5')").format(s=ident))
        prev, seq = GENESIS_HASH, 0
        for draft_id in (1, 2, 3, 4, 5):
            verdict, wire = decisions.accepted(q=f"draft {draft_id}")
            draft = RecordDraft.build(
                verdict, chain_id="c5", tool="search", arguments={"q": f"draft {draft_id}"}, envelope=wire
            )
            conn.execute(
                sql.SQL(
                    "INSERT INTO {s}.audit_drafts (id, prefix, recorded_at, suffix, ts, sub, tool, reason) "
                    "VALUES (nextval(%s), %s, %s, %s, %s, %s, %s, NULL)"
                ).format(s=ident),
                (f'"{pg_schema}".audit_drafts_id_seq', *_draft_values(draft)),
            )
            if draft_id in (3, 5):
                conn.execute(
                    sql.SQL("INSERT INTO {s}.audit_pending VALUES (%s)").format(s=ident), (draft_id,)
                )
                continue
            seq += 1
            row = draft.seal(seq, prev, 1e9)
            conn.execute(
                sql.SQL("INSERT INTO {s}.audit_seals VALUES (%s, %s, %s, %s)").format(s=ident),
                (seq, draft_id, prev, row.hash),
            )
            prev = row.hash
    with AuditLog(PostgresAuditBackend(pg_url, schema=pg_schema, sequence_interval=3600)) as log:
        assert _sealed_drafts(pg_url, pg_schema) == [1, 2, 4, 3, 5]
        decisions.fill(log, 1)
    with AuditLog(PostgresAuditBackend(pg_url, schema=pg_schema, create=False)) as log:
        report = log.verify(decisions.keyring)
        assert report.accepted and report.records == 6, report.broken
    assert _gaps(pg_url, pg_schema) == []


def test_audit_postgres_a_queued_draft_takes_its_transaction_id_before_its_draft_id(
    pg_url: str, pg_schema: str, backend: PostgresAuditBackend, decisions: Decisions
) -> None:
    """The horizon's premise: by the time a draft's id is drawn, its writer's transaction id exists.

    A BEFORE trigger runs after the column defaults and before the row is
    written (which would take a transaction id anyway), so it sees whether
    the id default took one first.
    """
    _query(
        pg_url,
        "CREATE FUNCTION {s}.no_xid_yet() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF pg_current_xact_id_if_assigned() IS NULL THEN RAISE EXCEPTION 'id drawn before xid'; END IF; "
        "RETURN NEW; END $$",
        pg_schema,
    )
    _query(
        pg_url,
        "CREATE TRIGGER no_xid_yet BEFORE INSERT ON {s}.audit_drafts "
        "FOR EACH ROW EXECUTE FUNCTION {s}.no_xid_yet()",
        pg_schema,
    )
    with AuditLog(backend) as log:
        for label in ("lone", "batch", "batch"):
            verdict, wire = decisions.accepted(q=label)
            log.submit(verdict, tool="search", arguments={"q": label}, envelope=wire)
        draft = RecordDraft.build(
            verdict, chain_id=backend.chain_id, tool="search", arguments=None, envelope=None
        )
        backend._enqueue_many([(draft, 1e9), (draft, 1e9)])  # the batch's path (unnest)
        assert backend.sequence() == 5


def test_audit_postgres_sealing_takes_big_backlogs_in_batches_and_a_sequence_jump_in_one_round(
    pg_url: str,
    pg_schema: str,
    backend: PostgresAuditBackend,
    writer: Callable[[], _Writer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rounds stop at p_max drafts and the next goes on; an id span with nothing in it costs nothing."""
    import mcp_attest.audit.postgres as postgres  # noqa: PLC0415 - the batch size under test

    monkeypatch.setattr(postgres, "_SEQUENCE_BATCH", 2)
    one = writer()
    drafts = [one.insert(f"backlog {i}") for i in range(5)]
    one.conn.commit()
    assert backend.sequence() == 5  # three rounds of at most two
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("SELECT setval(%s::regclass, 1000000000000)", (f'"{pg_schema}".audit_drafts_id_seq',))
    far = one.insert("after the jump")
    one.conn.commit()
    assert backend.sequence() == 1  # one round, not 10**12 / 2 of them
    assert _gaps(pg_url, pg_schema) == []  # no writer was in flight: the unused ids are given up at once
    assert _sealed_drafts(pg_url, pg_schema) == [*drafts, far]
