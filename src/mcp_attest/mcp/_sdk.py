"""Adapters for the official ``mcp`` SDK server (high level and low level)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension
from mcp.server.lowlevel import Server
from mcp_types import CallToolRequestParams

from mcp_attest import CAPABILITY
from mcp_attest.errors import ConfigurationError

if TYPE_CHECKING:
    from mcp_attest.mcp._guard import AttestationGuard

__all__ = ["AttestationExtension", "CapabilityMiddleware", "client_capability", "install"]

_NEGOTIATION = frozenset({"initialize", "server/discover"})


class AttestationExtension(Extension):
    """``MCPServer`` extension: the SDK's own ``tools/call`` interception hook.

    Used instead of a server middleware for verification because an
    interceptor's result is serialized like a handler's (2026 ``resultType``
    and ``serverInfo`` stamp included), while a short-circuiting middleware
    would have to build the whole wire envelope itself.
    """

    identifier = CAPABILITY

    def __init__(self, guard: AttestationGuard) -> None:
        self._guard = guard

    def settings(self) -> dict[str, Any]:
        return self._guard.capability()

    async def intercept_tool_call(
        self,
        params: CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        return await self._guard.guard_sdk_call(params, ctx, call_next)


class CapabilityMiddleware:
    """Server middleware adding the capability to negotiation results.

    Runs after the SDK has sieved the result for the negotiated version, so
    the ``experimental`` entry survives on handshake-era ``initialize``
    results, which drop ``extensions``.
    """

    def __init__(self, guard: AttestationGuard) -> None:
        self._guard = guard

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method in _NEGOTIATION and isinstance(result, dict):
            capabilities = result.get("capabilities")
            if isinstance(capabilities, dict):
                self._guard.advertise(capabilities)
        return result


def install(guard: AttestationGuard, server: Server[Any]) -> None:
    """Wrap a low-level server's ``tools/call`` handler and advertise.

    Mirrors what ``MCPServer`` does for extensions (replace the registered
    handler with a wrapped one), since the low-level server has no extension
    list of its own.
    """
    entry = server.get_request_handler("tools/call")
    if entry is None:
        raise ConfigurationError("register on_call_tool before installing the attestation guard")
    handler = entry.handler

    async def guarded(ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams) -> HandlerResult:
        async def call_next(inner: ServerRequestContext[Any, Any]) -> HandlerResult:
            return await handler(inner, params)

        return await guard.guard_sdk_call(params, ctx, call_next)

    server.add_request_handler("tools/call", CallToolRequestParams, guarded)
    server.extensions[CAPABILITY] = guard.capability()
    server.middleware.append(CapabilityMiddleware(guard))


def client_capability(ctx: ServerRequestContext[Any, Any]) -> dict[str, Any] | None:
    """The client's ``attestation/tool-call`` capability as this request sees it.

    Read per request because on 2026-era connections each request carries
    its own capabilities; handshake-era clients declare them once.
    """
    declared = ctx.session.client_capabilities
    if declared is None:
        return None
    for place in (declared.extensions, declared.experimental):
        value = (place or {}).get(CAPABILITY)
        if isinstance(value, dict):
            return value
    return None
