"""Execution receipts (PROFILE section 9): signed by the server, checked offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcp_attest import (
    InMemoryReplayStore,
    Issuer,
    Keyring,
    ReceiptSigner,
    Verdict,
    Verifier,
    generate_key,
    result_digest,
    server_fingerprint,
    verify_receipt,
)
from mcp_attest.cli import main

FP = server_fingerprint("files", "test")
ARGS = {"path": "/tmp/x"}
RESULT: dict[str, Any] = {"content": [{"type": "text", "text": "deleted"}], "isError": False}


@pytest.fixture(params=["HS256", "ES256", "RS256"])
def server_ring(request: pytest.FixtureRequest) -> Keyring:
    return Keyring().with_key(FP, generate_key(request.param, "srv1"))


@pytest.fixture
def accepted() -> Verdict:
    ring = Keyring().with_key("agent://a", generate_key("HS256", "k1"))
    env = Issuer(ring, iss="agent://a", sub="u").sign(
        tool="delete", arguments=ARGS, server_fingerprint=FP, intent="tidy"
    )
    verdict = Verifier(ring, FP, replay_store=InMemoryReplayStore()).verify(
        env.to_json(), tool="delete", arguments=ARGS
    )
    assert verdict.accepted
    return verdict


def _public(ring: Keyring) -> Keyring:
    return Keyring.from_dict(ring.to_dict(private=False))


def test_receipt_signed_by_server_verifies_with_public_ring(server_ring: Keyring, accepted: Verdict) -> None:
    receipt = ReceiptSigner(server_ring, FP).sign(accepted, tool="delete", result=RESULT)
    assert receipt["attestationId"] == accepted.attestation_id
    assert receipt["resultDigest"] == result_digest(RESULT)
    check = verify_receipt(
        receipt, _public(server_ring), result=RESULT, attestation_id=accepted.attestation_id
    )
    assert check.accepted and check.problem is None


def test_receipt_result_digest_ignores_meta(server_ring: Keyring, accepted: Verdict) -> None:
    receipt = ReceiptSigner(server_ring, FP).sign(accepted, tool="delete", result=RESULT)
    with_meta = {**RESULT, "_meta": {"receipt": receipt}}
    assert verify_receipt(receipt, server_ring, result=with_meta).accepted


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("toolName", "other", "signature.mismatch"),
        ("isError", True, "signature.mismatch"),
        ("kid", "nope", "key.unknown"),
        ("alg", "HS512", "key.alg_mismatch"),
        ("isError", "no", "receipt.schema"),
        ("extra", 1, "receipt.schema"),
    ],
)
def test_receipt_tampering_is_detected(
    field: str, value: Any, problem: str, server_ring: Keyring, accepted: Verdict
) -> None:
    receipt = ReceiptSigner(server_ring, FP).sign(accepted, tool="delete", result=RESULT)
    receipt[field] = value
    assert verify_receipt(receipt, server_ring) == (False, problem)


def test_receipt_for_other_result_or_attestation_is_refused(server_ring: Keyring, accepted: Verdict) -> None:
    receipt = ReceiptSigner(server_ring, FP).sign(accepted, tool="delete", result=RESULT)
    other = {**RESULT, "isError": True}
    assert verify_receipt(receipt, server_ring, result=other).problem == "result.mismatch"
    assert verify_receipt(receipt, server_ring, attestation_id="0" * 64).problem == "attestation.mismatch"
    assert (
        verify_receipt(receipt, server_ring, result={"x": float("nan")}).problem
        == "result.not_canonicalizable"
    )


@pytest.mark.parametrize("junk", [None, [], "x", {"attestationId": 1}])
def test_receipt_garbage_never_raises(junk: Any, server_ring: Keyring) -> None:
    assert verify_receipt(junk, server_ring) == (False, "receipt.schema")


def test_receipt_only_for_attested_calls(server_ring: Keyring) -> None:
    unattested = Verdict(
        accepted=True, reason=None, detail="attestation.absent", verified_at=0.0, verifier_fingerprint=FP
    )
    with pytest.raises(ValueError, match="attested"):
        ReceiptSigner(server_ring, FP).sign(unattested, tool="t", result=RESULT)


def test_receipt_cli_exit_codes(
    tmp_path: Path, accepted: Verdict, capsys: pytest.CaptureFixture[str]
) -> None:
    ring = Keyring().with_key(FP, generate_key("ES256", "srv1"))
    keys = tmp_path / "server.json"
    ring.save(keys, private=False)
    receipt = ReceiptSigner(ring, FP).sign(accepted, tool="delete", result=RESULT)
    rpath, result_path = tmp_path / "receipt.json", tmp_path / "result.json"
    rpath.write_text(json.dumps(receipt))
    result_path.write_text(json.dumps(RESULT))
    assert main(["receipt", "verify", str(rpath), "--keys", str(keys), "--result", str(result_path)]) == 0
    assert "VALID" in capsys.readouterr().out
    receipt["toolName"] = "evil"
    rpath.write_text(json.dumps(receipt))
    assert main(["receipt", "verify", str(rpath), "--keys", str(keys), "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {"accepted": False, "problem": "signature.mismatch"}
    rpath.write_text("not json")
    assert main(["receipt", "verify", str(rpath), "--keys", str(keys)]) == 1
    result_path.write_text("[]")
    assert main(["receipt", "verify", str(rpath), "--keys", str(keys), "--result", str(result_path)]) == 2
    assert main(["receipt", "verify", str(rpath), "--keys", str(tmp_path / "none.json")]) == 2


def test_receipt_check_has_no_truth_value(server_ring: Keyring) -> None:
    check = verify_receipt({"not": "a receipt"}, server_ring)
    with pytest.raises(TypeError, match=r"\.accepted"):
        bool(check)
    assert (check.accepted, check.problem) == (False, "receipt.schema")
