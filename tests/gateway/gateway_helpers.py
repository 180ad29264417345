"""Fixtures: third-party MCP servers installed from the registries, keys, gateway processes.

The third-party installs go under ``.cache/third-party/`` in the repository
(ignored by a ``.gitignore`` written there) and are reused across runs.
Under ``CI=true`` an install that fails fails the tests; locally it skips
them with the reason, since a laptop may be offline.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mcp_attest import Keyring, generate_key

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "third-party"
HERE = Path(__file__).resolve().parent
PY = sys.executable


@dataclass(frozen=True)
class ThirdParty:
    everything: Path  # the server-everything executable (node)
    time_server: Path  # the mcp-server-time executable (own virtualenv)


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"third-party MCP software could not be installed: {why}")
    pytest.skip(f"third-party MCP software unavailable (registry unreachable?): {why}")


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    """One installer at a time: test processes running side by side (pytest-xdist workers,
    two builds' suites) share the cache, and two npm or pip runs in one folder corrupt it."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    done = subprocess.run(cmd, check=False, cwd=cwd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed: {(done.stderr or done.stdout).strip()[-400:]}")


@pytest.fixture(scope="session")
def third_party() -> ThirdParty:
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / ".gitignore").write_text("*\n")
    node_dir = CACHE / "node"
    everything = node_dir / "node_modules" / ".bin" / "mcp-server-everything"
    venv = CACHE / "time-venv"
    time_server = venv / "bin" / "mcp-server-time"
    try:
        with _install_lock():
            if not everything.exists():
                if shutil.which("npm") is None:
                    raise RuntimeError("npm is not installed")
                node_dir.mkdir(exist_ok=True)
                if not (node_dir / "package.json").exists():
                    (node_dir / "package.json").write_text('{"name": "third-party", "private": true}\n')
                _run(
                    ["npm", "install", "--no-audit", "--no-fund", "@modelcontextprotocol/server-everything"],
                    node_dir,
                )
            if not time_server.exists():
                _run([PY, "-m", "venv", str(venv)])
                _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "mcp-server-time"])
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(str(exc))
    return ThirdParty(everything=everything, time_server=time_server)


# The clients desktop apps and developers use, pinned to releases that run on Node 20.
NPM_CLIENTS = ("@modelcontextprotocol/sdk@1.32.2", "@modelcontextprotocol/inspector-cli@1.0.3")


@dataclass(frozen=True)
class NodeClients:
    root: Path  # holds node_modules and a copy of tests/gateway/clients/*.mjs

    def run(self, spec: dict[str, object], timeout: float = 60.0) -> dict[str, object]:
        """Run ``ts_client.mjs`` with ``spec``; its one JSON line of findings.

        stderr goes to a file, not a pipe: a server process the client left
        behind would hold a pipe open and hide how long the client took.
        """
        with tempfile.TemporaryFile() as err:
            done = subprocess.run(
                ["node", str(self.root / "ts_client.mjs"), json.dumps(spec)],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                timeout=timeout,
                check=False,
            )
            err.seek(0)
            errors = err.read().decode(errors="replace")
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        assert lines, f"client printed nothing (exit {done.returncode}): {errors[-2000:]}"
        return dict(json.loads(lines[-1]))

    @property
    def inspector(self) -> tuple[list[str], Path]:
        """The Inspector CLI's command, and the directory to run it in (it finds its own
        package.json relative to the working directory)."""
        build = self.root / "node_modules/@modelcontextprotocol/inspector-cli/build"
        return ["node", str(build / "cli.js")], build


@pytest.fixture(scope="session")
def node_clients() -> NodeClients:
    """The TypeScript SDK and the Inspector CLI from the npm registry (installed once, then reused)."""
    root = CACHE / "clients"
    marker = root / ("installed-" + "+".join(NPM_CLIENTS).replace("/", "_"))
    try:
        with _install_lock():
            if not marker.exists():
                if shutil.which("npm") is None:
                    raise RuntimeError("npm is not installed")
                root.mkdir(parents=True, exist_ok=True)
                (CACHE / ".gitignore").write_text("*\n")
                (root / "package.json").write_text('{"name": "clients", "private": true, "type": "module"}\n')
                _run(["npm", "install", "--no-audit", "--no-fund", *NPM_CLIENTS], root)
                marker.touch()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(str(exc))
    for script in (HERE / "clients").glob("*.mjs"):
        shutil.copyfile(script, root / script.name)
    return NodeClients(root)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def hs_keys(tmp_path: Path) -> Path:
    """One HS256 key for issuer ``agent``: the same file signs and verifies."""
    path = tmp_path / "keys.json"
    Keyring().with_key("agent", generate_key("HS256", "k1")).save(path, private=True)
    return path


GATEWAY = [PY, "-c", "import sys; from mcp_attest.gateway.cli import main; sys.exit(main(sys.argv[1:]))"]


def gateway_argv(*args: str | Path) -> list[str]:
    return [*GATEWAY, *(str(a) for a in args)]


def tap(log: Path, *command: str | Path) -> str:
    """A shell-quoted upstream command that logs what reaches the server."""
    return shlex.join([PY, str(HERE / "tap.py"), str(log), "--", *(str(c) for c in command)])


def received(log: Path, method: str = "tools/call") -> list[dict[str, object]]:
    """Messages with ``method`` that reached the upstream, per the tap log."""
    if not log.exists():
        return []
    messages = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [m for m in messages if m.get("method") == method]


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    url: str
    port: int

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early with code {proc.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


@pytest.fixture()
def http_gateway() -> Iterator[object]:
    """Start gateways with ``start(*flags)``; all are stopped at teardown."""
    procs: list[Proc] = []

    def start(*flags: str | Path, port: int | None = None) -> Proc:
        port = port or free_port()
        proc = subprocess.Popen(gateway_argv("--http", f"127.0.0.1:{port}", *flags))
        p = Proc(proc, f"http://127.0.0.1:{port}", port)
        procs.append(p)
        wait_http(p.url + "/healthz", proc)
        return p

    yield start
    for p in procs:
        p.stop()


@pytest.fixture()
def everything_http(third_party: ThirdParty, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """server-everything over Streamable HTTP; yields (url, its stdout log)."""
    port = free_port()
    log = tmp_path / "everything-http.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(third_party.everything), "streamableHttp"],
            env={**os.environ, "PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 20
    while b"listening" not in log.read_bytes() and time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server-everything exited: " + log.read_text()[-500:])
        time.sleep(0.05)
    yield url, log
    proc.terminate()
    proc.wait(timeout=10)
