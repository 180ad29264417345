"""No CLI command prints a traceback for any input file (issue 11); nor does the client.

Every file a command reads is replaced, one at a time, by each hostile
document below; the command must end with an exit code of the contract
(0, 1 or 2) and at most one line on stderr. The commands run in-process,
so an escaping exception fails the test with its own traceback.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from mcp_attest import InMemoryReplayStore, Issuer, Keyring, PlannedCall, Verifier
from mcp_attest.audit import AuditLog, SQLiteAuditBackend
from mcp_attest.cli import main
from mcp_attest.conformance.vaara_v0 import hash_only_projection

SERVER = "sha256:" + "ab" * 32
REPO = Path(__file__).resolve().parents[2]
HUGE = "1" + "0" * 5000
DEEP = 100_000

HOSTILE: dict[str, bytes] = {
    "empty": b"",
    "whitespace": b" \n\t",
    "binary": bytes(range(256)) * 4,
    "invalid_utf8": b'{"a": "\xff\xfe"}',
    "bom": b"\xef\xbb\xbf{}",
    "lone_surrogate_escape": b'{"a": "\\ud800", "keys": {"\\udc00": 1}}',
    "surrogate_bytes": b'{"a": "\xed\xa0\x80"}',
    "int_400_digits": b'{"a": 1' + b"0" * 400 + b"}",
    "int_5000_digits": f'{{"a": {HUGE}, "b": [-{HUGE}]}}'.encode(),
    "int_5000_digits_top": HUGE.encode(),
    "exponent_overflow": b'{"a": 1e99999}',
    "fraction_5000_digits": b'{"a": 0.' + b"0" * 5000 + b"1}",
    "deep_arrays": b"[" * DEEP + b"]" * DEEP,
    "deep_objects": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "duplicate_keys": b'{"a": 1, "a": 2}',
    "nan": b'{"a": NaN}',
    "infinity": b"[Infinity, -Infinity]",
    "negative_zero": b'{"a": -0}',
    "null": b"null",
    "array": b"[1, 2]",
    "string": b'"x"',
    "keyring_huge_ints": f'{{"keys": [{{"kty": "EC", "crv": "P-256", "x": {HUGE}, "y": 1}}]}}'.encode(),
    "keyring_wrong_shapes": b'{"agent://t": {"k1": [1, {"kty": null}]}, "keys": "x"}',
    "toml_huge_int": f"a = {HUGE}\n".encode(),
    "toml_deep": b"a = " + b"[" * DEEP + b"]" * DEEP,
    "toml_broken": b"[[[\n",
}


class World(NamedTuple):
    """Good files for every slot a command reads, so only the hostile one is at fault."""

    sign_keys: Path
    verify_keys: Path
    args: Path
    envelope: Path
    audit: Path
    root: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("world")
    names = ("sign.json", "verify.json", "args.json", "env.json")
    sign_keys, verify_keys, args, envelope = (root / n for n in names)
    keygen = ["keygen", "--alg", "ES256", "--iss", "agent://t", "--kid", "k1", "--out", str(sign_keys)]
    assert main([*keygen, "--public-out", str(verify_keys)]) == 0
    args.write_text('{"a": 1}')
    issuer = Issuer(Keyring.load(sign_keys), iss="agent://t", sub="u")
    signed = issuer.sign_plan([PlannedCall("t", {"a": 1}, SERVER)], intent="i")
    envelope.write_bytes(signed.to_json())
    audit = root / "audit.db"
    verifier = Verifier(Keyring.load(verify_keys), SERVER, replay_store=InMemoryReplayStore())
    verdict = verifier.verify(signed.to_json(), tool="t", arguments={"a": 1})
    with AuditLog(SQLiteAuditBackend(str(audit))) as log:
        log.append(verdict, tool="t", arguments={"a": 1}, envelope=signed.to_json())
    return World(sign_keys, verify_keys, args, envelope, audit, root)


def _sign(keys: Path, args: Path) -> list[str]:
    return ["sign", "--keys", str(keys), "--iss", "agent://t", "--sub", "u", "--intent", "i", "--tool", "t",
            "--args", str(args), "--server", SERVER]  # fmt: skip


def _verify(envelope: Path, keys: Path, args: Path, *extra: str) -> list[str]:
    return ["verify", str(envelope), "--keys", str(keys), "--server", SERVER, "--tool", "t",
            "--args", str(args), *extra]  # fmt: skip


Command = Callable[[World, Path], list[str]]
COMMANDS: dict[str, Command] = {
    "keygen --out": lambda w, f: ["keygen", "--alg", "ES256", "--iss", "agent://t", "--out", str(f)],
    "keygen --public-out": lambda w, f: [
        "keygen",
        "--alg",
        "HS256",
        "--iss",
        "agent://x",
        "--out",
        str(f.with_suffix(".new")),
        "--public-out",
        str(f),
    ],
    "sign --keys": lambda w, f: _sign(f, w.args),
    "sign --args": lambda w, f: _sign(w.sign_keys, f),
    "verify ENVELOPE": lambda w, f: _verify(f, w.verify_keys, w.args),
    "verify ENVELOPE --dialect vaara-v0": lambda w, f: _verify(
        f, w.verify_keys, w.args, "--dialect", "vaara-v0"
    ),
    "verify --keys": lambda w, f: _verify(w.envelope, f, w.args),
    "verify --args": lambda w, f: _verify(w.envelope, w.verify_keys, f),
    "verify --replay-db": lambda w, f: _verify(w.envelope, w.verify_keys, w.args, "--replay-db", str(f)),
    "canonicalize": lambda w, f: ["canonicalize", str(f)],
    "receipt verify RECEIPT": lambda w, f: ["receipt", "verify", str(f), "--keys", str(w.verify_keys)],
    "receipt verify --keys": lambda w, f: ["receipt", "verify", str(w.args), "--keys", str(f)],
    "receipt verify --result": lambda w, f: [
        "receipt",
        "verify",
        str(w.args),
        "--keys",
        str(w.verify_keys),
        "--result",
        str(f),
    ],
    "audit verify": lambda w, f: ["audit", "verify", str(f)],
    "audit verify --keys": lambda w, f: ["audit", "verify", str(w.audit), "--unsigned", "--keys", str(f)],
    "audit verify --checkpoint-keys": lambda w, f: [
        "audit",
        "verify",
        str(w.audit),
        "--checkpoint-keys",
        str(f),
    ],
    "audit verify --witness": lambda w, f: [
        "audit",
        "verify",
        str(w.audit),
        "--unsigned",
        "--witness",
        str(f),
    ],
    "audit prove URL": lambda w, f: ["audit", "prove", str(f), "1"],
    "audit consistency URL": lambda w, f: ["audit", "consistency", str(f), "1", "1"],
    "audit check-proof PROOF": lambda w, f: [
        "audit",
        "check-proof",
        str(f),
        "--checkpoint-keys",
        str(w.verify_keys),
    ],
    "audit check-proof --checkpoint-keys": lambda w, f: [
        "audit",
        "check-proof",
        str(w.args),
        "--checkpoint-keys",
        str(f),
    ],
    "audit export": lambda w, f: ["audit", "export", str(f)],
    "audit tail": lambda w, f: ["audit", "tail", str(f)],
    "gateway --config": lambda w, f: ["gateway", "--config", str(f)],
}


def _run(
    argv: list[str], capsys: pytest.CaptureFixture[bytes], caplog: pytest.LogCaptureFixture
) -> str | None:
    """None when the run kept the contract, else what went wrong.

    Logged tracebacks count too: outside pytest they reach stderr through
    logging's last-resort handler (the verifier logs its ``internal.error``).
    """
    caplog.clear()
    code = main(argv)
    err = capsys.readouterr().err.decode("utf-8", "replace")
    if code not in (0, 1, 2):
        return f"exit {code}"
    if "Traceback" in err or err.count("\n") > 1:
        return f"stderr: {err[:300]!r}"
    logged = [r.getMessage() for r in caplog.records if r.exc_info]
    return f"logged a traceback: {logged}" if logged else None


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_cli_command_prints_a_traceback_for_any_input_file(
    command: str, world: World, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    failures = []
    for name, data in HOSTILE.items():
        hostile = tmp_path / name
        hostile.write_bytes(data)
        problem = _run(COMMANDS[command](world, hostile), capsysbinary, caplog)
        if problem:
            failures.append(f"{name}: {problem}")
    assert not failures, failures


def _bundle_slots(source: Path, case: str, shared: tuple[str, ...]) -> tuple[Path, list[str]]:
    """A one-case copy of a conformance bundle, and every file the runner reads from it."""
    case_dir = source / case
    return case_dir, [*shared, *(f"case/{p.name}" for p in sorted(case_dir.iterdir()))]


@pytest.mark.parametrize(
    ("bundle", "case", "shared", "dialect"),
    [
        ("sep-2787/v1", "normative/negative/03-tampered-tool-name", ("keys/keyring.public.json",), "spec"),
        ("sep-2787-v0", "normative/negative/07-tampered-planner-declared", ("MANIFEST.json",), "vaara-v0"),
    ],
)
def test_vectors_run_never_crashes_on_a_hostile_bundle_file(
    bundle: str, case: str, shared: tuple[str, ...], dialect: str, tmp_path: Path,
    capsysbinary: pytest.CaptureFixture[bytes], caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    source = REPO / "conformance" / bundle
    case_dir, slots = _bundle_slots(source, case, shared)
    root = tmp_path / "bundle"
    shutil.copytree(source / "keys", root / "keys")
    for name in shared:
        if not (root / name).exists():
            shutil.copy(source / name, root / name)
    shutil.copytree(case_dir, root / "case")
    failures = []
    for slot in slots:
        original = (root / slot).read_bytes()
        for name, data in HOSTILE.items():
            (root / slot).write_bytes(data)
            problem = _run(["vectors", "run", str(root), "--dialect", dialect], capsysbinary, caplog)
            if problem:
                failures.append(f"{slot} <- {name}: {problem}")
        (root / slot).write_bytes(original)
    assert not failures, failures


def test_vaara_v0_projection_nested_past_the_stack_is_an_ordinary_projection() -> None:
    assert hash_only_projection("[" * DEEP + "]" * DEEP) is None
    assert hash_only_projection('{"digest": "sha256:ab"}') == "sha256:ab"


@pytest.mark.parametrize("text", ["[" * DEEP + "]" * DEEP, f'{{"attestationError": true, "n": {HUGE}}}'])
def test_client_reading_a_hostile_tool_result_is_not_a_rejection_and_does_not_crash(text: str) -> None:
    """A server's error text nested past the stack (RecursionError) or with a 5000-digit integer."""
    from mcp.types import CallToolResult, TextContent  # noqa: PLC0415 - the mcp extra

    from mcp_attest.mcp.client import parse_rejection  # noqa: PLC0415

    result = CallToolResult(content=[TextContent(type="text", text=text)], isError=True)
    assert parse_rejection(result) is None


def test_client_header_transport_skips_a_request_body_nested_past_the_stack() -> None:
    from mcp_attest.mcp.client import _attestation_in_body  # noqa: PLC0415 - the mcp extra

    assert _attestation_in_body(b"[" * DEEP + b"]" * DEEP) is None
    assert _attestation_in_body(b"not json") is None
