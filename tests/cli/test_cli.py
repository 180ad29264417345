"""The CLI contract of docs/spec/CLI.md: one test per command and exit code."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mcp_attest import server_fingerprint
from mcp_attest.cli import main

SERVER = "sha256:" + "ab" * 32
NOW = "2026-11-25T12:00:00Z"


@pytest.fixture
def ring(tmp_path: Path) -> tuple[Path, Path]:
    sign, verify = tmp_path / "sign.json", tmp_path / "verify.json"
    code = main(
        [
            "keygen",
            "--alg",
            "ES256",
            "--iss",
            "agent://t",
            "--kid",
            "k1",
            "--out",
            str(sign),
            "--public-out",
            str(verify),
        ]
    )
    assert code == 0
    return sign, verify


@pytest.fixture
def args_file(tmp_path: Path) -> Path:
    p = tmp_path / "args.json"
    p.write_text('{"path": "/tmp/a.txt", "n": 3}')
    return p


def _sign_argv(sign: Path, args: Path, *, iss: str = "agent://t") -> list[str]:
    return ["sign", "--keys", str(sign), "--iss", iss, "--sub", "user:a", "--intent", "tidy up",
            "--tool", "delete", "--args", str(args), "--server", SERVER]  # fmt: skip


def _sign(capsys: pytest.CaptureFixture[str], sign: Path, args: Path, *extra: str) -> str:
    code = main([*_sign_argv(sign, args), "--now", NOW, *extra])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


@pytest.fixture
def env_file(
    ring: tuple[Path, Path], args_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Path:
    """An envelope signed over ``args_file`` (projection commitment), written to a file."""
    env = tmp_path / "env.json"
    env.write_text(_sign(capsys, ring[0], args_file))
    return env


def _verdict(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict[str, Any]]:
    """Run ``verify ... --json`` and return the exit code and the facts it printed."""
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def _verify(verify: Path, args: Path, *extra: str) -> list[str]:
    return [
        "verify",
        "--keys",
        str(verify),
        "--server",
        SERVER,
        "--tool",
        "delete",
        "--args",
        str(args),
        "--now",
        NOW,
        *extra,
    ]


def test_keygen_private_file_is_0600_and_public_ring_has_no_private_members(ring: tuple[Path, Path]) -> None:
    sign, verify = ring
    assert stat.S_IMODE(os.stat(sign).st_mode) == 0o600
    public = json.loads(verify.read_text())
    (jwk,) = public["issuers"]["agent://t"]["keys"]
    assert "d" not in jwk and jwk["kid"] == "k1" and jwk["alg"] == "ES256"
    private = json.loads(sign.read_text())
    assert "d" in private["issuers"]["agent://t"]["keys"][0]


def test_keygen_appends_for_rotation_and_signer_uses_newest(
    ring: tuple[Path, Path], args_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sign, verify = ring
    assert (
        main(
            [
                "keygen",
                "--alg",
                "HS256",
                "--iss",
                "agent://t",
                "--kid",
                "k2",
                "--out",
                str(sign),
                "--public-out",
                str(verify),
            ]
        )
        == 0
    )
    kids = [k["kid"] for k in json.loads(sign.read_text())["issuers"]["agent://t"]["keys"]]
    assert kids == ["k1", "k2"]
    assert stat.S_IMODE(os.stat(verify).st_mode) == 0o600  # HS256 secrets are secret in either ring
    capsys.readouterr()
    env = json.loads(_sign(capsys, sign, args_file))
    assert env["issuerAsserted"]["secretVersion"] == "k2"
    assert env["issuerAsserted"]["alg"] == "HS256"


def test_keygen_default_kid_is_date_based(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", "--alg", "HS256", "--iss", "i", "--out", str(tmp_path / "k.json")]) == 0
    kid = json.loads(capsys.readouterr().out)["kid"]
    assert kid[:2] == "20" and kid.endswith("Z")


def test_keygen_duplicate_kid_is_usage_error(
    ring: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    sign, _ = ring
    code = main(["keygen", "--alg", "ES256", "--iss", "agent://t", "--kid", "k1", "--out", str(sign)])
    assert code == 2
    assert "already has a key" in capsys.readouterr().err


def test_sign_then_verify_accepts_then_replay_db_rejects(
    ring: tuple[Path, Path],
    args_file: Path,
    env_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [*_verify(ring[1], args_file, "--replay-db", str(tmp_path / "replay.db")), str(env_file)]
    code, first = _verdict(capsys, argv)
    assert code == 0
    assert first["accepted"] is True and first["reason"] is None and first["argsBinding"] == "identity"
    code, second = _verdict(capsys, argv)
    assert code == 1
    assert (second["reason"], second["detail"]) == ("nonce_replay", "nonce.replayed")


def test_verify_without_replay_db_does_not_remember(
    ring: tuple[Path, Path], args_file: Path, env_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*_verify(ring[1], args_file), str(env_file)]) == 0
    assert main([*_verify(ring[1], args_file), str(env_file)]) == 0
    assert "ACCEPTED" in capsys.readouterr().out


def test_verify_json_has_every_section_7_fact(
    ring: tuple[Path, Path], args_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sign, verify = ring
    env = tmp_path / "env.json"
    env.write_text(_sign(capsys, sign, args_file, "--commit", "both"))
    assert main([*_verify(verify, args_file), str(env), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert set(facts) == {
        "accepted",
        "reason",
        "detail",
        "attestationId",
        "iss",
        "sub",
        "secretVersion",
        "alg",
        "toolCallIndex",
        "argsBinding",
        "verifiedAt",
        "verifierFingerprint",
        "unknownFields",
        "projectionBinding",
    }
    assert facts["argsBinding"] == "ref-digest" and facts["toolCallIndex"] == 0
    assert facts["projectionBinding"] == "identity"  # A4: recorded beside the deciding ref


def test_sign_header_and_verify_header_value(
    ring: tuple[Path, Path], args_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sign, verify = ring
    header = _sign(capsys, sign, args_file, "--header").strip()
    assert "{" not in header and "=" not in header
    assert main([*_verify(verify, args_file), "--header-value", header]) == 0


def test_verify_header_and_file_disagree_is_transport_conflict(
    ring: tuple[Path, Path], args_file: Path, env_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = _sign(capsys, ring[0], args_file, "--header").strip()
    code, facts = _verdict(capsys, [*_verify(ring[1], args_file), str(env_file), "--header-value", other])
    assert (code, facts["detail"]) == (1, "transport.conflict")


def test_verify_tampered_arguments_rejected_with_default_flags(
    ring: tuple[Path, Path], env_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = tmp_path / "evil.json"
    evil.write_text('{"path": "/etc/passwd", "n": 3}')
    code, facts = _verdict(capsys, [*_verify(ring[1], evil), str(env_file)])
    assert (code, facts["reason"], facts["detail"]) == (1, "args_commitment_mismatch", "args.not_bound")
    code, facts = _verdict(capsys, [*_verify(ring[1], evil, "--args-binding", "spec"), str(env_file)])
    assert (code, facts["argsBinding"]) == (0, "redacted")  # the draft's reading, opt-in: NOT bound


def test_verify_malformed_envelope_is_verdict_exit_1(
    ring: tuple[Path, Path], args_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = tmp_path / "env.json"
    env.write_bytes(b'{"a":1,"a":2}')
    code, facts = _verdict(capsys, [*_verify(ring[1], args_file), str(env)])
    assert (code, facts["reason"], facts["detail"]) == (1, "signature_invalid", "malformed.duplicate_key")


def test_verify_arguments_not_json_is_usage_error(
    ring: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, verify = ring
    bom = tmp_path / "bom.json"
    bom.write_bytes(b'\xef\xbb\xbf{"a":1}')
    env = tmp_path / "env.json"
    env.write_text("{}")
    assert main([*_verify(verify, bom), str(env)]) == 2
    assert "not JSON" in capsys.readouterr().err


@pytest.mark.parametrize("token", ["NaN", "-0", "9007199254740993"])
def test_verify_uncanonicalizable_arguments_are_a_verdict(
    token: str, ring: tuple[Path, Path], env_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(f'{{"path": "/tmp/a.txt", "n": {token}}}')
    code, facts = _verdict(capsys, [*_verify(ring[1], bad), str(env_file)])
    assert (code, facts["reason"], facts["detail"]) == (
        1,
        "args_commitment_mismatch",
        "args.not_canonicalizable",
    )


def test_verify_unusable_replay_db_is_verdict(
    ring: tuple[Path, Path],
    args_file: Path,
    env_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = str(tmp_path / "no" / "such" / "dir" / "r.db")
    code, facts = _verdict(capsys, [*_verify(ring[1], args_file, "--replay-db", db), str(env_file)])
    assert (code, facts["reason"], facts["detail"]) == (1, "nonce_replay", "store.unavailable")


@pytest.mark.parametrize(
    "argv_tail",
    [
        ["--keys", "/nonexistent.json"],
        ["--now", "yesterday"],
        ["--skew", "9999"],
    ],
)
def test_verify_usage_errors_exit_2(
    argv_tail: list[str],
    ring: tuple[Path, Path],
    args_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, verify = ring
    env = tmp_path / "env.json"
    env.write_text("{}")
    assert main([*_verify(verify, args_file), str(env), *argv_tail]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mcp-attest: ") and err.count("\n") == 1


def test_verify_needs_an_envelope(ring: tuple[Path, Path], args_file: Path) -> None:
    _, verify = ring
    assert main(_verify(verify, args_file)) == 2


def test_verify_bad_keyring_is_usage_error(
    args_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weak = tmp_path / "weak.json"
    weak.write_text(
        json.dumps({"issuers": {"i": {"keys": [{"kty": "oct", "kid": "k", "alg": "HS256", "k": "c2hvcnQ"}]}}})
    )
    env = tmp_path / "env.json"
    env.write_text("{}")
    assert (
        main(
            [
                "verify",
                str(env),
                "--keys",
                str(weak),
                "--server",
                SERVER,
                "--tool",
                "t",
                "--args",
                str(args_file),
            ]
        )
        == 2
    )
    assert "need >= 32" in capsys.readouterr().err


def test_sign_uncanonicalizable_arguments_exit_1_nothing_on_stdout(
    ring: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sign, _ = ring
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1, "a": 2}')
    code = main(_sign_argv(sign, bad))
    captured = capsys.readouterr()
    assert code == 1 and captured.out == "" and "args.not_canonicalizable" in captured.err


def test_sign_unknown_issuer_is_usage_error(
    ring: tuple[Path, Path], args_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sign, _ = ring
    code = main(_sign_argv(sign, args_file, iss="nobody"))
    assert code == 2 and "no keys for issuer" in capsys.readouterr().err


def test_sign_ref_commit_uses_data_uri(
    ring: tuple[Path, Path], args_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sign, _ = ring
    env = json.loads(_sign(capsys, sign, args_file, "--commit", "ref"))
    (entry,) = env["payloadDerived"]["toolCalls"]
    assert entry["argsRef"]["uri"].startswith("data:application/json;base64,")
    assert "argsProjection" not in entry


def test_canonicalize_writes_jcs_without_newline(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    doc = tmp_path / "d.json"
    doc.write_text('{"b": 1e20, "a": [1.0, "\\u00e9"], "c": 1152921504606847000}')
    assert main(["canonicalize", str(doc)]) == 0
    assert (
        capsysbinary.readouterr().out
        == '{"a":[1,"é"],"b":100000000000000000000,"c":1152921504606847000}'.encode()
    )


@pytest.mark.parametrize(
    "doc", ['{"a":1,"a":2}', '{"a":NaN}', '{"a":-0}', '"\\ud800"', "[9007199254740993]", "1e400", "nope"]
)
def test_canonicalize_refusals_exit_1(doc: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "d.json"
    path.write_text(doc)
    assert main(["canonicalize", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "refused" in captured.err


def test_canonicalize_missing_file_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["canonicalize", "/no/such/file.json"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_unknown_command_and_bad_flag_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert main(["keygen", "--alg", "HS512", "--iss", "i", "--out", "x"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_console_script_runs_without_traceback(tmp_path: Path) -> None:
    garbage = tmp_path / "g.json"
    garbage.write_bytes(os.urandom(256))
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_attest.cli", "canonicalize", str(garbage)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


def test_fingerprint_prints_the_default_derivation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fingerprint", "--name", "time", "--id", "prod-1"]) == 0
    assert capsys.readouterr().out == server_fingerprint("time", "prod-1") + "\n"
    assert main(["fingerprint", "--name", "time"]) == 0
    assert capsys.readouterr().out.strip() == server_fingerprint("time")


@pytest.mark.parametrize(
    "server", ["sha256:...", "time", "sha256:" + "AB" * 32, "sha256:" + "ab" * 31, "sha1:" + "ab" * 32]
)
def test_sign_refuses_a_server_that_is_not_a_fingerprint(
    server: str, ring: tuple[Path, Path], args_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _sign_argv(ring[0], args_file)
    argv[argv.index("--server") + 1] = server
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and "mcp-attest fingerprint" in captured.err
