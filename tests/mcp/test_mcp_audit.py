"""The guard writes every verdict to the audit log before the tool runs (issue 6 wiring)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp_test_servers import FINGERPRINT, build

from mcp_attest import Issuer, Keyring
from mcp_attest.audit import AuditUnavailableError
from mcp_attest.mcp import AttestationGuard
from mcp_attest.stores import open_audit_log


def test_guard_with_audit_url_records_accepted_and_rejected_calls(
    signing_ring: Keyring, issuer: Issuer, tmp_path: Path
) -> None:
    url = f"sqlite://{tmp_path / 'audit.db'}"
    guard = AttestationGuard.from_keyring(
        signing_ring,
        server_fingerprint=FINGERPRINT,
        replay_store=f"sqlite://{tmp_path / 'replay.db'}",
        audit=url,
    )
    server = build("sdk", guard, tmp_path)
    wire = issuer.sign(
        tool="mark", arguments={"name": "a"}, server_fingerprint=FINGERPRINT, intent="t"
    ).to_wire()

    async def go() -> None:
        async with Client(server) as client:
            assert not (await client.call_tool("mark", {"name": "a"}, meta={"attestation": wire})).is_error
            assert (await client.call_tool("mark", {"name": "a"}, meta={"attestation": wire})).is_error
            assert (await client.call_tool("mark", {"name": "b"})).is_error

    anyio.run(go)
    with open_audit_log(url, create=False) as log:
        records = list(log.records())
        assert [(r.facts["accepted"], r.facts["reason"]) for r in records] == [
            (True, None),
            (False, "nonce_replay"),
            (False, "attestation_required"),
        ]
        assert log.verify(signing_ring).accepted
    assert (tmp_path / "a").exists() and not (tmp_path / "b").exists()


class _BrokenLog:
    def submit(self, verdict: Any, *, tool: str, arguments: Any, envelope: Any) -> None:
        raise AuditUnavailableError("disk full")


def test_guard_refuses_to_run_a_tool_it_cannot_record(
    signing_ring: Keyring, issuer: Issuer, tmp_path: Path
) -> None:
    guard = AttestationGuard.from_keyring(signing_ring, server_fingerprint=FINGERPRINT, audit=_BrokenLog())
    server = build("sdk", guard, tmp_path)
    wire = issuer.sign(
        tool="mark", arguments={"name": "c"}, server_fingerprint=FINGERPRINT, intent="t"
    ).to_wire()

    outcomes: list[str] = []

    async def go() -> None:
        async with Client(server) as client:
            try:
                result = await client.call_tool("mark", {"name": "c"}, meta={"attestation": wire})
            except Exception as exc:  # the SDK surfaces the aborted call as a JSON-RPC error
                outcomes.append(f"raised {type(exc).__name__}")
            else:
                outcomes.append("error result" if result.is_error else "tool ran")

    anyio.run(go)
    assert outcomes and outcomes[0] != "tool ran"
    assert not (tmp_path / "c").exists()
