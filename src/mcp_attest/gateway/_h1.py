"""A lean HTTP/1.1 client for the gateway's hot path: POSTs to plain-HTTP upstreams.

``httpx`` costs several hundred microseconds of Python per request (request
and header objects, the connection-pool state machine, anyio wrappers,
``h11``, and a failed ``import sniffio`` per call when sniffio is absent),
which was most of the gateway's added latency. This client does only what
the proxy needs: keep-alive connections per host, one write per request
(head and body together), the response parsed by ``httptools`` (the C
parser uvicorn uses) straight from an ``asyncio.Protocol``, and the body
handed over as it arrives so SSE answers stream.

Scope is deliberately small: ``http://`` only, no proxies, no redirects,
no cookies; HTTPS upstreams, proxy environments, the long-lived GET stream
and DELETE keep using ``httpx`` (see ``HttpLink``). Errors are raised as
classes named like httpx's (``ConnectError``, ``ReadTimeout``, ...) so the
JSON-RPC error text a client sees is the same on both paths.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any, cast

import httptools

from mcp_attest.errors import Error

__all__ = [
    "ConnectError",
    "ConnectTimeout",
    "H1Pool",
    "H1Response",
    "LocalProtocolError",
    "PoolTimeout",
    "ReadError",
    "ReadTimeout",
    "RemoteProtocolError",
    "UpstreamHTTPError",
    "WriteError",
]


class UpstreamHTTPError(Error):
    """Any failure to get an answer over HTTP (the counterpart of ``httpx.HTTPError``)."""


class ConnectError(UpstreamHTTPError):
    pass


class ConnectTimeout(UpstreamHTTPError):  # noqa: N818 - httpx's name, shown to clients
    pass


class PoolTimeout(UpstreamHTTPError):  # noqa: N818 - httpx's name, shown to clients
    pass


class ReadTimeout(UpstreamHTTPError):  # noqa: N818 - httpx's name, shown to clients
    pass


class ReadError(UpstreamHTTPError):
    pass


class WriteError(UpstreamHTTPError):
    pass


class RemoteProtocolError(UpstreamHTTPError):
    pass


class LocalProtocolError(UpstreamHTTPError):
    pass


class AnswerTooLargeError(RemoteProtocolError):
    """A well-formed answer over the cap: said as such, so nobody hunts for a network fault."""


_BAD_HEADER_BYTES = (b"\r", b"\n", b"\x00")
MAX_BODY = 64 * 1024 * 1024  # one answer, as received; the stdio link's line limit
_USER_AGENT = b"mcp-attest-gateway"


class H1Response:
    """Status and headers once known; the body as it arrives (``read`` or ``iter_bytes``)."""

    __slots__ = (
        "_chunks",
        "_conn",
        "_decoder",
        "_done",
        "_error",
        "_loop",
        "_room",
        "_timeout",
        "_waiter",
        "headers",
        "status_code",
    )

    def __init__(
        self, conn: _Connection, loop: asyncio.AbstractEventLoop, timeout: float, max_body: int = MAX_BODY
    ) -> None:
        self._conn: _Connection | None = conn
        self._room = max_body
        self._loop = loop
        self._timeout = timeout
        self._chunks: deque[bytes] = deque()
        self._done = False
        self._error: UpstreamHTTPError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._decoder: Any = None
        self.status_code = 0
        self.headers: dict[str, str] = {}

    # -- fed by the connection ----------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _feed(self, data: bytes) -> bool:
        """Take one piece of the body; False once it (decoded) outgrows the limit."""
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data, self._room + 1)  # bounded: no inflating a bomb
            except zlib.error as exc:
                self._fail(RemoteProtocolError(f"cannot decode response body: {exc}"))
                return True
            if self._decoder.unconsumed_tail:
                return False
            if not data:
                return True
        self._room -= len(data)
        if self._room < 0:
            return False
        self._chunks.append(data)
        self._wake()
        return True

    def _finish(self) -> None:
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self._chunks.append(tail)
        self._done = True
        self._wake()

    def _fail(self, error: UpstreamHTTPError) -> None:
        if not self._done and self._error is None:
            self._error = error
            self._wake()

    # -- read by the caller -------------------------------------------------------

    async def _wait(self) -> None:
        """Until something new arrives; an upstream silent for ``timeout`` seconds is a ReadTimeout."""
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(self._timeout, self._expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _expire(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            self._fail(ReadTimeout(f"no data for {self._timeout:g} s"))
            conn = self._conn
            if conn is not None:
                conn.abort()

    async def _headers_ready(self) -> None:
        while not self.status_code:
            if self._error is not None:
                raise self._error
            await self._wait()

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive, decoded from chunked transfer (and gzip/deflate)."""
        while True:
            while self._chunks:
                yield self._chunks.popleft()
            if self._done:
                return
            if self._error is not None:
                raise self._error
            await self._wait()

    async def read(self) -> bytes:
        parts = [chunk async for chunk in self.iter_bytes()]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        """Give the connection back (complete, keep-alive) or drop it (anything else)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.release(reusable=self._done and self._error is None)


class _Connection(asyncio.Protocol):
    """One keep-alive TCP connection; carries one request at a time."""

    def __init__(self, pool: H1Pool, key: tuple[str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.response: H1Response | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser: httptools.HttpResponseParser | None = None
        self._keep_alive = False
        self._complete = False
        self._until_close = False
        self._headers: list[tuple[str, str]] = []

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.response is None or self._parser is None or self._complete:
            self.abort()  # bytes nobody asked for: the connection is out of step
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            error = cause if isinstance(cause, RemoteProtocolError) else exc
            failure = (
                cause
                if isinstance(cause, AnswerTooLargeError)
                else RemoteProtocolError(f"malformed HTTP response: {error}")
            )
            self.response._fail(failure)
            self.abort()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost decides what it means

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is not None and not self._complete:
            if response.status_code and self._until_close and exc is None:
                response._finish()  # a body delimited by the end of the connection
                self._complete = True
            else:
                response._fail(RemoteProtocolError("server disconnected without a complete response"))
        self.pool._forget(self)

    # -- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:  # a second response to one request (split or smuggled): out of step
            raise RemoteProtocolError("more than one response to one request")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        response, parser = self.response, self._parser
        assert response is not None and parser is not None
        if 100 <= parser.get_status_code() < 200:  # interim (103 Early Hints): the answer follows
            return
        headers: dict[str, str] = {}
        for name, value in self._headers:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        response.headers = headers
        self._keep_alive = parser.should_keep_alive()
        self._until_close = (
            "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "").lower()
        )
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            response._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            response._decoder = zlib.decompressobj()
        elif encoding not in ("identity", ""):
            response._fail(RemoteProtocolError(f"unsupported content-encoding {encoding!r}"))
        response.status_code = parser.get_status_code()
        response._wake()

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        if not self.response._feed(body):
            raise AnswerTooLargeError(f"response body over {self.pool.max_body} bytes")

    def on_message_complete(self) -> None:
        assert self.response is not None
        if not self.response.status_code:  # the end of an interim response
            self._headers = []
            return
        self._complete = True
        self.response._finish()

    # -- used by the pool -------------------------------------------------------------------

    def start(self, request: bytes, response: H1Response) -> None:
        assert self.transport is not None
        self.response = response
        self._parser = httptools.HttpResponseParser(self)
        self._headers = []
        self._complete = False
        self._keep_alive = False
        self._until_close = False
        self.transport.write(request)

    def release(self, *, reusable: bool) -> None:
        self.response = None
        self._parser = None
        if reusable and self._keep_alive and self._complete and not self.closed:
            self.idle_since = time.monotonic()
            self.pool._idle_put(self)
        else:
            self.abort()
        self.pool._release_slot()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()


class H1Pool:
    """Keep-alive connections per ``(host, port)``, at most ``max_connections`` in use at once."""

    def __init__(
        self,
        *,
        timeout: float,
        max_connections: int = 256,
        max_idle: int = 64,
        keepalive_expiry: float = 4.0,
        max_body: int = MAX_BODY,
    ) -> None:
        self.timeout = timeout
        self.max_body = max_body
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}
        self._idle_count = 0
        self._all: set[_Connection] = set()

    async def post(
        self,
        host: str,
        port: int,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
    ) -> H1Response:
        """Send one POST; returns once the status line and headers are in.

        The caller must ``close()`` the response (after reading what it needs)
        so its connection goes back to the pool.
        """
        head = _request_head(host, port, target, headers, len(body))
        await self._acquire_slot()
        try:
            conn = await self._connection((host, port))
        except BaseException:
            self._release_slot()
            raise
        response = H1Response(conn, asyncio.get_running_loop(), self.timeout, self.max_body)
        try:
            conn.start(head + body, response)
        except (OSError, RuntimeError) as exc:
            response.close()
            raise WriteError(str(exc)) from exc
        try:
            await response._headers_ready()
        except BaseException:
            response.close()
            raise
        return response

    async def _acquire_slot(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout=self.timeout)
        except TimeoutError:
            raise PoolTimeout("no free connection") from None

    def _release_slot(self) -> None:
        self._slots.release()

    async def _connection(self, key: tuple[str, int]) -> _Connection:
        idle = self._idle.get(key)
        if idle:
            now = time.monotonic()
            while idle:
                conn = idle.pop()  # the most recently used: least likely to have been closed
                self._idle_count -= 1
                if not conn.closed and now - conn.idle_since < self.keepalive_expiry:
                    return conn
                conn.abort()
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self, key), key[0], key[1]),
                timeout=self.timeout,
            )
        except TimeoutError:
            raise ConnectTimeout(f"cannot connect to {key[0]}:{key[1]} within {self.timeout:g} s") from None
        except OSError as exc:
            raise ConnectError(str(exc)) from exc
        self._all.add(conn)
        return conn

    def _idle_put(self, conn: _Connection) -> None:
        if self._idle_count >= self.max_idle:
            conn.abort()
            return
        self._idle.setdefault(conn.key, deque()).append(conn)
        self._idle_count += 1

    def _forget(self, conn: _Connection) -> None:
        self._all.discard(conn)
        idle = self._idle.get(conn.key)
        if idle is not None and conn in idle:
            idle.remove(conn)
            self._idle_count -= 1

    async def aclose(self) -> None:
        for conn in list(self._all):
            conn.abort()
        self._idle.clear()
        self._idle_count = 0
        await asyncio.sleep(0)  # let the transports run connection_lost


def _ascii_host(authority: str) -> bytes:
    return authority.encode("ascii") if authority.isascii() else authority.encode("idna")


def _request_head(
    host: str, port: int, target: str, headers: Iterable[tuple[str, str]], length: int
) -> bytes:
    """Request line and headers as one buffer; a header that would split the request is refused."""
    authority = host if port == 80 else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        authority = f"[{host}]" if port == 80 else f"[{host}]:{port}"
    lines = [f"POST {target} HTTP/1.1".encode("latin-1"), b"host: " + _ascii_host(authority)]
    for name, value in headers:
        try:
            line = f"{name}: {value}".encode("latin-1")
        except UnicodeEncodeError:
            raise LocalProtocolError(f"header {name!r} is not latin-1") from None
        if any(bad in line for bad in _BAD_HEADER_BYTES):
            raise LocalProtocolError(f"header {name!r} contains a line break or NUL")
        lines.append(line)
    lines.append(b"user-agent: " + _USER_AGENT)
    lines.append(b"content-length: %d" % length)
    lines.append(b"\r\n")
    return b"\r\n".join(lines)
