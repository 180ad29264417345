"""Resource limits under hostile clients: each refusal is clear, counted, and spares the others.

Clients come from different loopback addresses (127.0.0.x all reach the
gateway on Linux) so per-address limits can be told from totals.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from gateway_helpers import HERE, PY, gateway_argv

from mcp_attest import Issuer, Keyring, server_fingerprint

pytestmark = pytest.mark.slow

FP = server_fingerprint("flaky", "")
INIT = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
JSON_H = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def _gateway(http_gateway: Any, hs_keys: Path, tmp_path: Path, *flags: str) -> Any:
    command = f"env FLAKY_LOG={tmp_path / 'calls.log'} {PY} {HERE / 'flaky_server.py'}"
    return http_gateway(
        "--keys", hs_keys, "--upstream-cmd", command, "--name", "flaky",
        "--state-dir", tmp_path / "state", *flags,
    )  # fmt: skip


class Client:
    def __init__(self, base: str, source: str = "127.0.0.1") -> None:
        self.url = base + "/mcp"
        self.http = httpx.Client(timeout=20, transport=httpx.HTTPTransport(local_address=source))
        self.sid = ""

    def post(self, message: Any) -> httpx.Response:
        h = {**JSON_H, **({"mcp-session-id": self.sid} if self.sid else {})}
        return self.http.post(self.url, content=orjson.dumps(message), headers=h)

    def open(self) -> httpx.Response:
        resp = self.post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT})
        if resp.status_code == 200:
            self.sid = resp.headers["mcp-session-id"]
        return resp

    def call(self, issuer: Issuer, tool: str = "ok", rid: int = 1) -> httpx.Response:
        env = issuer.sign(tool=tool, arguments={}, server_fingerprint=FP, intent="limits").to_wire()
        params = {"name": tool, "arguments": {}, "_meta": {"attestation": env}}
        return self.post({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params})


def _ok(client: Client, issuer: Issuer) -> None:
    resp = client.call(issuer)
    assert resp.status_code == 200 and "ok pid=" in resp.text, resp.text


def _refusals(base: str) -> dict[str, int]:
    found = {}
    for line in httpx.get(base + "/metrics").text.splitlines():
        if line.startswith("mcp_attest_gateway_refusals_total{"):
            label, _, value = line.partition("} ")
            found[label.split('"')[1]] = int(value)
    return found


@pytest.fixture()
def issuer(hs_keys: Path) -> Issuer:
    return Issuer(Keyring.load(hs_keys), iss="agent", sub="tester")


def test_unlimited_sessions_flood_is_refused_per_client_and_in_total(
    hs_keys: Path, tmp_path: Path, issuer: Issuer, http_gateway: Any
) -> None:
    gw = _gateway(http_gateway, hs_keys, tmp_path, "--max-sessions", "3", "--max-sessions-per-client", "2")
    mine = [Client(gw.url), Client(gw.url)]
    for c in mine:
        assert c.open().status_code == 200
    flood = Client(gw.url).open()
    assert flood.status_code == 429 and flood.json()["error"]["code"] == -32003, flood.text
    assert Client(gw.url, "127.0.0.2").open().status_code == 200
    full = Client(gw.url, "127.0.0.3").open()
    assert full.status_code == 503 and full.json()["error"]["code"] == -32003
    for c in mine:
        _ok(c, issuer)  # existing sessions keep working
    mine[0].http.delete(mine[0].url, headers={"mcp-session-id": mine[0].sid})
    assert Client(gw.url, "127.0.0.3").open().status_code == 200  # a freed slot is usable again
    assert _refusals(gw.url) == {"sessions_per_client": 1, "sessions_total": 1}


def test_stdio_children_limit_refuses_new_upstream_processes(
    hs_keys: Path, tmp_path: Path, issuer: Issuer, http_gateway: Any
) -> None:
    gw = _gateway(http_gateway, hs_keys, tmp_path, "--max-stdio-children", "2")
    first = Client(gw.url)
    assert first.open().status_code == 200
    assert Client(gw.url, "127.0.0.2").open().status_code == 200
    third = Client(gw.url, "127.0.0.3").open()
    assert third.status_code == 503 and "upstream processes" in third.json()["error"]["message"]
    _ok(first, issuer)
    assert _refusals(gw.url) == {"stdio_children": 1}


def test_idle_sessions_are_closed_after_the_idle_timeout_even_with_a_get_stream(
    hs_keys: Path, tmp_path: Path, issuer: Issuer, http_gateway: Any
) -> None:
    gw = _gateway(http_gateway, hs_keys, tmp_path, "--idle-timeout", "0.03")  # 1.8 s
    idle, busy = Client(gw.url), Client(gw.url)
    idle.open()
    busy.open()
    ended = threading.Event()

    def listen() -> None:
        h = {"accept": "text/event-stream", "mcp-session-id": idle.sid}
        with httpx.stream("GET", idle.url, headers=h, timeout=30) as resp:
            for _ in resp.iter_bytes():
                pass
        ended.set()

    threading.Thread(target=listen, daemon=True).start()
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        _ok(busy, issuer)  # used: stays
        time.sleep(0.3)
    assert ended.wait(5), "the GET stream of the idle session was not ended"
    assert idle.call(issuer).status_code == 404
    _ok(busy, issuer)
    assert _refusals(gw.url)["idle_session_closed"] == 1


def test_in_flight_flood_in_one_session_is_refused_beyond_the_limit(
    hs_keys: Path, tmp_path: Path, issuer: Issuer, http_gateway: Any
) -> None:
    gw = _gateway(http_gateway, hs_keys, tmp_path, "--max-in-flight", "2", "--timeout", "3")
    client, other = Client(gw.url), Client(gw.url)
    client.open()
    other.open()
    hung = [threading.Thread(target=client.call, args=(issuer, "hang", i)) for i in (1, 2)]
    for t in hung:
        t.start()
    time.sleep(1.0)
    over = client.call(issuer, "ok", 3)
    assert over.status_code == 429 and over.json()["error"]["code"] == -32003, over.text
    _ok(other, issuer)
    for t in hung:
        t.join(10)
    _ok(client, issuer)  # the slots free up when the hung calls time out


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    return s


def _closed_with(s: socket.socket, within: float) -> bytes:
    """What the server sent before closing, waiting at most ``within`` seconds; raises if still open."""
    s.settimeout(within)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


def test_slowloris_huge_header_and_connection_floods_are_cut(
    hs_keys: Path, tmp_path: Path, issuer: Issuer, http_gateway: Any
) -> None:
    gw = _gateway(
        http_gateway, hs_keys, tmp_path,
        "--header-timeout", "1", "--max-header-bytes", "8192", "--body-timeout", "1",
        "--keepalive-timeout", "1", "--max-connections-per-client", "20",
    )  # fmt: skip
    good = Client(gw.url)
    good.open()
    slow = [_connect(gw.port, "127.0.0.2") for _ in range(15)]
    for s in slow:
        s.sendall(b"POST /mcp HTTP/1.1\r\nhost: x\r\n")
    huge = _connect(gw.port, "127.0.0.3")
    huge.sendall(b"POST /mcp HTTP/1.1\r\nx-big: " + b"a" * 100_000)
    body = _connect(gw.port, "127.0.0.4")
    body.sendall(
        b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\naccept: application/json\r\n"
        b"content-length: 100\r\n\r\n{"
    )
    idle = _connect(gw.port, "127.0.0.5")
    with _connect(gw.port, "127.0.0.7") as whole:  # head and a 100 kB body in one write: no 431
        pad = {"pad": "p" * 100_000}
        message = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": pad})
        whole.sendall(
            b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\naccept: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(message), message)
        )
        assert whole.recv(65536).startswith(b"HTTP/1.1 200 ")
    flood = [_connect(gw.port, "127.0.0.6") for _ in range(21)]
    _ok(good, issuer)
    assert _closed_with(huge, 3).startswith(b"HTTP/1.1 431")
    assert _closed_with(flood[-1], 3).startswith(b"HTTP/1.1 429")
    time.sleep(1.2)
    for s in slow:
        s.sendall(b"x-more: 1\r\n")  # still trickling, but past the head deadline
    assert all(_closed_with(s, 3).startswith(b"HTTP/1.1 408") for s in slow)
    assert b" 408 " in _closed_with(body, 3)
    assert _closed_with(idle, 3) == b""
    _ok(good, issuer)
    refusals = _refusals(gw.url)
    assert refusals["http_header_timeout"] == 15 and refusals["http_header_too_large"] == 1
    assert refusals["connections_per_client"] == 1 and refusals["http_body_timeout"] == 1
    for s in [*slow, huge, body, idle, *flood]:
        s.close()


def test_limits_must_be_positive_numbers(hs_keys: Path, tmp_path: Path) -> None:
    from mcp_attest.gateway.config import ConfigError, load_config  # noqa: PLC0415

    base = {"keys": str(hs_keys), "http": "127.0.0.1:1", "upstream": {"command": ["x"], "name": "u"}}
    assert load_config(None, {**base, "max_sessions": 5}).limits.max_sessions == 5
    for bad in ({"max_sessions": 0}, {"header_timeout": -1.0}):
        with pytest.raises(ConfigError, match="must be a positive number"):
            load_config(None, {**base, **bad})
    toml = tmp_path / "gw.toml"
    toml.write_text('[limits]\nidle_timeout = 2\nmax_in_flight = "8"\n')
    with pytest.raises(ConfigError, match="max_in_flight must be int"):
        load_config(str(toml), base)
    toml.write_text("[limits]\nidle_timeout = 2\n[listen]\nmax_header_bytes = 4096\n")
    config = load_config(str(toml), base)
    assert config.limits.idle_timeout == 2 and config.connections.max_header_bytes == 4096


def test_in_flight_flood_over_stdio_gets_a_json_rpc_error_with_its_id(
    hs_keys: Path, tmp_path: Path, issuer: Issuer
) -> None:
    command = f"env FLAKY_LOG={tmp_path / 'calls.log'} {PY} {HERE / 'flaky_server.py'}"
    argv = gateway_argv(
        "--stdio", "--keys", hs_keys, "--upstream-cmd", command, "--name", "flaky",
        "--state-dir", tmp_path / "state", "--max-in-flight", "1", "--timeout", "2",
    )  # fmt: skip
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None

    def send(message: Any) -> None:
        assert proc.stdin is not None
        proc.stdin.write(orjson.dumps(message) + b"\n")
        proc.stdin.flush()

    def call(rid: int, tool: str) -> dict[str, Any]:
        env = issuer.sign(tool=tool, arguments={}, server_fingerprint=FP, intent="limits").to_wire()
        params = {"name": tool, "arguments": {}, "_meta": {"attestation": env}}
        return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}

    try:
        send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT})
        assert "result" in orjson.loads(proc.stdout.readline())
        send(call(1, "hang"))
        send(call(2, "ok"))
        refused = orjson.loads(proc.stdout.readline())
        assert refused["id"] == 2 and refused["error"]["code"] == -32003, refused
        assert orjson.loads(proc.stdout.readline())["id"] == 1  # the hang times out
        send(call(3, "ok"))
        assert "ok pid=" in orjson.loads(proc.stdout.readline())["result"]["content"][0]["text"]
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
