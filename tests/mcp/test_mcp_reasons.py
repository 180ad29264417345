"""Every PROFILE reason through real MCP sessions: in memory, stdio and HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from _mcp_helpers import Case, stdio_params
from mcp import Client
from mcp_test_servers import FRAMEWORKS, build, client_target

from mcp_attest.mcp import parse_rejection


async def _play(client: Client, cases: list[Case], marks: Path) -> None:
    for case in cases:
        meta: Any = None if case.attestation is None else {"attestation": case.attestation}
        result = await client.call_tool(case.tool, case.arguments, meta=meta)
        rejection = parse_rejection(result)
        got = None if rejection is None else rejection[0].value
        assert got == case.expected, (case.label, result)
        ran = (marks / case.arguments["name"]).exists()
        if case.expected is None:
            assert not result.is_error and ran, case.label
        elif case.label != "replay":  # its first use legitimately ran the tool
            assert not ran, f"{case.label}: tool ran despite {got}"


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_v0_v9_every_reason_in_memory(
    framework: str, mode: str, cases: list[Case], make_guard: Any, tmp_path: Path
) -> None:
    server = build(framework, make_guard(), tmp_path)

    async def main() -> None:
        async with Client(client_target(server), mode=mode) as client:
            await _play(client, cases, tmp_path)

    anyio.run(main)


@pytest.mark.parametrize("framework", ["sdk", "fastmcp"])
def test_v0_v9_every_reason_over_stdio(
    framework: str, cases: list[Case], keys_file: Path, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Client(stdio_params(framework, keys_file, tmp_path)) as client:
            await _play(client, cases, tmp_path)

    anyio.run(main)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("framework", ["sdk", "fastmcp"])
def test_v0_v9_every_reason_over_http(
    framework: str, mode: str, cases: list[Case], http_servers: dict[str, tuple[str, Path]]
) -> None:
    url, marks = http_servers[framework]

    async def main() -> None:
        async with Client(url, mode=mode) as client:
            await _play(client, cases, marks)

    anyio.run(main)
