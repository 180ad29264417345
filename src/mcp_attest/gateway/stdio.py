"""The stdio listener: one client (a desktop app) on stdin/stdout.

Newline-delimited JSON-RPC, one session, one upstream connection for the
life of the process. stdout carries protocol messages only; every log line
goes to stderr.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson

from mcp_attest.gateway.app import Gateway
from mcp_attest.gateway.jsonrpc import (
    INVALID_REQUEST,
    PARSE_ERROR,
    Message,
    dumps,
    error_response,
    reencodable,
)

__all__ = ["serve_stdio"]

_MAX_LINE = 64 * 1024 * 1024


async def serve_stdio(gateway: Gateway) -> None:
    """Serve until stdin closes; then the session's upstream is closed too."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)

    async def sink(message: Message, _related: tuple[Any, ...]) -> None:
        writer.write(dumps(message) + b"\n")
        await writer.drain()

    route = gateway.route(gateway.config.stdio_upstream)
    session = await gateway.open_session(route, sink)
    try:
        while True:
            try:
                line = await reader.readline()
            except (ValueError, asyncio.LimitOverrunError):
                gateway.metrics.error("stdio_too_large")
                await sink(error_response(None, PARSE_ERROR, "message too large"), ())
                break
            if not line:
                break
            if not line.strip():
                continue
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                gateway.metrics.error("stdio_parse")
                await sink(error_response(None, PARSE_ERROR, "line is not JSON"), ())
                continue
            if not reencodable(message):
                gateway.metrics.error("stdio_invalid")
                request_id = message.get("id") if isinstance(message, dict) else None
                request_id = request_id if isinstance(request_id, str | int) else None
                await sink(error_response(request_id, INVALID_REQUEST, "JSON nested too deeply"), ())
                continue
            refusal = await session.from_client(message, {}, line)
            if refusal is not None:
                await sink(refusal, ())
    finally:
        await session.close()
