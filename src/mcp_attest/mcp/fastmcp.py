"""FastMCP 4.x adapter: one middleware that verifies and advertises.

Kept in its own module so SDK-only users never import FastMCP.
"""

from __future__ import annotations

from typing import Any

import mcp_types as mt
from fastmcp.server.dependencies import get_http_request
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools.base import ToolResult

from mcp_attest.mcp._guard import AttestationGuard, verdict_scope

__all__ = ["AttestationMiddleware"]


def _request_headers() -> Any:
    try:
        return get_http_request().headers
    except RuntimeError:  # stdio and in-process: no HTTP request
        return None


class AttestationMiddleware(Middleware):
    """Verify ``tools/call`` and advertise the capability on a FastMCP server.

    ``FastMCP(middleware=[AttestationMiddleware(guard)])``. FastMCP runs
    ``on_call_tool`` inside its tool handler, immediately before the tool, so
    a rejection here is an ordinary error result and the tool never runs.
    """

    def __init__(self, guard: AttestationGuard) -> None:
        self._guard = guard

    async def on_call_tool(
        self,
        context: MiddlewareContext[mt.CallToolRequestParams],
        call_next: CallNext[mt.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        # FastMCP hands the middleware params without `_meta`; the request's
        # `_meta` lives on the request context.
        fctx = context.fastmcp_context
        request_context = None if fctx is None else fctx.request_context
        meta = None if request_context is None else request_context.meta
        version = None if request_context is None else request_context.protocol_version
        params = context.message
        verdict = await self._guard.check(
            params.name, params.arguments, meta, _request_headers(), protocol_version=version
        )
        if not verdict.accepted:
            rejection = self._guard.rejection(verdict)
            return ToolResult(content=rejection.content, is_error=True)
        with verdict_scope(verdict):
            return await call_next(context)

    async def on_initialize(
        self,
        context: MiddlewareContext[mt.InitializeRequest],
        call_next: CallNext[mt.InitializeRequest, mt.InitializeResult | None],
    ) -> mt.InitializeResult | None:
        result = await call_next(context)
        if result is None:
            return None
        return result.model_copy(update={"capabilities": self._advertised(result.capabilities)})

    async def on_discover(
        self,
        context: MiddlewareContext[mt.DiscoverRequest],
        call_next: CallNext[mt.DiscoverRequest, mt.DiscoverResult | dict[str, Any]],
    ) -> mt.DiscoverResult | dict[str, Any]:
        result = await call_next(context)
        if isinstance(result, mt.DiscoverResult):
            return result.model_copy(update={"capabilities": self._advertised(result.capabilities)})
        return result

    def _advertised(self, capabilities: mt.ServerCapabilities) -> mt.ServerCapabilities:
        wire = capabilities.model_dump(by_alias=True, mode="json", exclude_none=True)
        return mt.ServerCapabilities.model_validate(self._guard.advertise(wire))
