"""The Streamable HTTP listener: ``POST``/``GET``/``DELETE`` on the MCP path.

Sessions are the gateway's own (its ``Mcp-Session-Id``), each bound to its
own upstream connection. A POSTed request is answered as JSON when the
first thing the upstream sends back is the answer, and as an SSE stream
when something related (progress, a server request) comes first, so plain
calls pay no streaming overhead and streaming calls lose nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from mcp_attest import HEADER_NAME
from mcp_attest.gateway._app import Gateway, LimitReachedError
from mcp_attest.gateway._jsonrpc import (
    INVALID_REQUEST,
    LIMIT_REACHED,
    PARSE_ERROR,
    UPSTREAM_UNAVAILABLE,
    Message,
    error_response,
    is_request,
    is_response,
    reencodable,
    valid_id,
)
from mcp_attest.gateway._link import UpstreamStartError
from mcp_attest.gateway._policy import Route
from mcp_attest.gateway._session import GatewaySession

__all__ = ["HttpListener"]

logger = logging.getLogger("mcp_attest.gateway")

_SESSION = "mcp-session-id"
_BACKLOG = 1000
_KEEPALIVE = 15.0
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
_OWN_PATHS = frozenset({"/healthz", "/metrics"})
_SESSION_RAW = _SESSION.encode()
_ATTESTATION = HEADER_NAME.lower()
_JSON_TYPE = (b"content-type", b"application/json")
_SSE_TYPE = (b"content-type", b"text/event-stream")
# Put on a stream's or a waiting request's queue when the session is gone: end it, no answer.
_END: Message = {}


class _TooLargeError(Exception):
    pass


class _Downstream:
    """Where upstream messages for one HTTP session go: a POST stream, the GET stream, or a backlog."""

    def __init__(self, client: str = "") -> None:
        self.client = client
        self.session: GatewaySession | None = None
        self.waiters: dict[Any, asyncio.Queue[Message]] = {}
        self.stream: asyncio.Queue[Message] | None = None
        self.backlog: deque[Message] = deque(maxlen=_BACKLOG)
        self.ended = False

    def end(self) -> None:
        """The client ended the session: open requests are cancelled, open streams close.

        MCP: a cancelled request gets no response, so what the upstream (or
        the gateway, as it closes the upstream) sends afterwards is dropped.
        """
        self.ended = True
        for queue in [*self.waiters.values(), *([self.stream] if self.stream is not None else [])]:
            queue.put_nowait(_END)

    async def sink(self, message: Message, related: tuple[Any, ...]) -> None:
        if self.ended:
            return
        for key in related:
            waiter = self.waiters.get(key)
            if waiter is not None:
                waiter.put_nowait(message)
                return
        if self.stream is not None:
            self.stream.put_nowait(message)
        elif self.waiters and "method" in message:
            # An upstream request or notification nothing else relates (a
            # stdio upstream cannot say): the most recent call is the best
            # guess, and the only way a client without a GET stream sees it.
            next(reversed(self.waiters.values())).put_nowait(message)
        else:
            self.backlog.append(message)


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """A complete response, as Starlette's ``Response`` would send it, without building one."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", b"%d" % len(body)), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _sse(message: Message) -> bytes:
    return b"event: message\ndata: " + orjson.dumps(message) + b"\n\n"


def _rpc_error(status: int, code: int, text: str, request_id: Any = None) -> Response:
    return JSONResponse(error_response(request_id, code, text), status_code=status)


class HttpListener:
    """ASGI app serving every upstream: ``PATH`` for the first, ``PATH/<name>`` for each."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.config = gateway.config
        self.sessions: dict[str, tuple[Route, _Downstream]] = {}
        self._per_client: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "POST":
            path = scope["path"]
            route = None if path in _OWN_PATHS else self._route_for(path)
            if route is not None:  # the hot path: raw ASGI, no Request/Response objects unless needed
                await self._post(scope, receive, send, route)
                return
        request = Request(scope, receive)
        response = await self._dispatch(request)
        await response(scope, receive, send)

    async def _dispatch(self, request: Request) -> Response:
        path = request.url.path
        if path == "/healthz":
            return JSONResponse(self._health())
        if path == "/metrics":
            return PlainTextResponse(self.gateway.metrics.render(), media_type="text/plain; version=0.0.4")
        route = self._route_for(path)
        if route is None:
            return PlainTextResponse("not found\n", status_code=404)
        if not self._origin_ok(request.headers.get("origin")):
            return _rpc_error(403, INVALID_REQUEST, "origin not allowed")
        if request.method == "GET":
            return await self._get(request, route)
        if request.method == "DELETE":
            return await self._delete(request, route)
        return PlainTextResponse(
            "method not allowed\n", status_code=405, headers={"allow": "GET, POST, DELETE"}
        )

    def _health(self) -> dict[str, Any]:
        """Liveness, and the fingerprint enforced per upstream (what clients must sign for)."""
        return {
            "status": "ok",
            "name": self.config.name,
            "mode": self.config.mode,
            "sessions": len(self.sessions),
            "upstreams": {up.name: {"fingerprint": up.fingerprint} for up in self.config.upstreams},
        }

    def _route_for(self, path: str) -> Route | None:
        base = self.config.http_path
        if path in (base, base + "/"):
            return self.gateway.route(None)
        if path.startswith(base + "/"):
            name = path[len(base) + 1 :].rstrip("/")
            return self.gateway.routes.get(name)
        return None

    def _origin_ok(self, origin: str | None) -> bool:
        """DNS-rebinding defence the MCP transport spec asks for: browsers send Origin."""
        if origin is None:
            return True
        host = urlsplit(origin).hostname or ""
        return host in _LOOPBACK or host == self.config.http_host

    async def _body(self, first: dict[str, str], receive: Receive) -> bytes:
        limit = self.config.max_body_bytes
        declared = first.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _TooLargeError
        chunks, size = [], 0
        async with asyncio.timeout(self.config.connections.body_timeout):  # the whole body, not per part
            while True:
                event = await receive()
                if event["type"] == "http.disconnect":
                    raise ClientDisconnect
                chunk = event.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise _TooLargeError
                chunks.append(chunk)
                if not event.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _read_message(
        self, first: dict[str, str], receive: Receive
    ) -> tuple[Message, bytes] | Response:
        """The POSTed message, or the HTTP error that refuses it before any session is touched."""
        metrics = self.gateway.metrics
        ctype = first.get("content-type", "").partition(";")[0].strip().lower()
        if ctype != "application/json":
            metrics.error("http_content_type")
            return _rpc_error(415, INVALID_REQUEST, "Content-Type must be application/json")
        accept = first.get("accept", "*/*")
        if not any(t in accept for t in ("application/json", "text/event-stream", "*/*")):
            return _rpc_error(406, INVALID_REQUEST, "Accept must allow application/json or text/event-stream")
        try:
            body = await self._body(first, receive)
        except _TooLargeError:
            metrics.error("http_too_large")
            return _rpc_error(413, INVALID_REQUEST, f"body larger than {self.config.max_body_bytes} bytes")
        except ClientDisconnect:
            return Response(status_code=400)
        except TimeoutError:
            metrics.refusal("http_body_timeout")
            timeout = self.config.connections.body_timeout
            return _rpc_error(408, INVALID_REQUEST, f"body not received within {timeout:g} s")
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            metrics.error("http_parse")
            return _rpc_error(400, PARSE_ERROR, "body is not JSON")
        if isinstance(message, list):
            return _rpc_error(400, INVALID_REQUEST, "JSON-RPC batches are not supported")
        if not reencodable(message):
            metrics.error("http_invalid")
            return _rpc_error(400, INVALID_REQUEST, "JSON nested too deeply")
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            metrics.error("http_invalid")
            return _rpc_error(400, INVALID_REQUEST, "not a JSON-RPC 2.0 message")
        if "id" in message and not valid_id(message["id"]):
            return _rpc_error(400, INVALID_REQUEST, "id must be a string or an integer")
        return message, body

    async def _downstream(
        self, message: Message, sid: str | None, route: Route, client: str
    ) -> tuple[_Downstream, str | None] | Response:
        """The session a message belongs to: existing, new (initialize), or one-shot."""
        if sid is not None:
            entry = self.sessions.get(sid)
            if entry is None or entry[0] is not route:
                return _rpc_error(404, -32001, "session not found", message.get("id"))
            return entry[1], sid
        downstream = _Downstream(client)
        try:
            if message.get("method") == "initialize" and is_request(message):
                refused = self._session_refusal(client, message.get("id"))
                if refused is not None:
                    return refused
                downstream.session = await self.gateway.open_session(route, downstream.sink)
                sid = secrets.token_urlsafe(24)
                self.sessions[sid] = (route, downstream)
                self._per_client[client] += 1
            else:
                downstream.session = await self.gateway.stateless_session(route, downstream.sink)
        except LimitReachedError as exc:
            return _rpc_error(503, LIMIT_REACHED, str(exc), message.get("id"))
        except UpstreamStartError as exc:
            self.gateway.metrics.error("upstream_down")
            return _rpc_error(502, UPSTREAM_UNAVAILABLE, str(exc), message.get("id"))
        except (OSError, TimeoutError) as exc:
            self.gateway.metrics.error("upstream_down")
            why = f"upstream {route.name} unavailable: {type(exc).__name__}"
            return _rpc_error(502, UPSTREAM_UNAVAILABLE, why, message.get("id"))
        return downstream, sid

    def _session_refusal(self, client: str, request_id: Any) -> Response | None:
        """503 when the gateway holds all the sessions it may, 429 when this address holds its share."""
        limits = self.config.limits
        if len(self.sessions) >= limits.max_sessions:
            self.gateway.metrics.refusal("sessions_total")
            why = f"the gateway holds {limits.max_sessions} sessions, its limit; retry later"
            return _rpc_error(503, LIMIT_REACHED, why, request_id)
        if self._per_client[client] >= limits.max_sessions_per_client:
            self.gateway.metrics.refusal("sessions_per_client")
            why = f"this client holds {limits.max_sessions_per_client} sessions, its limit"
            return _rpc_error(429, LIMIT_REACHED, why, request_id)
        return None

    def _forget(self, sid: str) -> GatewaySession | None:
        """Drop a session from the table (DELETE, idle, shutdown); its channel is the caller's to close."""
        entry = self.sessions.pop(sid, None)
        if entry is None:
            return None
        client = entry[1].client
        self._per_client[client] -= 1
        if self._per_client[client] <= 0:
            del self._per_client[client]
        return entry[1].session

    async def _post(self, scope: Scope, receive: Receive, send: Send, route: Route) -> None:
        # Header names arrive lower-cased; checks read the first of a repeated header (as
        # Starlette's ``headers.get`` did), the session sees the last (as its dict did),
        # except a repeated X-MCP-Attestation: joined with "," as the SDK guard reads
        # Starlette headers, so the verifier rejects it (V11) instead of judging one copy.
        headers: dict[str, str] = {}
        first: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            if name == _ATTESTATION and name in headers:
                value = f"{headers[name]},{value}"
            headers[name] = value
            first.setdefault(name, value)
        if not self._origin_ok(first.get("origin")):
            await _rpc_error(403, INVALID_REQUEST, "origin not allowed")(scope, receive, send)
            return
        read = await self._read_message(first, receive)
        if isinstance(read, Response):
            await read(scope, receive, send)
            return
        message, raw = read
        client = scope["client"][0] if scope.get("client") else ""
        found = await self._downstream(message, headers.get(_SESSION), route, client)
        if isinstance(found, Response):
            await found(scope, receive, send)
            return
        downstream, sid = found
        session = downstream.session
        assert session is not None
        extra = [(_SESSION_RAW, sid.encode("latin-1"))] if sid else []
        if not is_request(message):
            refusal = await session.from_client(message, headers, raw)
            if refusal is None:
                await _send(send, 202, b"", extra)
            else:
                await _send(send, 400, orjson.dumps(refusal), [_JSON_TYPE, *extra])
            return
        request_id = message["id"]
        if len(downstream.waiters) >= self.config.limits.max_in_flight:
            self.gateway.metrics.refusal("in_flight")
            why = f"more than {self.config.limits.max_in_flight} requests in flight in this session"
            await _rpc_error(429, LIMIT_REACHED, why, request_id)(scope, receive, send)
            return
        if request_id in downstream.waiters:
            self.gateway.metrics.error("client_duplicate_id")
            why = "a request with this id is already in flight in this session"
            await _rpc_error(409, INVALID_REQUEST, why, request_id)(scope, receive, send)
            return
        queue: asyncio.Queue[Message] = asyncio.Queue()
        downstream.waiters[request_id] = queue
        try:
            await session.from_client(message, headers, raw)
            first_reply = await queue.get()
        except BaseException:
            downstream.waiters.pop(request_id, None)
            raise
        if first_reply is _END or (is_response(first_reply) and first_reply.get("id") == request_id):
            downstream.waiters.pop(request_id, None)  # _END: cancelled, no answer (an empty SSE stream)
            body, kind = (b"", _SSE_TYPE) if first_reply is _END else (orjson.dumps(first_reply), _JSON_TYPE)
            await _send(send, 200, body, [kind, *extra])
            return
        stream = StreamingResponse(
            self._stream(downstream, request_id, first_reply, queue),
            media_type="text/event-stream",
            headers={**({_SESSION: sid} if sid else {}), "cache-control": "no-cache"},
        )
        await stream(scope, receive, send)

    async def _stream(
        self, downstream: _Downstream, request_id: Any, first: Message, queue: asyncio.Queue[Message]
    ) -> AsyncIterator[bytes]:
        try:
            message = first
            while message is not _END:
                yield _sse(message)
                if is_response(message) and message.get("id") == request_id:
                    return
                message = await queue.get()
        finally:
            downstream.waiters.pop(request_id, None)

    async def _get(self, request: Request, route: Route) -> Response:
        if "text/event-stream" not in request.headers.get("accept", ""):
            return _rpc_error(406, INVALID_REQUEST, "Accept must allow text/event-stream")
        sid = request.headers.get(_SESSION)
        entry = self.sessions.get(sid or "")
        if sid is None:
            return _rpc_error(400, INVALID_REQUEST, "Mcp-Session-Id required")
        if entry is None or entry[0] is not route:
            return _rpc_error(404, -32001, "session not found")
        downstream = entry[1]
        if downstream.stream is not None:
            return _rpc_error(409, INVALID_REQUEST, "a stream is already open for this session")
        queue: asyncio.Queue[Message] = asyncio.Queue()
        while downstream.backlog:
            queue.put_nowait(downstream.backlog.popleft())
        downstream.stream = queue

        async def events() -> AsyncIterator[bytes]:
            try:
                while True:
                    try:
                        message = await asyncio.wait_for(queue.get(), timeout=_KEEPALIVE)
                    except TimeoutError:
                        yield b": keepalive\n\n"
                        continue
                    if message is _END:
                        return
                    yield _sse(message)
            finally:
                if downstream.stream is queue:
                    downstream.stream = None

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={_SESSION: sid, "cache-control": "no-cache"}
        )

    async def _delete(self, request: Request, route: Route) -> Response:
        sid = request.headers.get(_SESSION)
        entry = self.sessions.get(sid or "")
        if sid is None or entry is None or entry[0] is not route:
            return _rpc_error(404, -32001, "session not found")
        entry[1].end()
        session = self._forget(sid)
        if session is not None:
            await session.close()
        return Response(status_code=200)

    async def reap(self) -> None:
        """Close sessions no client message touched for the idle timeout: their processes are not free.

        An open GET stream does not keep a session alive (it would let one
        client hold a process forever); its stream ends with the session,
        and the client's next request gets 404 and re-initializes.
        """
        idle = self.config.limits.idle_timeout * 60.0
        while True:
            await asyncio.sleep(min(idle / 4, 30.0))
            now = time.monotonic()
            for sid, (_, downstream) in list(self.sessions.items()):
                session = downstream.session
                if session is not None and now - session.last_used > idle and not downstream.waiters:
                    self._forget(sid)
                    self.gateway.metrics.refusal("idle_session_closed")
                    downstream.end()  # no request is open; its GET stream, if any, ends
                    with contextlib.suppress(Exception):
                        await session.close()

    async def close(self) -> None:
        """Shutdown: server streams end at once (no client is left waiting on a dead process)."""
        for sid, (_, downstream) in list(self.sessions.items()):
            if downstream.stream is not None:
                downstream.stream.put_nowait(_END)
            session = self._forget(sid)
            if session is not None:
                with contextlib.suppress(Exception):
                    await session.close()
