"""The gateway's process lifecycle, start-up and error reporting, as desktop clients and operators see it.

Clients are the real TypeScript SDK (``@modelcontextprotocol/sdk``, as
desktop apps embed it), the Python ``mcp`` SDK, and plain sockets for
wire-level checks.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from gateway_helpers import HERE, PY, NodeClients, ThirdParty, free_port, gateway_argv, wait_http
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from mcp_attest import Issuer, Keyring, server_fingerprint
from mcp_attest.gateway.config import load_config
from mcp_attest.mcp import AttestingClient

pytestmark = pytest.mark.slow

FLAKY = [PY, str(HERE / "flaky_server.py")]


def _alive(pid: int) -> bool:
    """Running (a zombie awaiting its parent's wait counts as gone: it runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _flaky_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "FLAKY_LOG": str(tmp_path / "calls.log"),
        "FLAKY_PIDFILE": str(tmp_path / "upstream.pids"),
        **extra,
    }


def _pids(tmp_path: Path) -> list[int]:
    path = tmp_path / "upstream.pids"
    return [int(p) for p in path.read_text().split()] if path.exists() else []


# -- start-up: port, banner, fingerprints, state dir --------------------------------


def test_port_in_use_exits_2_with_one_line_and_announces_nothing(hs_keys: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            gateway_argv("--http", f"127.0.0.1:{port}", "--keys", hs_keys, "--upstream-cmd", "true"),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"mcp-attest gateway: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_banner_and_healthz_name_the_fingerprint_each_upstream_is_enforced_for(
    hs_keys: Path, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "gateway.err"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            gateway_argv(
                "--http",
                f"127.0.0.1:{port}",
                "--keys",
                hs_keys,
                "--upstream-cmd",
                "true",
                "--name",
                "time",
                "--server-name",
                "time",
                "--server-id",
                "prod-1",
            ),
            stderr=err,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        health = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    fingerprint = server_fingerprint("time", "prod-1")
    assert health["upstreams"] == {"time": {"fingerprint": fingerprint}}
    banner = log.read_text()
    assert f"upstream time: true (fingerprint {fingerprint})" in banner
    assert str(tmp_path / "xdg-state" / "mcp-attest" / "verify-time") in banner


def test_stdio_listener_prints_a_startup_banner_on_stderr(hs_keys: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        gateway_argv("--stdio", "--keys", hs_keys, "--upstream-cmd", "true", "--name", "t"),
        input=b"",
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.stdout == b""
    assert b"verify mode on stdio" in done.stderr
    assert server_fingerprint("t").encode() in done.stderr


def test_default_state_dir_is_per_user_named_after_the_gateway_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir("/")
    state = tmp_path / "xdg-state" / "mcp-attest"
    keys = {"keys": "k.json", "stdio": True}
    time_gw = load_config(None, {**keys, "upstream": {"name": "time", "command": ["x"]}})
    files_gw = load_config(None, {**keys, "upstream": {"name": "files", "command": ["x"]}})
    issue_gw = load_config(
        None, {**keys, "mode": "issue", "iss": "a", "upstream": {"name": "time", "command": ["x"]}}
    )
    named = load_config(None, {**keys, "gateway_name": "desk", "upstream": {"command": ["x"]}})
    assert time_gw.state_dir == str(state / "verify-time")
    assert files_gw.state_dir == str(state / "verify-files")
    assert issue_gw.state_dir == str(state / "issue-time")
    assert named.state_dir == str(state / "desk")
    monkeypatch.setenv("XDG_STATE_HOME", "relative/ignored")  # the XDG spec: only absolute paths count
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert load_config(None, {**keys, "upstream": {"name": "t", "command": ["x"]}}).state_dir == str(
        tmp_path / "home" / ".local" / "state" / "mcp-attest" / "verify-t"
    )


def test_relative_upstream_command_in_a_config_file_is_relative_to_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "conf" / "gateway.toml"
    cfg.parent.mkdir()
    cfg.write_text(
        '[verify]\nkeys = "k.json"\n[listen]\nstdio = true\n[[upstream]]\ncommand = ["venv/bin/srv", "-v"]\n'
    )
    config = load_config(str(cfg))
    assert config.upstreams[0].command == (str(tmp_path / "conf" / "venv" / "bin" / "srv"), "-v")


# -- why was my call refused: one log line per verdict ---------------------------------


def _stdio_session(
    argv: list[str], messages: list[dict[str, Any]], env: dict[str, str]
) -> tuple[list[Any], str]:
    """Send ``messages`` to a stdio gateway, close stdin; the answers and its stderr."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdin is not None and proc.stdout is not None
    answers = []
    for message in messages:
        proc.stdin.write(json.dumps(message).encode() + b"\n")
        proc.stdin.flush()
        if "id" in message:
            answers.append(json.loads(proc.stdout.readline()))
    proc.stdin.close()
    proc.wait(timeout=30)
    assert proc.stderr is not None
    return answers, proc.stderr.read().decode()


def _handshake() -> list[dict[str, Any]]:
    params = {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    }
    return [
        {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
    ]


def _call(request_id: int, name: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": {}}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def test_every_verdict_is_one_json_log_line(hs_keys: Path, tmp_path: Path) -> None:
    envelope = Issuer(Keyring.load(hs_keys), iss="agent", sub="u").sign(
        tool="ok", arguments={}, server_fingerprint=server_fingerprint("flaky"), intent="test"
    )
    argv = gateway_argv(
        "--stdio", "--keys", hs_keys, "--upstream-cmd", shlex.join(FLAKY), "--name", "flaky",
        "--log-format", "json", "--state-dir", tmp_path / "state",
    )  # fmt: skip
    messages = [*_handshake(), _call(1, "ok"), _call(2, "ok", {"attestation": envelope.to_wire()})]
    answers, err = _stdio_session(argv, messages, _flaky_env(tmp_path))
    assert answers[1]["result"]["isError"] is True and answers[2]["result"]["content"][0]["text"].startswith(
        "ok"
    )
    lines = [json.loads(line) for line in err.splitlines()]  # every stderr line is JSON
    verdicts = [line for line in lines if line.get("msg") == "verdict"]
    assert [(v["upstream"], v["tool"], v["decision"], v["reason"]) for v in verdicts] == [
        ("flaky", "ok", "rejected", "attestation_required"),
        ("flaky", "ok", "forwarded", "accepted"),
    ]
    assert verdicts[0]["detail"] and verdicts[0]["attestationId"] is None
    assert verdicts[1]["attestationId"] and len(verdicts[1]["attestationId"]) == 64
    assert verdicts[0]["level"] == "INFO"


def test_tool_name_with_newline_cannot_forge_a_text_log_line(hs_keys: Path, tmp_path: Path) -> None:
    argv = gateway_argv(
        "--stdio", "--keys", hs_keys, "--upstream-cmd", shlex.join(FLAKY), "--state-dir", tmp_path / "state",
    )  # fmt: skip
    forged = "ok\n2026-01-01 00:00:00 mcp_attest.gateway.verdict INFO verdict decision=forwarded"
    _, err = _stdio_session(argv, [*_handshake(), _call(1, forged)], _flaky_env(tmp_path))
    verdicts = [line for line in err.splitlines() if " verdict " in line]
    assert len(verdicts) == 1
    assert "decision=rejected reason=attestation_required" in verdicts[0]
    assert 'tool="ok\\n2026' in verdicts[0]


# -- issue mode: what the downstream must do -------------------------------------------


def test_issue_gateway_tells_its_client_attestation_is_not_required(
    hs_keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AttestingClient(issuer=None) -> issue gateway -> verify gateway (required: true) -> server."""
    for key, value in _flaky_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    verify = gateway_argv(
        "--stdio", "--keys", hs_keys, "--upstream-cmd", shlex.join(FLAKY), "--name", "flaky",
        "--state-dir", tmp_path / "verify",
    )  # fmt: skip
    issue = gateway_argv(
        "--stdio", "--mode", "issue", "--keys", hs_keys, "--iss", "agent", "--name", "flaky",
        "--upstream-cmd", shlex.join(verify), "--state-dir", tmp_path / "issue",
    )  # fmt: skip

    async def main() -> tuple[Any, str]:
        params = StdioServerParameters(command=issue[0], args=issue[1:], env=dict(os.environ))
        async with AttestingClient.connect(
            params, issuer=None, server_fingerprint=server_fingerprint("flaky")
        ) as client:
            capability = client.server_capability
            result = await client.call_tool("ok", {})
            return capability, result.content[0].text

    capability, text = anyio.run(main)
    assert capability is not None and capability["required"] is False
    assert text.startswith("ok pid=")


# -- stdio listener under shells and supervisors ----------------------------------------


def test_stdio_listener_with_files_for_stdin_and_stdout_answers_and_exits_0(
    hs_keys: Path, tmp_path: Path
) -> None:
    """`gateway --stdio < requests > answers`: regular files, uvloop (the gateway extra) installed."""
    requests, answers = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    requests.write_text("".join(json.dumps(m) + "\n" for m in [*_handshake(), _call(1, "ok")]))
    argv = gateway_argv("--stdio", "--keys", hs_keys, "--upstream-cmd", shlex.join(FLAKY))
    with open(requests, "rb") as stdin, open(answers, "wb") as stdout:
        done = subprocess.run(
            argv,
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=_flaky_env(tmp_path),
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    got = {m["id"]: m for m in map(json.loads, answers.read_text().splitlines())}
    assert got[0]["result"]["serverInfo"]["name"] == "flaky"
    assert json.loads(got[1]["result"]["content"][0]["text"])["reason"] == "attestation_required"


def test_stdio_listener_with_dev_null_exits_0_and_says_why(hs_keys: Path, tmp_path: Path) -> None:
    argv = gateway_argv("--stdio", "--keys", hs_keys, "--upstream-cmd", shlex.join(FLAKY))
    done = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_flaky_env(tmp_path),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert b"stdio client closed stdin" in done.stderr and b"Traceback" not in done.stderr


# -- HTTP sessions: cancellation and shutdown ------------------------------------------


def _issue_http_gateway(hs_keys: Path, tmp_path: Path, port: int, stderr: Any) -> subprocess.Popen[bytes]:
    """An issue-mode gateway (it forwards every call) in front of the faulty server."""
    proc = subprocess.Popen(
        gateway_argv(
            "--http", f"127.0.0.1:{port}", "--mode", "issue", "--keys", hs_keys, "--iss", "agent",
            "--upstream-cmd", shlex.join(FLAKY), "--name", "flaky",
        ),
        env=_flaky_env(tmp_path),
        stderr=stderr,
    )  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    return proc


def test_client_leaving_with_a_call_in_flight_gets_no_answer_and_exits_cleanly(
    hs_keys: Path, tmp_path: Path
) -> None:
    """Python SDK client: DELETE on exit cancels the open call; an answer after it would crash the client."""
    port = free_port()
    proc = _issue_http_gateway(hs_keys, tmp_path, port, subprocess.DEVNULL)

    async def main() -> None:
        async with Client(f"http://127.0.0.1:{port}/mcp") as client, anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "hang", {})
            await anyio.sleep(1.0)
            tg.cancel_scope.cancel()

    try:
        anyio.run(main)  # raised ClosedResourceError (an answer to the cancelled call) before
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["sessions"] == 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_sigterm_with_an_open_session_stream_is_quick_and_quiet(hs_keys: Path, tmp_path: Path) -> None:
    port = free_port()
    err = tmp_path / "gateway.err"
    with open(err, "wb") as stderr:
        proc = _issue_http_gateway(hs_keys, tmp_path, port, stderr)
    url = f"http://127.0.0.1:{port}/mcp"
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": _handshake()[0]["params"]}
    headers["mcp-session-id"] = httpx.post(url, headers=headers, json=init).headers["mcp-session-id"]
    with httpx.stream("GET", url, headers={**headers, "accept": "text/event-stream"}, timeout=30) as stream:
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert list(stream.iter_lines()) == []  # the stream ends cleanly, at once
        proc.wait(timeout=10)
    assert time.monotonic() - started < 1.5
    assert proc.returncode == 0
    assert "Traceback" not in err.read_text() and "ERROR" not in err.read_text()


# -- desktop-style close (TypeScript SDK StdioClientTransport) --------------------------


def _ts_stdio(node_clients: NodeClients, hs_keys: Path, tmp_path: Path, **flaky: str) -> dict[str, Any]:
    """Connect the TS SDK to `gateway --stdio` in front of the faulty server, list tools, close()."""
    argv = gateway_argv(
        "--stdio", "--keys", hs_keys, "--upstream-cmd", shlex.join(FLAKY), "--state-dir", tmp_path / "state"
    )
    env = _flaky_env(tmp_path, **flaky)
    return node_clients.run({"command": argv[0], "args": argv[1:], "env": env})


def _assert_reaped(pid: int, found: dict[str, Any], what: str, *, grace: float) -> None:
    """``pid`` is gone within ``grace`` seconds and the client's close was quick; killed if not."""
    try:
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), f"the gateway left {what} running"
        assert found["closeMs"] < 1900, found  # the gateway exited before the client had to SIGTERM it
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_desktop_close_reaps_an_upstream_that_ignores_eof_and_sigterm(
    node_clients: NodeClients, hs_keys: Path, tmp_path: Path
) -> None:
    found = _ts_stdio(node_clients, hs_keys, tmp_path, FLAKY_EXIT_DELAY="30", FLAKY_IGNORE_TERM="1")
    assert found["connected"] is True and "ok" in found["tools"]
    [upstream] = _pids(tmp_path)
    # the client returned: the gateway has exited, or is about to
    _assert_reaped(upstream, found, "its upstream", grace=1.0)


def test_desktop_close_reaps_server_everything(
    node_clients: NodeClients, third_party: ThirdParty, hs_keys: Path, tmp_path: Path
) -> None:
    """The third-party server the issue saw orphaned (3 closes of 5): reaped, and the close is quick.

    On this machine it exits on end of input, so this guards the common
    path with a real server; the slow-to-exit case is the faulty server's.
    """
    pidfile = tmp_path / "upstream.pids"
    upstream = shlex.join(["sh", "-c", f'echo $$ > {pidfile}; exec "$0" stdio', str(third_party.everything)])
    argv = gateway_argv(
        "--stdio", "--keys", hs_keys, "--upstream-cmd", upstream, "--state-dir", tmp_path / "s"
    )
    found = node_clients.run({"command": argv[0], "args": argv[1:]})
    assert found["connected"] is True and "echo" in found["tools"]
    [everything] = _pids(tmp_path)
    _assert_reaped(everything, found, "server-everything", grace=0.0)


def test_desktop_close_is_well_under_a_second_for_a_well_behaved_upstream(
    node_clients: NodeClients, hs_keys: Path, tmp_path: Path
) -> None:
    found = _ts_stdio(node_clients, hs_keys, tmp_path)
    assert found["connected"] is True
    [upstream] = _pids(tmp_path)
    assert not _alive(upstream)
    assert found["closeMs"] < 500, found


# -- an upstream that cannot start --------------------------------------------------------

MISSING = "/nonexistent/bin/uvx mcp-server-time"


def test_missing_upstream_command_answers_initialize_at_once_on_stdio(
    node_clients: NodeClients, hs_keys: Path, tmp_path: Path
) -> None:
    argv = gateway_argv("--stdio", "--keys", hs_keys, "--upstream-cmd", MISSING, "--name", "time")
    found = node_clients.run({"command": argv[0], "args": argv[1:], "env": {"XDG_STATE_HOME": str(tmp_path)}})
    assert found["connected"] is False
    assert "cannot start /nonexistent/bin/uvx: No such file or directory" in str(found["error"])
    assert "mcp-server-time" not in str(found["error"])  # arguments may hold secrets: never sent
    assert found["connectMs"] < 10000  # the gateway's own start-up; it waited 30 s+ for a timeout before


def test_missing_upstream_command_answers_initialize_at_once_on_http(
    node_clients: NodeClients, hs_keys: Path, tmp_path: Path
) -> None:
    port = free_port()
    err = tmp_path / "gateway.err"
    with open(err, "wb") as stderr:
        proc = subprocess.Popen(
            gateway_argv("--http", f"127.0.0.1:{port}", "--keys", hs_keys, "--upstream-cmd", MISSING),
            stderr=stderr,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        found = node_clients.run({"url": f"http://127.0.0.1:{port}/mcp"})
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert found["connected"] is False
    assert "cannot start /nonexistent/bin/uvx: No such file or directory" in str(found["error"])
    assert found["connectMs"] < 5000  # was a TimeoutError after the 30 s upstream timeout
    assert "cannot start /nonexistent/bin/uvx" in err.read_text()  # and the operator sees it


def test_stdio_upstream_answer_over_the_cap_says_so(hs_keys: Path, tmp_path: Path) -> None:
    argv = gateway_argv(
        "--stdio", "--mode", "issue", "--keys", hs_keys, "--iss", "agent",
        "--upstream-cmd", shlex.join(FLAKY), "--name", "flaky", "--state-dir", tmp_path / "state",
    )  # fmt: skip
    answers, _ = _stdio_session(argv, [*_handshake(), _call(1, "huge"), _call(2, "ok")], _flaky_env(tmp_path))
    assert answers[1]["error"]["message"] == (
        "upstream flaky sent a message over 67108864 bytes, the gateway's cap; restarted"
    )
    assert answers[2]["result"]["content"][0]["text"].startswith("ok")  # the restarted process answers
