"""The gateway's lean HTTP/1.1 client (``gateway.h1``) against a scripted socket server.

The end-to-end tests drive it through real upstreams; these pin the edges
an MCP server rarely shows: chunked streaming, bodies delimited by close,
idle connections the server dropped, timeouts, refused connections and
header injection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from mcp_attest.gateway._h1 import (
    ConnectError,
    H1Pool,
    LocalProtocolError,
    ReadTimeout,
    RemoteProtocolError,
)
from mcp_attest.gateway._http_link import _lines

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """One request off the wire: (head, body), or None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


async def _serve(handler: Handler) -> tuple[asyncio.Server, int, list[int]]:
    connections: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], connections


def _run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 10))


def test_keep_alive_reuses_one_connection_and_sends_one_request() -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (req := await _request(reader)) is not None:
            seen.append(req)
            body = b'{"ok":' + str(len(seen)).encode() + b"}"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-A: 1\r\nX-A: 2\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()

    async def main() -> None:
        server, port, connections = await _serve(handler)
        pool = H1Pool(timeout=5)
        for i in (1, 2, 3):
            resp = await pool.post("127.0.0.1", port, "/mcp?x=1", [("mcp-session-id", "s")], b'{"a":1}')
            assert resp.status_code == 200
            assert resp.headers["content-type"] == "application/json"
            assert resp.headers["x-a"] == "1, 2"
            assert await resp.read() == b'{"ok":%d}' % i
            resp.close()
        assert len(connections) == 1
        head, body = seen[0]
        assert head.startswith(b"POST /mcp?x=1 HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n" % port)
        assert b"mcp-session-id: s\r\n" in head and b"content-length: 7\r\n" in head
        assert body == b'{"a":1}'
        await pool.aclose()
        server.close()

    _run(main())


def test_chunked_body_streams_before_the_response_ends() -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        writer.write(b"d\r\ndata: first\n\n\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"e\r\ndata: second\n\n\r\n0\r\n\r\n")
        await writer.drain()
        await _request(reader)

    async def main() -> None:
        server, port, _ = await _serve(handler)
        pool = H1Pool(timeout=5)
        resp = await pool.post("127.0.0.1", port, "/", [], b"{}")
        chunks = resp.iter_bytes()
        assert await chunks.__anext__() == b"data: first\n\n"  # before the server sent the rest
        release.set()
        assert [c async for c in chunks] == [b"data: second\n\n"]
        resp.close()
        await pool.aclose()
        server.close()

    _run(main())


def test_body_delimited_by_close_and_dropped_idle_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
        await writer.drain()

    async def main() -> None:
        server, port, connections = await _serve(handler)
        pool = H1Pool(timeout=5)
        for _ in range(2):  # the second request must not reuse the closed connection
            resp = await pool.post("127.0.0.1", port, "/", [], b"{}")
            assert await resp.read() == b"until the end"
            resp.close()
            await asyncio.sleep(0.05)
        assert len(connections) == 2
        await pool.aclose()
        server.close()

    _run(main())


def test_server_disconnect_mid_response_is_an_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()

    async def main() -> None:
        server, port, _ = await _serve(handler)
        pool = H1Pool(timeout=5)
        resp = await pool.post("127.0.0.1", port, "/", [], b"{}")
        with pytest.raises(RemoteProtocolError):
            await resp.read()
        resp.close()
        await pool.aclose()
        server.close()

    _run(main())


def test_timeout_refused_and_header_injection() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        await asyncio.sleep(5)

    async def main() -> None:
        server, port, _ = await _serve(silent)
        pool = H1Pool(timeout=0.2)
        with pytest.raises(ReadTimeout):
            await pool.post("127.0.0.1", port, "/", [], b"{}")
        with pytest.raises(LocalProtocolError):
            await pool.post("127.0.0.1", port, "/", [("x-evil", "a\r\nx-injected: 1")], b"{}")
        server.close()
        await server.wait_closed()
        with pytest.raises(ConnectError):
            await pool.post("127.0.0.1", port, "/", [], b"{}")
        await pool.aclose()

    _run(main())


def test_sse_lines_split_anywhere() -> None:
    stream = b"data: a\r\n\r\ndata: b\n\ndata: c\r\rtail"
    expected = [b"data: a", b"", b"data: b", b"", b"data: c", b"", b"tail"]

    async def split(size: int) -> list[bytes]:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(stream), size):
                yield stream[i : i + size]

        return [line async for line in _lines(chunks())]

    async def main() -> None:
        for size in range(1, len(stream) + 1):
            assert await split(size) == expected, size

    _run(main())


# -- framing and request-smuggling corpus (issue 10: h1.py kept, see docs/decisions.md) ----------

_OK = b"HTTP/1.1 200 OK\r\n"


async def _answer_with(writes: list[bytes], pool: H1Pool) -> tuple[int, dict[str, str], bytes] | Exception:
    """One POST to a server that answers with ``writes`` (pausing between them); then a second POST.

    An empty write closes the connection. The second POST must get its own
    answer: whatever the first answer left on the connection (or its
    connection, if the client dropped it) must never be read as the next.
    """
    second = b'{"second":true}'
    first = True

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal first
        await _request(reader)
        if first:
            first = False
            for data in writes:
                if not data:
                    return
                writer.write(data)
                await writer.drain()
                await asyncio.sleep(0.01)
            if await _request(reader) is None:
                return
        writer.write(_OK + b"content-length: %d\r\n\r\n%s" % (len(second), second))
        await writer.drain()
        await _request(reader)

    server, port, _ = await _serve(handler)
    try:
        try:
            resp = await pool.post("127.0.0.1", port, "/", [], b"{}")
            try:
                result: tuple[int, dict[str, str], bytes] | Exception = (
                    resp.status_code,
                    resp.headers,
                    await resp.read(),
                )
            finally:
                resp.close()
        except RemoteProtocolError as exc:
            result = exc
        again = await pool.post("127.0.0.1", port, "/", [], b"{}")
        assert await again.read() == second
        again.close()
        return result
    finally:
        server.close()


def _byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


SMUGGLING: list[tuple[str, list[bytes], bytes | None]] = [
    # (case, what the server writes, the body a correct client reads; None: must be an error)
    ("head split byte by byte", _byte_by_byte(_OK + b"content-length: 2\r\n\r\nok"), b"ok"),
    ("head split at CR LF", [_OK + b"content-length: 2\r", b"\n\r", b"\nok"], b"ok"),
    (
        "chunked split mid size",
        [_OK + b"transfer-encoding: chunked\r\n\r\n", b"2", b"\r\nok\r\n0\r\n\r\n"],
        b"ok",
    ),
    (
        "pipelined second answer",
        [_OK + b"content-length: 2\r\n\r\nok" + _OK + b"content-length: 3\r\n\r\nbad"],
        b"ok",
    ),
    (
        "CL and TE both",
        [_OK + b"content-length: 3\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"],
        None,
    ),
    (
        "TE and CL both",
        [_OK + b"transfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n2\r\nok\r\n0\r\n\r\n"],
        None,
    ),
    ("two different lengths", [_OK + b"content-length: 2\r\ncontent-length: 5\r\n\r\nokbad"], None),
    ("length list", [_OK + b"content-length: 2, 5\r\n\r\nokbad"], None),
    ("signed length", [_OK + b"content-length: +2\r\n\r\nok"], None),
    # RFC 9112 6.3 would read these to the close; refusing them is stricter and never mis-frames
    ("TE not chunked last", [_OK + b"transfer-encoding: chunked, identity\r\n\r\nok", b""], None),
    ("TE obfuscated", [_OK + b"transfer-encoding: xchunked\r\n\r\n2\r\nok", b""], None),
    ("bare LF line ends", [b"HTTP/1.1 200 OK\ncontent-length: 2\n\nok"], None),
    ("bare LF inside the head", [_OK + b"x-a: 1\ncontent-length: 2\r\n\r\nok"], None),
    ("obs-fold", [_OK + b"x-a: 1\r\n content-length: 5\r\ncontent-length: 2\r\n\r\nok"], None),
    ("space before colon", [_OK + b"content-length : 2\r\n\r\nok"], None),
    ("NUL in a header value", [_OK + b"x-a: a\0b\r\ncontent-length: 2\r\n\r\nok"], None),
    ("chunk size overflow", [_OK + b"transfer-encoding: chunked\r\n\r\nffffffffffffffffff\r\nok\r\n"], None),
    ("chunk without CRLF", [_OK + b"transfer-encoding: chunked\r\n\r\n2\r\nokX0\r\n\r\n"], None),
    ("garbage status line", [b"HTTP/1.1 2OO OK\r\ncontent-length: 2\r\n\r\nok"], None),
]


@pytest.mark.parametrize(("case", "writes", "body"), SMUGGLING, ids=[c[0] for c in SMUGGLING])
def test_framing_and_smuggling_corpus(case: str, writes: list[bytes], body: bytes | None) -> None:
    async def main() -> None:
        pool = H1Pool(timeout=5)
        try:
            got = await _answer_with(writes, pool)
        finally:
            await pool.aclose()
        if body is None:
            assert isinstance(got, RemoteProtocolError), (case, got)
        else:
            assert not isinstance(got, Exception), (case, got)
            assert got[0] == 200 and got[2] == body, (case, got)

    _run(main())
