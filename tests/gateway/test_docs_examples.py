"""The examples in README.md and docs/*.md run as written.

Every ``sh`` and ``toml`` block (and every block marked as an example in
another language) carries a marker on the line before its fence:
``<!-- example: ID -->`` (run here, by the test named in ``RUN_BY``) or
``<!-- illustrative: why -->``. The README's gateway path is followed as a
newcomer would, in one empty directory: the CLI block, the gateway in front
of mcp-server-time installed from PyPI, the client script (one accepted and
one refused call), the audit check, then the same with the config file.
The only change made to the text is the listening port (8787 may be taken
on a shared machine). Here because it needs the gateway fixtures.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from gateway_helpers import REPO, NodeClients, ThirdParty, free_port

from mcp_attest import Keyring, generate_key

BIN = Path(sys.executable).parent  # the venv's bin: `mcp-attest` and `python3` as after activating it
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARKER = re.compile(r"<!-- (?:example: (?P<id>[\w-]+)|illustrative(?::[^>]*)?) -->")
FENCE = re.compile(r"^```(\w*)\s*$")
CHECKED_LANGUAGES = frozenset({"sh", "toml"})

RUN_BY = {
    "readme-cli": "test_readme_newcomer_path",
    "readme-gateway": "test_readme_newcomer_path",
    "readme-client": "test_readme_newcomer_path",
    "readme-audit": "test_readme_newcomer_path",
    "readme-config": "test_readme_newcomer_path",
    "gateway-config": "test_gateway_md_reference_config_serves_at_once",
    "desktop-config": "test_desktop_recipe_with_the_inspector",
}


@dataclass(frozen=True)
class Block:
    where: str
    language: str
    text: str
    marker: str | None  # the example id, "" for illustrative, None when unmarked


def blocks() -> list[Block]:
    found = []
    for path in DOCS:
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            fence = FENCE.match(lines[i])
            if fence is None:
                i += 1
                continue
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            mark = MARKER.fullmatch(lines[i - 1].strip()) if i else None
            found.append(
                Block(
                    where=f"{path.relative_to(REPO)}:{i + 1}",
                    language=fence.group(1),
                    text="\n".join(lines[i + 1 : end]) + "\n",
                    marker=None if mark is None else (mark.group("id") or ""),
                )
            )
            i = end + 1
    return found


def example(example_id: str, port: int | None = None) -> str:
    """The text of one example; with ``port``, listening on it instead of 8787."""
    [block] = [b for b in blocks() if b.marker == example_id]
    return block.text if port is None else block.text.replace("8787", str(port))


def test_every_shell_and_toml_block_is_run_or_marked_illustrative() -> None:
    found = blocks()
    unmarked = [b.where for b in found if b.language in CHECKED_LANGUAGES and b.marker is None]
    assert unmarked == [], "mark these <!-- example: ID --> (and run them here) or <!-- illustrative: why -->"
    ids = [b.marker for b in found if b.marker]
    assert sorted(ids) == sorted(RUN_BY), "every example id is run by exactly one test here"
    assert all(name in globals() for name in RUN_BY.values())


# -- running them ---------------------------------------------------------------------------


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
    }


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the gateway example exited ({proc.returncode}): {log.read_text()[-3000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    pytest.fail(f"the gateway example did not come up: {log.read_text()[-3000:]}")


@contextmanager
def _serving(script: str, cwd: Path, port: int, env: dict[str, str], timeout: float = 60.0) -> Iterator[None]:
    """Run a shell example whose last command is a gateway; stop the whole group afterwards."""
    log = cwd / f"gateway-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", script],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_healthy(port, proc, log, timeout)
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


def _sh(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _client(cwd: Path, port: int, env: dict[str, str]) -> str:
    (cwd / "client.py").write_text(example("readme-client", port))
    done = subprocess.run(
        ["python", "client.py"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _accepted_then_refused(out: str) -> None:
    answer, refusal = out.rstrip("\n").rsplit("\n", 1)
    assert json.loads(answer)["timezone"] == "UTC"  # the time server's own answer: the call ran
    assert json.loads(refusal)["reason"] == "attestation_required"


@pytest.mark.slow
def test_readme_newcomer_path(tmp_path: Path) -> None:
    """From an empty directory, README.md top to bottom: nothing edited but the port."""
    env = _env(tmp_path)
    work = tmp_path / "newcomer"
    work.mkdir()
    cli = _sh(example("readme-cli"), work, env)
    assert "REJECTED args_commitment_mismatch" in cli.stdout, cli.stderr
    assert "ACCEPTED" in cli.stdout and '"reason":"nonce_replay"' in cli.stdout

    port = free_port()
    try:  # the first line installs mcp-server-time from PyPI, as the README says
        with _serving(example("readme-gateway", port), work, port, env, timeout=300):
            _accepted_then_refused(_client(work, port, env))
            audit = _sh(example("readme-audit"), work, env)
            assert audit.returncode == 0, audit.stdout + audit.stderr
    except pytest.fail.Exception:
        if os.environ.get("CI") != "true" and not (work / "time-venv" / "bin" / "mcp-server-time").exists():
            pytest.skip("mcp-server-time could not be installed from PyPI (offline?)")
        raise

    (work / "gateway.toml").write_text(example("readme-config", port := free_port()))
    with _serving("mcp-attest gateway --config gateway.toml", work, port, env):
        _accepted_then_refused(_client(work, port, env))


def _beside_the_readme_example(tmp_path: Path, third_party: ThirdParty) -> Path:
    """A directory as README.md's example leaves it: verify.json and time-venv (the cached install)."""
    home = tmp_path / "home"
    home.mkdir()
    Keyring().with_key("agent://planner", generate_key("ES256", "k1")).save(
        home / "verify.json", private=False
    )
    (home / "time-venv").symlink_to(third_party.time_server.parents[1])
    return home


@pytest.mark.slow
def test_gateway_md_reference_config_serves_at_once(
    tmp_path: Path, third_party: ThirdParty, node_clients: NodeClients
) -> None:
    home = _beside_the_readme_example(tmp_path, third_party)
    port = free_port()
    (home / "gateway.toml").write_text(example("gateway-config", port))
    with _serving("mcp-attest gateway --config gateway.toml", home, port, _env(tmp_path)):
        found = node_clients.run({"url": f"http://127.0.0.1:{port}/mcp"}, timeout=60)
    assert found["connected"] is True, found
    assert found["tools"] == ["get_current_time", "convert_time"]
    assert found["connectMs"] < 15000  # the first upstream answers; it hung 30 s before


@pytest.mark.slow
def test_desktop_recipe_with_the_inspector(
    tmp_path: Path, third_party: ThirdParty, node_clients: NodeClients
) -> None:
    """The desktop JSON, paths pointed at this checkout, run by the MCP Inspector CLI from /."""
    home = _beside_the_readme_example(tmp_path, third_party)
    (home / ".venv").symlink_to(BIN.parent)
    config = tmp_path / "desktop.json"
    config.write_text(example("desktop-config").replace("/home/you/mcp-attest", str(home)))
    inspector, cwd = node_clients.inspector
    base = [
        *inspector,
        "--cli",
        "--config",
        str(config),
        "--server",
        "time",
        "-e",
        f"XDG_STATE_HOME={tmp_path}",
    ]

    def inspect(*method: str) -> str:
        done = subprocess.run(
            [*base, *method], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    assert "get_current_time" in inspect("--method", "tools/list")
    refused = inspect(
        "--method", "tools/call", "--tool-name", "get_current_time", "--tool-arg", "timezone=UTC"
    )
    assert "attestation_required" in refused
