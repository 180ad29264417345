"""``mcp-attest vectors ...``: run conformance bundles, and verify one v0 envelope.

``vectors run DIR [--dialect spec|vaara-v0]`` prints one row per verified
call and a summary; exit 0 when every row matches, 1 on any mismatch, 2 on
usage errors (one line on stderr, never a traceback). ``vectors verify-v0``
is where ``mcp-attest verify --dialect vaara-v0`` lands: the same flags and
output as ``verify``, with the dialect reader in V1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from mcp_attest._cli import EXIT_NO, EXIT_OK, Parser, UsageError, colour, usage_failure
from mcp_attest.conformance.runner import BundleError, Row, run_bundle

__all__ = ["main"]

DIALECTS = ("spec", "vaara-v0")


def _table(rows: Sequence[Row], out: TextIO) -> None:
    headers = ("case", "expected", "got", "ok")
    cells = [(r.case, r.expected, r.got, "ok" if r.ok else "MISMATCH") for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers[:3])]
    print("  ".join(h.ljust(w) for h, w in zip(headers, [*widths, 0], strict=True)).rstrip(), file=out)
    for row, (case, expected, got, flag) in zip(rows, cells, strict=True):
        mark = colour(flag, "32" if row.ok else "31", out)
        line = f"{case.ljust(widths[0])}  {expected.ljust(widths[1])}  {got.ljust(widths[2])}  {mark}"
        print(line + (f"  {row.note}" if row.note and not row.ok else ""), file=out)


def _summary(rows: Sequence[Row], out: TextIO) -> None:
    buckets: dict[str, list[Row]] = {}
    for row in rows:
        buckets.setdefault(row.bucket, []).append(row)
    for bucket, members in sorted(buckets.items()):
        good = sum(r.ok for r in members)
        print(f"  {bucket}: {good}/{len(members)} match", file=out)
    bad = [r for r in rows if not r.ok]
    verdict = colour("all match", "32", out) if not bad else colour(f"{len(bad)} MISMATCH", "31", out)
    print(f"summary: {len(rows)} calls, {len(rows) - len(bad)} match, {verdict}", file=out)
    notes = [r for r in rows if r.ok and r.note]
    if notes:
        print("notes (what our verifier decided and why):", file=out)
        for row in notes:
            print(f"  {row.case}: {row.note}", file=out)


def _parser() -> Parser:
    parser = Parser(prog="mcp-attest vectors", description="Run conformance vector bundles.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    run = sub.add_parser("run", help="run every case of a bundle and compare verdicts")
    run.add_argument("dir", type=Path, help="bundle directory (holds the cases and their keys)")
    run.add_argument(
        "--dialect", choices=DIALECTS, default="spec", help="envelope dialect of the bundle (default: spec)"
    )
    run.set_defaults(handler=_cmd_run)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    rows = run_bundle(args.dir, args.dialect)
    _table(rows, sys.stdout)
    _summary(rows, sys.stdout)
    return EXIT_OK if all(r.ok for r in rows) else EXIT_NO


def main(argv: list[str]) -> int:
    """Entry for ``mcp-attest vectors``; ``argv`` starts with the subcommand."""
    try:
        args = _parser().parse_args(argv)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except (UsageError, BundleError) as exc:
        return usage_failure("mcp-attest vectors", exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
