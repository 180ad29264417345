"""``--help``: every command and every option explains itself; the top level lists every command."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from mcp_attest import _demo as demo
from mcp_attest import cli
from mcp_attest.audit import cli as audit_cli
from mcp_attest.conformance import cli as vectors_cli
from mcp_attest.gateway import cli as gateway_cli

PARSERS = {
    "mcp-attest": cli._parser,
    "gateway": gateway_cli._parser,
    "audit": audit_cli._parser,
    "vectors": vectors_cli._parser,
    "demo": demo._parser,
}


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                if child.add_help:  # placeholders for the external commands have their own parser
                    yield from _walk(child, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


@pytest.mark.parametrize("name", PARSERS)
def test_every_option_of_every_command_has_help(name: str) -> None:
    missing = [
        f"{path}: {action.option_strings or action.dest}"
        for path, action in _walk(PARSERS[name](), name)
        if not action.help
    ]
    assert missing == []


def test_top_level_help_lists_every_command_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    commands = ["keygen", "sign", "verify", "canonicalize", "fingerprint", "receipt", *cli._EXTERNAL]
    for command in commands:
        line = next((ln for ln in out.splitlines() if ln.strip().startswith(command)), None)
        assert line is not None, command
    assert "see: mcp-attest" not in out


def test_no_command_prints_the_command_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "fingerprint" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["keygen"],
        ["sign"],
        ["verify"],
        ["canonicalize"],
        ["fingerprint"],
        ["receipt", "verify"],
        ["gateway"],
        ["audit"],
        ["audit", "tail"],
        ["vectors"],
        ["vectors", "run"],
        ["demo"],
    ],
)
def test_every_command_answers_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = cli.main([*argv, "--help"])
    except SystemExit as exc:  # argparse's own exit, where a command does not catch it
        code = int(exc.code or 0)
    assert code == 0
    assert "usage:" in capsys.readouterr().out
