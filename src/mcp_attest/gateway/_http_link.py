"""The link to an upstream reached over Streamable HTTP (POST per message, GET stream)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from mcp_attest.gateway._h1 import MAX_BODY, AnswerTooLargeError, H1Pool, UpstreamHTTPError
from mcp_attest.gateway._jsonrpc import (
    INTERNAL_ERROR,
    UPSTREAM_UNAVAILABLE,
    Message,
    dumps,
    error_response,
    parse_message,
)
from mcp_attest.gateway._link import OnMessage, nothing
from mcp_attest.gateway._metrics import Metrics
from mcp_attest.gateway.config import UpstreamConfig

__all__ = ["HttpLink"]

_SESSION_HEADER = "mcp-session-id"
_VERSION_HEADER = "mcp-protocol-version"


class HttpLink:
    """One Streamable HTTP session upstream (or none, for sessionless traffic).

    Each outgoing message is one POST whose JSON or SSE answer is handed to
    the channel tagged with the request id it answers, so that messages the
    upstream relates to a request (progress, sampling) can follow that
    request downstream. A GET stream is opened once a session exists, for
    messages the upstream sends on its own.
    """

    def __init__(
        self,
        config: UpstreamConfig,
        client: httpx.AsyncClient,
        metrics: Metrics,
        pool: H1Pool | None = None,
    ) -> None:
        assert config.url is not None
        self.config = config
        self.url = config.url
        self.client = client
        self._fast = _fast_target(self.url, pool)
        self.metrics = metrics
        self.on_message: OnMessage = nothing
        self.on_down: Callable[[str], Awaitable[None]] = nothing
        self.on_up: Callable[[], Awaitable[None]] = nothing
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._get_task: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        return None

    def _headers(self, extra: Mapping[str, str]) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        if self.session_id:
            headers[_SESSION_HEADER] = self.session_id
        if self.protocol_version:
            headers[_VERSION_HEADER] = self.protocol_version
        headers.update(extra)
        return headers

    async def send(self, message: Message, headers: Mapping[str, str], request_id: int | None) -> None:
        task = asyncio.create_task(self._post(message, headers, request_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, message: Message, extra: Mapping[str, str], request_id: int | None) -> None:
        related = () if request_id is None else (request_id,)
        try:
            if self._fast is not None:
                await self._post_fast(self._fast, message, extra, request_id, related)
            else:
                await self._post_httpx(message, extra, request_id, related)
        except (httpx.HTTPError, UpstreamHTTPError) as exc:
            if request_id is not None:
                self.metrics.error(
                    "upstream_too_large" if isinstance(exc, AnswerTooLargeError) else "upstream_http"
                )
                why = (
                    f"upstream {self.config.name} answered with more than {MAX_BODY} bytes, the gateway's cap"
                    if isinstance(exc, AnswerTooLargeError)
                    else f"upstream {self.config.name} unreachable: {type(exc).__name__}"
                )
                await self.on_message(error_response(request_id, UPSTREAM_UNAVAILABLE, why), related)

    def _answered(self, headers: Mapping[str, str], status: int) -> bool:
        """Note the session the upstream assigned; True when the answer is an SSE stream."""
        sid = headers.get(_SESSION_HEADER)
        if sid and not self.session_id:
            self.session_id = sid
            self._open_get_stream()
        ctype = headers.get("content-type", "").partition(";")[0].strip().lower()
        return ctype == "text/event-stream" and status < 400

    async def _post_fast(
        self,
        fast: tuple[H1Pool, str, int, str],
        message: Message,
        extra: Mapping[str, str],
        request_id: int | None,
        related: tuple[int, ...],
    ) -> None:
        """The hot path: keep-alive HTTP/1.1 without httpx (plain-HTTP upstreams, no proxy)."""
        pool, host, port, target = fast
        resp = await pool.post(host, port, target, self._headers(extra).items(), dumps(message))
        try:
            if self._answered(resp.headers, resp.status_code):
                await self._read_sse(resp.iter_bytes(), related)
                return
            body = await resp.read()
        finally:
            resp.close()
        if resp.status_code == 202 or (not body and resp.status_code < 300):
            return
        await self._deliver_body(body, resp.status_code, request_id)

    async def _post_httpx(
        self, message: Message, extra: Mapping[str, str], request_id: int | None, related: tuple[int, ...]
    ) -> None:
        """HTTPS upstreams and proxy environments: everything httpx handles."""
        async with self.client.stream(
            "POST", self.url, content=dumps(message), headers=self._headers(extra)
        ) as resp:
            chunks = _capped(resp.aiter_bytes(), MAX_BODY)
            if self._answered(resp.headers, resp.status_code):
                await self._read_sse(chunks, related)
                return
            body = b"".join([chunk async for chunk in chunks])
            if resp.status_code == 202 or (not body and resp.status_code < 300):
                return
            await self._deliver_body(body, resp.status_code, request_id)

    async def _deliver_body(self, body: bytes, status: int, request_id: int | None) -> None:
        """A JSON answer; a JSON-RPC error about no particular id is about this request."""
        related = () if request_id is None else (request_id,)
        parsed = parse_message(body)
        if status >= 400 and request_id is not None:
            if (
                isinstance(parsed, dict)
                and isinstance(parsed.get("error"), dict)
                and parsed.get("id") is None
            ):
                parsed["id"] = request_id
            elif not (isinstance(parsed, dict) and "error" in parsed):
                parsed = error_response(
                    request_id, INTERNAL_ERROR, f"upstream {self.config.name} answered HTTP {status}"
                )
        if parsed is None and request_id is not None:
            parsed = {"id": request_id, "malformed": True}
        messages = parsed if isinstance(parsed, list) else [parsed]
        for item in messages:
            self._note_version(item)
            await self.on_message(item, related)

    def _note_version(self, item: Any) -> None:
        """Remember the negotiated version; a stdio client cannot tell us in a header."""
        if isinstance(item, dict) and isinstance(item.get("result"), dict):
            version = item["result"].get("protocolVersion")
            if isinstance(version, str) and "serverInfo" in item["result"]:
                self.protocol_version = version

    async def _read_sse(self, chunks: AsyncIterator[bytes], related: tuple[int, ...]) -> None:
        data: list[bytes] = []
        async for line in _lines(chunks):
            if line.startswith(b"data:"):
                data.append(line[5:].removeprefix(b" "))
            elif not line and data:
                text, data = b"\n".join(data), []
                if not text.strip():
                    continue  # a priming event (id only, for resumption) carries no message
                item = parse_message(text)
                if item is None:  # what a text decoder would have made of invalid UTF-8
                    item = parse_message(text.decode("utf-8", "replace"))
                if item is None:
                    item = {"id": related[0], "malformed": True} if related else None
                self._note_version(item)
                await self.on_message(item, related)

    def _open_get_stream(self) -> None:
        if self._get_task is None and not self._closed:
            self._get_task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        """The server-initiated stream; given up quietly if the upstream has none (405)."""
        for _ in range(5):
            try:
                headers = self._headers({"accept": "text/event-stream"})
                headers.pop("content-type")
                async with self.client.stream("GET", self.url, headers=headers, timeout=None) as resp:
                    if resp.status_code != 200:
                        return
                    await self._read_sse(resp.aiter_bytes(), ())
            except httpx.HTTPError:
                pass
            if self._closed:
                return
            await asyncio.sleep(1.0)

    async def close(self) -> None:
        self._closed = True
        tasks = [*self._tasks, *([self._get_task] if self._get_task else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.session_id:
            with contextlib.suppress(httpx.HTTPError):
                await self.client.delete(self.url, headers={_SESSION_HEADER: self.session_id}, timeout=2.0)


def _fast_target(url: str, pool: H1Pool | None) -> tuple[H1Pool, str, int, str] | None:
    """Where the lean client posts, or None when the URL needs httpx (HTTPS, odd forms)."""
    if pool is None:
        return None
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.username or parts.password:
        return None
    try:
        port = parts.port or 80
    except ValueError:
        return None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return pool, parts.hostname, port, target


async def _capped(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """The body as it arrives, until it (decoded) outgrows ``limit``: the lean client's cap, for httpx."""
    async for chunk in chunks:
        limit -= len(chunk)
        if limit < 0:
            raise AnswerTooLargeError(f"response body over {MAX_BODY} bytes")
        yield chunk


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Lines of a byte stream without their ending (CRLF, LF or CR, as SSE allows)."""
    pending = b""
    async for chunk in chunks:
        buf = pending + chunk if pending else chunk
        held = b""
        if buf.endswith(b"\r"):  # maybe the first half of a CRLF split across chunks
            buf, held = buf[:-1], b"\r"
        parts = buf.splitlines(keepends=True)
        pending = held
        if parts and not parts[-1].endswith((b"\n", b"\r")):
            pending = parts.pop() + held
        for part in parts:
            yield part[:-2] if part.endswith(b"\r\n") else part[:-1]
    if pending:
        yield pending.removesuffix(b"\r")
