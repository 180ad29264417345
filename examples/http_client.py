"""Minimal attesting client over Streamable HTTP: python http_client.py SIGNING_KEYS.json URL"""

import sys

import anyio

from mcp_attest import Issuer, Keyring, server_fingerprint
from mcp_attest.mcp import AttestingClient, parse_rejection


async def main() -> None:
    keyring = Keyring.load(sys.argv[1])
    issuer = Issuer(keyring, iss=next(keyring.issuers()), sub="user:example")
    fingerprint = server_fingerprint("example", "local")
    # header=True also sends X-MCP-Attestation (the same envelope as _meta).
    async with AttestingClient.connect(
        sys.argv[2], issuer=issuer, server_fingerprint=fingerprint, header=True
    ) as c:
        result = await c.call_tool("greet", {"name": "world"}, intent="greet the user")
        print(result.content[0].text)  # type: ignore[union-attr]
        bare = await c.client.call_tool("greet", {"name": "nobody"})  # the plain SDK call, unsigned
        print("without attestation:", parse_rejection(bare))


if __name__ == "__main__":
    anyio.run(main)
