"""The ``mcp-attest`` command line (contract: shared/spec/CLI.md).

Exit codes: 0 success or accepted, 1 a "no" verdict, 2 usage or
configuration error with one line on stderr. User input never produces a
traceback. Commands that need an extra (demo, gateway, audit, vectors) are
imported only when invoked, so the core CLI works with the core install.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import orjson

from mcp_attest import __version__
from mcp_attest._build import active_build
from mcp_attest.algorithms import ALGORITHMS, Key, key_from_jwk
from mcp_attest.canonical import CanonicalizationError, canonicalize, parse_arguments
from mcp_attest.envelope import DEFAULT_MAX_TTL, parse_iat
from mcp_attest.issuer import Issuer, PlannedCall
from mcp_attest.keys import Keyring, KeyringError, default_kid, generate_key
from mcp_attest.receipts import load_receipt, verify_receipt
from mcp_attest.replay import InMemoryReplayStore, ReplayStore, SQLiteReplayStore
from mcp_attest.transport import encode_header
from mcp_attest.verifier import EnvelopeReader, Verifier, VerifierPolicy

__all__ = ["main"]

EXIT_OK, EXIT_NO, EXIT_USAGE = 0, 1, 2
_MAX_INPUT_BYTES = 16 * 1024 * 1024

# Commands owned by optional parts: name -> (module:function, extra to install).
_EXTERNAL = {
    "demo": ("mcp_attest.demo:run", "mcp"),
    "gateway": ("mcp_attest.gateway.cli:main", "gateway"),
    "audit": ("mcp_attest.audit.cli:main", "postgres"),
    "vectors": ("mcp_attest.conformance.cli:main", ""),
}


class UsageError(Exception):
    """Bad flags, unreadable files or configuration: exit 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports through ``UsageError`` instead of exiting itself."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _colour(text: str, code: str, stream: Any = sys.stdout) -> str:
    if stream.isatty() and not os.environ.get("NO_COLOR"):
        return f"\033[{code}m{text}\033[0m"
    return text


def _read_input(path: str, what: str) -> bytes:
    try:
        if path == "-":
            return sys.stdin.buffer.read(_MAX_INPUT_BYTES + 1)
        with open(path, "rb") as fh:
            data = fh.read(_MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_INPUT_BYTES:
        raise UsageError(f"{what} {path} is larger than {_MAX_INPUT_BYTES} bytes")
    return data


def _load_keys(path: str) -> Keyring:
    try:
        return Keyring.load(path)
    except KeyringError as exc:
        raise UsageError(str(exc)) from None


def _clock(text: str | None) -> Callable[[], float]:
    if text is None:
        return time.time
    try:
        value = parse_iat(text)
    except ValueError:
        raise UsageError(f"--now {text!r} is not an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SSZ)") from None
    return lambda: value


# -- keygen ------------------------------------------------------------------


def _cmd_keygen(args: argparse.Namespace) -> int:
    out = Path(args.out)
    ring = _load_keys(args.out) if out.exists() else Keyring()
    kid = args.kid or default_kid()
    try:
        key = generate_key(args.alg, kid)
        ring = ring.with_key(args.iss, key)
        ring.save(out, private=True)
        if args.public_out:
            public_path = Path(args.public_out)
            public = _load_keys(args.public_out) if public_path.exists() else Keyring()
            public = public.with_key(args.iss, _public_only(key))
            public.save(public_path, private=False)
    except (KeyringError, OSError) as exc:
        raise UsageError(str(exc)) from None
    print(
        orjson.dumps(
            {"iss": args.iss, "kid": kid, "alg": args.alg, "out": str(out), "publicOut": args.public_out}
        ).decode()
    )
    return EXIT_OK


def _public_only(key: Key) -> Key:
    """Round-trip through the public JWK so no private member can reach the file."""
    return key_from_jwk(key.public_jwk(), label="generated")


# -- sign ----------------------------------------------------------------------


def _read_arguments(path: str) -> Any:
    """Arguments as C3 reads them; not-JSON is a usage error (exit 2)."""
    data = _read_input(path, "arguments file")
    try:
        return parse_arguments(data)
    except CanonicalizationError as exc:
        if exc.detail == "args.not_json":
            raise UsageError(f"arguments file {path} is not JSON: {exc}") from None
        raise


def _cmd_sign(args: argparse.Namespace) -> int:
    ring = _load_keys(args.keys)
    clock = _clock(args.now)
    try:
        arguments = _read_arguments(args.args)
    except CanonicalizationError as exc:
        print(f"mcp-attest: arguments not canonicalizable ({exc.detail}): {exc}", file=sys.stderr)
        return EXIT_NO
    if not isinstance(arguments, dict):
        raise UsageError(f"arguments file {args.args} must hold a JSON object")
    if not 1 <= args.exp <= DEFAULT_MAX_TTL:
        raise UsageError(f"--exp must be in 1..{DEFAULT_MAX_TTL}")
    try:
        issuer = Issuer(ring, iss=args.iss, sub=args.sub, kid=args.kid, clock=clock)
    except KeyringError as exc:
        raise UsageError(str(exc)) from None
    call = PlannedCall(args.tool, arguments, args.server, args.commit, args.ref_uri)
    envelope = issuer.sign_plan(
        [call],
        intent=args.intent,
        exp_seconds=args.exp,
        requested_capability=args.requested_capability,
        planner_ref=args.planner_ref,
    )
    sys.stdout.write((encode_header(envelope) if args.header else envelope.to_json().decode()) + "\n")
    return EXIT_OK


# -- verify --------------------------------------------------------------------


def _replay_store(args: argparse.Namespace) -> ReplayStore:
    if args.replay_db:
        return SQLiteReplayStore(args.replay_db)
    return InMemoryReplayStore()


def _dialect_reader(dialect: str) -> EnvelopeReader | None:
    """PROFILE section 10: older dialects only on explicit request, never detected."""
    if dialect == "spec":
        return None
    from mcp_attest.conformance.vaara_v0 import read_v0  # noqa: PLC0415 - opt-in dialect

    return read_v0


def _cmd_verify(args: argparse.Namespace) -> int:
    if args.envelope is None and args.header_value is None:
        raise UsageError("give an ENVELOPE file (or -) or --header-value")
    envelope = None if args.envelope is None else _read_input(args.envelope, "envelope")
    ring = _load_keys(args.keys)
    raw_args = _read_input(args.args, "arguments file")
    try:
        parse_arguments(raw_args)
    except CanonicalizationError as exc:
        if exc.detail == "args.not_json":
            raise UsageError(f"arguments file {args.args} is not JSON: {exc}") from None
    try:
        policy = VerifierPolicy(
            skew=args.skew,
            max_ttl=args.max_ttl,
            args_binding=args.args_binding,
            multi_server=not args.no_multi_server,
            resolve_refs=args.resolve_refs,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    verifier = Verifier(
        ring,
        args.server,
        replay_store=_replay_store(args),
        policy=policy,
        clock=_clock(args.now),
        reader=_dialect_reader(args.dialect),
    )
    verdict = verifier.verify(envelope, tool=args.tool, arguments=raw_args, header=args.header_value)
    if args.json:
        sys.stdout.write(orjson.dumps(verdict.to_dict()).decode() + "\n")
    elif verdict.accepted:
        binding = verdict.args_binding.value if verdict.args_binding else "-"
        print(f"{_colour('ACCEPTED', '32')} {verdict.attestation_id} (args: {binding})")
        if verdict.args_binding is not None and verdict.args_binding.value == "redacted":
            print("warning: arguments are NOT bound (redacted projection)", file=sys.stderr)
    else:
        reason = verdict.reason.value if verdict.reason else "?"
        print(f"{_colour('REJECTED', '31')} {reason} ({verdict.detail})")
    return EXIT_OK if verdict.accepted else EXIT_NO


# -- canonicalize --------------------------------------------------------------


def _cmd_canonicalize(args: argparse.Namespace) -> int:
    data = _read_input(args.file, "input")
    try:
        out = canonicalize(parse_arguments(data))
    except CanonicalizationError as exc:
        print(f"mcp-attest: refused ({exc.detail}): {exc}", file=sys.stderr)
        return EXIT_NO
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    return EXIT_OK


# -- receipt -------------------------------------------------------------------


def _cmd_receipt_verify(args: argparse.Namespace) -> int:
    receipt = load_receipt(_read_input(args.receipt, "receipt"))
    ring = _load_keys(args.keys)
    result = None
    if args.result:
        result = load_receipt(_read_input(args.result, "result"))
        if not isinstance(result, dict):
            raise UsageError(f"result {args.result} is not a JSON object")
    check = verify_receipt(receipt, ring, result=result, attestation_id=args.attestation_id)
    if args.json:
        sys.stdout.write(orjson.dumps(check.to_dict()).decode() + "\n")
    elif check.accepted:
        print(_colour("VALID", "32") + " receipt")
    else:
        print(f"{_colour('INVALID', '31')} receipt ({check.problem})")
    return EXIT_OK if check.accepted else EXIT_NO


# -- wiring --------------------------------------------------------------------


def _add_keygen(sub: Any) -> None:
    p = sub.add_parser("keygen", help="create or rotate a key in a keyring")
    p.add_argument("--alg", required=True, choices=ALGORITHMS)
    p.add_argument("--iss", required=True)
    p.add_argument("--kid")
    p.add_argument("--out", required=True)
    p.add_argument("--public-out")
    p.set_defaults(handler=_cmd_keygen)


def _add_sign(sub: Any) -> None:
    p = sub.add_parser("sign", help="sign an envelope for one tool call")
    for flag in ("--keys", "--iss", "--sub", "--intent", "--tool", "--args", "--server"):
        p.add_argument(flag, required=True)
    for flag in ("--kid", "--ref-uri", "--requested-capability", "--planner-ref", "--now"):
        p.add_argument(flag)
    p.add_argument("--commit", choices=("projection", "ref", "both"), default="projection")
    p.add_argument("--exp", type=int, default=300)
    p.add_argument("--header", action="store_true")
    p.set_defaults(handler=_cmd_sign)


def _add_verify(sub: Any) -> None:
    p = sub.add_parser("verify", help="verify an envelope for one tool call")
    p.add_argument("envelope", nargs="?")
    for flag in ("--keys", "--server", "--tool", "--args"):
        p.add_argument(flag, required=True)
    p.add_argument("--now")
    p.add_argument("--skew", type=int, default=30)
    p.add_argument("--max-ttl", type=int, default=DEFAULT_MAX_TTL)
    p.add_argument("--args-binding", choices=("spec", "strict"), default="strict")
    store = p.add_mutually_exclusive_group()
    store.add_argument("--replay-db")
    store.add_argument("--replay", choices=("memory",))
    p.add_argument("--dialect", choices=("spec", "vaara-v0"), default="spec")
    p.add_argument("--header-value")
    for flag in ("--no-multi-server", "--resolve-refs", "--json"):
        p.add_argument(flag, action="store_true")
    p.set_defaults(handler=_cmd_verify)


def _add_canonicalize(sub: Any) -> None:
    p = sub.add_parser("canonicalize", help="print the RFC 8785 bytes of a JSON document")
    p.add_argument("file")
    p.set_defaults(handler=_cmd_canonicalize)


def _add_receipt(sub: Any) -> None:
    p = sub.add_parser("receipt", help="check execution receipts")
    receipt_sub = p.add_subparsers(dest="receipt_command", required=True, parser_class=_Parser)
    p = receipt_sub.add_parser("verify", help="verify a receipt's signature, and its result if given")
    p.add_argument("receipt")
    p.add_argument("--keys", required=True, help="keyring holding the server's key under its fingerprint")
    p.add_argument("--result", help="the tool result (JSON) the receipt should cover")
    p.add_argument("--attestation-id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_receipt_verify)


def _parser() -> _Parser:
    parser = _Parser(prog="mcp-attest", description="SEP-2787 tool-call attestation for MCP.")
    parser.add_argument("--version", action="version", version=f"mcp-attest {__version__}, {active_build()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_keygen, _add_sign, _add_verify, _add_canonicalize, _add_receipt):
        add(sub)
    for name in _EXTERNAL:
        sub.add_parser(name, help=f"see: mcp-attest {name} --help", add_help=False)
    return parser


def _external(name: str, argv: list[str]) -> int:
    target, extra = _EXTERNAL[name]
    module_name, _, func_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"; install mcp-attest[{extra}]" if extra else ""
        raise UsageError(f"'{name}' is not available ({exc.name} missing){hint}") from None
    func: Callable[[list[str]], int] = getattr(module, func_name)
    return func(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        if args_list and args_list[0] in _EXTERNAL:
            return _external(args_list[0], args_list[1:])
        args = _parser().parse_args(args_list)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except UsageError as exc:
        print(f"mcp-attest: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
