"""The fleet audit backend: one chain in PostgreSQL, appended to by many processes.

Every append takes the chain's transaction-scoped advisory lock before it
reads the head (the newest record), so writers on any number of hosts
queue on that lock and the chain can neither fork nor skip a seq; the
``seq`` primary key would refuse a fork even if the lock were bypassed.
The lock is released by COMMIT or by the death of the session, so a
writer killed mid-append never leaves the chain locked. (Schema version 1
kept the head in an ``audit_head`` row and updated it on every append;
version 2 drops it: one write less per record.)

Scaling past one lock: the lock is held for the server's CPU work only,
never for a WAL flush. The ``audit_append_many`` procedure seals a batch
of records under the lock and commits with ``synchronous_commit=off``
(the lock is released at once), then commits a second transaction that
writes one WAL message, synchronously: its flush covers the records, so
the call returns only once they are durable, and concurrent writers'
flushes are shared by PostgreSQL's WAL group flush instead of queueing
behind the lock. A server crash between the two commits can lose only
records whose append had not returned (never acknowledged), and always a
suffix of the chain, since WAL is flushed in order. Within one process, concurrent
appends are batched (group commit): whoever finds no batch in flight
takes every waiting draft and writes them in one call.

The client serializes each record before it asks for the lock
(``RecordDraft``: the record's JCS bytes minus the three chain members),
and the procedure splices in prevHash and seq and hashes, in one round
trip. The client then re-seals the same drafts and checks the hashes the
server computed, so a server that sealed differently is caught at once.

Scaling past the lock (schema 4): ``enqueue`` (``AuditLog.submit``, what
the guard and the gateway call) makes a draft durable with one plain
INSERT and never touches the lock; each writing process's sequencer seals
queued drafts, from every writer, in batches under the lock
(``audit_sequence``). The chain then advances at the rate writers can INSERT.

Each body written once (schema 5): the draft stays where the writer put
it (``audit_drafts``). Sealing reads each new draft and adds a small
``audit_seals`` row (seq, draft, prevHash, hash), in one transaction with
the bookkeeping of what it sealed: a draft is sealed exactly once or
stays queued. The ``audit_records`` view splices
each body exactly as sealing did, and also shows the records sealed in
full before schema 5 (``audit_records_v4``), so readers see one chain.
Schema 4 wrote every body twice (queue, then records) and deleted it from
the queue: twice the WAL, and the sealing that 8 writers paid most for.

Sealing by id (schema 6): the writer's INSERT of its draft is all it
writes; ``audit_pending`` is gone. Sealing takes the draft ids above where
it stopped, up to the sequence's last value, and keeps the ids it cannot
see yet (INSERTs not committed) as gaps until every transaction that could
still commit one has ended (see ``_SEQUENCE`` for why that is exact).

Tables live in one PostgreSQL schema (default ``mcp_attest``), created and
migrated by this module under an advisory lock, so several processes
starting at once do not race on ``CREATE``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import struct
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import psycopg
from psycopg import pq, sql

from mcp_attest.audit.backend import (
    GroupCommit,
    RecordQuery,
    pending_migrations,
    query_clauses,
)
from mcp_attest.audit.record import (
    COLUMNS,
    GENESIS_HASH,
    AuditConfigError,
    AuditUnavailableError,
    RecordDraft,
    StoredRow,
)
from mcp_attest.verdict import format_rfc3339

__all__ = ["DEFAULT_SCHEMA", "DEFAULT_SEQUENCE_INTERVAL", "PostgresAuditBackend"]

logger = logging.getLogger("mcp_attest.audit")

DEFAULT_SCHEMA = "mcp_attest"
DEFAULT_SEQUENCE_INTERVAL = 0.1
_SEQUENCE_BATCH = 5000
_QUEUED = "prefix, recorded_at, suffix, ts, sub, tool, reason"
_ENQUEUE = b"mcp_attest_enqueue"
_BINARY = [pq.Format.BINARY] * 7
_FLOAT8 = struct.Struct("!d")
_CONNECTED = pq.ConnStatus.OK  # enum members looked up once: each lookup is a Python-level descriptor call
_COMMAND_OK = pq.ExecStatus.COMMAND_OK
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# The chain's lock: every sealer (inline append, sequencer, the schema 6
# migration) takes it by this one key.
_CHAIN_LOCK = "hashtext('mcp-attest-audit-head:{s}')"
# The chain's head: the newest seal, or the newest record sealed before schema 5.
_HEAD = (
    "SELECT h.seq, h.hash FROM (SELECT seq, hash FROM {s}.audit_seals "
    "UNION ALL SELECT seq, hash FROM {s}.audit_records_v4) h ORDER BY h.seq DESC LIMIT 1"
)
# Seals drafts exactly as RecordDraft.seal does (see chain_members); their
# ids are negative (schema 6), outside the range queued drafts are sealed
# from, so no sequencer seals them a second time. The lock
# is held without waiting for a WAL flush; the second commit makes the batch
# durable. It must write WAL of its own: PostgreSQL commits a transaction that
# wrote none (an xid alone) without flushing.
_APPEND_MANY = """CREATE OR REPLACE PROCEDURE {s}.audit_append_many(
            p_prefix text[], p_recorded_at text[], p_suffix text[], p_ts double precision[],
            p_sub text[], p_tool text[], p_reason text[],
            INOUT first_seq bigint DEFAULT NULL, INOUT first_prev text DEFAULT NULL,
            INOUT hashes text[] DEFAULT NULL)
        LANGUAGE plpgsql AS $fn$
        DECLARE
            h_seq bigint;
            h_hash text;
            prev text;
            body text;
            d_id bigint;
        BEGIN
            PERFORM set_config('synchronous_commit', 'off', true);
            PERFORM pg_advisory_xact_lock(CHAIN_LOCK);
            HEAD INTO h_seq, h_hash;
            IF NOT FOUND THEN
                h_seq := 0;
                h_hash := repeat('0', 64);
            END IF;
            first_seq := h_seq + 1;
            first_prev := h_hash;
            hashes := '{{}}';
            FOR i IN 1 .. coalesce(array_length(p_prefix, 1), 0) LOOP
                h_seq := h_seq + 1;
                prev := h_hash;
                body := p_prefix[i] || '"prevHash":"' || prev || '","recordedAt":"' || p_recorded_at[i]
                    || '","seq":' || h_seq || p_suffix[i];
                h_hash := encode(sha256(convert_to(body, 'UTF8')), 'hex');
                hashes := hashes || h_hash;
                INSERT INTO {s}.audit_drafts (id, prefix, recorded_at, suffix, ts, sub, tool, reason)
                    VALUES (-nextval('{s}.audit_inline_id_seq'), p_prefix[i], p_recorded_at[i], p_suffix[i],
                    p_ts[i], p_sub[i], p_tool[i], p_reason[i]) RETURNING id INTO d_id;
                INSERT INTO {s}.audit_seals (seq, draft, prev_hash, hash) VALUES (h_seq, d_id, prev, h_hash);
            END LOOP;
            COMMIT;
            PERFORM pg_logical_emit_message(true, 'mcp-attest-durable', '');
        END
        $fn$""".replace("HEAD", _HEAD).replace("CHAIN_LOCK", _CHAIN_LOCK)
# Seals the drafts not sealed yet, in id order: up to p_max new ones, and
# every one that turned up in a gap (a writer's few drafts). Without
# p_wait a sealer already at work (another process's sequencer, an inline
# append) is left to it: NULL, try again later. Returns the head seq before
# and after, and how many draft ids are left for a next call. Ids are
# counted by the drafts found, not by their span, so a sequence that jumped
# ahead costs one round, not one per p_max ids.
#
# Which drafts are new (schema 6), without writers touching anything but
# their own INSERT: audit_sealer.next_id says every draft below it is sealed
# or listed in audit_gaps, and a round takes the ids from next_id up to the
# sequence's last value. A draft whose INSERT has not committed yet is
# invisible, so its id becomes a gap, kept with a horizon: this round's own
# transaction id, assigned after the sequence was read. A draft's id default
# takes its transaction's id before nextval (see _DRAFT_ID), so every id
# at or below the value read belongs to a transaction that started before
# the horizon. Once the oldest transaction still running is at or past the
# horizon (the snapshot's xmin), those writers have all finished: their gap
# drafts are visible now and sealed, and what is still missing never will be
# (a rolled-back INSERT, ids the sequence skipped) and is dropped. This needs
# a new snapshot per statement (READ COMMITTED), nextval in time order
# (CACHE 1, no cycle), and a transaction of its own: checked, and refused
# loudly, since a wrong horizon would lose records silently.
_SEQUENCE = """CREATE OR REPLACE FUNCTION {s}.audit_sequence(p_max integer, p_wait boolean)
        RETURNS bigint[] LANGUAGE plpgsql AS $fn$
        DECLARE
            h_seq bigint;
            h_hash text;
            prev text;
            before bigint;
            n bigint;
            last bigint;
            m bigint;
            horizon xid8;
            xmin xid8;
            lo bigint[];
            hi bigint[];
            hz xid8[];
            cap integer[];
            taken integer;
            s_seq bigint[] := '{{}}';
            s_draft bigint[] := '{{}}';
            s_prev text[] := '{{}}';
            s_hash text[] := '{{}}';
            expect bigint;
            gap_lo bigint[] := '{{}}';
            gap_hi bigint[] := '{{}}';
            gap_hz xid8[] := '{{}}';
            q record;
        BEGIN
            IF current_setting('transaction_isolation') <> 'read committed' THEN
                RAISE EXCEPTION 'mcp-attest audit sealing needs READ COMMITTED, not %',
                    current_setting('transaction_isolation');
            END IF;
            IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
                RAISE EXCEPTION 'mcp-attest audit sealing must run in a transaction of its own';
            END IF;
            PERFORM 1 FROM pg_sequence WHERE seqrelid = '{s}.audit_drafts_id_seq'::regclass
                AND seqcache = 1 AND seqincrement > 0 AND NOT seqcycle;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'mcp-attest audit sealing needs {s}.audit_drafts_id_seq with CACHE 1, '
                    'a positive INCREMENT and NO CYCLE';
            END IF;
            IF p_wait THEN
                PERFORM pg_advisory_xact_lock(CHAIN_LOCK);
            ELSIF NOT pg_try_advisory_xact_lock(CHAIN_LOCK) THEN
                RETURN NULL;
            END IF;
            HEAD INTO h_seq, h_hash;
            IF NOT FOUND THEN
                h_seq := 0;
                h_hash := repeat('0', 64);
            END IF;
            before := h_seq;
            SELECT next_id INTO n FROM {s}.audit_sealer;
            SELECT coalesce(pg_sequence_last_value('{s}.audit_drafts_id_seq'::regclass), 0) INTO last;
            SELECT pg_current_xact_id() INTO horizon;
            SELECT pg_snapshot_xmin(pg_current_snapshot()) INTO xmin;
            m := last;
            SELECT coalesce(array_agg(g.lo ORDER BY g.lo), '{{}}'),
                coalesce(array_agg(g.hi ORDER BY g.lo), '{{}}'),
                coalesce(array_agg(g.horizon ORDER BY g.lo), '{{}}')
                INTO lo, hi, hz FROM {s}.audit_gaps g;
            IF cardinality(lo) > 0 THEN
                DELETE FROM {s}.audit_gaps;
            END IF;
            -- Gaps are read whole (a writer's few drafts); the new ids up to p_max drafts.
            cap := array_fill(NULL::integer, ARRAY[cardinality(lo)]);
            IF n <= last THEN
                lo := lo || n;
                hi := hi || last;
                hz := hz || horizon;
                cap := cap || p_max;
            END IF;
            FOR k IN 1 .. cardinality(lo) LOOP
                expect := lo[k];
                taken := 0;
                FOR q IN SELECT d.id, d.prefix, d.recorded_at, d.suffix FROM {s}.audit_drafts d
                        WHERE d.id BETWEEN lo[k] AND hi[k] ORDER BY d.id LIMIT cap[k] LOOP
                    taken := taken + 1;
                    IF q.id > expect THEN
                        gap_lo := gap_lo || expect;
                        gap_hi := gap_hi || (q.id - 1);
                        gap_hz := gap_hz || hz[k];
                    END IF;
                    expect := q.id + 1;
                    h_seq := h_seq + 1;
                    prev := h_hash;
                    h_hash := encode(sha256(convert_to(q.prefix || '"prevHash":"' || prev
                        || '","recordedAt":"' || q.recorded_at || '","seq":' || h_seq || q.suffix,
                        'UTF8')), 'hex');
                    s_seq := s_seq || h_seq;
                    s_draft := s_draft || q.id;
                    s_prev := s_prev || prev;
                    s_hash := s_hash || h_hash;
                END LOOP;
                IF taken = cap[k] THEN
                    m := expect - 1;  -- cut short: the next call goes on after the last draft sealed
                ELSIF expect <= hi[k] THEN
                    gap_lo := gap_lo || expect;
                    gap_hi := gap_hi || hi[k];
                    gap_hz := gap_hz || hz[k];
                END IF;
            END LOOP;
            -- One INSERT for the round's seals: a quarter less sealing CPU than one per row.
            INSERT INTO {s}.audit_seals (seq, draft, prev_hash, hash)
                SELECT * FROM unnest(s_seq, s_draft, s_prev, s_hash);
            INSERT INTO {s}.audit_gaps (lo, hi, horizon)
                SELECT g.lo, g.hi, g.hz FROM unnest(gap_lo, gap_hi, gap_hz) g(lo, hi, hz) WHERE g.hz > xmin;
            IF n <= last THEN
                UPDATE {s}.audit_sealer SET next_id = m + 1;
            END IF;
            RETURN ARRAY[before, h_seq, last - m];
        END
        $fn$""".replace("HEAD", _HEAD).replace("CHAIN_LOCK", _CHAIN_LOCK)
# A queued draft's id: its transaction's id is taken first (CASE evaluates
# its condition before its result), so a sealer that reads the sequence and
# then takes a transaction id knows every writer holding an id it read
# started before that transaction id (see _SEQUENCE).
_DRAFT_ID = (
    "(CASE WHEN pg_current_xact_id() IS NOT NULL THEN nextval('{s}.audit_drafts_id_seq'::regclass) END)"
)
# Schema 5 stores each body once: the draft a writer queued stays in
# audit_drafts, and sealing adds a small audit_seals row (seq, the draft,
# prevHash, hash). Records sealed in full before schema 5 stay in
# audit_records_v4; the audit_records view reads both as one chain, the
# body spliced exactly as sealing spliced it.
_RECORDS_VIEW = """CREATE VIEW {s}.audit_records AS
        SELECT seq, hash, body, ts, sub, tool, reason FROM {s}.audit_records_v4
        UNION ALL
        SELECT s.seq, s.hash, d.prefix || '"prevHash":"' || s.prev_hash || '","recordedAt":"' || d.recorded_at
            || '","seq":' || s.seq || d.suffix, d.ts, d.sub, d.tool, d.reason
        FROM {s}.audit_seals s JOIN {s}.audit_drafts d ON d.id = s.draft"""
_MIGRATIONS: Sequence[Sequence[str]] = (
    (
        "CREATE TABLE {s}.audit_meta (key text PRIMARY KEY, value text NOT NULL)",
        "CREATE TABLE {s}.audit_records (seq bigint PRIMARY KEY, hash text NOT NULL, "
        "ts double precision NOT NULL, sub text, tool text NOT NULL, reason text, body text NOT NULL)",
        "CREATE INDEX audit_records_ts ON {s}.audit_records (ts)",
        "CREATE TABLE {s}.audit_head (id integer PRIMARY KEY CHECK (id = 1), seq bigint NOT NULL, "
        "hash text NOT NULL CHECK (char_length(hash) = 64 AND hash ~ '^[0-9a-f]+$'))",
        f"INSERT INTO {{s}}.audit_head VALUES (1, 0, '{GENESIS_HASH}')",  # noqa: S608 - a constant
        "CREATE TABLE {s}.audit_checkpoints (seq bigint PRIMARY KEY, body text NOT NULL)",
        # Seals a RecordDraft exactly as RecordDraft.seal does (see chain_members); v2 replaces it.
        """CREATE FUNCTION {s}.audit_append(p_prefix text, p_recorded_at text, p_suffix text,
            p_ts double precision, p_sub text, p_tool text, p_reason text,
            OUT new_seq bigint, OUT prev_hash text, OUT new_hash text)
        LANGUAGE plpgsql AS $fn$
        DECLARE
            body text;
        BEGIN
            SELECT h.seq + 1, h.hash INTO new_seq, prev_hash FROM {s}.audit_head h WHERE h.id = 1 FOR UPDATE;
            body := p_prefix || '"prevHash":"' || prev_hash || '","recordedAt":"' || p_recorded_at
                || '","seq":' || new_seq || p_suffix;
            new_hash := encode(sha256(convert_to(body, 'UTF8')), 'hex');
            INSERT INTO {s}.audit_records (seq, hash, body, ts, sub, tool, reason)
                VALUES (new_seq, new_hash, body, p_ts, p_sub, p_tool, p_reason);
            UPDATE {s}.audit_head SET seq = new_seq, hash = new_hash WHERE id = 1;
        END
        $fn$""",
    ),
    (
        "DROP FUNCTION {s}.audit_append(text, text, text, double precision, text, text, text)",
        "DROP TABLE {s}.audit_head",
        _APPEND_MANY,
    ),
    # Version 2 as first released committed the second transaction without
    # writing WAL, so PostgreSQL did not flush it: replace the procedure.
    (_APPEND_MANY,),
    # Version 4: drafts acknowledged once queued, sealed in batches by a sequencer.
    (
        "CREATE TABLE {s}.audit_queue (id bigserial PRIMARY KEY, prefix text NOT NULL, "
        "recorded_at text NOT NULL, suffix text NOT NULL, ts double precision NOT NULL, sub text, "
        "tool text NOT NULL, reason text)",
        _SEQUENCE,
    ),
    # Version 5: each body written once (see _RECORDS_VIEW); audit_pending lists the queued drafts.
    (
        "ALTER TABLE {s}.audit_records RENAME TO audit_records_v4",
        "ALTER INDEX {s}.audit_records_pkey RENAME TO audit_records_v4_pkey",
        "ALTER INDEX {s}.audit_records_ts RENAME TO audit_records_v4_ts",
        "ALTER TABLE {s}.audit_queue RENAME TO audit_drafts",
        "ALTER INDEX {s}.audit_queue_pkey RENAME TO audit_drafts_pkey",
        "ALTER SEQUENCE {s}.audit_queue_id_seq RENAME TO audit_drafts_id_seq",
        # BRIN: ts grows with id, and a writer pays next to nothing to keep it.
        "CREATE INDEX audit_drafts_ts ON {s}.audit_drafts USING brin (ts)",
        "CREATE TABLE {s}.audit_pending (id bigint PRIMARY KEY)",
        "INSERT INTO {s}.audit_pending SELECT id FROM {s}.audit_drafts",
        "CREATE TABLE {s}.audit_seals (seq bigint PRIMARY KEY, draft bigint NOT NULL, "
        "prev_hash text NOT NULL, hash text NOT NULL)",
        _RECORDS_VIEW,
        _APPEND_MANY,
        _SEQUENCE,
    ),
    # Version 6: writers INSERT their draft and nothing else; sealing finds new
    # drafts by id (see _SEQUENCE). A version 5 writer still running fails on
    # the dropped audit_pending instead of queueing a draft no one would seal.
    (
        f"SELECT pg_advisory_xact_lock({_CHAIN_LOCK})",
        "LOCK TABLE {s}.audit_pending IN ACCESS EXCLUSIVE MODE",
        "CREATE TABLE {s}.audit_sealer (next_id bigint NOT NULL)",
        "INSERT INTO {s}.audit_sealer "
        "SELECT coalesce(pg_sequence_last_value('{s}.audit_drafts_id_seq'::regclass), 0) + 1",
        "CREATE TABLE {s}.audit_gaps (lo bigint NOT NULL, hi bigint NOT NULL, horizon xid8 NOT NULL)",
        # Drafts still queued become gaps that are due at once (runs of ids, not one row each).
        "INSERT INTO {s}.audit_gaps SELECT min(id), max(id), pg_snapshot_xmin(pg_current_snapshot()) "
        "FROM (SELECT id, id - row_number() OVER (ORDER BY id) AS run FROM {s}.audit_pending) p GROUP BY run",
        "DROP TABLE {s}.audit_pending",
        "CREATE SEQUENCE {s}.audit_inline_id_seq",
        f"ALTER TABLE {{s}}.audit_drafts ALTER COLUMN id SET DEFAULT {_DRAFT_ID}",
        _APPEND_MANY,
        _SEQUENCE,
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)

T = TypeVar("T")


class PostgresAuditBackend:
    """A chain in ``schema`` of the database ``conninfo`` names.

    ``create=False`` opens an existing chain without creating or
    migrating anything (what ``verify`` and ``export`` want).
    """

    remote = True

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        create: bool = True,
        connect_timeout: float = 5.0,
        sequence_interval: float = DEFAULT_SEQUENCE_INTERVAL,
    ) -> None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise AuditConfigError(f"invalid PostgreSQL schema name {schema!r}")
        if sequence_interval <= 0:
            raise AuditConfigError("sequence_interval must be positive")
        self._conninfo = conninfo
        self._schema = schema
        self._timeout = max(1, round(connect_timeout))
        self._main = _Session(self._connect, self._unavailable)
        self._enqueue_ready: psycopg.Connection[Any] | None = None  # the connection the INSERT is prepared on
        self._batch: GroupCommit[tuple[RecordDraft, float], StoredRow] = GroupCommit(self._append_many)
        self._queue: GroupCommit[tuple[RecordDraft, float], bool] = GroupCommit(self._enqueue_many)
        self._sequencer = _Sequencer(self, sequence_interval)
        # This process queued a draft since its last waiting seal began: only
        # then does close seal again (AuditLog.close has sealed just before).
        self._queued_since_seal = False
        self.on_sequenced: Callable[[int, int], None] | None = None
        s = sql.Identifier(schema)
        # Rendered once: psycopg would otherwise compose the text on every execute.
        self._q = {
            name: sql.SQL(text).format(s=s).as_bytes(None)
            for name, text in {
                "append": "CALL {s}.audit_append_many(%b, %b, %b, %b, %b, %b, %b)",
                "enqueue": f"INSERT INTO {{s}}.audit_drafts ({_QUEUED}) "  # noqa: S608 - constant columns
                "VALUES ($1::text, $2::text, $3::text, $4::float8, $5::text, $6::text, $7::text)",
                "enqueue_many": f"INSERT INTO {{s}}.audit_drafts ({_QUEUED}) "  # noqa: S608
                "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::float8[], %b::text[], "
                "%b::text[], %b::text[])",
                "sequence": "SELECT {s}.audit_sequence(%s, %s)",
                "pending": "SELECT (SELECT count(*) FROM {s}.audit_drafts WHERE id >= (SELECT next_id FROM "
                "{s}.audit_sealer)) + (SELECT count(*) FROM {s}.audit_gaps g JOIN {s}.audit_drafts d "
                "ON d.id BETWEEN g.lo AND g.hi)",
                "head": _HEAD,
                "add_checkpoint": "INSERT INTO {s}.audit_checkpoints VALUES (%s, %s) ON CONFLICT DO NOTHING",
                "checkpoints": "SELECT seq, body FROM {s}.audit_checkpoints ORDER BY seq",
                "rows": f"SELECT {COLUMNS} FROM {{s}}.audit_records",  # noqa: S608 - constant columns
                "version": "SELECT max(version) FROM {s}.schema_version",
                "chain_id": "SELECT value FROM {s}.audit_meta WHERE key = 'chain_id'",
            }.items()
        }
        self._chain_id = self._main.run(self._migrate if create else self._check_schema)
        self._writer = create
        if create:
            # Drafts a writer left queued when it died are sealed by the next one to open the log.
            self.sequence(wait=True)

    @property
    def chain_id(self) -> str:
        return self._chain_id

    @property
    def location(self) -> str:
        conn = self._main.conn
        if conn is None or conn.closed:
            return f"postgresql (schema {self._schema})"
        info = conn.info
        return f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}?schema={self._schema}"

    # -- connection --------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self._conninfo, autocommit=True, connect_timeout=self._timeout)

    def _unavailable(self, exc: psycopg.Error) -> AuditUnavailableError:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return AuditUnavailableError(f"audit log (postgresql schema {self._schema}): {message}")

    def _migrate(self, conn: psycopg.Connection[Any]) -> str:
        """Create or upgrade the schema, unless it is current.

        A current schema needs no DDL at all, so writers that only hold
        EXECUTE/INSERT/UPDATE/SELECT rights can open it; the DDL path runs
        under an advisory lock so writers starting together do not race.
        """
        encoding = conn.execute("SHOW server_encoding").fetchone()
        if encoding is None or encoding[0] != "UTF8":
            raise AuditConfigError(f"audit log {self.location}: the database encoding must be UTF8")
        if self._existing_version(conn) == SCHEMA_VERSION:
            return self._stored_chain_id(conn)
        digest = hashlib.sha256(f"mcp-attest:{self._schema}".encode()).digest()
        s = sql.Identifier(self._schema)
        with conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s)", (int.from_bytes(digest[:8], "big", signed=True),)
            )
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {s}").format(s=s))
            conn.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer)").format(s=s)
            )
            found = self._version(conn)
            for stmt in pending_migrations(found, _MIGRATIONS, self.location):
                conn.execute(sql.SQL(stmt).format(s=s))
            if found < SCHEMA_VERSION:
                conn.execute(sql.SQL("DELETE FROM {s}.schema_version").format(s=s))
                conn.execute(
                    sql.SQL("INSERT INTO {s}.schema_version VALUES (%s)").format(s=s), (SCHEMA_VERSION,)
                )
            conn.execute(
                sql.SQL("INSERT INTO {s}.audit_meta VALUES ('chain_id', %s) ON CONFLICT DO NOTHING").format(
                    s=s
                ),
                (secrets.token_hex(16),),
            )
            return self._stored_chain_id(conn)

    def _check_schema(self, conn: psycopg.Connection[Any]) -> str:
        found = self._existing_version(conn)
        if found is None:
            raise AuditConfigError(f"no mcp-attest audit log in PostgreSQL schema {self._schema!r}")
        if found != SCHEMA_VERSION:
            pending_migrations(found, _MIGRATIONS, self.location)  # raises for a newer schema
            raise AuditConfigError(
                f"audit log {self.location} has schema version {found}; open it once with a writer to migrate"
            )
        return self._stored_chain_id(conn)

    def _existing_version(self, conn: psycopg.Connection[Any]) -> int | None:
        """The schema's version, or None when there is no mcp-attest schema there."""
        exists = conn.execute(
            "SELECT 1 FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name = 'schema_version'",
            (self._schema,),
        ).fetchone()
        return None if exists is None else self._version(conn)

    def _version(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(self._q["version"]).fetchone()
        return int(row[0] or 0) if row else 0

    def _stored_chain_id(self, conn: psycopg.Connection[Any]) -> str:
        row = conn.execute(self._q["chain_id"]).fetchone()
        if row is None:
            raise AuditConfigError(f"audit log {self.location} has no chain id")
        return str(row[0])

    # -- writing -----------------------------------------------------------

    def append(self, draft: RecordDraft, now: float) -> StoredRow:
        """Durable on return; concurrent calls from this process share one round trip and flush."""
        return self._batch.submit((draft, now))

    def _append_many(self, batch: Sequence[tuple[RecordDraft, float]]) -> list[StoredRow]:
        columns = _columns(batch)
        found = self._main.run(lambda conn: conn.execute(self._q["append"], columns, binary=True).fetchone())
        if found is None:  # pragma: no cover - CALL always returns its INOUT row
            raise AuditUnavailableError(f"audit log {self.location}: append returned nothing")
        seq, prev, hashes = int(found[0]), str(found[1]), list(found[2])
        rows = []
        for (draft, now), server_hash in zip(batch, hashes, strict=True):
            row = draft.seal(seq, prev, now)
            if row.hash != server_hash:
                raise AuditUnavailableError(
                    f"audit log {self.location}: the server sealed record {row.seq} differently "
                    "(its text encoding must be UTF8)"
                )
            rows.append(row)
            seq, prev = seq + 1, row.hash
        return rows

    def enqueue(self, draft: RecordDraft, now: float) -> None:
        """Durable on return, sealed into the chain by a sequencer within its interval.

        The draft is one plain INSERT into the queue (concurrent calls in
        this process share one); no writer waits on the chain's lock. Each
        writing process runs a sequencer that seals every queued draft, its
        own and other processes', in batches under that lock.
        """
        self._sequencer.start_once()
        self._queued_since_seal = True
        self._queue.submit((draft, now))

    def _enqueue_many(self, batch: Sequence[tuple[RecordDraft, float]]) -> list[bool]:
        if len(batch) == 1:
            draft, now = batch[0]
            self._main.run(lambda conn: self._enqueue_one(conn, draft, now))
            return [True]
        columns = _columns(batch)
        self._main.run(lambda conn: conn.execute(self._q["enqueue_many"], columns, binary=True))
        return [True] * len(batch)

    def _enqueue_one(self, conn: psycopg.Connection[Any], draft: RecordDraft, now: float) -> None:
        """One draft, through libpq's prepared-statement call.

        The lone writer's path, and the one many writer processes share the
        database's CPU on: psycopg's adaptation layer costs twice the CPU of
        the call itself, and a draft is already UTF-8 bytes. libpq releases
        the GIL while it waits, as psycopg does. A batch goes through
        psycopg (``enqueue_many``); a test holds the two paths to the same rows.
        """
        pgconn = conn.pgconn
        if self._enqueue_ready is not conn:
            _check(pgconn.prepare(_ENQUEUE, self._q["enqueue"]))
            self._enqueue_ready = conn
        params = [
            draft.prefix,
            format_rfc3339(now).encode("ascii"),
            draft.suffix,
            _FLOAT8.pack(now),
            None if draft.sub is None else draft.sub.encode("utf-8"),
            draft.tool.encode("utf-8"),
            None if draft.reason is None else draft.reason.encode("ascii"),
        ]
        # Binary parameters carry their length: in text format libpq would cut
        # a value at its first NUL and store a silently shorter column.
        # libpq sends None as SQL NULL; psycopg's stubs only leave it out of the element type.
        _check(pgconn.exec_prepared(_ENQUEUE, cast("list[bytes]", params), _BINARY))

    def sequence(self, *, wait: bool = False) -> int:
        """Seal queued drafts into the chain now; returns how many.

        Without ``wait``, a sealer already at work elsewhere is left to it.
        """
        if wait:
            self._queued_since_seal = False  # before the drain: a draft queued meanwhile sets it again
        sealed = 0
        while True:
            found = self._sequencer.run(self._q["sequence"], (_SEQUENCE_BATCH, wait))
            if found is None:
                return sealed
            before, after, left = (int(value) for value in found)
            sealed += after - before
            if after > before and self.on_sequenced is not None:
                self.on_sequenced(before, after)
            if left <= 0:
                return sealed

    def pending(self) -> int:
        """Queued drafts not sealed yet: acknowledged, but not in the chain so far."""
        row = self._main.run(lambda conn: conn.execute(self._q["pending"]).fetchone())
        return int(row[0]) if row else 0

    def add_checkpoint(self, seq: int, body: bytes) -> None:
        self._main.run(lambda conn: conn.execute(self._q["add_checkpoint"], (seq, body.decode("utf-8"))))

    # -- reading -----------------------------------------------------------

    def rows(self, query: RecordQuery) -> list[StoredRow]:
        where, params = query_clauses(query, "%s")
        stmt = self._q["rows"] + where.encode("ascii")  # fixed clauses; every value is a bound parameter
        return self._main.run(
            lambda conn: [StoredRow.from_db(r) for r in conn.execute(stmt, params).fetchall()]
        )

    def head(self) -> tuple[int, str]:
        def work(conn: psycopg.Connection[Any]) -> tuple[int, str]:
            row = conn.execute(self._q["head"]).fetchone()
            return (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)

        return self._main.run(work)

    def checkpoints(self) -> list[tuple[int, bytes]]:
        def work(conn: psycopg.Connection[Any]) -> list[tuple[int, bytes]]:
            found = conn.execute(self._q["checkpoints"]).fetchall()
            return [(int(seq), str(body).encode("utf-8")) for seq, body in found]

        return self._main.run(work)

    def close(self) -> None:
        """A writer seals what it queued since its last waiting seal, then disconnects.

        A database that cannot be reached is logged, not raised: the drafts
        stay queued and durable, and the next writer to open the log seals
        them (as it seals whatever a dead writer left).
        """
        try:
            self._sequencer.stop()
            if self._writer and self._queued_since_seal:
                self.sequence(wait=True)
        except AuditUnavailableError as exc:
            logger.warning("audit records left queued at close: %s", exc)
        finally:
            self._sequencer.close()
            self._main.close()


def _columns(batch: Sequence[tuple[RecordDraft, float]]) -> list[list[Any]]:
    """A batch of drafts as the seven arrays both procedures take, in ``_QUEUED`` order."""
    columns: list[list[Any]] = [[] for _ in range(7)]
    for draft, now in batch:
        values = (
            draft.prefix.decode("utf-8"),
            format_rfc3339(now),
            draft.suffix.decode("utf-8"),
            now,
            draft.sub,
            draft.tool,
            draft.reason,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


def _check(result: pq.abc.PGresult) -> None:
    """A libpq result that is not a success, as the psycopg error a driver call would raise."""
    if result.status != _COMMAND_OK:
        message = result.error_message.decode("utf-8", "replace").strip()
        raise psycopg.OperationalError(message or f"libpq status {pq.ExecStatus(result.status).name}")


class _Sequencer:
    """A writer's background sealer, on a connection of its own.

    Started by the first ``enqueue``; every ``interval`` seconds it seals
    whatever is queued, unless another process's sequencer holds the
    chain's lock (then that one seals it). The interval bounds how long an
    acknowledged draft waits outside the chain while some writer runs.
    """

    def __init__(self, backend: PostgresAuditBackend, interval: float) -> None:
        self._backend = backend
        self._interval = interval
        self._lock = threading.Lock()  # starting and stopping the thread
        self._session = _Session(backend._connect, backend._unavailable)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start_once(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(target=self._loop, name="audit-sequencer", daemon=True)
                    self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._backend.sequence()
            except AuditUnavailableError as exc:
                logger.warning("audit sequencer: %s", exc)

    def run(self, stmt: bytes, params: tuple[object, ...]) -> Any:
        """One sealing call on the sequencer's connection; None when another sealer is at work."""
        row = self._session.run(lambda conn: conn.execute(stmt, params).fetchone())
        return None if row is None else row[0]

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None:
            thread.join()

    def close(self) -> None:
        self._session.close()


class _Session:
    """One connection, opened on first use and replaced once broken; calls on it take turns.

    Every driver fault comes out as ``AuditUnavailableError``: a failover or
    restart fails the calls in flight, and the next call reconnects, so the
    log recovers by itself once the server is back.
    """

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        unavailable: Callable[[psycopg.Error], AuditUnavailableError],
    ) -> None:
        self._connect = connect
        self._unavailable = unavailable
        self._lock = threading.Lock()
        self.conn: psycopg.Connection[Any] | None = None

    def run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        with self._lock:
            try:
                conn = self.conn
                # pgconn.status (BAD once closed): a raw libpq call (the enqueue path) leaves
                # psycopg's ``broken`` unset.
                if conn is None or conn.broken or conn.pgconn.status != _CONNECTED:
                    conn = self.conn = self._connect()
                return work(conn)
            except psycopg.Error as exc:
                raise self._unavailable(exc) from None

    def close(self) -> None:
        with self._lock:
            if self.conn is not None:
                self.conn.close()
