"""Added latency and throughput of the gateway in verify mode (docs/performance.md, "Gateway").

Same run, same upstream (server-everything over Streamable HTTP on
loopback): N ``tools/call echo`` requests straight to the upstream and N
through each of two verify-mode gateways (HS256, ES256; default SQLite
replay store and audit log in a temporary state dir), after a warm-up.
The three paths are called in one interleaved loop (order rotated every
round), each through its own client with a warm keep-alive connection, so
load changes on a shared machine hit all paths alike. Envelopes
are signed before the clock starts: signing is the client's cost, not the
gateway's. Throughput uses 16 concurrent clients, each with its own
session. Needs ``.cache/third-party`` from the gateway tests.

    .venv/bin/python bench/bench_gateway.py [--calls 2000] [--warmup 200]

``--clients`` instead compares the gateway's upstream HTTP/1.1 client
(``gateway.h1``) with aiohttp's (if installed) against a minimal keep-alive
server in this process: the per-POST cost is the only difference, which is
what switching clients would change (issue 10's h1.py decision).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from mcp_attest import Issuer, Keyring, generate_key, server_fingerprint

REPO = Path(__file__).resolve().parents[1]
EVERYTHING = REPO / ".cache" / "third-party" / "node" / "node_modules" / ".bin" / "mcp-server-everything"
FP = server_fingerprint("ev", "")
HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(url: str) -> None:
    for _ in range(200):
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


class Session:
    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client, self.url, self.sid, self.ids = client, url, "", 0

    async def post(self, message: dict[str, Any]) -> Any:
        headers = {**HEADERS, "mcp-session-id": self.sid} if self.sid else HEADERS
        resp = await self.client.post(self.url, content=json.dumps(message), headers=headers)
        if resp.headers.get("content-type", "").startswith("text/event-stream"):
            data = [line[5:] for line in resp.text.splitlines() if line.startswith("data:")]
            return json.loads(data[-1]) if data else None
        return resp.json() if resp.content else None

    async def open(self) -> None:
        params = {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"},
        }
        headers = HEADERS
        resp = await self.client.post(
            self.url,
            content=json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}),
            headers=headers,
        )
        self.sid = resp.headers["mcp-session-id"]
        await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def call(self, envelope: dict[str, Any] | None) -> float:
        self.ids += 1
        params: dict[str, Any] = {"name": "echo", "arguments": {"message": "bench"}}
        if envelope is not None:
            params["_meta"] = {"attestation": envelope}
        started = time.perf_counter()
        reply = await self.post({"jsonrpc": "2.0", "id": self.ids, "method": "tools/call", "params": params})
        elapsed = time.perf_counter() - started
        if reply is None or "result" not in reply or reply["result"].get("isError"):
            raise SystemExit(f"call failed: {reply}")
        return elapsed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latency(
    targets: dict[str, tuple[str, list[dict[str, Any]] | None]], calls: int, warmup: int
) -> dict[str, list[float]]:
    """Per-call latency of every target, interleaved in one loop (order rotated each round).

    Interleaving means load changes on a shared machine hit the direct and
    the gateway paths alike, so the difference between them is the
    gateway's. Each target has its own client and session (warm keep-alive
    connection), created the same way.
    """
    names = list(targets)
    clients = {name: httpx.AsyncClient(timeout=30) for name in names}
    try:
        sessions = {name: Session(clients[name], targets[name][0]) for name in names}
        for session in sessions.values():
            await session.open()
        times: dict[str, list[float]] = {name: [] for name in names}
        for i in range(warmup + calls):
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                envelopes = targets[name][1]
                elapsed = await sessions[name].call(envelopes[i] if envelopes else None)
                if i >= warmup:
                    times[name].append(elapsed)
        return times
    finally:
        for client in clients.values():
            await client.aclose()


async def throughput(
    url: str, envelopes: list[dict[str, Any]] | None, calls: int, clients: int = 16
) -> float:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as client:
        sessions = [Session(client, url) for _ in range(clients)]
        await asyncio.gather(*(s.open() for s in sessions))
        per = calls // clients

        async def run(index: int, s: Session) -> None:
            for i in range(per):
                await s.call(envelopes[index * per + i] if envelopes else None)

        started = time.perf_counter()
        await asyncio.gather(*(run(i, s) for i, s in enumerate(sessions)))
        return per * clients / (time.perf_counter() - started)


def envelopes_for(issuer: Issuer, n: int) -> list[dict[str, Any]]:
    return [
        issuer.sign(
            tool="echo", arguments={"message": "bench"}, server_fingerprint=FP, intent="bench"
        ).to_wire()
        for _ in range(n)
    ]


async def clients(calls: int) -> dict[str, list[float]]:
    """Seconds per POST through each client, interleaved, against one keep-alive server."""
    from mcp_attest.gateway._h1 import H1Pool  # noqa: PLC0415 - only this mode needs it

    answer = b'{"jsonrpc":"2.0","id":1,"result":{}}'
    reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(answer),
        answer,
    )

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            writer.write(reply)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
    pool = H1Pool(timeout=5)
    posts: dict[str, Any] = {}

    async def h1() -> None:
        resp = await pool.post("127.0.0.1", port, "/mcp", list(HEADERS.items()), body)
        await resp.read()
        resp.close()

    posts["h1"] = h1
    try:
        import aiohttp  # noqa: PLC0415 - optional, for the comparison only
    except ImportError:
        aio = None
    else:
        aio = aiohttp.ClientSession()
        url = f"http://127.0.0.1:{port}/mcp"

        async def aiohttp_post() -> None:
            assert aio is not None
            async with aio.post(url, data=body, headers=HEADERS) as resp:
                await resp.read()

        posts["aiohttp"] = aiohttp_post
    times: dict[str, list[float]] = {name: [] for name in posts}
    try:
        for i in range(calls + calls // 10):
            for name, post in posts.items():
                started = time.perf_counter()
                await post()
                if i >= calls // 10:
                    times[name].append(time.perf_counter() - started)
    finally:
        await pool.aclose()
        if aio is not None:
            await aio.close()
        server.close()
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--gateway-flag", action="append", default=[], help="extra flag, e.g. --audit=none")
    ap.add_argument("--clients", action="store_true", help="compare upstream HTTP clients (h1 vs aiohttp)")
    args = ap.parse_args()
    if args.clients:
        for name, values in asyncio.run(clients(args.calls)).items():
            print(f"{name}: p50 {pct(values, 0.5) * 1e6:.0f} us  p99 {pct(values, 0.99) * 1e6:.0f} us")
        return
    if not EVERYTHING.exists():
        raise SystemExit(
            "run the gateway tests first: they install server-everything under .cache/third-party"
        )
    procs: list[subprocess.Popen[bytes]] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    try:
        up_port = free_port()
        procs.append(
            subprocess.Popen(
                [str(EVERYTHING), "streamableHttp"],
                env={**os.environ, "PORT": str(up_port)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        upstream = f"http://127.0.0.1:{up_port}/mcp"
        time.sleep(1.0)
        results: dict[str, Any] = {}
        urls: dict[str, str] = {"direct": upstream}
        issuers: dict[str, Issuer] = {}
        for alg in ("HS256", "ES256"):
            keys = tmp / f"{alg}.json"
            Keyring().with_key("agent", generate_key(alg, "k1")).save(keys, private=True)
            port = free_port()
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "import sys; from mcp_attest.gateway.cli import main; sys.exit(main(sys.argv[1:]))",
                        "--http",
                        f"127.0.0.1:{port}",
                        "--keys",
                        str(keys),
                        "--upstream-url",
                        upstream,
                        "--name",
                        "ev",
                        "--state-dir",
                        str(tmp / f"state-{alg}"),
                        "--max-sessions-per-client",  # all benchmark clients share one address
                        "64",
                        *args.gateway_flag,
                    ]
                )
            )
            wait(f"http://127.0.0.1:{port}/healthz")
            issuers[alg] = Issuer(Keyring.load(keys), iss="agent", sub="bench")
            urls[alg] = f"http://127.0.0.1:{port}/mcp"
        load_before = os.getloadavg()
        targets: dict[str, tuple[str, list[dict[str, Any]] | None]] = {"direct": (upstream, None)}
        for alg, issuer in issuers.items():
            targets[alg] = (urls[alg], envelopes_for(issuer, args.calls + args.warmup))
        times = asyncio.run(latency(targets, args.calls, args.warmup))
        for name, tput_envs in (
            ("direct", None),
            *((alg, envelopes_for(issuer, args.calls)) for alg, issuer in issuers.items()),
        ):
            tput = asyncio.run(throughput(urls[name], tput_envs, args.calls))
            results[name] = {
                "p50": pct(times[name], 0.5),
                "p99": pct(times[name], 0.99),
                "mean": statistics.fmean(times[name]),
                "throughput": tput,
            }
        results["loadavg"] = {"before": load_before, "after": os.getloadavg()}
        d = results["direct"]
        ms = 1e3
        print(f"direct: p50 {d['p50'] * ms:.3f} ms  p99 {d['p99'] * ms:.3f} ms  {d['throughput']:.0f}/s")
        for alg in ("HS256", "ES256"):
            r = results[alg]
            added = {q: (r[q] - d[q]) * ms for q in ("p50", "p99")}
            ratio = {q: r[q] / d[q] for q in ("p50", "p99", "throughput")}
            print(
                f"{alg}: p50 {r['p50'] * ms:.3f} ms (+{added['p50']:.3f} ms, x{ratio['p50']:.2f})  "
                f"p99 {r['p99'] * ms:.3f} ms (+{added['p99']:.3f} ms, x{ratio['p99']:.2f})  "
                f"16 clients {r['throughput']:.0f}/s (x{ratio['throughput']:.2f})"
            )
        before, after = results["loadavg"]["before"], results["loadavg"]["after"]
        print(f"load average (1/5/15 min): before {before}, after {after}")
        print(json.dumps(results))
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)


if __name__ == "__main__":
    main()
