"""``mcp-attest audit verify|export|tail``: output, exit codes 0/1/2, one-line errors."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from _servers import Decisions
from mcp_attest import Keyring, generate_key
from mcp_attest.audit import CheckpointSigner
from mcp_attest.audit.cli import main
from mcp_attest.stores import open_audit_log


@pytest.fixture
def logged(tmp_path: Path) -> dict[str, Any]:
    """A closed SQLite log of 9 decisions, with its keyrings written to files."""
    decisions = Decisions.create()
    cp_key = generate_key("ES256", "cp1")
    path = tmp_path / "audit.db"
    with open_audit_log(
        str(path), checkpoint_signer=CheckpointSigner(cp_key, "audit"), checkpoint_every=5
    ) as log:
        decisions.fill(log, 9)
    decisions.keyring.save(tmp_path / "keys.json", private=False)
    Keyring().with_key("audit", cp_key).save(tmp_path / "cp.json", private=False)
    return {
        "url": f"sqlite://{path}",
        "path": path,
        "keys": tmp_path / "keys.json",
        "cp": tmp_path / "cp.json",
    }


def _run(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_audit_verify_ok_text_and_json(
    logged: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(
        capsys, "verify", logged["url"], "--keys", logged["keys"], "--checkpoint-keys", logged["cp"]
    )
    assert code == 0 and err == ""
    assert out.startswith(f"ok: {logged['url']}: 9 records, head seq 9")
    assert "checkpoints: 2 (signatures checked)" in out and "envelopes re-verified: 9" in out
    code, out, _ = _run(capsys, "verify", str(logged["path"]), "--json", "--unsigned")
    report = json.loads(out)
    assert code == 0 and report["accepted"] and report["records"] == 9 and report["broken"] is None
    assert report["checkpointSignaturesChecked"] is False and report["warnings"]


def test_cli_audit_verify_broken_chain_exits_1(
    logged: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    with sqlite3.connect(logged["path"]) as conn:
        conn.execute("DELETE FROM audit_records WHERE seq = 4")
    code, out, _ = _run(capsys, "verify", logged["url"], "--checkpoint-keys", logged["cp"])
    assert code == 1
    assert out.startswith(f"BROKEN: {logged['url']}: record 4: record 4 is missing")
    assert "records 1..3 verified" in out
    code, out, _ = _run(capsys, "verify", logged["url"], "--json", "--unsigned")
    assert code == 1 and json.loads(out)["broken"] == {
        "seq": 4,
        "problem": json.loads(out)["broken"]["problem"],
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: command"),
        (["verify"], "the following arguments are required: url"),
        (["frobnicate", "x"], "invalid choice"),
        (["export", "URL", "--since", "yesterday"], "not a time"),
        (["verify", "/no/such/audit.db", "--unsigned"], "no audit log at /no/such/audit.db"),
        (["verify", "mongodb://x", "--unsigned"], "unsupported audit log"),
        (["verify", "LOG", "--unsigned", "--keys", "/no/such/keys.json"], "cannot read keyring"),
        (["verify", "LOG"], "give --checkpoint-keys"),
        (["verify", "LOG", "--checkpoint-keys", "/no/such/cp.json"], "cannot read checkpoint keys"),
        (["tail", "LOG", "-n", "-1"], "--lines must be 0..1000000"),
        # regressions: past SQLite's integer range and past time_t were tracebacks; NaN matched nothing
        (["tail", "LOG", "-n", "99999999999999999999"], "--lines must be 0..1000000"),
        (["tail", "LOG", "--follow", "--interval", "1e308"], "--interval must be more than 0"),
        (["tail", "LOG", "--follow", "--interval", "nan"], "--interval must be more than 0"),
        (["export", "LOG", "--since", "nan"], "not a time"),
        (["export", "LOG", "--until", "inf"], "not a time"),
    ],
)
def test_cli_audit_usage_and_config_errors_exit_2_with_one_line(
    logged: dict[str, Any], capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    argv = [logged["url"] if a == "LOG" else a for a in argv]
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("mcp-attest audit: error: ") and message in err
    assert "Traceback" not in err


def test_cli_audit_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--help")
    assert code == 0 and "verify" in out


def test_cli_audit_unreachable_postgres_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "verify", "postgresql://postgres@127.0.0.1:1/test")
    assert code == 2 and err.count("\n") == 1


def test_cli_audit_export_jsonl_with_filters(
    logged: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "export", logged["url"])
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["seq"] for r in lines] == list(range(1, 10))
    assert all(len(r["hash"]) == 64 for r in lines)
    code, out, _ = _run(
        capsys, "export", logged["url"], "--reason", "nonce_replay", "--tool", "search", "--sub", "agent-7"
    )
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [3, 6, 9]
    code, out, _ = _run(capsys, "export", logged["url"], "--until", "2000-01-01T00:00:00Z")
    assert code == 0 and out == ""
    code, out, _ = _run(
        capsys, "export", logged["url"], "--since", "2000-01-01T00:00:00", "--until", str(time.time() + 60)
    )
    assert len(out.splitlines()) == 9


def test_cli_audit_tail_and_follow(logged: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "tail", logged["url"], "-n", "2")
    assert code == 0 and [json.loads(line)["seq"] for line in out.splitlines()] == [8, 9]
    writer = open_audit_log(logged["url"])
    decisions = Decisions.create()
    done = threading.Event()

    def append_later() -> None:
        time.sleep(0.1)
        decisions.fill(writer, 2)
        time.sleep(0.1)
        done.set()

    thread = threading.Thread(target=append_later)
    thread.start()
    code = main(["tail", logged["url"], "-n", "0", "--follow", "--interval", "0.02"], stop=done.is_set)
    thread.join()
    writer.close()
    out, _ = capsys.readouterr()
    assert code == 0 and [json.loads(line)["seq"] for line in out.splitlines()] == [10, 11]


@pytest.mark.parametrize("depth", [300, 2000], ids=["past-jcs-depth", "past-parser-depth"])
def test_cli_audit_export_and_tail_of_an_unreadable_record_exit_1_naming_it(
    logged: dict[str, Any], capsys: pytest.CaptureFixture[str], depth: int
) -> None:
    """Regression: an insider's deeply nested body made export and tail print a traceback.

    300 levels parse but cannot be written as JCS; 2000 do not parse at
    all. CLI.md: a broken chain is exit 1, never a Python traceback.
    """
    with sqlite3.connect(logged["path"]) as conn:
        body = conn.execute("SELECT body FROM audit_records WHERE seq = 4").fetchone()[0]
        nested = body[:-1] + ',"zz":' + "[" * depth + "]" * depth + "}"
        conn.execute("UPDATE audit_records SET body = ? WHERE seq = 4", (nested,))
    for argv in (("export", logged["url"]), ("tail", logged["url"], "--lines", "9")):
        code, out, err = _run(capsys, *argv)
        assert code == 1, argv
        assert err.startswith("mcp-attest audit: broken: record 4: body ") and "Traceback" not in err
        assert [json.loads(line)["seq"] for line in out.splitlines()] in ([1, 2, 3], [])  # the readable head
    code, out, _ = _run(capsys, "verify", logged["url"], "--unsigned")
    assert code == 1 and out.startswith(f"BROKEN: {logged['url']}: record 4: hash does not match")
