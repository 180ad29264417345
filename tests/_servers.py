"""Helpers for tests against real servers: PostgreSQL and Redis gating, a private Redis, worker processes."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from mcp_attest import Issuer, Keyring, Verdict, Verifier, generate_key
from mcp_attest.audit import AuditLog
from mcp_attest.stores import open_audit_log

PG_URL = os.environ.get("MCP_ATTEST_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MCP_ATTEST_TEST_REDIS", "redis://127.0.0.1:6379/0")
WORKERS = Path(__file__).with_name("_workers.py")
SRC = Path(__file__).parents[1] / "src"


def require_server(name: str, probe: Callable[[], object]) -> None:
    """Skip the test when ``probe`` fails, unless CI=true, where it fails instead.

    A CI run that silently skipped the real backends would prove nothing,
    so this is the one place that decides what a missing server means.
    """
    try:
        probe()
    except Exception as exc:
        message = f"{name} is not available: {type(exc).__name__}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true requires it)")
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ThrowawayRedis:
    """A private redis-server the test may stop and start at will."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_timeout=0.5).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@dataclass
class Worker:
    """One ``_workers.py`` process, started and gated by ``start_workers``."""

    process: subprocess.Popen[str]

    def lines(self) -> Iterator[str]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            yield line.strip()


def start_workers(argv_list: list[list[str]]) -> list[Worker]:
    """Start every worker, wait until all are ready, then release them at once."""
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    workers = [
        Worker(
            subprocess.Popen(
                [sys.executable, str(WORKERS), *argv],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
        for argv in argv_list
    ]
    for worker in workers:
        assert worker.process.stdout is not None
        ready = worker.process.stdout.readline().strip()
        assert ready == "ready", f"worker did not start: {ready!r}"
    for worker in workers:
        assert worker.process.stdin is not None
        worker.process.stdin.write("go\n")
        worker.process.stdin.flush()
    return workers


ISSUER = "https://issuer.example"
SERVER = "sha256:evidence-test-server"


@dataclass
class Decisions:
    """Real verdicts from the core verifier, with the envelopes behind them."""

    keyring: Keyring
    issuer: Issuer
    verifier: Verifier

    @classmethod
    def create(cls) -> Decisions:
        keyring = Keyring().with_key(ISSUER, generate_key("HS256", "k1"))
        return cls(keyring, Issuer(keyring, iss=ISSUER, sub="agent-7"), Verifier(keyring, SERVER))

    def accepted(self, tool: str = "search", **arguments: Any) -> tuple[Verdict, dict[str, Any]]:
        args = arguments or {"q": "weather"}
        env = self.issuer.sign(tool=tool, arguments=args, server_fingerprint=SERVER, intent="look it up")
        wire = env.to_wire()
        verdict = self.verifier.verify(wire, tool=tool, arguments=args)
        assert verdict.accepted, verdict
        return verdict, wire

    def rejected(self) -> tuple[Verdict, dict[str, Any]]:
        """A replay: a verified signature, rejected for nonce_replay."""
        _, wire = self.accepted()
        again = self.verifier.verify(wire, tool="search", arguments={"q": "weather"})
        assert again.reason is not None
        return again, wire

    def fill(self, log: AuditLog, count: int) -> None:
        """Append ``count`` decisions, every third one rejected."""
        for i in range(count):
            verdict, wire = self.rejected() if i % 3 == 2 else self.accepted(q=f"query {i}")
            log.append(verdict, tool="search", arguments={"q": f"query {i}"}, envelope=wire)


@dataclass
class Chain:
    """An audit log plus raw SQL access to its tables, whatever the backend."""

    url: str
    table: str
    run: Any  # (sql with ? placeholders, params) -> list of rows
    checkpoint_table: str = "audit_checkpoints"

    def open(self, **options: Any) -> AuditLog:
        return open_audit_log(self.url, **options)

    def sql(self, text: str, *params: Any) -> list[Any]:
        text = re.sub(r"\brecords\b", self.table, text)
        return list(self.run(re.sub(r"\bcheckpoints\b", self.checkpoint_table, text), params))

    def row(self, seq: int) -> tuple[Any, ...]:
        return tuple(self.sql("SELECT hash, body, ts, sub, tool, reason FROM records WHERE seq = ?", seq)[0])

    def put(self, seq: int, values: Sequence[Any]) -> None:
        self.sql(
            "UPDATE records SET hash = ?, body = ?, ts = ?, sub = ?, tool = ?, reason = ? WHERE seq = ?",
            *values,
            seq,
        )


def sqlite_chain(path: Path) -> Chain:
    def run(text: str, params: Sequence[Any]) -> list[Any]:
        with sqlite3.connect(path) as conn:
            return conn.execute(text, params).fetchall()

    return Chain(f"sqlite://{path}", "audit_records", run)


# The insider's editing tool for PostgreSQL. Since schema 5, audit_records is a
# view over each body's draft and its seal; an insider edits those tables (a
# draft with a negative id, as an inline append writes it, so no sequencer
# takes it for a queued one), and
# these triggers let the tests write "UPDATE records ..." on either backend. A
# row goes back as a draft and a seal when its body splits exactly around its
# chain members at its seq, and otherwise (garbage, a body moved to another
# seq) verbatim into the table of records sealed before schema 5.
_INSIDER_EDITS = """
CREATE OR REPLACE FUNCTION {s}.insider_edit() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    d_id bigint;
    p integer;
    head text;
    prev text;
    rec text;
    tail text;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM {s}.audit_seals WHERE seq = OLD.seq;
        DELETE FROM {s}.audit_records_v4 WHERE seq = OLD.seq;
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
    END IF;
    p := strpos(NEW.body, '"prevHash":"');
    head := left(NEW.body, p - 1);
    prev := substr(NEW.body, p + 12, 64);
    rec := substr(NEW.body, p + 92, 24);
    tail := substr(NEW.body, p + 124 + length(NEW.seq::text));
    IF p > 0 AND head || '"prevHash":"' || prev || '","recordedAt":"' || rec || '","seq":' || NEW.seq || tail
            = NEW.body THEN
        INSERT INTO {s}.audit_drafts (id, prefix, recorded_at, suffix, ts, sub, tool, reason)
            VALUES (-nextval('{s}.audit_inline_id_seq'), head, rec, tail, NEW.ts, NEW.sub, NEW.tool,
            NEW.reason)
            RETURNING id INTO d_id;
        INSERT INTO {s}.audit_seals VALUES (NEW.seq, d_id, prev, NEW.hash);
    ELSE
        INSERT INTO {s}.audit_records_v4 (seq, hash, body, ts, sub, tool, reason)
            VALUES (NEW.seq, NEW.hash, NEW.body, NEW.ts, NEW.sub, NEW.tool, NEW.reason);
    END IF;
    RETURN NEW;
END
$fn$;
CREATE OR REPLACE TRIGGER insider_edit INSTEAD OF INSERT OR UPDATE OR DELETE ON {s}.audit_records
    FOR EACH ROW EXECUTE FUNCTION {s}.insider_edit();
"""


def pg_chain(pg_url: str, schema: str) -> Chain:
    def run(text: str, params: Sequence[Any]) -> list[Any]:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            if re.match(r"\s*(UPDATE|DELETE|INSERT)\b.*\baudit_records\b", text, re.S):
                conn.execute(_INSIDER_EDITS.replace("{s}", f'"{schema}"'))  # type: ignore[arg-type]
            cur = conn.execute(text.replace("?", "%s"), params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    return Chain(
        f"{pg_url}?schema={schema}", f'"{schema}".audit_records', run, f'"{schema}".audit_checkpoints'
    )


INSIDER_CALLS = 12


def insider_calls(
    ring: Keyring, fingerprint: str
) -> Iterator[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """The calls behind every insider-test log, in order: four kinds, three times over.

    Seq 4k+1 accepts ``canary``, 4k+2 accepts ``search``, 4k+3 replays the
    envelope before it (``nonce_replay``), 4k+4 carries no attestation
    (``attestation_required``): junk an insider would like to turn into an
    accepted call.
    """
    issuer = Issuer(ring, iss=ISSUER, sub="agent-7")
    for k in range(INSIDER_CALLS // 4):
        wire: dict[str, Any] = {}
        for tool in ("canary", "search"):
            args = {"n": k, "tool": tool}
            env = issuer.sign(
                tool=tool, arguments=args, server_fingerprint=fingerprint, intent="insider test"
            )
            wire = env.to_wire()
            yield tool, args, wire
        yield "search", {"n": k, "tool": "search"}, wire
        yield "wire_money", {"to": "attacker", "amount": 10**6}, None
