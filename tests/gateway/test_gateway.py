"""The gateway as a real process in front of third-party MCP servers.

Clients are the official ``mcp`` SDK client (through the project's
attesting wrapper) and, for wire-level checks, plain HTTP. Rejected calls
are shown never to reach the upstream through a tap that logs every
message the server receives, or the server's own request log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from gateway_helpers import HERE, PY, ThirdParty, gateway_argv, received, tap
from mcp.client.stdio import StdioServerParameters

from mcp_attest import Issuer, Keyring, Verifier, generate_key, server_fingerprint
from mcp_attest.mcp import AttestingClient, parse_rejection

pytestmark = pytest.mark.slow

TIME_FP = server_fingerprint("time", "")
EV_FP = server_fingerprint("ev", "")


def _issuer(keys: Path) -> Issuer:
    return Issuer(Keyring.load(keys), iss="agent", sub="tester")


def _text(result: Any) -> str:
    return str(result.content[0].text)


def _stdio_gateway(*flags: str | Path) -> StdioServerParameters:
    argv = gateway_argv("--stdio", *flags)
    return StdioServerParameters(command=argv[0], args=argv[1:])


class Raw:
    """A bare Streamable HTTP client: exact bytes in, exact status and body out."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(timeout=15)
        self.sid: str | None = None
        self.ids = 0

    def post(self, message: Any, **headers: str) -> httpx.Response:
        h = {"content-type": "application/json", "accept": "application/json, text/event-stream", **headers}
        if self.sid:
            h["mcp-session-id"] = self.sid
        return self.http.post(self.url, content=json.dumps(message), headers=h)

    def request(self, method: str, params: dict[str, Any], **headers: str) -> dict[str, Any]:
        self.ids += 1
        resp = self.post({"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params}, **headers)
        if resp.headers.get("content-type", "").startswith("text/event-stream"):
            events = [json.loads(line[5:]) for line in resp.text.splitlines() if line.startswith("data:")]
            return next(e for e in events if e.get("id") == self.ids)
        return dict(resp.json())

    def open(self) -> dict[str, Any]:
        params = {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        }
        self.ids += 1
        resp = self.post({"jsonrpc": "2.0", "id": self.ids, "method": "initialize", "params": params})
        self.sid = resp.headers["mcp-session-id"]
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return dict(resp.json())

    def call(
        self, tool: str, arguments: dict[str, Any], envelope: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"name": tool, "arguments": arguments}
        if envelope is not None:
            params["_meta"] = {"attestation": envelope}
        return self.request("tools/call", params)


def _rejection(result: dict[str, Any]) -> dict[str, Any]:
    assert result["result"]["isError"] is True
    return dict(json.loads(result["result"]["content"][0]["text"]))


# -- verify mode, stdio listener, mcp-server-time --------------------------------


def test_verify_stdio_time_server_accepts_signed_rejects_unsigned(
    third_party: ThirdParty, hs_keys: Path, tmp_path: Path
) -> None:
    log = tmp_path / "tap.log"
    params = _stdio_gateway(
        "--keys",
        hs_keys,
        "--upstream-cmd",
        tap(log, third_party.time_server),
        "--name",
        "time",
        "--state-dir",
        tmp_path / "state",
    )

    async def main() -> None:
        async with AttestingClient.connect(params, issuer=_issuer(hs_keys), server_fingerprint=TIME_FP) as c:
            assert c.server_capability == {
                "algorithms": ["HS256", "ES256", "RS256"],
                "required": True,
                "multiServer": True,
            }
            names = {t.name for t in (await c.client.list_tools()).tools}
            assert {"get_current_time", "convert_time"} <= names
            ok = await c.call_tool("get_current_time", {"timezone": "UTC"})
            assert not ok.is_error and '"timezone": "UTC"' in _text(ok)
            bad = await c.client.call_tool("get_current_time", {"timezone": "Europe/Paris"})
            rejection = parse_rejection(bad)
            assert rejection is not None and rejection[0].value == "attestation_required"

    anyio.run(main)
    calls = received(log)
    assert [c["params"]["arguments"] for c in calls] == [{"timezone": "UTC"}]  # type: ignore[index]


# -- verify mode, HTTP listener, server-everything over stdio -----------------------


def test_verify_http_everything_stdio_passthrough_and_rejections(
    third_party: ThirdParty, hs_keys: Path, tmp_path: Path, http_gateway: Any
) -> None:
    log = tmp_path / "tap.log"
    gw = http_gateway(
        "--keys",
        hs_keys,
        "--upstream-cmd",
        tap(log, third_party.everything, "stdio"),
        "--name",
        "ev",
        "--state-dir",
        tmp_path / "state",
    )
    progress: list[float] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append(p)

    issuer = _issuer(hs_keys)

    async def main() -> None:
        async with AttestingClient.connect(
            gw.url + "/mcp", issuer=issuer, server_fingerprint=EV_FP, header=True
        ) as c:
            assert c.server_requires_attestation
            assert len((await c.client.list_tools()).tools) > 5
            assert (await c.client.list_resources()).resources
            assert (await c.client.list_prompts()).prompts
            ok = await c.call_tool("echo", {"message": "through"})
            assert _text(ok) == "Echo: through"
            slow = await c.call_tool(
                "trigger-long-running-operation", {"duration": 0.3, "steps": 3}, progress_callback=on_progress
            )
            assert "completed" in _text(slow)
            # a plan for another tool, and a plan for another server: both refused here
            other = issuer.sign(
                tool="get-sum", arguments={"a": 1, "b": 2}, server_fingerprint=EV_FP, intent="sum"
            )
            r = await c.client.call_tool("echo", {"message": "sneaky"}, meta={"attestation": other.to_wire()})  # type: ignore[arg-type]
            assert json.loads(_text(r))["reason"] == "tool_mismatch"
            elsewhere = issuer.sign(
                tool="echo", arguments={"message": "x"}, server_fingerprint=TIME_FP, intent="x"
            )
            r = await c.client.call_tool("echo", {"message": "x"}, meta={"attestation": elsewhere.to_wire()})  # type: ignore[arg-type]
            assert json.loads(_text(r))["reason"] == "server_mismatch"

    anyio.run(main)
    assert progress == [1.0, 2.0, 3.0]
    assert [c["params"]["name"] for c in received(log)] == ["echo", "trigger-long-running-operation"]  # type: ignore[index]
    metrics = httpx.get(gw.url + "/metrics").text
    assert 'mcp_attest_gateway_verdicts_total{upstream="ev",reason="tool_mismatch"} 1' in metrics
    assert 'mcp_attest_gateway_calls_total{upstream="ev",outcome="forwarded"} 2' in metrics
    assert "mcp_attest_gateway_call_seconds_count 4" in metrics


# -- verify mode, HTTP upstream -------------------------------------------------------


def test_verify_http_everything_http_upstream(
    everything_http: tuple[str, Path], hs_keys: Path, tmp_path: Path, http_gateway: Any
) -> None:
    url, upstream_log = everything_http
    gw = http_gateway(
        "--keys", hs_keys, "--upstream-url", url, "--name", "ev", "--state-dir", tmp_path / "state"
    )

    async def main() -> None:
        async with AttestingClient.connect(
            gw.url + "/mcp", issuer=_issuer(hs_keys), server_fingerprint=EV_FP, header=True
        ) as c:
            ok = await c.call_tool("get-sum", {"a": 2, "b": 3})
            assert "5" in _text(ok)
            before = upstream_log.read_text().count("Received MCP POST request")
            bad = await c.client.call_tool("get-sum", {"a": 2, "b": 3})
            assert json.loads(_text(bad))["reason"] == "attestation_required"
            assert upstream_log.read_text().count("Received MCP POST request") == before

    anyio.run(main)


# -- issue mode ----------------------------------------------------------------------------


def test_issue_stdio_signs_calls_the_upstream_receives(
    third_party: ThirdParty, hs_keys: Path, tmp_path: Path
) -> None:
    log = tmp_path / "tap.log"
    params = _stdio_gateway(
        "--mode",
        "issue",
        "--keys",
        hs_keys,
        "--iss",
        "agent",
        "--sub",
        "desk",
        "--intent",
        "check the clock",
        "--upstream-cmd",
        tap(log, third_party.time_server),
        "--name",
        "time",
        "--state-dir",
        tmp_path / "state",
    )

    async def main() -> None:
        async with AttestingClient.connect(params, issuer=None, server_fingerprint=TIME_FP) as c:
            r = await c.call_tool("get_current_time", {"timezone": "UTC"})
            assert not r.is_error

    anyio.run(main)
    (call,) = received(log)
    envelope = call["params"]["_meta"]["attestation"]  # type: ignore[index]
    assert envelope["plannerDeclared"]["intent"] == "check the clock"
    verdict = Verifier(Keyring.load(hs_keys), TIME_FP).verify(
        envelope, tool="get_current_time", arguments={"timezone": "UTC"}
    )
    assert verdict.accepted and verdict.sub == "desk"


def test_issue_then_verify_chain_over_http(
    everything_http: tuple[str, Path], hs_keys: Path, tmp_path: Path, http_gateway: Any
) -> None:
    """An unsigned client -> issue gateway -> verify gateway -> server-everything."""
    url, _ = everything_http
    verify_gw = http_gateway(
        "--keys", hs_keys, "--upstream-url", url, "--name", "ev", "--state-dir", tmp_path / "v"
    )
    issue_gw = http_gateway(
        "--mode",
        "issue",
        "--keys",
        hs_keys,
        "--iss",
        "agent",
        "--upstream-url",
        verify_gw.url + "/mcp",
        "--name",
        "ev",
        "--state-dir",
        tmp_path / "i",
    )
    raw = Raw(issue_gw.url + "/mcp")
    raw.open()
    r = raw.request(
        "tools/call",
        {"name": "echo", "arguments": {"message": "signed for me"}},
        **{"x-mcp-intent": "say hi"},
    )
    assert r["result"]["content"][0]["text"] == "Echo: signed for me"
    metrics = httpx.get(verify_gw.url + "/metrics").text
    assert 'reason="accepted"} 1' in metrics


# -- restart: the replay store survives ---------------------------------------------------


def test_replayed_envelope_rejected_after_gateway_restart(
    third_party: ThirdParty, hs_keys: Path, tmp_path: Path, http_gateway: Any
) -> None:
    flags = (
        "--keys",
        hs_keys,
        "--upstream-cmd",
        tap(tmp_path / "tap.log", third_party.time_server),
        "--name",
        "time",
        "--state-dir",
        tmp_path / "state",
    )
    gw = http_gateway(*flags)
    envelope = (
        _issuer(hs_keys)
        .sign(
            tool="get_current_time", arguments={"timezone": "UTC"}, server_fingerprint=TIME_FP, intent="time"
        )
        .to_wire()
    )
    raw = Raw(gw.url + "/mcp")
    raw.open()
    assert not raw.call("get_current_time", {"timezone": "UTC"}, envelope)["result"].get("isError")
    assert _rejection(raw.call("get_current_time", {"timezone": "UTC"}, envelope))["reason"] == "nonce_replay"
    gw.stop()
    gw2 = http_gateway(*flags, port=gw.port)
    raw2 = Raw(gw2.url + "/mcp")
    raw2.open()
    assert (
        _rejection(raw2.call("get_current_time", {"timezone": "UTC"}, envelope))["reason"] == "nonce_replay"
    )
    assert len(received(tmp_path / "tap.log")) == 1


# -- bad input on the HTTP listener -------------------------------------------------------------


def test_garbage_on_http_listener(
    third_party: ThirdParty, hs_keys: Path, tmp_path: Path, http_gateway: Any
) -> None:
    gw = http_gateway(
        "--keys",
        hs_keys,
        "--upstream-cmd",
        f"{third_party.everything} stdio",
        "--name",
        "ev",
        "--state-dir",
        tmp_path / "state",
        "--max-body-bytes",
        "4096",
    )
    url = gw.url + "/mcp"
    json_h = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    r = httpx.post(url, content=b"{not json", headers=json_h)
    assert r.status_code == 400 and r.json()["error"]["code"] == -32700
    r = httpx.post(
        url,
        content=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
        headers={**json_h, "content-type": "text/plain"},
    )
    assert r.status_code == 415
    r = httpx.post(url, content=b"[" + b"1," * 5000 + b"1]", headers=json_h)
    assert r.status_code == 413
    r = httpx.post(url, content=b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', headers=json_h)
    assert r.status_code == 400 and r.json()["error"]["code"] == -32600
    r = httpx.post(url, content=b'{"jsonrpc":"1.0","id":1}', headers=json_h)
    assert r.status_code == 400
    r = httpx.post(
        url, content=b'{"jsonrpc":"2.0","id":1,"method":"ping"}', headers={**json_h, "mcp-session-id": "nope"}
    )
    assert r.status_code == 404
    r = httpx.post(
        url,
        content=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
        headers={**json_h, "origin": "https://evil.example"},
    )
    assert r.status_code == 403
    assert httpx.get(gw.url + "/nothing").status_code == 404
    # the gateway still serves a proper session afterwards
    raw = Raw(url)
    raw.open()
    assert raw.request("tools/list", {})["result"]["tools"]
    metrics = httpx.get(gw.url + "/metrics").text
    assert 'kind="http_parse"} 1' in metrics and 'kind="http_too_large"} 1' in metrics


# -- upstream faults: crash, hang, malformed; pinning ----------------------------------------------


def _flaky_gateway(hs_keys: Path, tmp_path: Path, http_gateway: Any, *flags: Any) -> tuple[Any, Path, Path]:
    """A verify-mode gateway over the faulty stdio server, its call log and its tool description."""
    calls, description = tmp_path / "flaky-calls.log", tmp_path / "description.txt"
    command = f"env FLAKY_LOG={calls} FLAKY_DESCRIPTION={description} {PY} {HERE / 'flaky_server.py'}"
    gw = http_gateway(
        "--keys",
        hs_keys,
        "--upstream-cmd",
        command,
        "--name",
        "flaky",
        *flags,
        "--state-dir",
        tmp_path / "state",
    )
    return gw, calls, description


def test_upstream_crash_hang_and_malformed(hs_keys: Path, tmp_path: Path, http_gateway: Any) -> None:
    gw, calls, _ = _flaky_gateway(hs_keys, tmp_path, http_gateway, "--timeout", "1")
    fp = server_fingerprint("flaky", "")
    issuer = _issuer(hs_keys)
    raw, other = Raw(gw.url + "/mcp"), Raw(gw.url + "/mcp")
    raw.open()
    other.open()

    def call(client: Raw, tool: str) -> dict[str, Any]:
        env = issuer.sign(tool=tool, arguments={}, server_fingerprint=fp, intent="fault").to_wire()
        return client.call(tool, {}, env)

    first_pid = call(raw, "ok")["result"]["content"][0]["text"]
    started = time.monotonic()
    assert call(raw, "hang")["error"]["code"] == -32001
    assert time.monotonic() - started < 5
    assert call(other, "ok")["result"]  # other sessions keep being served meanwhile
    assert call(raw, "garbage")["error"]["code"] == -32603
    assert call(raw, "crash")["error"]["code"] == -32002
    deadline = time.monotonic() + 10
    while True:  # restarted with backoff, the session's handshake replayed
        r = call(raw, "ok")
        if "result" in r or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r["result"]["content"][0]["text"] != first_pid
    assert calls.read_text().split() == [
        "ok",
        "hang",
        "ok",
        "garbage",
        "crash",
        *["ok"] * (calls.read_text().split()[5:].count("ok")),
    ]
    assert "mcp_attest_gateway_upstream_restarts_total" in httpx.get(gw.url + "/metrics").text


def test_tool_pinning_refuses_changed_definition(hs_keys: Path, tmp_path: Path, http_gateway: Any) -> None:
    gw, calls, description = _flaky_gateway(hs_keys, tmp_path, http_gateway, "--pin-tools")
    fp = server_fingerprint("flaky", "")
    issuer = _issuer(hs_keys)
    raw = Raw(gw.url + "/mcp")
    raw.open()
    raw.request("tools/list", {})
    pins = json.loads((tmp_path / "state" / "pins" / "flaky.json").read_text())
    assert set(pins) == {"ok", "crash", "hang", "garbage", "progress"}
    description.write_text("now does something else entirely")
    raw.request("tools/list", {})
    env = issuer.sign(tool="ok", arguments={}, server_fingerprint=fp, intent="x").to_wire()
    refusal = _rejection(raw.call("ok", {}, env))
    assert refusal["gatewayError"] is True and refusal["reason"] == "tool_definition_changed"
    assert not calls.exists()


# -- keyring reload, configuration errors --------------------------------------------------------------


def test_sighup_reloads_keyring_without_dropping_sessions(
    third_party: ThirdParty, hs_keys: Path, tmp_path: Path, http_gateway: Any
) -> None:
    gw = http_gateway(
        "--keys",
        hs_keys,
        "--upstream-cmd",
        str(third_party.time_server),
        "--name",
        "time",
        "--state-dir",
        tmp_path / "state",
    )
    raw = Raw(gw.url + "/mcp")
    raw.open()
    rotated = Keyring.load(hs_keys).with_key("agent", generate_key("HS256", "k2"))
    env = (
        Issuer(rotated, iss="agent", sub="t", kid="k2")
        .sign(tool="get_current_time", arguments={"timezone": "UTC"}, server_fingerprint=TIME_FP, intent="t")
        .to_wire()
    )
    assert _rejection(raw.call("get_current_time", {"timezone": "UTC"}, env))["reason"] == "key_unavailable"
    rotated.save(hs_keys, private=True)
    gw.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert not raw.call("get_current_time", {"timezone": "UTC"}, env)["result"].get("isError")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stdio", "--upstream-cmd", "x"], "needs a keyring"),
        (["--stdio", "--keys", "/nonexistent.json", "--upstream-cmd", "x"], "cannot read keyring"),
        (["--keys", "k.json", "--upstream-cmd", "x"], "nothing to listen on"),
        (["--stdio", "--keys", "k.json"], "no upstream"),
        (["--config", "/nonexistent.toml"], "cannot read config"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_config_errors_exit_2_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    done = subprocess.run(
        gateway_argv(*args), check=False, capture_output=True, text=True, cwd=tmp_path, timeout=30
    )
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_config_file_with_several_upstreams_routed_by_path(
    third_party: ThirdParty, hs_keys: Path, tmp_path: Path, http_gateway: Any
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
mode = "verify"
state_dir = "state"
[verify]
keys = "{hs_keys.name}"
[[upstream]]
name = "time"
command = ["{third_party.time_server}"]
[[upstream]]
name = "ev"
command = "{third_party.everything} stdio"
"""
    )
    gw = http_gateway("--config", config)
    issuer = _issuer(hs_keys)
    for name, fp, tool, args in (
        ("time", TIME_FP, "get_current_time", {"timezone": "UTC"}),
        ("ev", EV_FP, "echo", {"message": "m"}),
    ):
        raw = Raw(f"{gw.url}/mcp/{name}")
        raw.open()
        env = issuer.sign(tool=tool, arguments=args, server_fingerprint=fp, intent="route").to_wire()
        assert not raw.call(tool, args, env)["result"].get("isError")
    assert (tmp_path / "state" / "replay.sqlite").exists() and (tmp_path / "state" / "audit.sqlite").exists()
    assert os.path.exists(hs_keys)
