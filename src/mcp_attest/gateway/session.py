"""One downstream conversation: client messages in, upstream messages out.

Transport-neutral on both sides: the stdio and HTTP listeners hand client
messages to ``from_client`` and give the session a ``Sink`` for what goes
back; the ``Channel`` beneath hides whether the upstream is a process or a
URL. Only four methods are looked at: ``tools/call`` (verify or sign),
``initialize`` and ``server/discover`` (capability), ``tools/list``
(pinning). Everything else passes through unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from mcp_attest.gateway.channel import Channel
from mcp_attest.gateway.jsonrpc import (
    INVALID_REQUEST,
    Message,
    error_response,
    is_notification,
    is_request,
    is_response,
)
from mcp_attest.gateway.policy import Route

__all__ = ["GatewaySession", "Sink"]

Sink = Callable[[Message, tuple[Any, ...]], Awaitable[None]]
_NEGOTIATION = frozenset({"initialize", "server/discover"})


class GatewaySession:
    """Applies the route's policy between one client and one channel."""

    def __init__(self, route: Route, channel: Channel, sink: Sink) -> None:
        self.route = route
        self.channel = channel
        self.sink = sink
        self.last_used = time.monotonic()

    async def from_client(self, message: Any, headers: Mapping[str, str]) -> None:
        """Route one client message; invalid ones are answered, never forwarded."""
        self.last_used = time.monotonic()
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            await self._invalid(message, "not a JSON-RPC 2.0 message")
            return
        if is_request(message):
            await self._request(message, headers)
        elif is_notification(message):
            await self.channel.notify(self, message, _forwardable(headers))
        elif is_response(message):
            await self.channel.respond(message, _forwardable(headers))
        else:
            await self._invalid(message, "neither a request, a notification nor a response")

    async def _invalid(self, message: Any, why: str) -> None:
        self.route.metrics.error("client_invalid")
        request_id = message.get("id") if isinstance(message, dict) else None
        await self.sink(
            error_response(request_id if isinstance(request_id, str | int) else None, INVALID_REQUEST, why),
            (),
        )

    async def _request(self, message: Message, headers: Mapping[str, str]) -> None:
        method = message["method"]
        extra = _forwardable(headers)
        if method == "tools/call":
            started = time.perf_counter()
            params = message.get("params")
            decision = await self.route.decide(params if isinstance(params, dict) else {}, headers)
            self.route.metrics.call(self.route.name, decision.outcome)
            if decision.reply is not None:
                self.route.metrics.observe(time.perf_counter() - started)
                await self.sink(
                    {"jsonrpc": "2.0", "id": message["id"], "result": decision.reply}, (message["id"],)
                )
                return
            message = {**message, "params": decision.params}
            extra.update(decision.headers)
        elif method == "initialize":
            message = self.route.prepare_initialize(message)
        await self.channel.request(self, message, extra)

    async def on_response(self, message: Message, method: str, started: float) -> None:
        result = message.get("result")
        if method in _NEGOTIATION:
            self.route.advertise(result)
        elif method == "tools/list":
            self.route.observe_tools(result)
        elif method == "tools/call":
            self.route.metrics.observe(time.perf_counter() - started)
        await self.sink(message, (message.get("id"),))

    async def on_message(self, message: Message, related: tuple[Any, ...]) -> None:
        await self.sink(message, related)

    async def close(self) -> None:
        await self.channel.close()


def _forwardable(headers: Mapping[str, str]) -> dict[str, str]:
    """Protocol headers a client sent that an HTTP upstream must also see.

    ``mcp-*`` headers (protocol version, per-request method and name) carry
    protocol state; the session id is the gateway's own, and credentials
    are never passed through (MCP forbids token passthrough).
    """
    return {k: v for k, v in headers.items() if k.startswith("mcp-") and k != "mcp-session-id"}
