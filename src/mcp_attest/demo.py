"""``mcp-attest demo``: one guarded MCP server, eight requests, one table.

Everything is throwaway: keys and the files the destructive tool may delete
live in a temporary directory removed at exit. The server is real (MCPServer
behind the guard, on Streamable HTTP at 127.0.0.1 by default) and so is the
client (the SDK client, plus crafted envelopes for the attacks).
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import anyio
import uvicorn
from mcp import Client
from mcp.server import MCPServer
from mcp_types import CallToolResult, TextContent

from mcp_attest import Issuer, Keyring, generate_key, server_fingerprint
from mcp_attest.mcp import AttestationGuard, AttestingClient, parse_rejection

__all__ = ["build_server", "run", "serve_in_thread"]

ISSUER = "agent://demo-planner"
SERVER_NAME = "demo-files"
SERVER_ID = "demo"


def build_server(guard: AttestationGuard, workdir: Path) -> MCPServer:
    """The example server: one harmless tool, one destructive one."""
    server = MCPServer(
        SERVER_NAME,
        extensions=[guard.extension()],
        middleware=[guard.middleware()],
        log_level="WARNING",
    )

    @server.tool()
    def read_note(name: str) -> str:
        """Read a note from the sandbox directory."""
        return (workdir / Path(name).name).read_text()

    @server.tool()
    def delete_file(name: str) -> str:
        """Delete a file from the sandbox directory (the dangerous one)."""
        (workdir / Path(name).name).unlink()
        return f"deleted {name}"

    return server


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve an ASGI app on a free 127.0.0.1 port in a thread; yield its base URL.

    The socket is bound before the thread starts, so the port is known
    without a race and the caller can connect as soon as ``started`` is set.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("demo HTTP server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass(frozen=True)
class Row:
    request: str
    expected: str
    verdict: str
    ran: bool

    @property
    def ok(self) -> bool:
        return self.expected == self.verdict and self.ran == (self.expected == "accepted")


@dataclass
class _World:
    """Everything the scenarios share: keys, the sandbox, the two clients."""

    workdir: Path
    fingerprint: str
    keyring: Keyring
    issuer: Issuer
    attesting: AttestingClient
    raw: Client

    def victim(self, name: str) -> str:
        (self.workdir / name).write_text("precious data\n")
        return name

    def ran(self, name: str) -> bool:
        return not (self.workdir / name).exists()

    async def send(self, tool: str, arguments: dict[str, Any], attestation: Any = None) -> str:
        meta = None if attestation is None else {"attestation": attestation}
        return _verdict_of(await self.raw.call_tool(tool, arguments, meta=meta))  # type: ignore[arg-type]

    def sign(self, tool: str, arguments: dict[str, Any], **overrides: Any) -> dict[str, Any]:
        issuer = overrides.pop("issuer", self.issuer)
        options: dict[str, Any] = {
            "server_fingerprint": self.fingerprint,
            "intent": "tidy up the sandbox",
            "commit": "both",
        }
        options.update(overrides)
        return issuer.sign(tool=tool, arguments=arguments, **options).to_wire()  # type: ignore[no-any-return]


def _verdict_of(result: CallToolResult) -> str:
    rejection = parse_rejection(result)
    if rejection is not None:
        return rejection[0].value
    if result.is_error:
        text = result.content[0].text if result.content and isinstance(result.content[0], TextContent) else ""
        return f"tool error: {text}"
    return "accepted"


Scenario = Callable[[_World], Awaitable[Row]]


async def _valid(w: _World) -> Row:
    name = w.victim("valid.txt")
    result = await w.attesting.call_tool("delete_file", {"name": name}, intent="tidy up the sandbox")
    return Row("attested delete_file(valid.txt)", "accepted", _verdict_of(result), w.ran(name))


async def _replay(w: _World) -> Row:
    name = w.victim("replay.txt")
    envelope = w.sign("delete_file", {"name": name})
    await w.send("delete_file", {"name": name}, envelope)
    name = w.victim(name)  # restore it: only the replay may delete it now
    verdict = await w.send("delete_file", {"name": name}, envelope)
    return Row("same envelope sent again", "nonce_replay", verdict, w.ran(name))


async def _tampered(w: _World) -> Row:
    decoy, target = w.victim("decoy.txt"), w.victim("tampered.txt")
    envelope = w.sign("delete_file", {"name": decoy})
    verdict = await w.send("delete_file", {"name": target}, envelope)
    return Row("arguments changed after signing", "args_commitment_mismatch", verdict, w.ran(target))


async def _other_server(w: _World) -> Row:
    name = w.victim("other-server.txt")
    other = server_fingerprint("billing", "prod")
    envelope = w.sign("delete_file", {"name": name}, server_fingerprint=other)
    verdict = await w.send("delete_file", {"name": name}, envelope)
    return Row("plan signed for another server", "server_mismatch", verdict, w.ran(name))


async def _wrong_tool(w: _World) -> Row:
    name = w.victim("wrong-tool.txt")
    envelope = w.sign("read_note", {"name": name})
    verdict = await w.send("delete_file", {"name": name}, envelope)
    return Row("read_note plan used for delete_file", "tool_mismatch", verdict, w.ran(name))


async def _expired(w: _World) -> Row:
    name = w.victim("expired.txt")
    stale = Issuer(w.keyring, iss=ISSUER, sub="user:alice", clock=lambda: time.time() - 3600)
    envelope = w.sign("delete_file", {"name": name}, issuer=stale, exp_seconds=60)
    verdict = await w.send("delete_file", {"name": name}, envelope)
    return Row("envelope signed an hour ago, 60 s TTL", "expired", verdict, w.ran(name))


async def _unknown_key(w: _World) -> Row:
    name = w.victim("unknown-key.txt")
    rogue_ring = Keyring().with_key(ISSUER, generate_key("ES256", "rogue"))
    rogue = Issuer(rogue_ring, iss=ISSUER, sub="user:mallory")
    envelope = w.sign("delete_file", {"name": name}, issuer=rogue)
    verdict = await w.send("delete_file", {"name": name}, envelope)
    return Row("signed with a key the server never saw", "key_unavailable", verdict, w.ran(name))


async def _missing(w: _World) -> Row:
    name = w.victim("unattested.txt")
    verdict = await w.send("delete_file", {"name": name})
    return Row("no attestation at all", "attestation_required", verdict, w.ran(name))


SCENARIOS: tuple[Scenario, ...] = (
    _valid,
    _replay,
    _tampered,
    _other_server,
    _wrong_tool,
    _expired,
    _unknown_key,
    _missing,
)


async def _play(server: MCPServer, url: str | None, workdir: Path, keyring: Keyring) -> list[Row]:
    fingerprint = server_fingerprint(SERVER_NAME, SERVER_ID)
    issuer = Issuer(keyring, iss=ISSUER, sub="user:alice")
    target: Any = server if url is None else url + "/mcp"
    attesting = AttestingClient.connect(
        target, issuer=issuer, server_fingerprint=fingerprint, header=url is not None
    )
    async with attesting, Client(target) as raw:
        world = _World(workdir, fingerprint, keyring, issuer, attesting, raw)
        return [await scenario(world) for scenario in SCENARIOS]


_GREEN, _RED, _DIM, _RESET = "\033[32m", "\033[31m", "\033[2m", "\033[0m"


def _table(rows: list[Row], out: TextIO, colour: bool) -> None:
    headers = ("request", "expected", "verdict", "tool ran?", "result")
    cells = [
        (r.request, r.expected, r.verdict, "yes" if r.ran else "no", "ok" if r.ok else "MISMATCH")
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    out.write(line(headers) + "\n")
    out.write(line(tuple("-" * w for w in widths)) + "\n")
    for row, cell in zip(rows, cells, strict=True):
        text = line(cell)
        if colour:
            text = (_GREEN if row.ok else _RED) + text + _RESET
        out.write(text + "\n")


def run(argv: list[str] | None = None) -> int:
    """Run the demo; 0 when every row shows its expected verdict, else 1."""
    parser = argparse.ArgumentParser(prog="mcp-attest demo", description=__doc__)
    parser.add_argument(
        "--transport",
        choices=("http", "memory"),
        default="http",
        help="Streamable HTTP on 127.0.0.1 (default) or an in-process server",
    )
    parser.add_argument("--no-color", action="store_true", help="never colour the table")
    args = parser.parse_args(argv)
    out = sys.stdout
    colour = out.isatty() and not args.no_color

    with tempfile.TemporaryDirectory(prefix="mcp-attest-demo-") as tmp:
        root = Path(tmp)
        workdir = root / "sandbox"
        workdir.mkdir()
        signing = Keyring().with_key(ISSUER, generate_key("ES256", "demo-1"))
        signing.save(root / "signing-keys.json", private=True)
        signing.save(root / "verify-keys.json", private=False)
        guard = AttestationGuard.from_keyring(
            Keyring.load(root / "verify-keys.json"),
            server_name=SERVER_NAME,
            server_id=SERVER_ID,
            required=True,
            args_binding="strict",
        )
        server = build_server(guard, workdir)
        keyring = Keyring.load(root / "signing-keys.json")
        out.write(f"mcp-attest demo: throwaway keys in {root}, server {SERVER_NAME!r} ({args.transport})\n\n")
        if args.transport == "http":
            with serve_in_thread(server.streamable_http_app()) as url:
                rows = anyio.run(_play, server, url, workdir, keyring)
        else:
            rows = anyio.run(_play, server, None, workdir, keyring)
    _table(rows, out, colour)
    failed = [r for r in rows if not r.ok]
    summary = f"\n{len(rows) - len(failed)}/{len(rows)} rows as expected\n"
    out.write((_DIM + summary + _RESET) if colour else summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run())
