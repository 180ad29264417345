"""``mcp-attest demo``: one guarded MCP server, eight requests, one table.

Everything is throwaway: keys and the files the destructive tool may delete
live in a temporary directory removed at exit. The server is real (MCPServer
behind the guard, on Streamable HTTP at 127.0.0.1 by default) and so is the
client (the SDK client, plus crafted envelopes for the attacks).

With ``--via-gateway`` the same server runs with no guard at all, as a stdio
child of a real ``mcp-attest gateway`` process in verify mode, and the
client talks to the gateway: the case of a server you cannot change. The
rows must not change, because whether a call is attested is no business of
the server's code.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
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
import httpx
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


def build_server(guard: AttestationGuard | None, workdir: Path) -> MCPServer:
    """The example server: one harmless tool, one destructive one.

    ``guard=None`` gives the same tools with no mcp-attest code in the call
    path, so the gateway demo shows a server nobody changed, not a guarded
    one with the check switched off.
    """
    server = MCPServer(
        SERVER_NAME,
        extensions=[] if guard is None else [guard.extension()],
        middleware=[] if guard is None else [guard.middleware()],
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
    calls: int = 0  # tools/call requests sent, so the audit log can be held to account

    def victim(self, name: str) -> str:
        (self.workdir / name).write_text("precious data\n")
        return name

    def ran(self, name: str) -> bool:
        return not (self.workdir / name).exists()

    async def send(self, tool: str, arguments: dict[str, Any], attestation: Any = None) -> str:
        meta = None if attestation is None else {"attestation": attestation}
        self.calls += 1
        return _verdict_of(await self.raw.call_tool(tool, arguments, meta=meta))  # type: ignore[arg-type]

    async def attested(self, tool: str, arguments: dict[str, Any]) -> str:
        """A call signed by the attesting client, as an agent would make it."""
        self.calls += 1
        return _verdict_of(await self.attesting.call_tool(tool, arguments, intent="tidy up the sandbox"))

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
    verdict = await w.attested("delete_file", {"name": name})
    return Row("attested delete_file(valid.txt)", "accepted", verdict, w.ran(name))


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


async def _play(target: Any, workdir: Path, keyring: Keyring) -> tuple[list[Row], int]:
    """Run every scenario against ``target`` (a URL or an in-process server); rows and calls sent."""
    fingerprint = server_fingerprint(SERVER_NAME, SERVER_ID)
    issuer = Issuer(keyring, iss=ISSUER, sub="user:alice")
    attesting = AttestingClient.connect(
        target, issuer=issuer, server_fingerprint=fingerprint, header=isinstance(target, str)
    )
    async with attesting, Client(target) as raw:
        world = _World(workdir, fingerprint, keyring, issuer, attesting, raw)
        return [await scenario(world) for scenario in SCENARIOS], world.calls


def _toml_str(value: str | Path) -> str:
    """A TOML basic string: JSON's escapes are a subset of TOML's, and temp paths may hold anything."""
    return json.dumps(str(value))


def _write_gateway_config(root: Path, workdir: Path) -> Path:
    """The config an operator would write: verify keys, one stdio upstream, its fingerprint.

    Written as a file rather than passed as flags because the file is what
    a deployment uses, and ``args_binding`` has no flag.
    """
    upstream = [sys.executable, "-m", "mcp_attest._demo", "--serve-upstream", str(workdir)]
    path = root / "gateway.toml"
    path.write_text(
        "\n".join(
            [
                'mode = "verify"',
                'state_dir = "state"',
                "",
                "[verify]",
                'keys = "verify-keys.json"',
                "required = true",
                'args_binding = "strict"',
                "",
                "[[upstream]]",
                'name = "files"',
                f"command = [{', '.join(_toml_str(part) for part in upstream)}]",
                f"server_name = {_toml_str(SERVER_NAME)}",
                f"server_id = {_toml_str(SERVER_ID)}",
                "",
            ]
        )
    )
    return path


@contextmanager
def _progress(out: TextIO, doing: str, done: str = "done") -> Iterator[None]:
    """One ``doing ... done in 1.2 s`` line, flushed first, so a slow step never looks like a hang."""
    out.write(f"{doing} ... ")
    out.flush()
    started = time.monotonic()
    try:
        yield
    except BaseException:
        out.write("failed\n")
        raise
    out.write(f"{done} in {time.monotonic() - started:.1f} s\n")
    out.flush()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def gateway_in_front(root: Path, workdir: Path, out: TextIO) -> Iterator[str]:
    """Run ``mcp-attest gateway`` as a real process in front of the unguarded server; yield its URL.

    A subprocess, not a thread, so the demo exercises exactly what an
    operator runs (CLI, config loading, signal handling) and a crash in it
    cannot be mistaken for a rejection. Its stderr goes to a log file that
    is shown only if it fails to come up.
    """
    config = _write_gateway_config(root, workdir)
    address = f"127.0.0.1:{_free_port()}"
    log_path = root / "gateway.log"
    command = [sys.executable, "-m", "mcp_attest.cli", "gateway", "--config", str(config), "--http", address]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    try:
        starting = f"starting gateway: mcp-attest gateway --config {config.name} --http {address}"
        with _progress(out, starting, "ready"):
            _wait_healthy(f"http://{address}", proc, log_path)
        yield f"http://{address}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with code {proc.returncode}: {log_path.read_text().strip()}")
        try:
            if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"gateway not healthy after {timeout:.0f} s: {log_path.read_text().strip()}")
        time.sleep(0.05)


def _check_audit(root: Path, calls: int, log: Path, checkpoint_keys: Path) -> tuple[bool, str]:
    """Verify the audit chain the way an auditor would: with the CLI, offline.

    Also holds the log to the number of calls the client sent, since a log
    that verifies but silently missed a decision would be worse than none.
    """
    url = f"sqlite:///{log}"
    command = [sys.executable, "-m", "mcp_attest.cli", "audit", "verify", url]
    command += ["--keys", str(root / "verify-keys.json"), "--checkpoint-keys", str(checkpoint_keys), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        why = done.stderr.strip() or done.stdout.strip()
        return False, f"audit chain: mcp-attest audit verify failed: {why}"
    ok = done.returncode == 0 and report["accepted"] and report["records"] == calls
    state = "intact" if report["accepted"] else f"BROKEN at record {report['broken']['seq']}"
    return ok, (
        f"audit chain: {state}, {report['records']} records for {calls} calls, "
        f"{report['envelopesVerified']} envelopes re-verified (mcp-attest audit verify)"
    )


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-attest demo", description=__doc__)
    parser.add_argument(
        "--transport",
        choices=("http", "memory"),
        default="http",
        help="Streamable HTTP on 127.0.0.1 (default) or an in-process server",
    )
    parser.add_argument(
        "--via-gateway",
        action="store_true",
        help="run the server unguarded behind `mcp-attest gateway` (verify mode) and call the gateway",
    )
    parser.add_argument("--no-color", action="store_true", help="never colour the table")
    parser.add_argument("--serve-upstream", metavar="DIR", type=Path, help=argparse.SUPPRESS)
    return parser


def run(argv: list[str] | None = None) -> int:
    """Run the demo; 0 when every row shows its expected verdict, else 1."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.serve_upstream is not None:  # the gateway's stdio child
        build_server(None, args.serve_upstream).run("stdio")
        return 0
    if args.via_gateway and args.transport != "http":
        parser.error("--via-gateway talks to the gateway over Streamable HTTP; drop --transport")
    out = sys.stdout
    colour = out.isatty() and not args.no_color

    with tempfile.TemporaryDirectory(prefix="mcp-attest-demo-") as tmp:
        root = Path(tmp)
        workdir = root / "sandbox"
        workdir.mkdir()
        signing = Keyring().with_key(ISSUER, generate_key("ES256", "demo-1"))
        signing.save(root / "signing-keys.json", private=True)
        signing.save(root / "verify-keys.json", private=False)
        keyring = Keyring.load(root / "signing-keys.json")
        if args.via_gateway:
            return _run_via_gateway(root, workdir, keyring, out, colour)
        guard = AttestationGuard.from_keyring(
            Keyring.load(root / "verify-keys.json"),
            server_name=SERVER_NAME,
            server_id=SERVER_ID,
            required=True,
            args_binding="strict",
            audit=f"sqlite:///{root / 'audit.sqlite'}",
        )
        server = build_server(guard, workdir)
        out.write(f"mcp-attest demo: throwaway keys in {root}, server {SERVER_NAME!r} ({args.transport})\n\n")
        if args.transport == "http":
            with serve_in_thread(server.streamable_http_app()) as url:
                rows, calls = anyio.run(_play, url + "/mcp", workdir, keyring)
        else:
            rows, calls = anyio.run(_play, server, workdir, keyring)
        _table(rows, out, colour)
        out.write("\n")
        cp_keys = root / "audit.sqlite.checkpoint-key.jwks.json"  # the guard's default, beside the log
        return _finish(rows, _check_audit(root, calls, root / "audit.sqlite", cp_keys), out, colour)


def _summary(rows: list[Row], out: TextIO, colour: bool, *, also_failed: bool = False) -> int:
    failed = [r for r in rows if not r.ok]
    summary = f"\n{len(rows) - len(failed)}/{len(rows)} rows as expected\n"
    out.write((_DIM + summary + _RESET) if colour else summary)
    return 1 if failed or also_failed else 0


def _run_via_gateway(root: Path, workdir: Path, keyring: Keyring, out: TextIO, colour: bool) -> int:
    out.write(
        f"mcp-attest demo: throwaway keys in {root}, server {SERVER_NAME!r} unguarded "
        "behind mcp-attest gateway (verify mode, http)\n"
    )
    try:
        sending = f"sending {len(SCENARIOS)} requests (the first session starts the upstream)"
        with gateway_in_front(root, workdir, out) as url, _progress(out, sending):
            rows, calls = anyio.run(_play, url + "/mcp", workdir, keyring)
    except RuntimeError as exc:
        out.write(f"mcp-attest demo: {exc}\n")
        return 1
    out.write("\n")
    _table(rows, out, colour)
    out.write(
        f"\nThe upstream {SERVER_NAME!r} is unmodified: a plain MCPServer with no mcp-attest guard, run by\n"
        "the gateway as a stdio child. Every verdict came from the gateway; 'tool ran?' is whether the\n"
        "upstream's destructive tool really deleted the file in its sandbox.\n"
    )
    state = root / "state"
    audit = _check_audit(root, calls, state / "audit.sqlite", state / "audit-checkpoint-key.jwks.json")
    return _finish(rows, audit, out, colour)


def _finish(rows: list[Row], audit: tuple[bool, str], out: TextIO, colour: bool) -> int:
    audit_ok, line = audit
    if colour:
        line = (_GREEN if audit_ok else _RED) + line + _RESET
    out.write(line + "\n")
    return _summary(rows, out, colour, also_failed=not audit_ok)


if __name__ == "__main__":
    sys.exit(run())
