"""Execution receipts from the guard over a real in-memory MCP session (PROFILE section 9)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp_test_servers import FINGERPRINT, build

from mcp_attest import (
    InMemoryReplayStore,
    Issuer,
    Keyring,
    ReceiptSigner,
    Verifier,
    generate_key,
    verify_receipt,
)
from mcp_attest.mcp import AttestationGuard


@pytest.mark.parametrize("framework", ["sdk", "lowlevel"])
def test_guard_attaches_receipt_that_verifies_against_received_result(
    framework: str, signing_ring: Keyring, issuer: Issuer, tmp_path: Path
) -> None:
    server_keys = Keyring().with_key(FINGERPRINT, generate_key("ES256", "srv1"))
    guard = AttestationGuard(
        Verifier(signing_ring, FINGERPRINT, replay_store=InMemoryReplayStore()),
        receipt_signer=ReceiptSigner(server_keys, FINGERPRINT),
    )
    server = build(framework, guard, tmp_path)
    envelope = issuer.sign(tool="mark", arguments={"name": "r"}, server_fingerprint=FINGERPRINT, intent="t")

    async def go() -> None:
        async with Client(server) as client:
            result = await client.call_tool("mark", {"name": "r"}, meta={"attestation": envelope.to_wire()})
            assert not result.is_error
            assert result.meta is not None
            receipt = result.meta["receipt"]
            received = result.model_dump(by_alias=True, exclude_none=True, mode="json")
            public = Keyring.from_dict(server_keys.to_dict(private=False))
            check = verify_receipt(receipt, public, result=received)
            assert check.accepted, check
            assert receipt["toolName"] == "mark" and receipt["isError"] is False
            rejected = await client.call_tool("mark", {"name": "r"}, meta={"attestation": envelope.to_wire()})
            assert rejected.is_error and (rejected.meta or {}).get("receipt") is None

    anyio.run(go)
