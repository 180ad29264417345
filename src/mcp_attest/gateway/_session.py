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

from mcp_attest.gateway._channel import Channel
from mcp_attest.gateway._jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    LIMIT_REACHED,
    Message,
    error_response,
    gateway_error_result,
    is_notification,
    is_request,
    is_response,
    valid_id,
)
from mcp_attest.gateway._logs import log_verdict
from mcp_attest.gateway._policy import Decision, Route
from mcp_attest.gateway._rawcall import AmbiguousCallError, call_inputs
from mcp_attest.verdict import Reason

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

    async def from_client(
        self, message: Any, headers: Mapping[str, str], raw: bytes | None = None
    ) -> Message | None:
        """Route one client message; invalid ones are answered, never forwarded.

        Returns the refusal of a message that has no id to answer by (a
        ``tools/call`` notification), for the listener to deliver as its
        transport allows; ``raw`` is the message as received (``rawcall``).
        """
        self.last_used = time.monotonic()
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            await self._invalid(message, "not a JSON-RPC 2.0 message")
        elif "id" in message and not valid_id(message["id"]):
            await self._invalid(message, "id must be a string or an integer")
        elif is_request(message):
            await self._request(message, headers, raw)
        elif is_notification(message):
            if message["method"] == "tools/call":
                return await self._unanswerable_call(message)
            await self.channel.notify(self, message, _forwardable(headers))
        elif is_response(message):
            await self.channel.respond(message, _forwardable(headers))
        else:
            await self._invalid(message, "neither a request, a notification nor a response")
        return None

    async def _unanswerable_call(self, message: Message) -> Message:
        """A ``tools/call`` without an id: nothing could carry its verdict back, so it never runs.

        An upstream may well execute notifications (JSON-RPC allows it), so
        forwarding one would run a tool nobody verified. It is recorded as
        a rejection and refused; the refusal has no id to go to.
        """
        params = message.get("params")
        tool = params.get("name") if isinstance(params, dict) else None
        why = "tools/call must be a request (with an id); not forwarded"
        self.route.metrics.call(self.route.name, "rejected")
        self._log(params, self.route.refuse(tool, Reason.SIGNATURE_INVALID, "gateway.not_a_request", why))
        return error_response(None, INVALID_REQUEST, why)

    def _log(self, params: Any, decision: Decision) -> None:
        log_verdict(
            self.route.name,
            params.get("name") if isinstance(params, dict) else None,
            decision=decision.outcome,
            reason=decision.reason,
            detail=decision.detail,
            attestation_id=decision.attestation_id,
        )

    async def _invalid(self, message: Any, why: str, code: int = INVALID_REQUEST) -> None:
        self.route.metrics.error("client_invalid")
        request_id = message.get("id") if isinstance(message, dict) else None
        request_id = request_id if valid_id(request_id) else None
        await self.sink(error_response(request_id, code, why), () if request_id is None else (request_id,))

    async def _request(self, message: Message, headers: Mapping[str, str], raw: bytes | None) -> None:
        method = message["method"]
        extra = _forwardable(headers)
        params = message.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        if isinstance(meta, dict) and "progressToken" in meta and not valid_id(meta["progressToken"]):
            await self._invalid(message, "progressToken must be a string or an integer", INVALID_PARAMS)
            return
        if self.channel.in_flight(self, message["id"]):
            await self._invalid(message, "a request with this id is already in flight")
            return
        limit = self.route.gateway.limits.max_in_flight
        if self.channel.pending_of(self) >= limit:
            self.route.metrics.refusal("in_flight")
            why = f"more than {limit} requests in flight in this session"
            await self._invalid(message, why, LIMIT_REACHED)
            return
        if method == "tools/call":
            started = time.perf_counter()
            try:
                inputs = call_inputs(raw, message)
            except AmbiguousCallError as exc:
                self.route.metrics.call(self.route.name, "invalid")
                self._log(
                    params, Decision(outcome="invalid", reason="invalid_params", detail="call.ambiguous")
                )
                await self._answer(message, gateway_error_result("invalid_params", str(exc)))
                return
            decision = await self.route.decide(params if isinstance(params, dict) else {}, headers, inputs)
            self.route.metrics.call(self.route.name, decision.outcome)
            self._log(params, decision)
            if decision.reply is not None:
                self.route.metrics.observe(time.perf_counter() - started)
                await self._answer(message, decision.reply)
                return
            message = {**message, "params": decision.params}
            extra.update(decision.headers)
        elif method == "initialize":
            message = self.route.prepare_initialize(message)
        await self.channel.request(self, message, extra)

    async def _answer(self, message: Message, result: Message) -> None:
        await self.sink({"jsonrpc": "2.0", "id": message["id"], "result": result}, (message["id"],))

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
