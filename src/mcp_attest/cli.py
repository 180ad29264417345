"""The ``mcp-attest`` command line (contract: shared/spec/CLI.md).

Exit codes: 0 success or accepted, 1 a "no" verdict, 2 usage or
configuration error with one line on stderr. User input never produces a
traceback. Commands that need an extra (demo, gateway, audit, vectors) are
imported only when invoked, so the core CLI works with the core install.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from mcp_attest import __version__
from mcp_attest._build import active_build
from mcp_attest._cli import EXIT_NO, EXIT_OK, EXIT_USAGE, Parser, UsageError, colour, usage_failure
from mcp_attest.algorithms import ALGORITHMS, Key, key_from_jwk
from mcp_attest.canonical import CanonicalizationError, canonicalize, parse_arguments
from mcp_attest.envelope import DEFAULT_MAX_TTL, parse_iat
from mcp_attest.fingerprint import server_fingerprint
from mcp_attest.issuer import Issuer, PlannedCall
from mcp_attest.keys import Keyring, KeyringError, default_kid, generate_key
from mcp_attest.receipts import load_receipt, verify_receipt
from mcp_attest.replay import InMemoryReplayStore, ReplayStore, SQLiteReplayStore
from mcp_attest.transport import encode_header
from mcp_attest.verifier import EnvelopeReader, Verifier, VerifierPolicy

__all__ = ["main"]

_MAX_INPUT_BYTES = 16 * 1024 * 1024

# Commands owned by optional parts: name -> (module:function, extra to install, one-line help).
_EXTERNAL = {
    "demo": (
        "mcp_attest._demo:run",
        "mcp",
        "run attested, forged and replayed calls against an example server",
    ),
    "gateway": (
        "mcp_attest.gateway.cli:main",
        "gateway",
        "verify or add attestations in front of MCP servers",
    ),
    "audit": ("mcp_attest.audit.cli:main", "postgres", "verify, export or follow a hash-chained audit log"),
    "vectors": (
        "mcp_attest.conformance.cli:main",
        "",
        "run a conformance vector bundle against the verifier",
    ),
}
_FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")


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


def _server(text: str) -> str:
    """A fingerprint as the gateway and guard derive them; anything else would sign for no server."""
    if not _FINGERPRINT.fullmatch(text):
        raise UsageError(
            f"--server {text!r} is not a fingerprint ('sha256:' and 64 lower-case hex digits); "
            "get one with: mcp-attest fingerprint --name NAME [--id ID]"
        )
    return text


def _cmd_sign(args: argparse.Namespace) -> int:
    server = _server(args.server)
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
    call = PlannedCall(args.tool, arguments, server, args.commit, args.ref_uri)
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
        print(f"{colour('ACCEPTED', '32')} {verdict.attestation_id} (args: {binding})")
        if verdict.args_binding is not None and verdict.args_binding.value == "redacted":
            print("warning: arguments are NOT bound (redacted projection)", file=sys.stderr)
    else:
        reason = verdict.reason.value if verdict.reason else "?"
        print(f"{colour('REJECTED', '31')} {reason} ({verdict.detail})")
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


# -- fingerprint ---------------------------------------------------------------


def _cmd_fingerprint(args: argparse.Namespace) -> int:
    print(server_fingerprint(args.name, args.id))
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
        print(colour("VALID", "32") + " receipt")
    else:
        print(f"{colour('INVALID', '31')} receipt ({check.problem})")
    return EXIT_OK if check.accepted else EXIT_NO


# -- wiring --------------------------------------------------------------------


def _add_keygen(sub: Any) -> None:
    p = sub.add_parser("keygen", help="create or rotate a key in a keyring")
    p.add_argument("--alg", required=True, choices=ALGORITHMS, help="signature algorithm of the new key")
    p.add_argument("--iss", required=True, help="issuer the key signs for (e.g. agent://planner)")
    p.add_argument("--kid", help="key id (default: a date-based id)")
    p.add_argument("--out", required=True, help="signing keyring to create or append to (mode 0600)")
    p.add_argument("--public-out", help="verify-only keyring to create or append to")
    p.set_defaults(handler=_cmd_keygen)


_SIGN_REQUIRED = {
    "--keys": "signing keyring",
    "--iss": "issuer to sign as",
    "--sub": "subject the call is made for (e.g. user:alice)",
    "--intent": "declared intent, in words",
    "--tool": "name of the tool to call",
    "--args": "JSON file with the call's arguments (- for stdin)",
    "--server": "fingerprint of the server (sha256:<64 hex>; see: mcp-attest fingerprint)",
}
_SIGN_OPTIONAL = {
    "--kid": "key id to sign with (default: the newest key of the issuer)",
    "--ref-uri": "argsRef URI (default: a data: URI holding the canonical arguments)",
    "--requested-capability": "requestedCapability to declare",
    "--planner-ref": "plannerRef to declare",
    "--now": "sign as of this RFC 3339 UTC time (tests, vectors)",
}


def _add_sign(sub: Any) -> None:
    p = sub.add_parser("sign", help="sign an envelope for one tool call")
    for flag, text in _SIGN_REQUIRED.items():
        p.add_argument(flag, required=True, help=text)
    for flag, text in _SIGN_OPTIONAL.items():
        p.add_argument(flag, help=text)
    p.add_argument(
        "--commit",
        choices=("projection", "ref", "both"),
        default="projection",
        help="how the arguments are committed to (default: projection)",
    )
    p.add_argument("--exp", type=int, default=300, help="lifetime in seconds (default: 300)")
    p.add_argument("--header", action="store_true", help="print the X-MCP-Attestation value instead of JSON")
    p.set_defaults(handler=_cmd_sign)


def _add_verify(sub: Any) -> None:
    p = sub.add_parser("verify", help="verify an envelope for one tool call")
    p.add_argument("envelope", nargs="?", help="envelope JSON file, or - for stdin")
    p.add_argument("--keys", required=True, help="verify keyring")
    p.add_argument("--server", required=True, help="this server's fingerprint")
    p.add_argument("--tool", required=True, help="name of the tool being called")
    p.add_argument("--args", required=True, help="JSON file with the call's arguments")
    p.add_argument("--now", help="verify as of this RFC 3339 UTC time")
    p.add_argument("--skew", type=int, default=30, help="allowed clock skew in seconds (default: 30)")
    p.add_argument(
        "--max-ttl", type=int, default=DEFAULT_MAX_TTL, help="longest lifetime accepted, in seconds"
    )
    p.add_argument(
        "--args-binding",
        choices=("spec", "strict"),
        default="strict",
        help="strict (default) refuses envelopes that do not bind the arguments; spec accepts them",
    )
    store = p.add_mutually_exclusive_group()
    store.add_argument("--replay-db", help="SQLite file remembering nonces across runs")
    store.add_argument("--replay", choices=("memory",), help="remember nonces for this run only")
    p.add_argument("--dialect", choices=("spec", "vaara-v0"), default="spec", help="envelope dialect")
    p.add_argument("--header-value", help="the envelope as an X-MCP-Attestation value")
    p.add_argument("--no-multi-server", action="store_true", help="refuse plans naming several servers")
    p.add_argument("--resolve-refs", action="store_true", help="always resolve argsRef URIs")
    p.add_argument("--json", action="store_true", help="print the verdict as one JSON object")
    p.set_defaults(handler=_cmd_verify)


def _add_canonicalize(sub: Any) -> None:
    p = sub.add_parser("canonicalize", help="print the RFC 8785 bytes of a JSON document")
    p.add_argument("file", help="JSON file, or - for stdin")
    p.set_defaults(handler=_cmd_canonicalize)


def _add_fingerprint(sub: Any) -> None:
    p = sub.add_parser("fingerprint", help="print the server fingerprint for a server name and id")
    p.add_argument("--name", required=True, help="server name (the gateway's --server-name)")
    p.add_argument("--id", default="", help="server id (the gateway's --server-id; default empty)")
    p.set_defaults(handler=_cmd_fingerprint)


def _add_receipt(sub: Any) -> None:
    p = sub.add_parser("receipt", help="check execution receipts")
    receipt_sub = p.add_subparsers(dest="receipt_command", required=True, parser_class=Parser)
    p = receipt_sub.add_parser("verify", help="verify a receipt's signature, and its result if given")
    p.add_argument("receipt", help="receipt JSON file, or - for stdin")
    p.add_argument("--keys", required=True, help="keyring holding the server's key under its fingerprint")
    p.add_argument("--result", help="the tool result (JSON) the receipt should cover")
    p.add_argument("--attestation-id", help="the attestation id the receipt must name")
    p.add_argument("--json", action="store_true", help="print the check as one JSON object")
    p.set_defaults(handler=_cmd_receipt_verify)


def _parser() -> Parser:
    parser = Parser(
        prog="mcp-attest",
        description="SEP-2787 tool-call attestation for MCP.",
        epilog="Each command has its own --help. Exit codes: 0 ok, 1 a 'no' verdict, 2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"mcp-attest {__version__}, {active_build()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for add in (_add_keygen, _add_sign, _add_verify, _add_canonicalize, _add_fingerprint, _add_receipt):
        add(sub)
    for name, (_, _, text) in _EXTERNAL.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def _external(name: str, argv: list[str]) -> int:
    target, extra, _ = _EXTERNAL[name]
    module_name, _, func_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"; install the {extra} extra (in a clone: pip install '.[{extra}]')" if extra else ""
        raise UsageError(f"'{name}' is not available ({exc.name} missing){hint}") from None
    func: Callable[[list[str]], int] = getattr(module, func_name)
    return func(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list:
        _parser().print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if args_list and args_list[0] in _EXTERNAL:
            return _external(args_list[0], args_list[1:])
        args = _parser().parse_args(args_list)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except UsageError as exc:
        return usage_failure("mcp-attest", exc)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
