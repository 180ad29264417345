"""Minimal attesting client over stdio: python stdio_client.py SIGNING_KEYS.json VERIFY_KEYS.json"""

import sys
from pathlib import Path

import anyio

from mcp import StdioServerParameters
from mcp_attest import Issuer, Keyring, server_fingerprint
from mcp_attest.mcp import AttestingClient

SERVER = StdioServerParameters(
    command=sys.executable, args=[str(Path(__file__).with_name("stdio_server.py")), sys.argv[2]]
)


async def main() -> None:
    keyring = Keyring.load(sys.argv[1])
    issuer = Issuer(keyring, iss=next(keyring.issuers()), sub="user:example")
    fingerprint = server_fingerprint("example", "local")
    async with AttestingClient.connect(SERVER, issuer=issuer, server_fingerprint=fingerprint) as client:
        result = await client.call_tool("greet", {"name": "world"}, intent="greet the user")
        print(result.content[0].text)  # type: ignore[union-attr]


if __name__ == "__main__":
    anyio.run(main)
