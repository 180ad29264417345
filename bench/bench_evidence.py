"""Evidence speed figures: audit append latency, Redis claim latency, the PG head-lock cost.

Run: ``.venv/bin/python bench/bench_evidence.py [--quick] [--markdown]``.
Needs the local PostgreSQL and Redis (``MCP_ATTEST_BENCH_PG``,
``MCP_ATTEST_BENCH_REDIS`` override the URLs); every table and key it
creates is removed at the end.

1. ``AuditLog.append`` p50/p99 for one realistic decision (an accepted
   HS256 verdict, its envelope stored, arguments digested) on SQLite and
   PostgreSQL, beside a bare INSERT of a row of the same size on the same
   database (the floor the chain is paid on top of).
2. ``RedisReplayStore.claim`` and ``is_claimed`` p50/p99, beside a bare
   ``PING`` (one round trip).
3. Scale past one lock: records/s for 8 writer processes on one chain
   calling ``submit`` (queued, sealed by the writers' sequencers; each
   writer's time ends when ``close`` has sealed its last record), against
   the same 8 processes doing plain INSERTs of precomputed record bytes
   (psycopg), and the same 8 processes building each record and INSERTing
   it into a plain table through the same libpq call (no chain), and
   ``append`` (sealed inline under the lock), alternated over rounds in
   the same run; and one process with 64 threads calling ``submit`` at
   once, with the mean number of records that shared each INSERT. The
   chain is verified afterwards (every record, link and seq).
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import redis

from mcp_attest import Issuer, Keyring, Verifier, generate_key
from mcp_attest.audit import AuditLog, AuditRecord
from mcp_attest.audit.record import GENESIS_HASH, RecordDraft
from mcp_attest.replay.redis import RedisReplayStore
from mcp_attest.stores import open_audit_log

PG = os.environ.get("MCP_ATTEST_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("MCP_ATTEST_BENCH_REDIS", "redis://127.0.0.1:6379/0")
SERVER = "sha256:" + "5e" * 32
ARGS: dict[str, Any] = {
    "path": "/srv/reports/2026/q3/quarterly-retention-report-final.txt",
    "reason": "archive obsolete report per the Q4 retention policy, ticket OPS-4711",
    "recursive": False,
    "maxFiles": 25,
    "tags": ["retention", "q4", "archive", "finance"],
}


def _decisions(count: int) -> list[tuple[Any, dict[str, Any]]]:
    """``count`` distinct accepted decisions (each envelope accepted once, as in real traffic)."""
    ring = Keyring().with_key("https://issuer.example", generate_key("HS256", "k1"))
    issuer = Issuer(ring, iss="https://issuer.example", sub="agent-7")
    verifier = Verifier(ring, SERVER)
    found = []
    for _ in range(count):
        wire = issuer.sign(
            tool="archive_file", arguments=ARGS, server_fingerprint=SERVER, intent="archive"
        ).to_wire()
        verdict = verifier.verify(wire, tool="archive_file", arguments=ARGS)
        assert verdict.accepted
        found.append((verdict, wire))
    return found


def _percentiles(fn: Callable[[], object], n: int, warmup: int = 200, rounds: int = 3) -> tuple[float, float]:
    """(p50, p99) in microseconds: the least noisy of ``rounds`` rounds of ``n`` calls.

    The machines this runs on are shared; other processes' bursts only ever
    add time, so the best round is the closest to the code's own cost.
    """
    for _ in range(warmup):
        fn()
    best = (float("inf"), float("inf"))
    for _ in range(rounds):
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        samples.sort()
        best = min(best, (samples[n // 2] * 1e6, samples[min(n - 1, int(n * 0.99))] * 1e6))
    return best


def _append_fn(log: AuditLog, distinct: int = 1) -> Callable[[], AuditRecord]:
    decisions = itertools.cycle(_decisions(distinct))

    def append() -> AuditRecord:
        verdict, wire = next(decisions)
        return log.append(verdict, tool="archive_file", arguments=ARGS, envelope=wire)

    return append


def _submit_fn(log: AuditLog, distinct: int = 1) -> Callable[[], None]:
    """What the guard and the gateway call: durable on return, sealed by a sequencer."""
    decisions = itertools.cycle(_decisions(distinct))

    def submit() -> None:
        verdict, wire = next(decisions)
        log.submit(verdict, tool="archive_file", arguments=ARGS, envelope=wire)

    return submit


def bench_sqlite(n: int, tmp: str) -> dict[str, tuple[float, float]]:
    log = open_audit_log(os.path.join(tmp, "audit.db"))
    append = _append_fn(log)
    text = append().to_json().decode()  # a bare row as large as a record
    conn = sqlite3.connect(os.path.join(tmp, "bare.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE bare (seq INTEGER PRIMARY KEY, body TEXT)")
    result = {
        "append": _percentiles(append, n),
        "bare insert": _percentiles(lambda: conn.execute("INSERT INTO bare (body) VALUES (?)", (text,)), n),
    }
    log.close()
    return result


def bench_postgres(n: int, schema: str) -> dict[str, tuple[float, float]]:
    log = open_audit_log(f"{PG}?schema={schema}")
    append = _append_fn(log)
    text = append().to_json().decode()
    conn = psycopg.connect(PG, autocommit=True)
    conn.execute(f'CREATE TABLE "{schema}".bare (seq bigserial PRIMARY KEY, body text)')
    insert = f'INSERT INTO "{schema}".bare (body) VALUES (%s)'
    result = {
        "append": _percentiles(append, n),
        "bare insert": _percentiles(lambda: conn.execute(insert, (text,)), n),
    }
    conn.close()
    log.close()
    return result


def bench_redis(n: int, prefix: str) -> dict[str, tuple[float, float]]:
    store = RedisReplayStore(REDIS, prefix)
    client = redis.Redis.from_url(REDIS)
    keys = iter([os.urandom(32) for _ in range(3 * n + 400)])
    now = time.time()
    result = {
        "claim": _percentiles(lambda: store.claim(next(keys), now + 60, now), n),
        "is_claimed": _percentiles(lambda: store.is_claimed(b"\x01" * 32, now), n),
        "bare PING": _percentiles(client.ping, n),
    }
    store.close()
    client.close()
    return result


def _record_text(schema: str) -> str:
    """The JCS text of one realistic record: what a plain INSERT of "the same row" writes."""
    with AuditLog(_scratch_backend(schema)) as log:
        return _append_fn(log)().to_json().decode()


def _scratch_backend(schema: str) -> Any:
    from mcp_attest.audit.postgres import PostgresAuditBackend  # noqa: PLC0415

    return PostgresAuditBackend(PG, schema=schema + "_scratch")


def _writer(kind: str, schema: str, count: int, text: str, barrier: Any, out: Any) -> None:
    """One writer process; its time ends when its last record is sealed (``close`` seals the queue)."""
    append: Callable[[], object]
    finish: Callable[[], object]
    if kind in ("bare", "built"):
        conn = psycopg.connect(PG, autocommit=True)
        stmt = f'INSERT INTO "{schema}".bare_mw (body) VALUES (%s)'
        finish = conn.close
        if kind == "bare":
            append = lambda: conn.execute(stmt, (text,))  # noqa: E731
        else:
            append = _built_insert_fn(conn, stmt, count)
    else:
        log = open_audit_log(f"{PG}?schema={schema}", checkpoint_interval=0)
        append = (_submit_fn if kind == "submit" else _append_fn)(log, count)
        finish = log.close
    barrier.wait()
    for _ in range(count):
        append()
    finish()
    out.put(time.perf_counter())


def _built_insert_fn(conn: Any, stmt: str, count: int) -> Callable[[], object]:
    """The audit log minus its chain: build each record from its decision, INSERT it into a plain table.

    Through the same libpq prepared-statement call the queue's writer uses,
    so the difference to ``submit`` is the chain's cost alone (queue,
    sequencer, seal), not the driver's.
    """
    decisions = iter(_decisions(count))
    conn.pgconn.prepare(b"built", stmt.replace("%s", "$1::text").encode())

    def insert() -> object:
        verdict, wire = next(decisions)
        draft = RecordDraft.build(
            verdict, chain_id="0" * 32, tool="archive_file", arguments=ARGS, envelope=wire
        )
        body = draft.seal(1, GENESIS_HASH, time.time()).body
        result = conn.pgconn.exec_prepared(b"built", [body], [1])
        assert result.status == psycopg.pq.ExecStatus.COMMAND_OK, result.error_message
        return result

    return insert


def _throughput(kind: str, schema: str, writers: int, count: int, text: str) -> float:
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(writers + 1), ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(kind, schema, count, text, barrier, out)) for _ in range(writers)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    end = max(float(out.get()) for _ in procs)
    for p in procs:
        p.join()
    return writers * count / (end - start)


def _threads(schema: str, threads: int, count: int) -> tuple[float, float]:
    """(appends/s, appends per commit) for one process with ``threads`` concurrent appenders."""
    log = open_audit_log(f"{PG}?schema={schema}", checkpoint_interval=0)
    append = _submit_fn(log, threads * count)
    go = threading.Barrier(threads + 1)

    def work() -> None:
        go.wait()
        for _ in range(count):
            append()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    flushes = log.backend._queue.flushes
    go.wait()
    start = time.perf_counter()
    for t in pool:
        t.join()
    shared = threads * count / (log.backend._queue.flushes - flushes)
    log.close()
    elapsed = time.perf_counter() - start
    return threads * count / elapsed, shared


def bench_scale(count: int, base: str, rounds: int) -> dict[str, Any]:
    schema = base + "_scale"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".bare_mw (seq bigserial PRIMARY KEY, body text)')
    text = _record_text(schema)
    rates: dict[str, list[float]] = {kind: [] for kind in _KINDS}
    for _ in range(rounds):
        for kind in _KINDS:  # alternated, so a noisy moment hits every kind
            rates[kind].append(_throughput(kind, schema, 8, count, text))
    rate, shared = _threads(schema, 64, max(count // 8, 20))
    with open_audit_log(f"{PG}?schema={schema}", create=False) as log:
        report = log.verify()
    return {
        "rates": rates,
        "threads": rate,
        "shared": shared,
        "verify": f"{'ok' if report.accepted else 'BROKEN'}, {report.records} records",
    }


_KINDS = {
    "submit": "chain, 8 processes, submit (queued; what the guard and gateway call)",
    "bare": "plain INSERT of the record's bytes, 8 processes (baseline)",
    "built": "no chain: build each record, plain INSERT, 8 processes",
    "append": "chain, 8 processes, inline append (sealed before return)",
}


def _print_scale(scale: dict[str, Any], markdown: bool) -> None:
    rates = scale["rates"]
    best = {kind: max(found) for kind, found in rates.items()}
    if markdown:
        print("\n| PostgreSQL writers | appends/s (best round) | vs plain INSERT | vs no chain |")
        print("|---|---|---|---|")
    rows = [(label, best[kind]) for kind, label in _KINDS.items()]
    rows.append(("chain, 1 process x 64 threads, submit", scale["threads"]))
    for label, rate in rows:
        vs_bare, vs_built = rate / best["bare"], rate / best["built"]
        if markdown:
            print(f"| {label} | {rate:,.0f} | x{vs_bare:.2f} | x{vs_built:.2f} |")
        else:
            print(f"{label:70} {rate:7.0f}/s  x{vs_bare:.2f} of plain INSERT, x{vs_built:.2f} of no chain")
    rounds = zip(rates["submit"], rates["bare"], rates["built"], strict=True)
    pairs = ", ".join(f"{c:.0f}/{b:.0f}/{n:.0f}" for c, b, n in rounds)
    per_round = {
        base: statistics.median(c / b for c, b in zip(rates["submit"], rates[base], strict=True))
        for base in ("bare", "built")
    }
    print(f"\nrounds submit/plain/no-chain: {pairs}; 64 threads: {scale['shared']:.1f} per commit")
    print(
        f"median of the per-round ratios, submit vs plain INSERT: x{per_round['bare']:.2f}, "
        f"vs no chain: x{per_round['built']:.2f}"
    )
    print(f"verify after the run: {scale['verify']}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--markdown", action="store_true", help="print the docs/performance.md table")
    parser.add_argument("--scale-only", action="store_true", help="only the writer-scaling section")
    parser.add_argument("--rounds", type=int, help="writer-scaling rounds (default 3, 1 with --quick)")
    parser.add_argument("--records", type=int, help="records per writer (default 1000; 200 with --quick)")
    args = parser.parse_args()
    n, per_writer, rounds = (1000, 200, 1) if args.quick else (5000, 1000, 3)
    rounds = args.rounds or rounds
    per_writer = args.records or per_writer
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    prefix = f"mcp-attest-bench:{uuid.uuid4().hex[:10]}:"
    try:
        if args.scale_only:
            scale = bench_scale(per_writer, schema, rounds)
            _print_scale(scale, args.markdown)
            return
        with tempfile.TemporaryDirectory() as tmp:
            sqlite_r = bench_sqlite(n, tmp)
        pg_r = bench_postgres(n, schema)
        redis_r = bench_redis(n, prefix)
        scale = bench_scale(per_writer, schema, rounds)
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            for suffix in ("_scale", "_scale_scratch"):  # bench_scale's chain and its record-text scratch
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}{suffix}" CASCADE')
        client = redis.Redis.from_url(REDIS)
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
    rows = [
        ("SQLite", "AuditLog.append", sqlite_r["append"], sqlite_r["bare insert"], 100),
        ("PostgreSQL", "AuditLog.append", pg_r["append"], pg_r["bare insert"], 1000),
        ("Redis", "claim (SET NX PXAT)", redis_r["claim"], redis_r["bare PING"], 300),
        ("Redis", "is_claimed (EXISTS)", redis_r["is_claimed"], redis_r["bare PING"], None),
    ]
    print(
        f"# Python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; n={n}"
    )
    if args.markdown:
        print("| store | operation | p50 | p99 | baseline p50 (bare op) | target p50 |")
        print("|---|---|---|---|---|---|")
    for store, op, (p50, p99), (b50, _), target in rows:
        goal = "" if target is None else f"<= {target} us ({'met' if p50 <= target else 'NOT met'})"
        if args.markdown:
            print(f"| {store} | {op} | {p50:.0f} us | {p99:.0f} us | {b50:.0f} us | {goal} |")
        else:
            print(f"{store:10} {op:22} p50 {p50:7.0f} us  p99 {p99:7.0f} us  bare p50 {b50:6.0f} us  {goal}")
    _print_scale(scale, args.markdown)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
