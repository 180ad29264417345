"""Guarded test servers for every framework, importable and runnable over stdio.

``python tests/mcp/mcp_test_servers.py FRAMEWORK KEYS MARKS`` serves one over stdio;
the ``mark`` tool creates ``MARKS/<name>`` so a test in another process can
tell whether a tool body ran.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as mt
from fastmcp import FastMCP
from mcp.server import MCPServer, Server

from mcp_attest import Keyring, server_fingerprint
from mcp_attest.mcp import AttestationGuard, current_verdict
from mcp_attest.mcp.fastmcp import AttestationMiddleware

NAME = "test-files"
SERVER_ID = "ci"
FINGERPRINT = server_fingerprint(NAME, SERVER_ID)
FRAMEWORKS = ("sdk", "lowlevel", "fastmcp")


def _mark(marks: Path, name: str) -> str:
    (marks / name).touch()
    verdict = current_verdict()
    attested = "no-verdict" if verdict is None else verdict.attestation_id or "unattested"
    return f"marked {name} {attested}"


def build(framework: str, guard: AttestationGuard, marks: Path) -> Any:
    """A server named NAME with tools ``mark`` and ``echo`` behind ``guard``."""
    if framework == "sdk":
        sdk = MCPServer(
            NAME, extensions=[guard.extension()], middleware=[guard.middleware()], log_level="WARNING"
        )
        sdk.add_tool(lambda name: _mark(marks, name), name="mark")
        sdk.add_tool(lambda text: text, name="echo")
        return sdk
    if framework == "fastmcp":
        fast = FastMCP(NAME, middleware=[AttestationMiddleware(guard)])
        fast.tool(name="mark")(lambda name: _mark(marks, name))
        fast.tool(name="echo")(lambda text: text)
        return fast
    assert framework == "lowlevel"

    async def list_tools(ctx: Any, params: Any) -> mt.ListToolsResult:
        schema = {"type": "object", "properties": {"name": {"type": "string"}}}
        return mt.ListToolsResult(tools=[mt.Tool(name="mark", input_schema=schema)])

    async def call_tool(ctx: Any, params: mt.CallToolRequestParams) -> mt.CallToolResult:
        text = _mark(marks, str((params.arguments or {}).get("name")))
        return mt.CallToolResult(content=[mt.TextContent(type="text", text=text)])

    low: Server[Any] = Server(NAME, on_list_tools=list_tools, on_call_tool=call_tool)
    guard.install(low)
    return low


def client_target(server: Any) -> Any:
    """What ``mcp.Client`` takes for an in-process connection to ``server``."""
    return server._mcp_server if isinstance(server, FastMCP) else server


def asgi_app(server: Any) -> Any:
    if isinstance(server, FastMCP):
        return server.http_app(path="/mcp")
    return server.streamable_http_app()


async def _serve_stdio(server: Any) -> None:
    if isinstance(server, FastMCP):
        await server.run_stdio_async(show_banner=False)
    else:
        await server.run_stdio_async()


if __name__ == "__main__":
    framework, keys, marks = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    guard = AttestationGuard.from_keyring(Keyring.load(keys), server_fingerprint=FINGERPRINT)
    anyio.run(_serve_stdio, build(framework, guard, marks))
