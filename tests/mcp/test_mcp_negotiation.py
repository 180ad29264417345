"""Capabilities (PROFILE section 8), the attesting client, and verdict delivery."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import anyio
import mcp_types as mt
import pytest
from _mcp_helpers import ISS
from mcp import Client, MCPError
from mcp.server import Server
from mcp_test_servers import FINGERPRINT, FRAMEWORKS, build, client_target

from mcp_attest import (
    CAPABILITY,
    Issuer,
    Keyring,
    Reason,
    Verdict,
    Verifier,
    VerifierPolicy,
)
from mcp_attest.mcp import (
    AttestationGuard,
    AttestationRejectedError,
    AttestationUnavailableError,
    AttestingClient,
    ToolCall,
    client_capability,
    parse_rejection,
    server_capability,
)

EXPECTED = {"algorithms": ["HS256", "ES256", "RS256"], "required": True, "multiServer": True}


def _capabilities(target: Any, mode: str) -> mt.ServerCapabilities:
    async def main() -> mt.ServerCapabilities:
        async with Client(target, mode=mode) as client:
            return client.server_capabilities

    return anyio.run(main)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_capability_legacy_era_uses_experimental(framework: str, make_guard: Any, tmp_path: Path) -> None:
    caps = _capabilities(client_target(build(framework, make_guard(), tmp_path)), "legacy")
    assert (caps.experimental or {})[CAPABILITY] == EXPECTED
    assert server_capability(caps) == EXPECTED


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_capability_current_era_uses_extensions_and_experimental(
    framework: str, make_guard: Any, tmp_path: Path
) -> None:
    caps = _capabilities(client_target(build(framework, make_guard(), tmp_path)), "auto")
    assert (caps.extensions or {})[CAPABILITY] == EXPECTED
    assert (caps.experimental or {})[CAPABILITY] == EXPECTED


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("framework", ["sdk", "fastmcp"])
def test_capability_over_http(framework: str, mode: str, http_servers: dict[str, tuple[str, Path]]) -> None:
    assert server_capability(_capabilities(http_servers[framework][0], mode)) == EXPECTED


def test_server_reads_client_capability(make_guard: Any, issuer: Issuer) -> None:
    async def call_tool(ctx: Any, params: mt.CallToolRequestParams) -> mt.CallToolResult:
        return mt.CallToolResult(content=[mt.TextContent(type="text", text=repr(client_capability(ctx)))])

    async def list_tools(ctx: Any, params: Any) -> mt.ListToolsResult:
        return mt.ListToolsResult(tools=[mt.Tool(name="any", input_schema={"type": "object"})])

    low: Server[Any] = Server("caps", on_list_tools=list_tools, on_call_tool=call_tool)
    make_guard(required=False).install(low)

    async def main() -> list[str]:
        texts = []
        for mode in ("auto", "legacy"):
            client = AttestingClient.connect(low, issuer=issuer, server_fingerprint=FINGERPRINT, mode=mode)
            async with client:
                result = await client.call_tool("any")
            texts.append(result.content[0].text)  # type: ignore[union-attr]
        return texts

    # The SDK sieves server results by version, not the client's initialize
    # params, so the client's `extensions` entry reaches a legacy server too.
    assert anyio.run(main) == [repr({"algorithms": ["HS256"]})] * 2


def test_install_needs_a_call_tool_handler(make_guard: Any) -> None:
    with pytest.raises(ValueError, match="on_call_tool"):
        make_guard().install(Server("empty"))


def test_fingerprint_is_given_or_derived(signing_ring: Keyring) -> None:
    with pytest.raises(ValueError):
        AttestationGuard.from_keyring(signing_ring)
    with pytest.raises(ValueError):
        AttestationGuard.from_keyring(
            signing_ring, server_fingerprint="sha256:x", server_name="n", server_id="i"
        )
    guard = AttestationGuard.from_keyring(signing_ring, server_name="test-files", server_id="ci")
    assert guard.verifier.server_fingerprint == FINGERPRINT


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_client_without_issuer_refuses_required_server(mode: str, make_guard: Any, tmp_path: Path) -> None:
    seen: list[Verdict] = []
    server = build("sdk", make_guard(on_verdict=lambda v, c: seen.append(v)), tmp_path)

    async def main() -> None:
        async with AttestingClient.connect(
            server, issuer=None, server_fingerprint=FINGERPRINT, mode=mode
        ) as c:
            assert c.server_requires_attestation and not c.can_attest()
            with pytest.raises(AttestationUnavailableError, match="no issuer"):
                await c.call_tool("mark", {"name": "never"})

    anyio.run(main)
    assert seen == [] and not (tmp_path / "never").exists()


def test_client_refuses_when_server_lacks_its_algorithm(
    signing_ring: Keyring, issuer: Issuer, tmp_path: Path
) -> None:
    policy = VerifierPolicy(algorithms=("ES256",))
    guard = AttestationGuard(Verifier(signing_ring, FINGERPRINT, policy=policy))
    server = build("sdk", guard, tmp_path)

    async def main() -> None:
        async with AttestingClient.connect(server, issuer=issuer, server_fingerprint=FINGERPRINT) as c:
            with pytest.raises(AttestationUnavailableError, match="HS256"):
                await c.call_tool("mark", {"name": "never"})

    anyio.run(main)


def test_client_raises_typed_rejection(signing_ring: Keyring, make_guard: Any, tmp_path: Path) -> None:
    stale = Issuer(signing_ring, iss=ISS, sub="user:alice", clock=lambda: time.time() - 7200)
    server = build("fastmcp", make_guard(), tmp_path)

    async def main() -> None:
        target = client_target(server)
        async with AttestingClient.connect(
            target, issuer=stale, server_fingerprint=FINGERPRINT, exp_seconds=60
        ) as c:
            with pytest.raises(AttestationRejectedError) as caught:
                await c.call_tool("mark", {"name": "late"}, intent="too late")
            assert caught.value.reason is Reason.EXPIRED and caught.value.detail == "ttl.expired"
            result = await c.call_tool("mark", {"name": "late"}, raise_on_rejection=False)
            assert parse_rejection(result) == (Reason.EXPIRED, "ttl.expired")

    anyio.run(main)
    assert not (tmp_path / "late").exists()


def test_client_header_needs_a_url(issuer: Issuer, make_guard: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="URL"):
        AttestingClient.connect(
            build("sdk", make_guard(), tmp_path), issuer=issuer, server_fingerprint="x", header=True
        )


@pytest.mark.parametrize(
    "result",
    [
        mt.CallToolResult(content=[mt.TextContent(type="text", text="fine")]),
        mt.CallToolResult(content=[mt.TextContent(type="text", text="boom")], is_error=True),
        mt.CallToolResult(content=[mt.TextContent(type="text", text="[1]")], is_error=True),
        mt.CallToolResult(
            content=[mt.TextContent(type="text", text='{"attestationError":true,"reason":"nope"}')],
            is_error=True,
        ),
        mt.CallToolResult(
            content=[mt.ImageContent(type="image", data="AA==", mime_type="image/png")], is_error=True
        ),
    ],
)
def test_parse_rejection_ignores_other_results(result: mt.CallToolResult) -> None:
    assert parse_rejection(result) is None


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_verdict_reaches_tool_and_hook(
    framework: str, issuer: Issuer, make_guard: Any, tmp_path: Path
) -> None:
    calls: list[tuple[Verdict, ToolCall]] = []

    async def hook(verdict: Verdict, call: ToolCall) -> None:
        calls.append((verdict, call))

    server = build(framework, make_guard(on_verdict=hook), tmp_path)

    async def main() -> str:
        async with AttestingClient.connect(
            client_target(server), issuer=issuer, server_fingerprint=FINGERPRINT
        ) as c:
            result = await c.call_tool("mark", {"name": "seen"})
            unattested = await c.client.call_tool("mark", {"name": "unseen"})
            assert parse_rejection(unattested) == (Reason.ATTESTATION_REQUIRED, "attestation.absent")
        return result.content[0].text  # type: ignore[union-attr]

    text = anyio.run(main)
    attestation_id = re.fullmatch(r"marked seen ([0-9a-f]{64})", text)
    assert attestation_id is not None
    (accepted, first), (rejected, second) = calls
    assert accepted.attestation_id == attestation_id.group(1) and first.source == "meta"
    assert first.tool == "mark" and dict(first.arguments) == {"name": "seen"}
    assert rejected.reason is Reason.ATTESTATION_REQUIRED and second.source == "none"


def test_failing_hook_fails_closed(issuer: Issuer, make_guard: Any, tmp_path: Path) -> None:
    def hook(verdict: Verdict, call: ToolCall) -> None:
        raise RuntimeError("audit sink down")

    server = build("sdk", make_guard(on_verdict=hook), tmp_path)

    async def main() -> None:
        async with AttestingClient.connect(server, issuer=issuer, server_fingerprint=FINGERPRINT) as c:
            with pytest.raises(MCPError, match="Internal server error"):
                await c.call_tool("mark", {"name": "audited"})

    anyio.run(main)
    assert not (tmp_path / "audited").exists()
