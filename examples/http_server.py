"""Minimal guarded MCP server over Streamable HTTP: python http_server.py VERIFY_KEYS.json PORT"""

import sys

from mcp.server import MCPServer

from mcp_attest import Keyring
from mcp_attest.mcp import AttestationGuard, current_verdict

guard = AttestationGuard.from_keyring(
    Keyring.load(sys.argv[1]), server_name="example", server_id="local", required=True
)
server = MCPServer("example", extensions=[guard.extension()], middleware=[guard.middleware()])


@server.tool()
def greet(name: str) -> str:
    """Say hello; only attested calls get here."""
    verdict = current_verdict()
    return f"hello {name} (attestation {verdict.attestation_id if verdict is not None else '-'})"


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
