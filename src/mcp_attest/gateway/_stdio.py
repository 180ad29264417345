"""The stdio listener: one client (a desktop app) on stdin/stdout.

Newline-delimited JSON-RPC, one session, one upstream connection for the
life of the process. stdout carries protocol messages only; every log line
goes to stderr. stdin and stdout may be pipes or sockets (a client) or
anything else a shell or supervisor gives (a file, ``/dev/null``, a
terminal); the event loop's pipe transports take only the former, so the
others are read on a thread and written directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import sys
import threading
import time
from typing import Any, Protocol

import orjson

from mcp_attest.gateway._app import Gateway
from mcp_attest.gateway._jsonrpc import (
    INVALID_REQUEST,
    PARSE_ERROR,
    UPSTREAM_UNAVAILABLE,
    Message,
    dumps,
    error_response,
    reencodable,
    valid_id,
)
from mcp_attest.gateway._link import UpstreamStartError
from mcp_attest.gateway._session import GatewaySession, Sink

__all__ = ["serve_stdio"]

logger = logging.getLogger("mcp_attest.gateway")

_MAX_LINE = 64 * 1024 * 1024
_DRAIN = 1.0  # seconds the answers to requests in flight get once stdin ends


class _Lines(Protocol):
    async def readline(self) -> bytes: ...


class _Out(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...


def _streamable(fd: int) -> bool:
    """A pipe or a socket: what the loop's pipe transports handle on every loop (uvloop too)."""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class _ThreadLines:
    """stdin that is a file, a device or a terminal: lines read on a daemon thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._queue: asyncio.Queue[bytes | Exception] = asyncio.Queue(maxsize=16)
        self._loop = loop
        threading.Thread(target=self._read, name="stdio-reader", daemon=True).start()

    def _read(self) -> None:
        while True:
            line = sys.stdin.buffer.readline(_MAX_LINE + 1)
            item: bytes | Exception = ValueError("line too long") if len(line) > _MAX_LINE else line
            try:
                asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop).result()
            except RuntimeError:  # the loop is gone: the gateway is exiting
                return
            if not line or isinstance(item, Exception):
                return

    async def readline(self) -> bytes:
        item = await self._queue.get()
        if isinstance(item, Exception):
            raise item
        return item


class _DirectOut:
    """stdout that is a file or a device: writes never wait on a reader, so they go straight out."""

    def write(self, data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    async def drain(self) -> None:
        return None


async def _open() -> tuple[_Lines, _Out]:
    loop = asyncio.get_running_loop()
    reader: _Lines
    if _streamable(sys.stdin.fileno()):
        stream = asyncio.StreamReader(limit=_MAX_LINE)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), sys.stdin)
        reader = stream
    else:
        reader = _ThreadLines(loop)
    if not _streamable(sys.stdout.fileno()):
        return reader, _DirectOut()
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout)
    return reader, asyncio.StreamWriter(transport, protocol, None, loop)


async def serve_stdio(gateway: Gateway) -> None:
    """Serve until stdin closes; then the session's upstream is closed too."""
    reader, writer = await _open()

    async def sink(message: Message, _related: tuple[Any, ...]) -> None:
        writer.write(dumps(message) + b"\n")
        await writer.drain()

    route = gateway.route(gateway.config.stdio_upstream)
    try:
        session = await gateway.open_session(route, sink)
    except UpstreamStartError as exc:
        gateway.metrics.error("upstream_down")
        await _refuse_all(reader, sink, str(exc))
        return
    try:
        while True:
            try:
                line = await reader.readline()
            except (ValueError, asyncio.LimitOverrunError):
                gateway.metrics.error("stdio_too_large")
                await sink(error_response(None, PARSE_ERROR, "message too large"), ())
                break
            if not line:
                logger.info("stdio client closed stdin; shutting down")
                await _drain(session)
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


async def _refuse_all(reader: _Lines, sink: Sink, why: str) -> None:
    """No upstream: every request (``initialize`` first) gets the reason at once, until stdin ends."""
    while line := await reader.readline():
        with contextlib.suppress(orjson.JSONDecodeError):
            message = orjson.loads(line)
            if isinstance(message, dict) and "method" in message and valid_id(message.get("id")):
                await sink(error_response(message["id"], UPSTREAM_UNAVAILABLE, why), ())


async def _drain(session: GatewaySession) -> None:
    """Give answers already on their way a moment to arrive (a client that sent a file, then EOF)."""
    deadline = time.monotonic() + _DRAIN
    while session.channel.pending and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
