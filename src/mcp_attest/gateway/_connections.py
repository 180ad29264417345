"""Connection-level limits of the HTTP listener, below ASGI.

uvicorn bounds keep-alive idleness but not how large or how slow a request
head may be, nor how many connections one address holds: a client sending
a never-ending header, or hundreds of connections that each trickle a byte
now and then (slowloris), would hold memory and sockets for as long as it
likes. This protocol adds those bounds to uvicorn's httptools protocol;
everything else (parsing, pipelining, flow control) stays uvicorn's.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mcp_attest.gateway._metrics import Metrics

__all__ = ["ConnectionLimits", "guarded_protocol"]


class ConnectionLimits:
    """The limits and the live counts they are checked against (one per server)."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        max_connections: int,
        max_connections_per_client: int,
        max_header_bytes: int,
        header_timeout: float,
    ) -> None:
        self.metrics = metrics
        self.max_connections = max_connections
        self.max_connections_per_client = max_connections_per_client
        self.max_header_bytes = max_header_bytes
        self.header_timeout = header_timeout
        self.open = 0
        self.per_client: Counter[str] = Counter()


_LINGER = 1.0
_STATUS = {
    408: b"408 Request Timeout",
    429: b"429 Too Many Requests",
    431: b"431 Request Header Fields Too Large",
    503: b"503 Service Unavailable",
}


def guarded_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol class, bound to ``limits``."""

    class GuardedProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._peer = ""
            self._counted = False
            self._refused = False
            self._head_bytes = 0
            self._in_head = True
            self._head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._peer = self.client[0] if self.client else ""
            if limits.open >= limits.max_connections:
                self._refuse(503, "connections_total")
                return
            if limits.per_client[self._peer] >= limits.max_connections_per_client:
                self._refuse(429, "connections_per_client")
                return
            self._counted = True
            limits.open += 1
            limits.per_client[self._peer] += 1
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._counted:
                self._counted = False
                limits.open -= 1
                limits.per_client[self._peer] -= 1
                if limits.per_client[self._peer] <= 0:
                    del limits.per_client[self._peer]
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            # Counted after parsing: a chunk that completes the head may carry the body too
            # (one write of head and body is common), so only chunks after which a head is
            # still incomplete count. One chunk is at most the loop's read size.
            if self._refused:
                return  # read and dropped while the refusal lingers (see _refuse)
            super().data_received(data)
            if self._in_head:
                self._head_bytes += len(data)
                if self._head_bytes > limits.max_header_bytes:
                    self._refuse(431, "http_header_too_large")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head = True
            self._arm()

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._head_bytes = 0
            self._disarm()
            super().on_headers_complete()

        def _arm(self) -> None:
            """Start the clock on a request head (a connection's first, or the next on keep-alive)."""
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(limits.header_timeout, self._head_timed_out)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self._in_head and self._head_bytes:
                self._refuse(408, "http_header_timeout")
            elif self._in_head:  # nothing sent at all: an idle connection, closed quietly
                limits.metrics.error("http_idle_connection")
                self.transport.close()

        def _refuse(self, status: int, kind: str) -> None:
            limits.metrics.refusal(kind)
            self._disarm()
            self._in_head = False
            if self.transport.is_closing():
                return
            self._refused = True
            self.transport.write(
                b"HTTP/1.1 %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n" % _STATUS[status]
            )
            # Lingering close: a socket closed with the client's bytes still unread
            # sends a reset, which can destroy the refusal before the client reads it
            # (a client still sending a huge head). Send EOF, drop what arrives, and
            # close when the client does or after _LINGER seconds.
            if self.transport.can_write_eof():
                self.transport.write_eof()
                self.loop.call_later(_LINGER, self.transport.close)
            else:
                self.transport.close()

    return GuardedProtocol
