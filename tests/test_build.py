"""The build under test is the one the test run asked for (scripts/test runs both).

An editable install keeps mypyc's extensions next to the sources; these
tests prove they are what actually gets imported, so a compiled run is not
silently a second pure run (or the reverse).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mcp_attest
import mcp_attest.cli  # loaded so that the plain-module check covers it
from mcp_attest._build import COMPILED, COMPILED_MODULES, PURE, active_build, compiled_modules, label

EXPECTED = {"pure": PURE, "compiled": COMPILED}


def test_active_build_is_the_one_the_test_run_asked_for() -> None:
    asked = os.environ.get("MCP_ATTEST_EXPECT_BUILD")
    if asked is None:
        if os.environ.get("CI") == "true":
            pytest.fail("MCP_ATTEST_EXPECT_BUILD must be set under CI (scripts/test sets it)")
        pytest.skip("MCP_ATTEST_EXPECT_BUILD not set: run through scripts/test")
    assert active_build() == EXPECTED[asked]
    assert compiled_modules() == (COMPILED_MODULES if asked == "compiled" else ())


def test_only_the_verify_path_is_compiled() -> None:
    loaded = {name: m for name, m in sys.modules.items() if name.startswith("mcp_attest.")}
    plain = {name for name, m in loaded.items() if (getattr(m, "__file__", None) or "").endswith(".py")}
    assert "mcp_attest.cli" in plain
    assert set(loaded) - plain <= set(COMPILED_MODULES)


@pytest.mark.parametrize(
    ("compiled", "expected"),
    [(6, COMPILED), (0, PURE), (2, "mixed (2 of 6 hot-path modules compiled; reinstall)")],
)
def test_build_label_names_stale_partial_builds(compiled: int, expected: str) -> None:
    assert label(compiled, 6) == expected


def test_version_names_the_active_build() -> None:
    exe = shutil.which("mcp-attest", path=str(Path(sys.executable).parent))
    assert exe is not None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"mcp-attest {mcp_attest.__version__}, {active_build()}"
