"""Huge integer tokens (issue 11 item 5): a C3/C2 refusal everywhere, never a crash.

An integer of a few hundred digits overflows a double (``OverflowError``);
one of more than 4300 digits trips Python's int-string conversion limit
(``ValueError``). Neither may escape a reader, the writer, the verifier or
the CLI.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _core_helpers import ARGS, HS, SERVER, TOOL, dumps, entry, reason_of, sign_wire, unsigned_wire

from mcp_attest import Key, Reason, Verifier
from mcp_attest.canonical import (
    CanonicalizationError,
    canonicalize,
    canonicalize_arguments,
    check_envelope_value,
    parse_arguments,
    parse_envelope_json,
)
from mcp_attest.cli import main
from mcp_attest.envelope import b64url_encode

ARGS_REFUSED = (Reason.ARGS_COMMITMENT_MISMATCH, "args.not_canonicalizable")
# 309 digits: the longest integer a double can hold; 310: the shortest that must
# overflow; 4301: one past Python's int-string limit; 100001: far past both.
DIGITS = (309, 310, 400, 4301, 100_001)


def _token(digits: int, *, negative: bool = False) -> str:
    return ("-" if negative else "") + "9" * digits


@pytest.fixture(params=["default", "unlimited"])
def int_limit(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run under Python's default int-string limit and with it switched off."""
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0 if request.param == "unlimited" else before)
    yield
    sys.set_int_max_str_digits(before)


@pytest.mark.usefixtures("int_limit")
@pytest.mark.parametrize("negative", [False, True])
@pytest.mark.parametrize("digits", DIGITS)
def test_huge_integer_token_in_arguments_is_not_canonicalizable(digits: int, negative: bool) -> None:
    token = _token(digits, negative=negative)
    with pytest.raises(CanonicalizationError) as caught:
        parse_arguments(f'{{"n": [{token}]}}'.encode())
    assert caught.value.detail == "args.not_canonicalizable"
    message = str(caught.value)
    assert "\n" not in message and len(message) < 120, message


@pytest.mark.usefixtures("int_limit")
@pytest.mark.parametrize("digits", [17, *DIGITS])
def test_huge_integer_token_in_envelope_is_malformed_int_range(digits: int) -> None:
    with pytest.raises(CanonicalizationError) as caught:
        parse_envelope_json(f'{{"a": {_token(digits)}}}'.encode())
    assert caught.value.detail in {"malformed.int_range", "malformed.too_large"}
    assert len(str(caught.value)) < 120


@pytest.mark.usefixtures("int_limit")
@pytest.mark.parametrize("digits", DIGITS)
def test_huge_python_int_is_refused_by_writer_and_envelope_check(digits: int) -> None:
    value = 10**digits - 1
    with pytest.raises(CanonicalizationError) as writer:
        canonicalize({"n": value})
    assert writer.value.detail == "canonical.int_range"
    with pytest.raises(CanonicalizationError) as args:
        canonicalize_arguments({"n": value})
    assert args.value.detail == "args.not_canonicalizable"
    with pytest.raises(CanonicalizationError) as envelope:
        check_envelope_value({"n": value})
    assert envelope.value.detail == "malformed.int_range"
    assert max(len(str(e.value)) for e in (writer, args, envelope)) < 120


def test_largest_exact_integers_still_canonicalize() -> None:
    """The fix refuses only what overflows: exact doubles written as integers still pass."""
    assert canonicalize(parse_arguments(b"[1152921504606847000, 1e308]")) == b"[1152921504606847000,1e+308]"
    assert canonicalize(10**20) == b"100000000000000000000"
    with pytest.raises(CanonicalizationError):
        parse_arguments(b"[9007199254740993]")  # JCS would write ...992: not exact


@pytest.mark.parametrize("digits", [400, 4301])
def test_huge_integer_in_arguments_is_a_c3_verdict(
    verifier: Verifier, keys: dict[str, Key], digits: int
) -> None:
    envelope = dumps(sign_wire(unsigned_wire(HS), keys[HS]))
    raw = f'{{"path": "/srv/report.txt", "lines": {_token(digits)}}}'.encode()
    assert reason_of(verifier.verify(envelope, tool=TOOL, arguments=raw)) == ARGS_REFUSED
    parsed = {**ARGS, "lines": 10**digits}
    assert reason_of(verifier.verify(envelope, tool=TOOL, arguments=parsed)) == ARGS_REFUSED


@pytest.mark.parametrize("digits", [400, 4301])
def test_huge_integer_in_projection_is_a_commitment_mismatch(
    verifier: Verifier, keys: dict[str, Key], digits: int
) -> None:
    projection = f'{{"path": "/srv/report.txt", "lines": {_token(digits)}}}'
    envelope = dumps(sign_wire(unsigned_wire(HS, calls=[entry(projection=projection)]), keys[HS]))
    verdict = verifier.verify(envelope, tool=TOOL, arguments=ARGS)
    assert reason_of(verdict) == (Reason.ARGS_COMMITMENT_MISMATCH, "projection.not_json")


@pytest.mark.parametrize("digits", [400, 4301])
def test_huge_integer_in_envelope_is_malformed_on_every_transport(
    verifier: Verifier, keys: dict[str, Key], digits: int
) -> None:
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    text = dumps(wire).decode().replace('"expSeconds":300', f'"expSeconds":{_token(digits)}')
    expected = (Reason.SIGNATURE_INVALID, "malformed.int_range")
    assert reason_of(verifier.verify(text.encode(), tool=TOOL, arguments=ARGS)) == expected
    assert reason_of(verifier.verify(text, tool=TOOL, arguments=ARGS)) == expected
    huge = {**wire, "issuerAsserted": {**wire["issuerAsserted"], "expSeconds": 10**digits}}
    assert reason_of(verifier.verify(huge, tool=TOOL, arguments=ARGS)) == expected
    header = b64url_encode(text.encode())
    assert reason_of(verifier.verify(header=header, tool=TOOL, arguments=ARGS)) == expected


@pytest.mark.parametrize("digits", [400, 4301])
def test_cli_canonicalize_huge_integer_exits_1_with_one_line(
    digits: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "doc.json"
    doc.write_text(f'{{"n": {_token(digits)}}}')
    assert main(["canonicalize", str(doc)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "args.not_canonicalizable" in captured.err
    assert len(captured.err) < 200


def test_cli_sign_and_verify_huge_integer_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ring, public = tmp_path / "ring.json", tmp_path / "public.json"
    argv = ["keygen", "--alg", "ES256", "--iss", "agent://t", "--kid", "k1", "--out", str(ring)]
    assert main([*argv, "--public-out", str(public)]) == 0
    good, huge = tmp_path / "good.json", tmp_path / "huge.json"
    good.write_text('{"n": 1}')
    huge.write_text(f'{{"n": {_token(4301)}}}')
    sign = ["sign", "--keys", str(ring), "--iss", "agent://t", "--sub", "u", "--intent", "i", "--tool", TOOL,
            "--server", SERVER]  # fmt: skip
    capsys.readouterr()
    assert main([*sign, "--args", str(huge)]) == 1
    refused = capsys.readouterr()
    assert refused.out == "" and refused.err.count("\n") == 1 and "args.not_canonicalizable" in refused.err
    assert main([*sign, "--args", str(good)]) == 0
    envelope = tmp_path / "env.json"
    envelope.write_text(capsys.readouterr().out)
    verify = ["verify", str(envelope), "--keys", str(public), "--server", SERVER, "--tool", TOOL]
    assert main([*verify, "--args", str(huge)]) == 1
    rejected = capsys.readouterr()
    assert "args_commitment_mismatch (args.not_canonicalizable)" in rejected.out
    assert rejected.err == ""


def test_console_script_canonicalize_huge_integer_one_line(tmp_path: Path) -> None:
    """Through the real entry point, where a logged or raised traceback would reach stderr."""
    doc = tmp_path / "doc.json"
    doc.write_text(f"[{_token(100_001)}]")
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_attest.cli", "canonicalize", str(doc)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.count("\n") == 1 and "args.not_canonicalizable" in proc.stderr
