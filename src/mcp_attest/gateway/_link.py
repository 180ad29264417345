"""What a channel needs from a transport to one upstream.

A ``Link`` moves JSON-RPC messages to and from one upstream (a stdio child
process in ``stdio_link``, a Streamable HTTP endpoint in ``http_link``);
the ``Channel`` above it does not know which.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from mcp_attest.errors import Error
from mcp_attest.gateway._jsonrpc import Message

__all__ = ["Link", "OnMessage", "UpstreamStartError", "nothing"]

OnMessage = Callable[[Any, tuple[int, ...]], Awaitable[None]]


class UpstreamStartError(Error):
    """An upstream that could not be started; the message names the command and the OS error."""


class Link(Protocol):
    """A transport to one upstream; ``on_message`` gets parsed JSON or ``None`` for garbage."""

    on_message: OnMessage
    on_down: Callable[[str], Awaitable[None]]
    on_up: Callable[[], Awaitable[None]]

    async def start(self) -> None: ...

    async def send(self, message: Message, headers: Mapping[str, str], request_id: int | None) -> None: ...

    async def close(self) -> None: ...


async def nothing(*_: Any) -> None:
    return None
