"""The detail-code registry (issue 11 item 4) against the code base, both ways.

Codes are found by reading the source: every string literal shaped like a
code (``family.name``) in ``src/`` outside the registry itself and the
conformance catalogue (which quotes expected codes rather than emitting
them). Literals of that shape that are not codes are listed here by name,
so a new code cannot slip past as "not a code" unnoticed.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from _core_helpers import NOW, Clock

from mcp_attest import InMemoryReplayStore, Keyring, Reason, Verifier
from mcp_attest.canonical import _fail
from mcp_attest.details import DETAILS, RECEIPT_PROBLEMS, REFUSAL_DETAILS, VERDICT_DETAILS, markdown
from mcp_attest.envelope import _bad
from mcp_attest.verifier import _Call

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "mcp_attest"
NOT_EMITTERS = {SRC / "details.py", SRC / "conformance" / "_cases.py"}
CODE = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*")
FILE_NAME = re.compile(r".*\.(json|txt|toml|log|sqlite|bin|hex|pem|tmp)")
NOT_CODES = {"http.disconnect"}  # an ASGI message type


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p not in NOT_EMITTERS)


def _code_literals() -> dict[str, set[str]]:
    """Every code-shaped string literal in the emitting sources, with the files it is in.

    Module paths and file names have the same shape; they are skipped unless
    registered (``malformed.json`` is a code, ``context.json`` a file).
    """
    found: dict[str, set[str]] = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""
            other = text.startswith("mcp_attest.") or FILE_NAME.fullmatch(text)
            if CODE.fullmatch(text) and (text in DETAILS or not other):
                found.setdefault(text, set()).add(str(path.relative_to(SRC)))
    return found


def test_docs_page_is_the_rendered_registry() -> None:
    committed = (REPO / "docs" / "details.md").read_text("utf-8")
    assert committed == markdown(), (
        "docs/details.md is stale; regenerate it with: python -c "
        "\"from mcp_attest.details import markdown; print(markdown(), end='')\" > docs/details.md"
    )


def test_docs_page_lists_every_registered_code() -> None:
    page = (REPO / "docs" / "details.md").read_text("utf-8")
    assert all(f"| `{code}` |" in page for code in DETAILS)


def test_every_detail_code_the_code_base_emits_is_registered() -> None:
    unregistered = {
        code: files for code, files in _code_literals().items() if code not in DETAILS | NOT_CODES
    }
    assert not unregistered, f"add these to mcp_attest.details: {unregistered}"


def test_every_registered_code_is_emitted_somewhere() -> None:
    emitted = set(_code_literals())
    assert emitted >= NOT_CODES, "a NOT_CODES entry is gone from the source; drop it"
    assert not DETAILS - emitted, f"registered but never emitted: {sorted(DETAILS - emitted)}"


def test_no_detail_code_is_assembled_at_run_time() -> None:
    """A code built by an f-string (``f"{prefix}.depth"``) would escape the literal scan above."""
    assembled = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.JoinedStr):
                parts = [
                    v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
                ]
                suffix = parts[-1] if parts else ""
                if re.fullmatch(r"\.[a-z][a-z0-9_]*", suffix) and not FILE_NAME.fullmatch(suffix):
                    assembled.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not assembled


def test_tables_do_not_overlap_except_receipt_codes_shared_with_verdicts() -> None:
    assert not set(VERDICT_DETAILS) & set(REFUSAL_DETAILS)
    assert not set(RECEIPT_PROBLEMS) & set(REFUSAL_DETAILS)
    assert set(RECEIPT_PROBLEMS) & set(VERDICT_DETAILS) == {
        "key.unknown",
        "key.alg_mismatch",
        "signature.mismatch",
    }


def test_every_reason_has_a_detail_and_every_meaning_is_one_line() -> None:
    assert {d.reason for d in VERDICT_DETAILS.values()} == set(Reason)
    meanings = [d.meaning for d in VERDICT_DETAILS.values()] + [
        *REFUSAL_DETAILS.values(),
        *RECEIPT_PROBLEMS.values(),
    ]
    assert all(m and "\n" not in m and "|" not in m and m.endswith(".") for m in meanings)


def test_conformance_bundle_reports_each_detail_under_its_registered_reason() -> None:
    """The committed bundle's expected verdicts agree with the registry's reason column."""
    checked = 0
    for path in (REPO / "conformance" / "sep-2787" / "v1").rglob("expected.json"):
        expected = json.loads(path.read_text("utf-8"))
        for want in expected.get("calls") or [expected]:
            if want.get("detail") and not want["accepted"]:
                assert VERDICT_DETAILS[want["detail"]].reason.value == want["reason"], path
                checked += 1
    assert checked > 50


def test_unregistered_detail_fails_in_debug_runs() -> None:
    for raise_with in (_bad, _fail):
        with pytest.raises(AssertionError, match="unregistered"):
            raise_with("malformed.not_a_code", "x")
        with pytest.raises(ValueError, match="x"):  # a registered code passes the check
            raise_with("malformed.type", "x")


def test_verdict_under_the_wrong_reason_fails_in_debug_runs() -> None:
    verifier = Verifier(
        Keyring(), "sha256:" + "00" * 32, replay_store=InMemoryReplayStore(), clock=Clock(NOW)
    )
    assert verifier.verify(b"{", tool="t", arguments={}).detail == "malformed.json"
    with pytest.raises(AssertionError, match="another reason"):
        verifier._rejected(_Call(now=NOW, tool="t", arguments={}), Reason.EXPIRED, "malformed.json")
