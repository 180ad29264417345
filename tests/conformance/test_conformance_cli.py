"""``mcp-attest vectors``: exit codes, output shape, and ``verify --dialect vaara-v0``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import rfc8785

from mcp_attest import HS256Key, Keyring
from mcp_attest.cli import main as cli_main
from mcp_attest.conformance.cli import main
from mcp_attest.conformance.vaara_v0 import sha256_tag, sign_v0
from shared_paths import v0_vectors

BUNDLE = Path(__file__).resolve().parents[2] / "conformance" / "sep-2787" / "v1"
V0 = v0_vectors()
CASE = "normative/positive/01-hs256-projection-identity"


def test_run_v1_exits_0_with_a_table_and_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(BUNDLE)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["case", "expected", "got", "ok"]
    assert f"{CASE}" in out and "MISMATCH" not in out and "\033[" not in out
    assert "summary: " in out and "all match" in out


def test_run_v0_dialect_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    if not V0.is_dir():
        pytest.skip("v0 bundle not present")
    assert main(["run", str(V0), "--dialect", "vaara-v0"]) == 0
    assert "verifier-policy/negative: 4/4 match" in capsys.readouterr().out


def test_run_exits_1_on_a_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(BUNDLE / "keys", bundle / "keys")
    shutil.copytree(BUNDLE / CASE, bundle / CASE)
    expected = json.loads((bundle / CASE / "expected.json").read_text())
    expected["argsBinding"] = "redacted"
    (bundle / CASE / "expected.json").write_text(json.dumps(expected))
    assert main(["run", str(bundle)]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "differs: argsBinding" in out and "1 MISMATCH" in out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["run"],
        ["run", "/nonexistent/bundle"],
        ["run", str(BUNDLE), "--dialect", "nope"],
        ["run", str(BUNDLE), "--dialect", "vaara-v0"],
        ["run", str(BUNDLE / "keys")],
    ],
)
def test_usage_errors_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_broken_case_files_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(BUNDLE / CASE, bundle / CASE)
    assert main(["run", str(bundle)]) == 2  # keyring missing
    shutil.copytree(BUNDLE / "keys", bundle / "keys")
    (bundle / CASE / "expected.json").write_text("{")
    assert main(["run", str(bundle)]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.fixture
def v0_files(tmp_path: Path) -> dict[str, Path]:
    ring = Keyring({"issuer://t": {"v1": HS256Key("v1", b"s" * 32)}})
    ring.save(tmp_path / "keys.json", private=True)
    args = {"path": "/a"}
    projection = rfc8785.dumps(args).decode()
    body = {
        "version": 1,
        "alg": "HS256",
        "issuerAsserted": {
            "alg": "HS256",
            "iss": "issuer://t",
            "sub": "s",
            "secretVersion": "v1",
            "iat": "2026-05-26T12:00:00Z",
            "expSeconds": 300,
            "nonce": "A" * 24,
        },
        "plannerDeclared": {"intent": "x"},
        "payloadDerived": {
            "toolCalls": [
                {
                    "name": "t",
                    "serverFingerprint": "srv",
                    "args": {"projection": projection, "projectionDigest": sha256_tag(projection.encode())},
                }
            ]
        },
    }
    (tmp_path / "env.json").write_text(json.dumps(sign_v0(body, ring)))
    (tmp_path / "args.json").write_text(json.dumps(args))
    (tmp_path / "other.json").write_text('{"path": "/b"}')
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf{}")
    return {p.stem: p for p in tmp_path.iterdir()}


def _verify_argv(files: dict[str, Path], args: str = "args", *extra: str) -> list[str]:
    return [
        "verify",
        str(files["env"]),
        "--keys",
        str(files["keys"]),
        "--server",
        "srv",
        "--tool",
        "t",
        "--args",
        str(files[args]),
        "--now",
        "2026-05-26T12:01:00Z",
        "--dialect",
        "vaara-v0",
        *extra,
    ]


def test_verify_v0_accepts_and_prints_json(
    v0_files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(_verify_argv(v0_files, "args", "--json")) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["accepted"] and facts["argsBinding"] == "identity"
    assert cli_main(_verify_argv(v0_files)) == 0
    assert capsys.readouterr().out.startswith("ACCEPTED")


def test_verify_v0_rejections_and_usage(
    v0_files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(_verify_argv(v0_files, "other", "--args-binding", "strict")) == 1
    assert "REJECTED args_commitment_mismatch" in capsys.readouterr().out
    db = str(v0_files["keys"].parent / "replay.db")
    assert cli_main(_verify_argv(v0_files, "args", "--replay-db", db)) == 0
    assert cli_main(_verify_argv(v0_files, "args", "--replay-db", db)) == 1
    for argv in (
        _verify_argv(v0_files, "bad"),
        _verify_argv(v0_files, "bom"),
        _verify_argv(v0_files, "args", "--skew", "999"),
        _verify_argv(v0_files, "args", "--now", "yesterday"),
        ["verify-v0", "--keys", str(v0_files["keys"]), "--server", "s", "--tool", "t", "--args", "x"],
        [
            "verify-v0",
            "/no/such/env",
            "--keys",
            str(v0_files["keys"]),
            "--server",
            "s",
            "--tool",
            "t",
            "--args",
            str(v0_files["args"]),
        ],
        _verify_argv(v0_files, "args", "--keys", str(v0_files["args"])),
    ):
        capsys.readouterr()
        assert main(argv) == 2, argv
        assert "Traceback" not in capsys.readouterr().err
