"""What the MCP guard adds to an in-process tools/call, beyond the core verify.

Run: ``.venv/bin/python bench/bench_guard.py [--calls N]``.

Same run, same in-memory client/server pair shape:
  direct  = unguarded MCPServer tools/call
  guarded = the same server with the guard, attested call (envelope in _meta)
  core    = Verifier.verify on the same envelopes, as the guard receives them
The guard's own cost is guarded - direct - core; the target is that it
costs no more than core itself.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

from mcp import Client
from mcp.server import MCPServer

from mcp_attest import (
    InMemoryReplayStore,
    Issuer,
    Keyring,
    Verifier,
    VerifierPolicy,
    generate_key,
    server_fingerprint,
)
from mcp_attest.mcp import AttestationGuard

FP = server_fingerprint("bench", "1")
ARGS = {"path": "/srv/reports/2026/q3/report.txt", "reason": "archive per retention policy", "n": 3}


def _server(guard: AttestationGuard | None) -> MCPServer:
    if guard is None:
        server = MCPServer("bench")
    else:
        server = MCPServer("bench", extensions=[guard.extension()], middleware=[guard.middleware()])

    @server.tool()
    def archive(path: str, reason: str, n: int) -> str:
        """Stand-in tool: constant work so only the call path is measured."""
        return "ok"

    return server


async def _time_calls(server: MCPServer, metas: list[dict[str, Any] | None]) -> list[float]:
    samples = []
    async with Client(server) as client:
        for meta in metas[:50]:  # warm-up, also checks the calls succeed
            result = await client.call_tool("archive", ARGS, meta=meta)  # type: ignore[arg-type]
            assert not result.is_error, result
        for meta in metas[50:]:
            start = time.perf_counter()
            await client.call_tool("archive", ARGS, meta=meta)  # type: ignore[arg-type]
            samples.append(time.perf_counter() - start)
    return samples


def run(alg: str, calls: int) -> dict[str, float]:
    ring = Keyring().with_key("agent://bench", generate_key(alg, "k1"))
    issuer = Issuer(ring, iss="agent://bench", sub="user:bench")

    def envelopes() -> list[Any]:
        return [
            issuer.sign(tool="archive", arguments=ARGS, server_fingerprint=FP, intent="bench").to_wire()
            for _ in range(calls + 50)
        ]

    direct = asyncio.run(_time_calls(_server(None), [None] * (calls + 50)))
    guard = AttestationGuard(Verifier(ring, FP, replay_store=InMemoryReplayStore(), policy=VerifierPolicy()))
    guarded = asyncio.run(_time_calls(_server(guard), [{"attestation": e} for e in envelopes()]))
    verifier = Verifier(ring, FP, replay_store=InMemoryReplayStore())
    core = []
    for wire in envelopes():
        start = time.perf_counter()
        verdict = verifier.verify(wire, tool="archive", arguments=ARGS)
        core.append(time.perf_counter() - start)
        assert verdict.accepted
    d, g, c = (statistics.median(x) * 1e6 for x in (direct, guarded, core))
    return {"direct": d, "guarded": g, "core": c, "glue": g - d - c}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    opts = parser.parse_args()
    print(f"in-process tools/call, p50 over {opts.calls} calls after 50 warm-up")
    print(
        f"{'alg':6} {'direct us':>10} {'guarded us':>11} {'core verify us':>15} {'guard glue us':>14}"
        "  glue <= core?"
    )
    for alg in ("HS256", "ES256"):
        r = run(alg, opts.calls)
        met = "yes" if r["glue"] <= r["core"] else "NO"
        print(
            f"{alg:6} {r['direct']:>10.1f} {r['guarded']:>11.1f} {r['core']:>15.1f} {r['glue']:>14.1f}  {met}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
