"""What every ``mcp-attest`` command shares: exit codes, the usage error, the parser, colour.

Private: the command line's contract is ``docs/spec/CLI.md``, not this
module. One copy keeps the four parsers (core, audit, vectors, gateway)
from drifting apart on the rule that matters most: a bad command line is
exit 2 with one line on stderr, never argparse's own exit or a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn, TextIO

from mcp_attest.errors import Error

__all__ = ["EXIT_NO", "EXIT_OK", "EXIT_USAGE", "Parser", "UsageError", "colour", "usage_failure"]

EXIT_OK, EXIT_NO, EXIT_USAGE = 0, 1, 2


class UsageError(Error):
    """Bad flags, unreadable files or configuration: exit 2."""


class Parser(argparse.ArgumentParser):
    """argparse that reports through ``UsageError`` instead of exiting itself."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def colour(text: str, code: str, stream: TextIO | None = None) -> str:
    """ANSI colour for a terminal that has not asked for none (NO_COLOR)."""
    out = sys.stdout if stream is None else stream
    if out.isatty() and not os.environ.get("NO_COLOR"):
        return f"\033[{code}m{text}\033[0m"
    return text


def usage_failure(prog: str, error: BaseException | str) -> int:
    """The one stderr line of a usage or configuration error, and its exit code."""
    print(f"{prog}: {error}", file=sys.stderr)
    return EXIT_USAGE
