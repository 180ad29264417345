"""Header transport (V11), V10 result shape and hostile input over real sessions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_test_servers import FINGERPRINT, build, client_target

from mcp_attest import HEADER_NAME, Issuer, encode_header
from mcp_attest.mcp import AttestingClient, parse_rejection


def _sign(issuer: Issuer, name: str) -> Any:
    return issuer.sign(
        tool="mark", arguments={"name": name}, server_fingerprint=FINGERPRINT, intent="t", commit="both"
    )


def _with_header(url: str, value: str) -> Any:
    return streamable_http_client(url, http_client=httpx2.AsyncClient(headers={HEADER_NAME: value}))


def _reason(result: Any) -> str | None:
    rejection = parse_rejection(result)
    return None if rejection is None else rejection[0].value


@pytest.mark.parametrize("framework", ["sdk", "fastmcp"])
def test_v11_header_and_meta_must_agree(
    framework: str, issuer: Issuer, http_servers: dict[str, tuple[str, Path]]
) -> None:
    url, marks = http_servers[framework]
    one, other = _sign(issuer, f"{framework}-v11-one"), _sign(issuer, f"{framework}-v11-other")

    async def main() -> None:
        async with Client(_with_header(url, encode_header(other))) as client:
            result = await client.call_tool(
                "mark", {"name": f"{framework}-v11-one"}, meta={"attestation": one.to_wire()}
            )
            assert _reason(result) == "signature_invalid"
            assert json.loads(result.content[0].text)["detail"] == "transport.conflict"  # type: ignore[union-attr]
        assert not (marks / f"{framework}-v11-one").exists()

    anyio.run(main)


@pytest.mark.parametrize("framework", ["sdk", "fastmcp"])
def test_v11_header_alone_is_enough(
    framework: str, issuer: Issuer, http_servers: dict[str, tuple[str, Path]]
) -> None:
    url, marks = http_servers[framework]
    name = f"{framework}-header-only"

    async def main() -> None:
        async with Client(_with_header(url, encode_header(_sign(issuer, name)))) as client:
            result = await client.call_tool("mark", {"name": name})
            assert not result.is_error, result
        assert (marks / name).exists()

    anyio.run(main)


@pytest.mark.parametrize("framework", ["sdk", "fastmcp"])
def test_v11_attesting_client_sends_header_and_meta(
    framework: str, issuer: Issuer, http_servers: dict[str, tuple[str, Path]]
) -> None:
    url, marks = http_servers[framework]
    name = f"{framework}-both"

    async def main() -> None:
        async with AttestingClient.connect(
            url, issuer=issuer, server_fingerprint=FINGERPRINT, header=True
        ) as c:
            result = await c.call_tool("mark", {"name": name})
            assert not result.is_error
        assert (marks / name).exists()

    anyio.run(main)


@pytest.mark.parametrize("value", ["not base64url!", "a,b", "x" * 70_000])
def test_v11_bad_header_is_rejected_and_session_survives(
    value: str, issuer: Issuer, http_servers: dict[str, tuple[str, Path]]
) -> None:
    url, marks = http_servers["sdk"]

    async def main() -> None:
        async with Client(_with_header(url, value)) as client:
            result = await client.call_tool("mark", {"name": "bad-header"})
            assert _reason(result) == "signature_invalid"
            assert await client.list_tools()
        assert not (marks / "bad-header").exists()

    anyio.run(main)


def _nested(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth):
        value = {"a": value}
    return value


HOSTILE = {
    "string": ("a string", "signature_invalid"),
    "number": (42, "signature_invalid"),
    "list": ([1, 2], "signature_invalid"),
    "huge": ({"blob": "x" * 200_000}, "signature_invalid"),
    "deep": (_nested(100), "signature_invalid"),
    "empty object": ({}, "signature_invalid"),
}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("framework", ["sdk", "fastmcp"])
def test_v12_hostile_meta_is_a_rejection_and_session_survives(
    framework: str, mode: str, issuer: Issuer, make_guard: Any, tmp_path: Path
) -> None:
    server = build(framework, make_guard(), tmp_path)

    async def main() -> None:
        async with Client(client_target(server), mode=mode) as client:
            for label, (value, expected) in HOSTILE.items():
                result = await client.call_tool("mark", {"name": "hostile"}, meta={"attestation": value})
                assert _reason(result) == expected, label
            # Arguments the C3 rules cannot canonicalize, under a valid envelope.
            envelope = issuer.sign(
                tool="mark", arguments={"name": "big", "n": 1}, server_fingerprint=FINGERPRINT, intent="t"
            )
            result = await client.call_tool(
                "mark", {"name": "big", "n": 9007199254740993}, meta={"attestation": envelope.to_wire()}
            )
            assert _reason(result) == "args_commitment_mismatch"
            assert not list(tmp_path.iterdir()), "a hostile call reached the tool"
            ok = await client.call_tool(
                "mark", {"name": "after"}, meta={"attestation": _sign(issuer, "after").to_wire()}
            )
            assert not ok.is_error

    anyio.run(main)


def test_v10_rejection_is_tool_result(make_guard: Any, tmp_path: Path) -> None:
    for include_detail in (True, False):
        server = build("sdk", make_guard(include_detail=include_detail), tmp_path)

        async def main(server: Any = server, include_detail: bool = include_detail) -> None:
            async with Client(server) as client:
                result = await client.call_tool("mark", {"name": "x"})
            assert result.is_error is True
            assert len(result.content) == 1 and result.content[0].type == "text"
            body = json.loads(result.content[0].text)  # type: ignore[union-attr]
            assert body == {
                "attestationError": True,
                "reason": "attestation_required",
                "detail": "attestation.absent" if include_detail else None,
            }

        anyio.run(main)


def test_v0_optional_server_runs_unattested_calls(make_guard: Any, tmp_path: Path) -> None:
    server = build("sdk", make_guard(required=False), tmp_path)

    async def main() -> None:
        async with AttestingClient.connect(server, issuer=None, server_fingerprint=FINGERPRINT) as client:
            assert client.server_capability is not None and client.server_capability["required"] is False
            result = await client.call_tool("mark", {"name": "free"})
        assert result.content[0].text == "marked free unattested"  # type: ignore[union-attr]

    anyio.run(main)


def test_v1_null_attestation_is_malformed_not_absent(make_guard: Any) -> None:
    # The SDK client drops None values from _meta, so this is checked at the
    # guard's own entry point, which every adapter calls.
    guard = make_guard()
    verdict = anyio.run(lambda: guard.check("mark", {"name": "n"}, {"attestation": None}))
    assert verdict.reason is not None and verdict.reason.value == "signature_invalid"
