"""docs/spec-coverage.md maps every PROFILE rule (sections 1-7) to tests, both ways.

Checks, each failing with the exact lines to fix:

- the rule list hard-coded here equals the one in ``docs/spec/PROFILE.md``
  (its "Rule ids" ranges and the rule definitions);
- every rule has at least one test in the doc, or is marked "not implemented";
- every test the doc lists exists (found by AST under ``tests/``);
- every test whose name starts with rule ids (``test_e3_...``, ``test_v0_v9_...``)
  is listed in the doc under each of those rules;
- the reverse section (test -> rules) is exactly the inverse of the forward table.

``python tests/test_spec_coverage.py --write`` regenerates the doc: it keeps the
existing rows (dropping tests that no longer exist) and adds every rule-named test.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

from shared_paths import profile_md

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "spec-coverage.md"
PROFILE = profile_md()
RANGES = "E1-E8, C1-C4, K1-K6, V0-V12, A1-A4, R1-R3"
NOT_IMPLEMENTED = "not implemented"
FORWARD_HEADING = "## Rules -> tests"
REVERSE_HEADING = "## Tests -> rules"

_RANGE = re.compile(r"\b([A-Z])(\d+)-\1(\d+)\b")
_NAME_IDS = re.compile(r"^test_((?:[eckvar]\d+_)+)")
_TEST_REF = re.compile(r"`([^`]+::[^`]+)`")


def expand(ranges: str) -> list[str]:
    rules: list[str] = []
    for letter, lo, hi in _RANGE.findall(ranges):
        rules.extend(f"{letter}{i}" for i in range(int(lo), int(hi) + 1))
    return rules


RULES = expand(RANGES)


def profile_rules(text: str) -> tuple[list[str], set[str]]:
    """The ranges PROFILE's "Rule ids" section names, and the ids it defines in sections 1-7."""
    section = text.split("## Rule ids", 1)[1]
    first_line = next(line for line in section.splitlines() if line.strip())
    defined = set(re.findall(r"^- ([ECKAR]\d+) ", text, re.MULTILINE))
    defined |= set(re.findall(r"^\| (V\d+) \|", text, re.MULTILINE))
    defined |= set(re.findall(r"^- (V1[0-2]) ", text, re.MULTILINE))
    return expand(first_line), defined


def rule_ids_in_name(name: str) -> list[str]:
    m = _NAME_IDS.match(name)
    if not m:
        return []
    return [token.upper() for token in m.group(1).split("_") if token]


def collect_tests(root: Path = REPO / "tests") -> set[str]:
    """``path::name`` (and ``path::Class::name``) for every test function, by AST."""
    found: set[str] = set()
    for path in sorted(root.rglob("test_*.py")):
        rel = path.relative_to(REPO).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_"):
                found.add(f"{rel}::{node.name}")
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith(
                        "test_"
                    ):
                        found.add(f"{rel}::{node.name}::{item.name}")
    return found


def _section(text: str, heading: str) -> list[str]:
    if heading not in text:
        return []
    body = text.split(heading, 1)[1]
    lines = []
    for line in body.splitlines()[1:]:
        if line.startswith("## "):
            break
        if line.startswith("|") and not set(line) <= set("|-: "):
            lines.append(line)
    return lines[1:]  # drop the header row


def parse_doc(text: str) -> tuple[dict[str, list[str]], set[str], dict[str, list[str]]]:
    """(rule -> tests, rules marked not implemented, test -> rules)."""
    forward: dict[str, list[str]] = {}
    not_implemented: set[str] = set()
    for line in _section(text, FORWARD_HEADING):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rule = cells[0]
        forward[rule] = _TEST_REF.findall(cells[1]) if len(cells) > 1 else []
        if len(cells) > 1 and NOT_IMPLEMENTED in cells[1].lower():
            not_implemented.add(rule)
    reverse: dict[str, list[str]] = {}
    for line in _section(text, REVERSE_HEADING):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        refs = _TEST_REF.findall(cells[0])
        if refs:
            reverse[refs[0]] = [r.strip() for r in cells[1].split(",") if r.strip()] if len(cells) > 1 else []
    return forward, not_implemented, reverse


def problems() -> list[str]:
    out: list[str] = []
    if PROFILE.exists():
        text = PROFILE.read_text(encoding="utf-8")
        named, defined = profile_rules(text)
        if named != RULES:
            out.append(f"PROFILE.md 'Rule ids' names {named}, tests/test_spec_coverage.py has {RULES}")
        missing_defs = sorted(set(RULES) - defined, key=RULES.index)
        if missing_defs:
            out.append(f"rules not defined as '- ID ' bullets or '| ID |' rows in PROFILE.md: {missing_defs}")
        extra_defs = sorted(defined - set(RULES))
        if extra_defs:
            out.append(f"PROFILE.md defines rules missing from the 'Rule ids' ranges: {extra_defs}")
    if not DOC.exists():
        return [*out, f"{DOC.relative_to(REPO)} is missing; run: python tests/test_spec_coverage.py --write"]
    forward, not_implemented, reverse = parse_doc(DOC.read_text(encoding="utf-8"))
    tests = collect_tests()
    for rule in RULES:
        if rule not in forward:
            out.append(f"{rule}: no row in the '{FORWARD_HEADING}' table of docs/spec-coverage.md")
        elif not forward[rule] and rule not in not_implemented:
            out.append(f"{rule}: no test listed and not marked '{NOT_IMPLEMENTED}'")
    for rule in sorted(set(forward) - set(RULES)):
        out.append(f"docs/spec-coverage.md has a row for unknown rule {rule!r}")
    for rule, refs in forward.items():
        for ref in refs:
            if ref not in tests:
                out.append(f"{rule}: docs/spec-coverage.md lists `{ref}`, which does not exist")
    for ref in sorted(tests):
        for rule in rule_ids_in_name(ref.rsplit("::", 1)[1]):
            if rule not in RULES:
                out.append(f"`{ref}` is named after {rule}, which is not a PROFILE rule id")
            elif ref not in forward.get(rule, []):
                out.append(
                    f"`{ref}` is named after {rule} but is not listed in its row of docs/spec-coverage.md"
                )
    inverse: dict[str, list[str]] = defaultdict(list)
    for rule in RULES:
        for ref in forward.get(rule, []):
            inverse[ref].append(rule)
    if {k: sorted(v) for k, v in inverse.items()} != {k: sorted(v) for k, v in reverse.items()}:
        for ref in sorted(set(inverse) | set(reverse)):
            if sorted(inverse.get(ref, [])) != sorted(reverse.get(ref, [])):
                out.append(
                    f"'{REVERSE_HEADING}' row for `{ref}` says {reverse.get(ref, [])}, "
                    f"the forward table says {inverse.get(ref, [])}"
                )
    return out


def test_spec_coverage_rule_list_matches_profile() -> None:
    assert len(RULES) == 8 + 4 + 6 + 13 + 4 + 3
    if PROFILE.exists():
        named, defined = profile_rules(PROFILE.read_text(encoding="utf-8"))
        assert named == RULES
        assert defined == set(RULES)


def test_spec_coverage_doc_is_complete_both_ways() -> None:
    found = problems()
    assert not found, (
        "docs/spec-coverage.md is out of date (regenerate with "
        "`python tests/test_spec_coverage.py --write`, then review):\n  " + "\n  ".join(found)
    )


def test_spec_coverage_checker_detects_gaps(tmp_path: Path) -> None:
    doc = (
        f"{FORWARD_HEADING}\n\n| Rule | Tests |\n|---|---|\n"
        "| E1 | `tests/x.py::test_e1_a` |\n| K5 | not implemented, see docs/decisions.md |\n| E2 | |\n\n"
        f"{REVERSE_HEADING}\n\n| Test | Rules |\n|---|---|\n| `tests/x.py::test_e1_a` | E1 |\n"
    )
    forward, not_implemented, reverse = parse_doc(doc)
    assert forward == {"E1": ["tests/x.py::test_e1_a"], "K5": [], "E2": []}
    assert not_implemented == {"K5"}
    assert reverse == {"tests/x.py::test_e1_a": ["E1"]}
    assert rule_ids_in_name("test_v0_v9_every_reason") == ["V0", "V9"]
    assert rule_ids_in_name("test_v12_x") == ["V12"]
    assert rule_ids_in_name("test_spec_coverage") == []
    assert expand("E1-E3, V0-V1") == ["E1", "E2", "E3", "V0", "V1"]


def write_doc() -> None:
    """Regenerate docs/spec-coverage.md, keeping hand-made cross-listings."""
    tests = collect_tests()
    forward: dict[str, list[str]] = {rule: [] for rule in RULES}
    not_implemented: set[str] = set()
    notes: dict[str, str] = {}
    if DOC.exists():
        old, old_ni, _ = parse_doc(DOC.read_text(encoding="utf-8"))
        not_implemented |= old_ni
        for rule, refs in old.items():
            if rule in forward:
                forward[rule].extend(r for r in refs if r in tests)
    for ref in sorted(tests):
        for rule in rule_ids_in_name(ref.rsplit("::", 1)[1]):
            if rule in forward and ref not in forward[rule]:
                forward[rule].append(ref)
    lines = [
        "# Spec coverage",
        "",
        "Every rule of [`docs/spec/PROFILE.md`](spec/PROFILE.md) sections 1-7 and the tests that check it.",
        "Tests are named after the rule they check first (`test_e3_...`); a test that",
        "also checks other rules is listed under those too. `tests/test_spec_coverage.py`",
        "checks this file against PROFILE.md and the test tree both ways; regenerate it",
        "with `python tests/test_spec_coverage.py --write` and review the diff.",
        "",
        FORWARD_HEADING,
        "",
        "| Rule | Tests |",
        "|---|---|",
    ]
    for rule in RULES:
        refs = sorted(dict.fromkeys(forward[rule]))
        if refs:
            lines.append(f"| {rule} | " + "<br>".join(f"`{r}`" for r in refs) + " |")
        elif rule in not_implemented:
            lines.append(f"| {rule} | {notes.get(rule, 'not implemented, see docs/decisions.md')} |")
        else:
            lines.append(f"| {rule} | |")
    lines += ["", REVERSE_HEADING, "", "| Test | Rules |", "|---|---|"]
    inverse: dict[str, list[str]] = defaultdict(list)
    for rule in RULES:
        for ref in dict.fromkeys(forward[rule]):
            inverse[ref].append(rule)
    for ref in sorted(inverse):
        lines.append(f"| `{ref}` | {', '.join(inverse[ref])} |")
    DOC.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_doc()
    found = problems()
    print("\n".join(found) if found else "docs/spec-coverage.md is complete")
    sys.exit(1 if found else 0)
