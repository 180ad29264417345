"""MCP integration (extra ``mcp-attest[mcp]``): server guard and attesting client.

The core package never imports this one; everything here depends on the
``mcp`` SDK (and, for :mod:`mcp_attest.mcp.fastmcp`, on FastMCP).
"""

from mcp_attest.mcp._guard import (
    AttestationGuard,
    AuditSink,
    ToolCall,
    VerdictHook,
    audit_hook,
    current_verdict,
)
from mcp_attest.mcp._sdk import client_capability
from mcp_attest.mcp.client import (
    AttestationError,
    AttestationRejectedError,
    AttestationUnavailableError,
    AttestingClient,
    HeaderFromMeta,
    attesting_http_transport,
    parse_rejection,
    server_capability,
)

__all__ = [
    "AttestationError",
    "AttestationGuard",
    "AttestationRejectedError",
    "AttestationUnavailableError",
    "AttestingClient",
    "AuditSink",
    "HeaderFromMeta",
    "ToolCall",
    "VerdictHook",
    "attesting_http_transport",
    "audit_hook",
    "client_capability",
    "current_verdict",
    "parse_rejection",
    "server_capability",
]
