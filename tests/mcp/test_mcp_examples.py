"""The examples and the demo run end to end, as a user would run them."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from _servers import free_port
from mcp_attest import Keyring, generate_key
from mcp_attest._demo import Row, _table, run

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture
def example_keys(tmp_path: Path) -> tuple[Path, Path]:
    ring = Keyring().with_key("agent://example", generate_key("ES256", "k1"))
    signing, verify = tmp_path / "signing.json", tmp_path / "verify.json"
    ring.save(signing, private=True)
    ring.save(verify, private=False)
    return signing, verify


def _run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_example_stdio(example_keys: tuple[Path, Path]) -> None:
    signing, verify = example_keys
    out = _run(str(EXAMPLES / "stdio_client.py"), str(signing), str(verify))
    assert out.startswith("hello world (attestation ") and len(out.split()[-1]) == 65


def _start_example_server(verify: Path) -> tuple[subprocess.Popen[str], int]:
    """http_server.py on a free port, once uvicorn says it listens there.

    Regression: a connect probe passed when another test's server took the
    port between the probe and the bind, and the client then talked to that
    server (key_unavailable). Uvicorn prints "running on" only after its own
    bind succeeded; a server that exits instead is retried on a new port.
    """
    for _ in range(3):
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "http_server.py"), str(verify), str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert server.stderr is not None
        for line in server.stderr:
            if f"running on http://127.0.0.1:{port}" in line:
                return server, port
        server.wait(timeout=10)
    raise AssertionError("example server did not start")


def test_example_http(example_keys: tuple[Path, Path]) -> None:
    signing, verify = example_keys
    server, port = _start_example_server(verify)
    try:
        out = _run(str(EXAMPLES / "http_client.py"), str(signing), f"http://127.0.0.1:{port}/mcp")
    finally:
        server.terminate()
        server.communicate(timeout=10)
    first, second = out.splitlines()
    assert first.startswith("hello world (attestation ")
    assert second.startswith("without attestation: (<Reason.ATTESTATION_REQUIRED")


@pytest.mark.parametrize("transport", ["http", "memory"])
def test_demo_every_row_as_expected(transport: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--transport", transport]) == 0
    out = capsys.readouterr().out
    assert "8/8 rows as expected" in out and "MISMATCH" not in out
    for reason in (
        "nonce_replay",
        "args_commitment_mismatch",
        "server_mismatch",
        "tool_mismatch",
        "expired",
        "key_unavailable",
        "attestation_required",
    ):
        assert reason in out


def test_demo_table_colours_and_flags_mismatches() -> None:
    out = io.StringIO()
    _table(
        [Row("r1", "accepted", "accepted", True), Row("r2", "expired", "accepted", True)], out, colour=True
    )
    lines = out.getvalue().splitlines()
    assert lines[2].startswith("\033[32m") and lines[3].startswith("\033[31m") and "MISMATCH" in lines[3]
