"""``mcp-attest audit verify|export|tail|prove|check-proof|consistency``: the auditor's side.

Exit codes follow the CLI contract: 0 ok, 1 a broken chain or a proof that
does not hold, 2 a usage or
configuration problem (unreadable keyring, missing log, unreachable
database) reported as one line on stderr, never a traceback. Every
command opens the log read-only (``create=False``), so pointing one at a
wrong path or schema cannot create an empty log that then "verifies".
``check-proof`` opens no log at all: a proof document, a signed tree head
and the checkpoint key's public half are all it needs.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import orjson

from mcp_attest._cli import Parser, UsageError, usage_failure
from mcp_attest.audit.backend import RecordQuery
from mcp_attest.audit.custody import load_checkpoint_keys
from mcp_attest.audit.log import AuditLog, ChainReport
from mcp_attest.audit.proofs import check_proof, consistency_proof, inclusion_proof
from mcp_attest.audit.record import AuditError, AuditRecord, AuditRecordError
from mcp_attest.keys import Keyring, KeyringError
from mcp_attest.stores import open_audit_log, open_witness

__all__ = ["main"]

_PROG = "mcp-attest audit"
_MAX_TAIL = 1_000_000
_MAX_INTERVAL = 60.0


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog=_PROG, description="Verify, export and follow the hash-chained audit log.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    verify = sub.add_parser("verify", help="check every link, tree head and (with --keys) envelope")
    verify.add_argument("url", help="sqlite:///path, a file path, or postgresql://...?schema=NAME")
    verify.add_argument("--keys", help="keyring to re-verify stored envelopes and the facts drawn from them")
    _checkpoint_keys(verify)
    verify.add_argument(
        "--unsigned",
        action="store_true",
        help="check without checkpoint keys: links only, which an insider can re-seal",
    )
    verify.add_argument("--witness", help="witness file or database URL holding copies of the checkpoints")
    verify.add_argument(
        "--allow-unattested",
        action="store_true",
        help="accept accepted calls without an envelope (guards with required=False)",
    )
    verify.add_argument("--json", action="store_true", help="print the report as one JSON object")

    prove = sub.add_parser("prove", help="print an inclusion proof for one record")
    prove.add_argument("url", help="the audit log (as for verify)")
    prove.add_argument("seq", type=int, help="the record's seq")
    prove.add_argument(
        "--tree-size", type=int, help="a signed tree head's size (default: first covering SEQ)"
    )

    check = sub.add_parser("check-proof", help="check a proof document without the database")
    check.add_argument("proof", help="a file printed by audit prove or audit consistency ('-' for stdin)")
    _checkpoint_keys(check, required=True)
    check.add_argument("--tree-head", help="your own copy of the (newer) signed tree head to check against")

    consistency = sub.add_parser("consistency", help="print a proof that one tree head extends another")
    consistency.add_argument("url", help="the audit log (as for verify)")
    consistency.add_argument("old", type=int, help="size of the older signed tree head")
    consistency.add_argument("new", type=int, help="size of the newer signed tree head")

    export = sub.add_parser("export", help="print records as JSON Lines")
    export.add_argument("url", help="the audit log (as for verify)")
    export.add_argument("--since", type=_timestamp, help="RFC 3339 time or epoch seconds (inclusive)")
    export.add_argument("--until", type=_timestamp, help="RFC 3339 time or epoch seconds (exclusive)")
    export.add_argument("--sub", help="only decisions for this subject")
    export.add_argument("--tool", help="only decisions about this tool")
    export.add_argument("--reason", help="only this rejection reason ('accepted' for accepted calls)")

    tail = sub.add_parser("tail", help="print the newest records, and with --follow new ones as they come")
    tail.add_argument("url", help="the audit log (as for verify)")
    tail.add_argument("-n", "--lines", type=int, default=10, help="newest records to show (default 10)")
    tail.add_argument("--follow", "-f", action="store_true", help="print new records until interrupted")
    tail.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)
    return parser


def _checkpoint_keys(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    parser.add_argument(
        "--checkpoint-keys",
        required=required,
        help="the checkpoint key's public JWKS (written beside the key) or a keyring holding it",
    )


def _timestamp(text: str) -> float:
    """Epoch seconds from an RFC 3339 time (any offset) or a finite number."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            seconds = math.nan
        else:
            seconds = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(seconds):  # NaN would match nothing, quietly
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (use RFC 3339 or epoch seconds)")
    return seconds


def main(argv: Sequence[str] | None = None, *, stop: Callable[[], bool] | None = None) -> int:
    """Run one audit command; ``stop`` ends ``tail --follow`` (tests; Ctrl-C otherwise)."""
    out = sys.stdout
    try:
        args = _parser().parse_args(argv)
    except UsageError as exc:
        return _fail(str(exc))
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    if args.command == "check-proof":
        return _check_proof(args, out)
    if args.command == "verify" and not (args.checkpoint_keys or args.unsigned):
        return _fail(
            "give --checkpoint-keys (the JWKS beside the writer's checkpoint key), or --unsigned to check "
            "links only, which whoever can write the database can re-seal"
        )
    try:
        log = open_audit_log(args.url, create=False)
    except (AuditError, ValueError) as exc:
        return _fail(str(exc))
    try:
        if args.command == "verify":
            return _verify(log, args, out)
        if args.command == "export":
            query = RecordQuery(args.since, args.until, args.sub, args.tool, args.reason)
            _print_records(log.records(query), out)
            return 0
        if args.command == "prove":
            return _print_json(inclusion_proof(log, args.seq, args.tree_size), out)
        if args.command == "consistency":
            return _print_json(consistency_proof(log, args.old, args.new), out)
        return _tail(log, args, out, stop or threading.Event().is_set)
    except AuditRecordError as exc:  # export or tail reached a record an edit made unreadable
        print(f"{_PROG}: broken: {exc}", file=sys.stderr)
        return 1
    except (AuditError, KeyringError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `audit export | head`
        return 0
    finally:
        log.backend.close()


def _fail(message: str) -> int:
    return usage_failure(_PROG, f"error: {message}")


def _print_json(doc: object, out: TextIO) -> int:
    out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _read_json(path: str) -> object:
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        return orjson.loads(data)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError:
        raise UsageError(f"{path} is not JSON") from None


def _check_proof(args: argparse.Namespace, out: TextIO) -> int:
    try:
        keys = load_checkpoint_keys(args.checkpoint_keys)
        proof = _read_json(args.proof)
        head = _read_json(args.tree_head) if args.tree_head else None
    except (KeyringError, UsageError) as exc:
        return _fail(str(exc))
    problem = check_proof(proof, keys, tree_head=head if isinstance(head, dict) else None)
    if problem is not None:
        print(f"{_PROG}: proof does not hold: {problem}", file=sys.stderr)
        return 1
    kind = "inclusion" if isinstance(proof, dict) and "record" in proof else "consistency"
    out.write(f"ok: {kind} proof holds\n")
    return 0


def _verify(log: AuditLog, args: argparse.Namespace, out: TextIO) -> int:
    keyring = Keyring.load(args.keys) if args.keys else None
    checkpoint_keys = load_checkpoint_keys(args.checkpoint_keys) if args.checkpoint_keys else None
    witness = open_witness(args.witness, create=False) if args.witness else None
    try:
        report = log.verify(
            keyring, checkpoint_keys=checkpoint_keys, witness=witness, allow_unattested=args.allow_unattested
        )
    finally:
        if witness is not None:
            witness.close()
    if args.json:
        out.write(orjson.dumps(report.to_dict()).decode() + "\n")
    else:
        out.write(_summary(report))
    return 0 if report.accepted else 1


def _summary(report: ChainReport) -> str:
    lines = []
    if report.broken is None:
        lines.append(
            f"ok: {report.location}: {report.records} records, head seq {report.head_seq} "
            f"hash {report.head_hash} root {report.root}"
        )
    else:
        lines.append(f"BROKEN: {report.location}: record {report.broken.seq}: {report.broken.problem}")
        lines.append(f"  records 1..{report.records} verified")
    signed = "signatures checked" if report.checkpoint_signatures_checked else "signatures not checked"
    lines.append(f"  checkpoints: {report.checkpoints} ({signed})")
    lines.append(f"  envelopes re-verified: {report.envelopes_verified}")
    lines.extend(f"  warning: {w}" for w in report.warnings)
    return "\n".join(lines) + "\n"


# Characters a terminal acts on or reorders (C1 controls, bidi embeddings, overrides and
# isolates, line and paragraph separators): client-chosen text (a tool name, an envelope
# field) must not rewrite what an operator reads. JSON's own escape keeps each line valid.
_UNSAFE = re.compile("[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _print_records(records: Iterable[AuditRecord], out: TextIO) -> None:
    for record in records:
        out.write(_UNSAFE.sub(_escape, record.to_json().decode("utf-8")) + "\n")
        out.flush()


def _tail(log: AuditLog, args: argparse.Namespace, out: TextIO, stop: Callable[[], bool]) -> int:
    if not 0 <= args.lines <= _MAX_TAIL:
        return _fail(f"--lines must be 0..{_MAX_TAIL} (audit export prints everything)")
    if not 0 < args.interval <= _MAX_INTERVAL:  # NaN fails this too
        return _fail(f"--interval must be more than 0 and at most {_MAX_INTERVAL:g} seconds")
    newest = log.tail(args.lines) if args.lines else []
    _print_records(newest, out)
    if args.follow:
        after = newest[-1].seq if newest else log.backend.head()[0]
        _print_records(log.follow(after, interval=args.interval, stop=stop), out)
    return 0
