"""Which build is running: the verify path compiled by mypyc, or pure Python.

``setup.py`` reads ``COMPILED_MODULES`` from this file (without importing
the package) so that the list of compiled modules lives in one place. Only
the modules a verification runs through are compiled; everything else is
plain Python in both builds.
"""

from __future__ import annotations

import importlib
import importlib.machinery

__all__ = ["COMPILED_MODULES", "active_build", "compiled_modules"]

COMPILED_MODULES = (
    "mcp_attest.algorithms",
    "mcp_attest.canonical",
    "mcp_attest.envelope",
    "mcp_attest.replay.key",
    "mcp_attest.replay.memory",
    "mcp_attest.verifier",
)

COMPILED = "compiled (mypyc)"
PURE = "pure Python"


def compiled_modules() -> tuple[str, ...]:
    """The hot-path modules that were loaded from a compiled extension."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return tuple(
        name
        for name in COMPILED_MODULES
        if (getattr(importlib.import_module(name), "__file__", None) or "").endswith(suffixes)
    )


def label(compiled: int, total: int) -> str:
    """Name a build from how many of its hot-path modules are compiled.

    A partial build means stale artefacts from an earlier build sit next to
    the sources (an editable install switched builds by hand); it is named
    as such rather than passed off as either build.
    """
    if compiled == total:
        return COMPILED
    if compiled == 0:
        return PURE
    return f"mixed ({compiled} of {total} hot-path modules compiled; reinstall)"


def active_build() -> str:
    """``"compiled (mypyc)"`` or ``"pure Python"``: what ``mcp-attest --version`` reports."""
    return label(len(compiled_modules()), len(COMPILED_MODULES))
