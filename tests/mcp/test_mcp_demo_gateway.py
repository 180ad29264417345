"""``mcp-attest demo --via-gateway`` end to end, as a user runs it: a real process, its table read back."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_attest._demo import _check_audit, _wait_healthy, run

EXPECTED = [
    "accepted",
    "nonce_replay",
    "args_commitment_mismatch",
    "server_mismatch",
    "tool_mismatch",
    "expired",
    "key_unavailable",
    "attestation_required",
]


def _rows(out: str) -> list[dict[str, str]]:
    """The table's rows as dicts, cut at the columns the dashed rule marks (requests contain spaces)."""
    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("---"))
    starts = [m.start() for m in re.finditer(r"-+", lines[rule])]
    spans = list(zip(starts, [*starts[1:], None], strict=True))
    headers = [lines[rule - 1][a:b].strip() for a, b in spans]
    rows = []
    for line in lines[rule + 1 :]:
        if not line.strip():
            break
        rows.append({h: line[a:b].strip() for h, (a, b) in zip(headers, spans, strict=True)})
    return rows


@pytest.mark.slow
def test_demo_via_gateway_every_row_as_expected() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mcp_attest.cli", "demo", "--via-gateway", "--no-color"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "starting gateway: mcp-attest gateway --config gateway.toml --http 127.0.0.1:" in out
    rows = _rows(out)
    assert [r["expected"] for r in rows] == EXPECTED
    for row in rows:
        assert row["verdict"] == row["expected"], row
        assert row["tool ran?"] == ("yes" if row["expected"] == "accepted" else "no"), row
        assert row["result"] == "ok", row
    assert "is unmodified: a plain MCPServer with no mcp-attest guard" in out
    # 9 calls: the replay row sends its envelope twice; every decision must be on the chain.
    assert "audit chain: intact, 9 records for 9 calls" in out
    assert out.rstrip().endswith("8/8 rows as expected")


def test_via_gateway_needs_http(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run(["--via-gateway", "--transport", "memory"])
    assert exc.value.code == 2
    assert "--via-gateway talks to the gateway over Streamable HTTP" in capsys.readouterr().err


def test_gateway_that_dies_is_reported_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    log.write_text("mcp-attest gateway: error: nothing to listen on\n")
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(2)"])
    proc.wait()
    with pytest.raises(RuntimeError, match="exited with code 2: mcp-attest gateway: error: nothing"):
        _wait_healthy("http://127.0.0.1:9", proc, log)


def test_missing_audit_log_fails_the_demo(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ok, line = _check_audit(tmp_path, 9, state / "audit.sqlite", state / "audit-checkpoint-key.jwks.json")
    assert not ok and line.startswith("audit chain: mcp-attest audit verify failed:")
