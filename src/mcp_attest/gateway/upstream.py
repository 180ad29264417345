"""Connections to upstream MCP servers and the request bookkeeping over them.

A ``Link`` moves JSON-RPC messages to and from one upstream (a stdio child
process or a Streamable HTTP endpoint). A ``Channel`` sits on a link and
renumbers request ids, so that one link can carry the requests of several
gateway sessions (sessionless traffic shares one) and so that a request
the gateway gives up on (timeout, crash) can be answered exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from mcp_attest.gateway.config import UpstreamConfig
from mcp_attest.gateway.h1 import MAX_BODY, H1Pool, RemoteProtocolError, UpstreamHTTPError
from mcp_attest.gateway.jsonrpc import (
    INTERNAL_ERROR,
    UPSTREAM_TIMEOUT,
    UPSTREAM_UNAVAILABLE,
    Message,
    dumps,
    error_response,
    is_request,
    is_response,
    parse_message,
)
from mcp_attest.gateway.metrics import Metrics

__all__ = ["Channel", "HttpLink", "Link", "Peer", "StdioLink", "make_link"]

logger = logging.getLogger("mcp_attest.gateway")

OnMessage = Callable[[Any, tuple[int, ...]], Awaitable[None]]
_MAX_LINE = 64 * 1024 * 1024
_SESSION_HEADER = "mcp-session-id"
_VERSION_HEADER = "mcp-protocol-version"


class Link(Protocol):
    """A transport to one upstream; ``on_message`` gets parsed JSON or ``None`` for garbage."""

    on_message: OnMessage
    on_down: Callable[[str], Awaitable[None]]
    on_up: Callable[[], Awaitable[None]]

    async def start(self) -> None: ...

    async def send(self, message: Message, headers: Mapping[str, str], request_id: int | None) -> None: ...

    async def close(self) -> None: ...


async def _nothing(*_: Any) -> None:
    return None


class StdioLink:
    """A child process speaking newline-delimited JSON-RPC, restarted with backoff.

    The process stays up for the life of the link (no spawn per call); when
    it dies, pending requests are failed by the channel (``on_down``) and a
    new process is started after a delay that doubles up to ``max_backoff``
    and resets once a process has stayed up for a while.
    """

    def __init__(self, config: UpstreamConfig, metrics: Metrics, *, max_backoff: float = 10.0) -> None:
        self.config = config
        self.metrics = metrics
        self.max_backoff = max_backoff
        self.on_message: OnMessage = _nothing
        self.on_down: Callable[[str], Awaitable[None]] = _nothing
        self.on_up: Callable[[], Awaitable[None]] = _nothing
        self._proc: asyncio.subprocess.Process | None = None
        self._ready = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self._replaying = False
        self.starts = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"upstream-{self.config.name}")
        await asyncio.wait_for(self._ready.wait(), timeout=self.config.timeout)

    async def _spawn(self) -> asyncio.subprocess.Process:
        env = {**os.environ, **dict(self.config.env)}
        return await asyncio.create_subprocess_exec(
            *self.config.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # inherited: upstream logs stay visible next to the gateway's
            env=env,
            cwd=self.config.cwd,
            limit=_MAX_LINE,
        )

    async def _supervise(self) -> None:
        backoff = 0.2
        while not self._closed:
            started = time.monotonic()
            try:
                self._proc = await self._spawn()
            except OSError as exc:
                logger.error(
                    "upstream %s: cannot start %s: %s", self.config.name, self.config.command[0], exc
                )
                await self.on_down(f"cannot be started ({exc.strerror or exc})")
            else:
                self.starts += 1
                if self.starts > 1:
                    self.metrics.restart(self.config.name)
                    self._replaying = True
                    try:
                        await self.on_up()
                    finally:
                        self._replaying = False
                self._ready.set()
                code = await self._pump(self._proc)
                self._ready.clear()
                if self._closed:
                    return
                logger.warning("upstream %s exited with code %s; restarting", self.config.name, code)
                await self.on_down(f"exited (code {code})")
            if time.monotonic() - started > 10 * self.max_backoff:
                backoff = 0.2
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def _pump(self, proc: asyncio.subprocess.Process) -> int | None:
        assert proc.stdout is not None
        while True:
            try:
                line = await proc.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                logger.error(
                    "upstream %s wrote a line over %d bytes; restarting it", self.config.name, _MAX_LINE
                )
                proc.kill()
                break
            if not line:
                break
            if not line.strip():
                continue
            await self.on_message(parse_message(line), ())
        return await proc.wait()

    async def send(self, message: Message, headers: Mapping[str, str], request_id: int | None) -> None:
        if not self._replaying:  # the handshake replay writes before anyone else may
            await self._ready.wait()
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        async with self._write_lock:
            try:
                proc.stdin.write(dumps(message) + b"\n")
                await proc.stdin.drain()
            except (ConnectionError, RuntimeError) as exc:
                logger.warning("upstream %s: write failed: %s", self.config.name, exc)

    async def close(self) -> None:
        self._closed = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), timeout=2.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


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
        self.on_message: OnMessage = _nothing
        self.on_down: Callable[[str], Awaitable[None]] = _nothing
        self.on_up: Callable[[], Awaitable[None]] = _nothing
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
                self.metrics.error("upstream_http")
                await self.on_message(
                    error_response(
                        request_id,
                        UPSTREAM_UNAVAILABLE,
                        f"upstream {self.config.name} unreachable: {type(exc).__name__}",
                    ),
                    related,
                )

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


def make_link(
    config: UpstreamConfig,
    metrics: Metrics,
    client: httpx.AsyncClient | None,
    pool: H1Pool | None = None,
) -> Link:
    if config.kind == "http":
        assert client is not None
        return HttpLink(config, client, metrics, pool)
    return StdioLink(config, metrics)


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
            raise RemoteProtocolError("response body too large")
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


class Peer(Protocol):
    """What a channel delivers to: one gateway session."""

    async def on_response(self, message: Message, method: str, started: float) -> None: ...

    async def on_message(self, message: Message, related: tuple[Any, ...]) -> None: ...


@dataclass(slots=True)
class _Pending:
    peer: Peer
    downstream_id: Any
    method: str
    started: float
    timer: asyncio.TimerHandle | None = None
    progress_token: Any = None


@dataclass(slots=True)
class _Replay:
    """The handshake to repeat on a restarted stdio process, so sessions survive."""

    initialize: Message | None = None
    initialized: Message | None = None
    internal_ids: set[int] = field(default_factory=set)


class Channel:
    """Request bookkeeping over one link: id renumbering, timeouts, crash answers."""

    def __init__(
        self, link: Link, config: UpstreamConfig, metrics: Metrics, *, owner: Peer | None = None
    ) -> None:
        self.link = link
        self.config = config
        self.metrics = metrics
        self.owner = owner
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._by_downstream: dict[tuple[int, Any], int] = {}
        self._tokens: dict[Any, int] = {}
        self._replay = _Replay()
        link.on_message = self._on_message
        link.on_down = self._on_down
        link.on_up = self._on_up

    async def start(self) -> None:
        await self.link.start()

    async def close(self) -> None:
        await self._on_down("closed")
        await self.link.close()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def request(self, peer: Peer, message: Message, headers: Mapping[str, str]) -> None:
        """Forward a client request under a fresh upstream id."""
        uid = next(self._ids)
        loop = asyncio.get_running_loop()
        method = str(message.get("method"))
        pending = _Pending(peer, message["id"], method, time.perf_counter())
        pending.timer = loop.call_later(self.config.timeout, self._expire, uid)
        params = message.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        if isinstance(meta, dict) and "progressToken" in meta:
            pending.progress_token = meta["progressToken"]
            self._tokens[meta["progressToken"]] = uid
        self._pending[uid] = pending
        self._by_downstream[(id(peer), message["id"])] = uid
        outgoing = {**message, "id": uid}
        if method == "initialize" and self.owner is not None:
            self._replay.initialize = outgoing
        await self.link.send(outgoing, headers, uid)

    async def notify(self, peer: Peer, message: Message, headers: Mapping[str, str]) -> None:
        """Forward a notification, translating the id a cancellation names."""
        if message.get("method") == "notifications/cancelled" and isinstance(message.get("params"), dict):
            uid = self._by_downstream.get((id(peer), message["params"].get("requestId")))
            if uid is None:
                return  # nothing upstream to cancel (already answered, or answered by the gateway)
            message = {**message, "params": {**message["params"], "requestId": uid}}
        if message.get("method") == "notifications/initialized" and self.owner is not None:
            self._replay.initialized = message
        await self.link.send(message, headers, None)

    async def respond(self, message: Message, headers: Mapping[str, str]) -> None:
        """A client's answer to an upstream request; its id is the upstream's own."""
        await self.link.send(message, headers, None)

    def _finish(self, uid: int) -> _Pending | None:
        pending = self._pending.pop(uid, None)
        if pending is None:
            return None
        if pending.timer is not None:
            pending.timer.cancel()
        self._by_downstream.pop((id(pending.peer), pending.downstream_id), None)
        if pending.progress_token is not None:
            self._tokens.pop(pending.progress_token, None)
        return pending

    async def _answer(self, uid: int, message: Message) -> None:
        pending = self._finish(uid)
        if pending is not None:
            await pending.peer.on_response(
                {**message, "id": pending.downstream_id}, pending.method, pending.started
            )

    async def _on_message(self, message: Any, related: tuple[int, ...]) -> None:
        if (
            not isinstance(message, dict)
            or message.get("malformed") is True
            or message.get("jsonrpc") != "2.0"
        ):
            await self._malformed(message, related)
            return
        if is_response(message):
            uid = message["id"]
            if isinstance(uid, int) and uid in self._replay.internal_ids:
                self._replay.internal_ids.discard(uid)
                return
            if isinstance(uid, int) and uid in self._pending:
                await self._answer(uid, message)
            return
        if "method" not in message:
            await self._malformed(message, related)
            return
        peer, downstream = self._route(message, related)
        if peer is None:
            if is_request(message):
                await self.link.send(
                    error_response(message["id"], -32601, "no client to answer this request"), {}, None
                )
            return
        await peer.on_message(message, downstream)

    def _route(self, message: Message, related: tuple[int, ...]) -> tuple[Peer | None, tuple[Any, ...]]:
        """Who gets a message the upstream sent on its own or beside an answer."""
        for uid in related:
            pending = self._pending.get(uid)
            if pending is not None:
                return pending.peer, (pending.downstream_id,)
        params = message.get("params")
        if isinstance(params, dict) and "progressToken" in params:
            uid_for_token = self._tokens.get(params["progressToken"])
            if uid_for_token is not None:
                pending = self._pending[uid_for_token]
                return pending.peer, (pending.downstream_id,)
        return self.owner, ()

    async def _malformed(self, message: Any, related: tuple[int, ...]) -> None:
        """Garbage from upstream: answer the request it was meant for, if that is known."""
        self.metrics.error("upstream_malformed")
        logger.warning("upstream %s sent a malformed JSON-RPC message", self.config.name)
        uid = message.get("id") if isinstance(message, dict) else None
        targets = [uid] if isinstance(uid, int) and uid in self._pending else list(related)
        for target in targets:
            await self._answer(
                target,
                error_response(None, INTERNAL_ERROR, f"upstream {self.config.name} sent malformed JSON-RPC"),
            )

    def _expire(self, uid: int) -> None:
        if uid in self._pending:
            asyncio.get_running_loop().create_task(self._timed_out(uid))

    async def _timed_out(self, uid: int) -> None:
        self.metrics.error("upstream_timeout")
        await self._answer(
            uid,
            error_response(
                None,
                UPSTREAM_TIMEOUT,
                f"upstream {self.config.name} did not answer within {self.config.timeout:g} s",
            ),
        )
        cancel = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": uid, "reason": "gateway timeout"},
        }
        with contextlib.suppress(Exception):
            await self.link.send(cancel, {}, None)

    async def _on_down(self, why: str) -> None:
        """Every request in flight gets an answer when its upstream goes away."""
        if why != "closed":
            self.metrics.error("upstream_down")
        for uid in list(self._pending):
            await self._answer(
                uid, error_response(None, UPSTREAM_UNAVAILABLE, f"upstream {self.config.name} {why}")
            )

    async def _on_up(self) -> None:
        """Replay the session's handshake to a restarted process; its answer is ours."""
        if self._replay.initialize is None:
            return
        uid = next(self._ids)
        self._replay.internal_ids.add(uid)
        await self.link.send({**self._replay.initialize, "id": uid}, {}, uid)
        if self._replay.initialized is not None:
            await self.link.send(self._replay.initialized, {}, None)
