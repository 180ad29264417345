"""Soak: every kind of hostile client at once while a well-behaved client keeps calling.

Bounded in time (``SOAK_SECONDS``, 20 s by default so the suite fits its CI
budget; the issue's 60 s run is ``SOAK_SECONDS=60``), loopback only. Each
attacker comes from its own 127.0.0.x address, as separate machines would,
so per-client limits apply to it and not to the good client. Asserted: all
the good client's calls succeed, the gateway's RSS stays under 400 MiB,
no refused call reached the upstream, no upstream process outlives the
gateway.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from gateway_helpers import HERE, PY

from mcp_attest import Issuer, Keyring, server_fingerprint

pytestmark = pytest.mark.slow

SECONDS = float(os.environ.get("SOAK_SECONDS", "20"))
RSS_BOUND = 400 * 1024 * 1024
FP = server_fingerprint("flaky", "")
INIT = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
JSON_H = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _processes_mentioning(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class Attacker:
    def __init__(self, base: str, port: int, source: str, issuer: Issuer, stop: threading.Event) -> None:
        self.url, self.port, self.source, self.issuer, self.stop = base + "/mcp", port, source, issuer, stop
        self.http = httpx.Client(timeout=10, transport=httpx.HTTPTransport(local_address=source))
        self.sid = ""

    def post(self, body: bytes, sid: str | None = None) -> httpx.Response | None:
        h = {**JSON_H, **({"mcp-session-id": sid} if sid else {})}
        try:
            return self.http.post(self.url, content=body, headers=h)
        except httpx.HTTPError:
            return None

    def session(self) -> str:
        resp = self.post(orjson.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT}))
        return resp.headers.get("mcp-session-id", "") if resp is not None else ""

    def signed(self, rid: Any, tool: str, args: dict[str, Any], **meta: Any) -> dict[str, Any]:
        env = self.issuer.sign(tool=tool, arguments=args, server_fingerprint=FP, intent="soak").to_wire()
        message = {"jsonrpc": "2.0", "method": "tools/call"}
        message["params"] = {"name": tool, "arguments": args, "_meta": {"attestation": env, **meta}}
        return message | ({} if rid is None else {"id": rid})

    def loop(self, step: Callable[[], None]) -> None:
        while not self.stop.is_set():
            step()

    # -- one method per attack in issue 10 --

    def notification_bypass(self) -> None:
        self.post(orjson.dumps(self.signed(None, "bypass", {})), self.sid or None)

    def session_flood(self) -> None:
        self.session()

    def duplicate_ids(self) -> None:
        sid = self.sid
        body = orjson.dumps(self.signed(1, "hang", {}))
        threading.Thread(target=self.post, args=(body, sid), daemon=True).start()
        time.sleep(0.1)
        self.post(orjson.dumps(self.signed(1, "ok", {})), sid)
        time.sleep(0.5)

    def slowloris(self) -> None:
        socks = []
        for _ in range(20):
            try:
                s = socket.create_connection(("127.0.0.1", self.port), 5, (self.source, 0))
                s.sendall(b"POST /mcp HTTP/1.1\r\nhost: x\r\n")
                socks.append(s)
            except OSError:
                break
        for _ in range(10):
            time.sleep(0.3)
            for s in socks:
                with contextlib.suppress(OSError):
                    s.sendall(b"x: y\r\n")
        for s in socks:
            s.close()

    def huge_header(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 5, (self.source, 0)) as s:
                s.sendall(b"POST /mcp HTTP/1.1\r\nx-big: ")
                for _ in range(1000):
                    s.sendall(b"a" * 65536)
        except OSError:
            pass

    def audit_growth(self) -> None:
        big = {"jsonrpc": "2.0", "id": 2, "method": "tools/call"}
        big["params"] = {"name": "n" * 50_000, "arguments": {"x": [i + 0.5 for i in range(100_000)]}}
        big["params"]["_meta"] = {"attestation": {"v": 1, "junk": "x" * 500_000}}
        self.post(orjson.dumps(big), self.sid or None)

    def progress_hijack(self) -> None:
        self.post(orjson.dumps(self.signed(3, "progress", {"who": "thief", "delay": 0.2}, progressToken="t")))

    def raw_bytes(self) -> None:
        text = orjson.dumps(self.signed(4, "smuggled", {"n": 0})).decode()
        self.post(text.replace('"signature":', '"signature":"00","signature":', 1).encode(), self.sid or None)
        self.post(text.replace('{"n":0}', '{"n":-0}').encode(), self.sid or None)

    def odd_ids(self) -> None:
        for rid in ([1], {"a": 1}, True):
            self.post(orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": "ping"}), self.sid or None)

    def in_flight_flood(self) -> None:
        for i in range(12):
            body = orjson.dumps(self.signed(100 + i, "hang", {}))
            threading.Thread(target=self.post, args=(body, self.sid), daemon=True).start()
        time.sleep(1.0)


ATTACKS = [
    "notification_bypass",
    "session_flood",
    "duplicate_ids",
    "slowloris",
    "huge_header",
    "audit_growth",
    "progress_hijack",
    "raw_bytes",
    "odd_ids",
    "in_flight_flood",
]


def test_soak_hostile_clients_of_every_kind_while_a_good_client_calls(
    hs_keys: Path, tmp_path: Path, http_gateway: Any
) -> None:
    marker = str(tmp_path / "soak-calls.log")
    command = f"env FLAKY_LOG={marker} {PY} {HERE / 'flaky_server.py'}"
    gw = http_gateway(
        "--keys", hs_keys, "--upstream-cmd", command, "--name", "flaky", "--state-dir", tmp_path / "state",
        "--timeout", "2", "--max-sessions", "24", "--max-sessions-per-client", "4",
        "--max-stdio-children", "24",
        "--max-in-flight", "8", "--idle-timeout", "0.05", "--header-timeout", "2",
        "--max-body-bytes", str(8 * 1024 * 1024),
    )  # fmt: skip
    issuer = Issuer(Keyring.load(hs_keys), iss="agent", sub="tester")
    stop = threading.Event()
    attackers = []
    for i, name in enumerate(ATTACKS):
        attacker = Attacker(gw.url, gw.port, f"127.0.0.{10 + i}", issuer, stop)
        attacker.sid = attacker.session()
        attackers.append(threading.Thread(target=attacker.loop, args=(getattr(attacker, name),), daemon=True))
    good = httpx.Client(timeout=10)
    init = good.post(
        gw.url + "/mcp",
        json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT},
        headers=JSON_H,
    )
    sid = init.headers["mcp-session-id"]
    for t in attackers:
        t.start()
    calls, failures, peak, latencies = 0, [], 0, []
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        env = issuer.sign(tool="ok", arguments={"i": calls}, server_fingerprint=FP, intent="good").to_wire()
        params = {"name": "ok", "arguments": {"i": calls}, "_meta": {"attestation": env}}
        started = time.monotonic()
        resp = good.post(
            gw.url + "/mcp",
            json={"jsonrpc": "2.0", "id": calls + 1, "method": "tools/call", "params": params},
            headers={**JSON_H, "mcp-session-id": sid},
        )
        latencies.append(time.monotonic() - started)
        calls += 1
        if resp.status_code != 200 or "ok pid=" not in resp.text:
            failures.append(resp.text[:200])
        peak = max(peak, _rss(gw.proc.pid))
        time.sleep(0.05)
    stop.set()
    for t in attackers:
        t.join(15)
    metrics = httpx.get(gw.url + "/metrics").text
    gw.stop()
    time.sleep(1.0)
    orphans = _processes_mentioning(marker)
    for pid in orphans:  # cleaned up before the assertion below reports them
        os.kill(pid, signal.SIGKILL)
    latencies.sort()
    print(
        f"soak {SECONDS:g}s: {calls} good calls, p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms, peak RSS {peak / 2**20:.0f} MiB"
    )
    assert failures == [], failures[:3]
    assert calls >= SECONDS  # the good client was not starved
    assert peak < RSS_BOUND, peak
    assert orphans == [], orphans
    assert "mcp_attest_gateway_refusals_total" in metrics
    reached = set(Path(marker).read_text().split())
    assert reached.isdisjoint({"bypass", "smuggled"}), reached  # refused calls never ran
