"""The insider: someone with write access to the audit database, and nothing else.

Logs are written the way deployments write them, with default settings:
by the gateway (a real ``mcp-attest gateway --stdio`` process in front of a
real stdio upstream) and by the guard (``from_keyring(audit=URL)`` in a
process that then exits cleanly), each on SQLite and on PostgreSQL. Every
attack then rewrites the database directly, as SQL access allows, and
``mcp-attest audit verify`` with the issuer's keys and the checkpoint
key's public JWKS must exit 1 naming the record. The log is restored
between attacks, so each starts from the same honest history.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from _servers import (
    INSIDER_CALLS,
    ISSUER,
    PG_URL,
    SRC,
    WORKERS,
    Chain,
    insider_calls,
    pg_chain,
    require_server,
    sqlite_chain,
)
from mcp_attest import Keyring, canonicalize, generate_key
from mcp_attest.audit.checkpoint import Checkpoint, CheckpointSigner
from mcp_attest.audit.cli import main
from mcp_attest.audit.merkle import MerkleTree, leaf_hash
from mcp_attest.audit.record import record_hash

FINGERPRINT = "sha256:insider-test-server"
UPSTREAM = Path(__file__).with_name("_stdio_upstream.py")


@dataclass
class WrittenLog:
    """A log as a writer left it, what an auditor holds, and a way back to it."""

    chain: Chain
    keys: Path  # the issuer's verify keyring
    checkpoint_jwks: Path
    rows: list[Any]
    checkpoints: list[Any]

    def verify(self, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
        argv = [
            "verify",
            self.chain.url,
            "--keys",
            str(self.keys),
            "--checkpoint-keys",
            str(self.checkpoint_jwks),
        ]
        code = main([*argv, *extra])
        out, err = capsys.readouterr()
        return code, out + err

    def restore(self) -> None:
        self.chain.sql("DELETE FROM records")
        for row in self.rows:
            self.chain.sql(
                "INSERT INTO records (seq, hash, ts, sub, tool, reason, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                *row,
            )
        self.chain.sql("DELETE FROM checkpoints")
        for row in self.checkpoints:
            self.chain.sql("INSERT INTO checkpoints (seq, body) VALUES (?, ?)", *row)


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def _rpc(proc: subprocess.Popen[bytes], message: dict[str, Any]) -> dict[str, Any] | None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(orjson.dumps(message) + b"\n")
    proc.stdin.flush()
    if "id" not in message:
        return None
    reply: dict[str, Any] = orjson.loads(proc.stdout.readline())
    return reply


def _through_gateway(state: Path, keys: Path, ring: Keyring, audit: str | None) -> None:
    """Real calls through a real gateway process; closing stdin is its clean shutdown."""
    argv = [sys.executable, "-m", "mcp_attest.cli", "gateway", "--stdio", "--keys", str(keys)]
    argv += [
        "--upstream-cmd",
        f"{sys.executable} {UPSTREAM}",
        "--fingerprint",
        FINGERPRINT,
        "--state-dir",
        str(state),
    ]
    argv += [] if audit is None else ["--audit", audit]
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()
    )
    init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    assert "result" in (_rpc(proc, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init}) or {})
    _rpc(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    for i, (tool, args, envelope) in enumerate(insider_calls(ring, FINGERPRINT), 1):
        params: dict[str, Any] = {"name": tool, "arguments": args}
        if envelope is not None:
            params["_meta"] = {"attestation": envelope}
        assert _rpc(proc, {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": params})
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert b"audit checkpoints signed by key " in err  # the thumbprint, printed at start-up


def _through_guard(url: str, keys: Path, xdg: Path) -> None:
    argv = [sys.executable, str(WORKERS), "guard", url, str(keys), FINGERPRINT]
    done = subprocess.run(
        argv,
        check=False,
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(XDG_STATE_HOME=str(xdg)),
    )
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr


WRITERS = [("gateway", "sqlite"), ("gateway", "postgres"), ("guard", "sqlite"), ("guard", "postgres")]


@pytest.fixture(scope="module", params=WRITERS, ids=["-".join(w) for w in WRITERS])
def written(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WrittenLog]:
    writer, backend = request.param
    root = tmp_path_factory.mktemp(f"{writer}-{backend}")
    ring = Keyring().with_key(ISSUER, generate_key("HS256", "k1"))
    keys = root / "keys.json"
    ring.save(keys, private=True)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    if backend == "postgres":
        require_server("PostgreSQL", lambda: psycopg.connect(PG_URL, connect_timeout=3).close())
        chain = pg_chain(PG_URL, schema)
    else:
        chain = sqlite_chain(root / ("state/audit.sqlite" if writer == "gateway" else "audit.db"))
    url = None if writer == "gateway" and backend == "sqlite" else chain.url
    if writer == "gateway":
        _through_gateway(root / "state", keys, ring, url)
        jwks = root / "state" / "audit-checkpoint-key.jwks.json"
        assert oct((root / "state" / "audit-checkpoint-key.json").stat().st_mode & 0o777) == "0o600"
    else:
        _through_guard(chain.url, keys, root / "xdg")
        found = list(root.glob("xdg/mcp-attest/*.jwks.json")) + list(
            root.glob("audit.db.checkpoint-key.jwks.json")
        )
        assert len(found) == 1, found
        jwks = found[0]
    rows = chain.sql("SELECT seq, hash, ts, sub, tool, reason, body FROM records ORDER BY seq")
    checkpoints = chain.sql("SELECT seq, body FROM checkpoints ORDER BY seq")
    yield WrittenLog(chain, keys, jwks, rows, checkpoints)
    if backend == "postgres":
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def log(written: WrittenLog) -> Iterator[WrittenLog]:
    yield written
    written.restore()


def _body(log: WrittenLog, seq: int) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(log.chain.sql("SELECT body FROM records WHERE seq = ?", seq)[0][0])
    return body


def _reseal(log: WrittenLog, start: int, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit record ``start`` and recompute every hash and link after it, as an insider's script would."""
    prev = log.chain.sql("SELECT hash FROM records WHERE seq = ?", start - 1)
    prev_hash = prev[0][0] if prev else "0" * 64
    for seq in range(start, INSIDER_CALLS + 1):
        body = _body(log, seq)
        if seq == start:
            edit(body)
        body["prevHash"] = prev_hash
        data = canonicalize(body)
        prev_hash = record_hash(data)
        facts = body["facts"]
        log.chain.sql(
            "UPDATE records SET hash = ?, body = ?, sub = ?, tool = ?, reason = ? WHERE seq = ?",
            *(prev_hash, data.decode(), facts["sub"], body["tool"], facts["reason"], seq),
        )


def test_insider_baseline_the_honest_log_verifies(
    log: WrittenLog, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = log.verify(capsys, "--json")
    report = json.loads(out)
    assert code == 0 and report["records"] == INSIDER_CALLS and report["checkpoints"] >= 1, out
    assert (
        report["checkpointSignaturesChecked"] and report["envelopesVerified"] == 9
    )  # 6 accepted + 3 replays
    assert [body["seq"] for body in map(orjson.loads, (r[1] for r in log.checkpoints))][-1] == INSIDER_CALLS


def test_insider_edit_a_record(log: WrittenLog, capsys: pytest.CaptureFixture[str]) -> None:
    body = log.chain.sql("SELECT body FROM records WHERE seq = 5")[0][0]
    log.chain.sql(
        "UPDATE records SET body = ? WHERE seq = 5", body.replace('"tool":"canary"', '"tool":"delete_all"')
    )
    code, out = log.verify(capsys)
    assert code == 1 and "record 5: hash does not match the record's content (the record was edited)" in out


def test_insider_delete_a_middle_record(log: WrittenLog, capsys: pytest.CaptureFixture[str]) -> None:
    log.chain.sql("DELETE FROM records WHERE seq = 6")
    code, out = log.verify(capsys)
    assert code == 1 and "record 6: record 6 is missing" in out


def test_insider_delete_the_tail(log: WrittenLog, capsys: pytest.CaptureFixture[str]) -> None:
    log.chain.sql("DELETE FROM records WHERE seq >= 11")
    code, out = log.verify(capsys)
    assert code == 1 and "record 11: records from seq 11 on are missing" in out and "truncated" in out


def test_insider_reorder_two_records(log: WrittenLog, capsys: pytest.CaptureFixture[str]) -> None:
    log.chain.sql("UPDATE records SET seq = -5 WHERE seq = 5")
    log.chain.sql("UPDATE records SET seq = 5 WHERE seq = 6")
    log.chain.sql("UPDATE records SET seq = 6 WHERE seq = -5")
    code, out = log.verify(capsys)
    assert code == 1 and "record 5: record says seq 6 but is stored as seq 5" in out


def test_insider_reseal_the_chain_after_an_edit(log: WrittenLog, capsys: pytest.CaptureFixture[str]) -> None:
    _reseal(log, 5, lambda body: body.update(tool="delete_all"))  # the accepted canary, rewritten
    code, out = log.verify(capsys)
    assert code == 1 and "record 5: tool 'delete_all' is not the envelope's entry 0 ('canary')" in out


def test_insider_reseal_after_an_edit_no_envelope_can_contradict(
    log: WrittenLog, capsys: pytest.CaptureFixture[str]
) -> None:
    _reseal(log, 8, lambda body: body["facts"].update(detail="attestation.present"))  # a rejection's detail
    code, out = log.verify(capsys)
    assert code == 1 and "record 12: records 1..12 differ from the signed tree head at seq 12" in out


def test_insider_forge_an_accepted_record(log: WrittenLog, capsys: pytest.CaptureFixture[str]) -> None:
    def accept(body: dict[str, Any]) -> None:
        body["facts"].update(accepted=True, reason=None, detail=None, iss=ISSUER, sub="user:ceo")

    _reseal(log, 4, accept)  # the unsigned wire_money junk, now "accepted, sub user:ceo"
    code, out = log.verify(capsys)
    assert code == 1 and "record 4: an accepted decision holds no envelope to re-verify" in out


def test_insider_forge_an_accepted_record_from_a_replay(
    log: WrittenLog, capsys: pytest.CaptureFixture[str]
) -> None:
    def accept(body: dict[str, Any]) -> None:  # every fact a real acceptance would carry
        body["facts"].update(accepted=True, reason=None, detail=None, toolCallIndex=0, argsBinding="identity")

    _reseal(log, 3, accept)
    code, out = log.verify(capsys)
    assert code == 1 and "record 3: plan entry" in out and "already accepted at record 2" in out


def test_insider_swap_a_checkpoint(log: WrittenLog, capsys: pytest.CaptureFixture[str]) -> None:
    """Re-seal, then sign a fresh tree head under the writer's kid with the insider's own key."""
    _reseal(log, 8, lambda body: body["facts"].update(detail="attestation.present"))
    real = Checkpoint.parse(log.checkpoints[-1][1].encode())
    own = generate_key("ES256", str(real.body["kid"]))
    bodies = log.chain.sql("SELECT body FROM records ORDER BY seq")
    forged_root = MerkleTree(leaf_hash(b.encode()) for (b,) in bodies).root().hex()
    forged = CheckpointSigner(own, str(real.body["iss"])).sign(
        chain_id=real.chain_id, seq=real.seq, head_hash=_row_hash(log, real.seq), root=forged_root, now=0
    )
    log.chain.sql("UPDATE checkpoints SET body = ? WHERE seq = ?", forged.decode(), real.seq)
    code, out = log.verify(capsys)
    assert code == 1 and "record 12: checkpoint signature does not verify" in out


def _row_hash(log: WrittenLog, seq: int) -> str:
    return str(log.chain.sql("SELECT hash FROM records WHERE seq = ?", seq)[0][0])
