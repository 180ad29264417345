"""Build hook: compile the verify path with mypyc unless the pure build is asked for.

Metadata lives in pyproject.toml; this file only adds the extensions. The
pure-Python build is chosen by ``MCP_ATTEST_PURE=1`` at install time, by a
missing mypyc, or by a compiler that fails; the package then installs the
same sources uncompiled. A failed compile never leaves half a build behind:
every extension of the group is removed, since a module stub without its
shared library would not import.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

try:
    from mypyc.build import mypycify
except ImportError:  # the pure build needs no mypyc
    mypycify = None

ROOT = Path(__file__).resolve().parent
GROUP = "mcp_attest_core"


def _hot_path_modules() -> list[str]:
    """``COMPILED_MODULES`` from src/mcp_attest/_build.py, read without importing it."""
    tree = ast.parse((ROOT / "src" / "mcp_attest" / "_build.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "COMPILED_MODULES" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise RuntimeError("COMPILED_MODULES not found in _build.py")


def _say(message: str) -> None:
    print(f"mcp-attest build: {message}", file=sys.stderr)


class _AllOrNothing(build_ext):
    """``build_ext`` that falls back to the pure build when the C compiler fails."""

    def build_extensions(self) -> None:
        try:
            super().build_extensions()
        except Exception as exc:  # no compiler, no headers, or a compiler error
            _say(f"compiling failed ({type(exc).__name__}: {exc}); installing the pure-Python build")
            for ext in self.extensions:
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            self.extensions = []


def _extensions() -> list[object]:
    if os.environ.get("MCP_ATTEST_PURE") == "1":
        _say("MCP_ATTEST_PURE=1: pure-Python build")
        return []
    if mypycify is None:
        _say("mypyc is not installed: pure-Python build")
        return []
    paths = [str(Path("src", *name.split(".")).with_suffix(".py")) for name in _hot_path_modules()]
    _say(f"compiling {len(paths)} verify-path modules with mypyc")
    return list(mypycify(paths, opt_level="3", group_name=GROUP, target_dir="build/mypyc"))


setup(ext_modules=_extensions(), cmdclass={"build_ext": _AllOrNothing})
