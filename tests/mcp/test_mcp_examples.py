"""The examples and the demo run end to end, as a user would run them."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


def test_example_http(example_keys: tuple[Path, Path]) -> None:
    signing, verify = example_keys
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "http_server.py"), str(verify), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "example server did not start"
                time.sleep(0.05)
        out = _run(str(EXAMPLES / "http_client.py"), str(signing), f"http://127.0.0.1:{port}/mcp")
    finally:
        server.terminate()
        server.wait(timeout=10)
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
