"""``mcp-attest vectors ...``: run conformance bundles, and verify one v0 envelope.

``vectors run DIR [--dialect spec|vaara-v0]`` prints one row per verified
call and a summary; exit 0 when every row matches, 1 on any mismatch, 2 on
usage errors (one line on stderr, never a traceback). ``vectors verify-v0``
is where ``mcp-attest verify --dialect vaara-v0`` lands: the same flags and
output as ``verify``, with the dialect reader in V1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

import orjson

from mcp_attest.canonical import CanonicalizationError, parse_arguments
from mcp_attest.conformance.runner import BundleError, Row, run_bundle
from mcp_attest.conformance.vaara_v0 import V0Verifier
from mcp_attest.envelope import DEFAULT_MAX_TTL, parse_iat
from mcp_attest.keys import Keyring, KeyringError
from mcp_attest.replay import InMemoryReplayStore, ReplayStore, SQLiteReplayStore
from mcp_attest.verifier import VerifierPolicy

__all__ = ["main"]

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2
DIALECTS = ("spec", "vaara-v0")


class _Usage(Exception):  # noqa: N818 - control flow to the single exit-2 path
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _Usage(message)


def _paint(text: str, code: str, stream: TextIO) -> str:
    if stream.isatty() and not os.environ.get("NO_COLOR"):
        return f"\033[{code}m{text}\033[0m"
    return text


def _table(rows: Sequence[Row], out: TextIO) -> None:
    headers = ("case", "expected", "got", "ok")
    cells = [(r.case, r.expected, r.got, "ok" if r.ok else "MISMATCH") for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers[:3])]
    print("  ".join(h.ljust(w) for h, w in zip(headers, [*widths, 0], strict=True)).rstrip(), file=out)
    for row, (case, expected, got, flag) in zip(rows, cells, strict=True):
        mark = _paint(flag, "32" if row.ok else "31", out)
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
    verdict = _paint("all match", "32", out) if not bad else _paint(f"{len(bad)} MISMATCH", "31", out)
    print(f"summary: {len(rows)} calls, {len(rows) - len(bad)} match, {verdict}", file=out)
    notes = [r for r in rows if r.ok and r.note]
    if notes:
        print("notes (what our verifier decided and why):", file=out)
        for row in notes:
            print(f"  {row.case}: {row.note}", file=out)


def _cmd_run(argv: list[str]) -> int:
    parser = _Parser(prog="mcp-attest vectors run")
    parser.add_argument("dir", type=Path)
    parser.add_argument("--dialect", choices=DIALECTS, default="spec")
    args = parser.parse_args(argv)
    rows = run_bundle(args.dir, args.dialect)
    _table(rows, sys.stdout)
    _summary(rows, sys.stdout)
    return EXIT_OK if all(r.ok for r in rows) else EXIT_MISMATCH


def _read(path: str, what: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise _Usage(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _cmd_verify_v0(argv: list[str]) -> int:
    p = _Parser(prog="mcp-attest verify --dialect vaara-v0")
    p.add_argument("envelope", nargs="?")
    for flag in ("--keys", "--server", "--tool", "--args"):
        p.add_argument(flag, required=True)
    p.add_argument("--now")
    p.add_argument("--skew", type=int, default=30)
    p.add_argument("--max-ttl", type=int, default=DEFAULT_MAX_TTL)
    p.add_argument("--args-binding", choices=("spec", "strict"), default="spec")
    store = p.add_mutually_exclusive_group()
    store.add_argument("--replay-db")
    store.add_argument("--replay", choices=("memory",))
    p.add_argument("--dialect", choices=DIALECTS, default="vaara-v0")
    p.add_argument("--header-value")
    p.add_argument("--no-multi-server", action="store_true")
    p.add_argument("--resolve-refs", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.envelope is None and args.header_value is None:
        raise _Usage("give an ENVELOPE file (or -) or --header-value")
    envelope = None if args.envelope is None else _read(args.envelope, "envelope")
    raw_args = _read(args.args, "arguments file")
    try:
        if raw_args.startswith(b"\xef\xbb\xbf"):
            raise _Usage(f"arguments file {args.args} starts with a byte order mark")
        parse_arguments(raw_args)
    except CanonicalizationError as exc:
        if exc.detail == "args.not_json":
            raise _Usage(f"arguments file {args.args} is not JSON: {exc}") from None
    try:
        ring = Keyring.load(args.keys)
        now = time.time() if args.now is None else parse_iat(args.now)
        policy = VerifierPolicy(
            skew=args.skew,
            max_ttl=args.max_ttl,
            args_binding=args.args_binding,
            multi_server=not args.no_multi_server,
            resolve_refs=args.resolve_refs,
        )
    except (KeyringError, ValueError) as exc:
        raise _Usage(str(exc)) from None
    replay: ReplayStore = SQLiteReplayStore(args.replay_db) if args.replay_db else InMemoryReplayStore()
    verifier = V0Verifier(ring, args.server, replay_store=replay, policy=policy, clock=lambda: now)
    verdict = verifier.verify(envelope, tool=args.tool, arguments=raw_args, header=args.header_value)
    if args.json:
        sys.stdout.write(orjson.dumps(verdict.to_dict()).decode() + "\n")
    elif verdict.accepted:
        binding = verdict.args_binding.value if verdict.args_binding else "-"
        print(f"{_paint('ACCEPTED', '32', sys.stdout)} {verdict.attestation_id} (args: {binding})")
    else:
        reason = verdict.reason.value if verdict.reason else "?"
        print(f"{_paint('REJECTED', '31', sys.stdout)} {reason} ({verdict.detail})")
    return EXIT_OK if verdict.accepted else EXIT_MISMATCH


_COMMANDS = {"run": _cmd_run, "verify-v0": _cmd_verify_v0}


def main(argv: list[str]) -> int:
    """Entry for ``mcp-attest vectors``; ``argv`` starts with the subcommand."""
    try:
        if not argv or argv[0] not in _COMMANDS:
            raise _Usage("usage: mcp-attest vectors run DIR [--dialect spec|vaara-v0]")
        return _COMMANDS[argv[0]](list(argv[1:]))
    except (_Usage, BundleError) as exc:
        print(f"mcp-attest vectors: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
