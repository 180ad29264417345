"""Imports point inward: the core never reaches for its integrations (DEVELOPERS.md)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mcp_attest"
CORE = [
    "__init__", "_build", "algorithms", "canonical", "details", "discovery", "envelope", "fingerprint",
    "issuer", "keys", "receipts", "resolvers", "transport", "verdict", "verifier",
    "replay/__init__", "replay/base", "replay/key", "replay/memory", "replay/sqlite",
]  # fmt: skip
OUTER = ("mcp_attest.mcp", "mcp_attest.gateway", "mcp_attest.cli", "mcp_attest.audit", "mcp_attest.stores",
         "mcp_attest.conformance", "mcp_attest._demo")  # fmt: skip
THIRD_PARTY_OK = {"cryptography", "orjson", "rfc8785"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_only_core_and_core_dependencies(module: str) -> None:
    imported = _imports(SRC / f"{module}.py")
    outward = sorted(n for n in imported if n.startswith(OUTER))
    assert not outward, f"core module {module} imports {outward}"
    allowed = set(sys.stdlib_module_names) | THIRD_PARTY_OK | {"__future__", "mcp_attest"}
    foreign = sorted(n for n in imported if n.split(".")[0] not in allowed)
    assert not foreign, f"core module {module} needs {foreign}, which are not core dependencies"


def test_mcp_integration_never_imports_the_gateway() -> None:
    for path in (SRC / "mcp").glob("*.py"):
        assert not any(n.startswith("mcp_attest.gateway") for n in _imports(path)), path.name
