"""The attestation gateway (extra ``mcp-attest[gateway]``).

A JSON-RPC-level proxy in front of unmodified MCP servers: ``verify`` mode
checks every ``tools/call`` (PROFILE V0-V12) before it reaches the
upstream, ``issue`` mode signs calls for clients that cannot. Entry point:
:func:`mcp_attest.gateway.cli.main`.
"""

from mcp_attest.gateway._app import Gateway
from mcp_attest.gateway.config import ConfigError, GatewayConfig, load_config

__all__ = ["ConfigError", "Gateway", "GatewayConfig", "load_config"]
