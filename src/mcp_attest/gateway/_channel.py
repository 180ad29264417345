"""Request bookkeeping over one upstream link.

A ``Channel`` sits on a link and renumbers request ids, so that one link
can carry the requests of several gateway sessions (sessionless traffic
shares one) and so that a request the gateway gives up on (timeout,
crash) can be answered exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mcp_attest.gateway._jsonrpc import (
    INTERNAL_ERROR,
    UPSTREAM_TIMEOUT,
    UPSTREAM_UNAVAILABLE,
    Message,
    error_response,
    is_request,
    is_response,
)
from mcp_attest.gateway._link import Link
from mcp_attest.gateway._metrics import Metrics
from mcp_attest.gateway.config import UpstreamConfig

__all__ = ["Channel", "Peer"]

logger = logging.getLogger("mcp_attest.gateway")


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
        self._replay = _Replay()
        self._per_peer: Counter[int] = Counter()
        self.closed = False
        link.on_message = self._on_message
        link.on_down = self._on_down
        link.on_up = self._on_up

    async def start(self) -> None:
        await self.link.start()

    async def close(self) -> None:
        self.closed = True
        await self._on_down("closed")
        await self.link.close()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def pending_of(self, peer: Peer) -> int:
        """Requests of ``peer`` forwarded and not yet answered."""
        return self._per_peer[id(peer)]

    def in_flight(self, peer: Peer, downstream_id: Any) -> bool:
        """Whether ``peer`` already waits on a request with this id (a second would orphan it)."""
        return (id(peer), downstream_id) in self._by_downstream

    async def request(self, peer: Peer, message: Message, headers: Mapping[str, str]) -> None:
        """Forward a client request under a fresh upstream id.

        A progress token goes upstream as that id too: the token is the
        client's choice, and on a channel several clients share, routing
        progress by it would hand one client's progress to another.
        """
        uid = next(self._ids)
        loop = asyncio.get_running_loop()
        method = str(message.get("method"))
        pending = _Pending(peer, message["id"], method, time.perf_counter())
        pending.timer = loop.call_later(self.config.timeout, self._expire, uid)
        params = message.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        outgoing = {**message, "id": uid}
        if isinstance(meta, dict) and "progressToken" in meta:
            pending.progress_token = meta["progressToken"]
            outgoing["params"] = {**message["params"], "_meta": {**meta, "progressToken": uid}}
        self._pending[uid] = pending
        self._per_peer[id(peer)] += 1
        self._by_downstream[(id(peer), message["id"])] = uid
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
        self._per_peer[id(pending.peer)] -= 1
        if self._per_peer[id(pending.peer)] <= 0:
            del self._per_peer[id(pending.peer)]
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
        peer, message, downstream = self._route(message, related)
        if peer is None:
            if is_request(message):
                await self.link.send(
                    error_response(message["id"], -32601, "no client to answer this request"), {}, None
                )
            return
        await peer.on_message(message, downstream)

    def _route(
        self, message: Message, related: tuple[int, ...]
    ) -> tuple[Peer | None, Message, tuple[Any, ...]]:
        """Who gets a message the upstream sent on its own or beside an answer, and in what form."""
        for uid in related:
            pending = self._pending.get(uid)
            if pending is not None:
                return pending.peer, self._client_token(message, pending), (pending.downstream_id,)
        params = message.get("params")
        token = params.get("progressToken") if isinstance(params, dict) else None
        pending = self._pending.get(token) if type(token) is int else None
        if pending is not None and pending.progress_token is not None:
            return pending.peer, self._client_token(message, pending), (pending.downstream_id,)
        return self.owner, message, ()

    @staticmethod
    def _client_token(message: Message, pending: _Pending) -> Message:
        """Progress about ``pending`` carries the token its client chose, not the upstream id."""
        params = message.get("params")
        if pending.progress_token is None or not isinstance(params, dict) or "progressToken" not in params:
            return message
        return {**message, "params": {**params, "progressToken": pending.progress_token}}

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
