"""The vaara-v0 dialect reader against the PR #2789 bundle and hand-built v0 envelopes."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Literal

import pytest
import rfc8785

from mcp_attest import HS256Key, Keyring, Verifier, VerifierPolicy, encode_header
from mcp_attest.conformance.runner import run_v0
from mcp_attest.conformance.vaara_v0 import HASH_ONLY_URI, from_wire, sha256_tag, sign_v0, v0_verifier
from mcp_attest.envelope import MalformedEnvelopeError
from shared_paths import v0_vectors

V0 = v0_vectors()
ISS, KID, SERVER, NOW = "issuer://test", "v1", "sha256:" + "1" * 64, 1779796800.0
ARGS = {"path": "/srv/q2.pdf"}
RING = Keyring({ISS: {KID: HS256Key(KID, b"k" * 32)}})


def _need_v0() -> Path:
    if not V0.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{V0} is missing under CI")
        pytest.skip(f"{V0} not present on this machine")
    return V0


def test_every_normative_v0_case_gives_the_expected_result() -> None:
    rows = run_v0(_need_v0())
    normative = [r for r in rows if r.bucket.startswith("normative")]
    assert len(normative) == 10
    assert [r.case for r in normative if not r.ok] == []


def test_v0_policy_cases_report_our_decision_and_why() -> None:
    rows = {r.case: r for r in run_v0(_need_v0()) if r.bucket.startswith("verifier-policy")}
    assert all(r.ok for r in rows.values())
    assert "ttl.expired" in rows["verifier-policy/negative/10-ttl-expired-past-skew"].note
    assert "alg.not_allowed" in rows["verifier-policy/negative/11-unsupported-alg-hs512"].note
    assert (
        "malformed.no_commitment"
        in rows["verifier-policy/negative/12-args-commitment-missing-discriminator"].note
    )
    assert (
        "key.alg_mismatch" in rows["verifier-policy/negative/13-hs256-envelope-against-es256-verifier"].note
    )


def test_v0_byte_checks_catch_a_corrupted_signing_input(tmp_path: Path) -> None:
    copy_dir = tmp_path / "v0"
    shutil.copytree(_need_v0(), copy_dir)
    target = copy_dir / "normative/positive/01-hs256-projection-hash-only/canonical_signing_input.bin"
    target.chmod(0o644)
    target.write_bytes(target.read_bytes().replace(b"archive", b"Archive"))
    bad = [r for r in run_v0(copy_dir) if not r.ok]
    assert [r.case for r in bad] == ["normative/positive/01-hs256-projection-hash-only"]
    assert "our C1 bytes differ" in bad[0].note


def _body(args: dict[str, Any], **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": 1,
        "alg": "HS256",
        "issuerAsserted": {
            "alg": "HS256",
            "iss": ISS,
            "sub": "agent",
            "secretVersion": KID,
            "iat": "2026-05-26T12:00:00Z",
            "expSeconds": 300,
            "nonce": "n0_sep2787_v0_fixtures_pinned_",
        },
        "plannerDeclared": {"intent": "archive"},
        "payloadDerived": {"toolCalls": [{"name": "delete_file", "serverFingerprint": SERVER, "args": args}]},
    }
    body.update(over)
    return body


def _projection(value: Any) -> dict[str, str]:
    text = rfc8785.dumps(value).decode()
    return {"projection": text, "projectionDigest": sha256_tag(text.encode())}


Binding = Literal["spec", "strict"]


def _verify(
    envelope: Any, arguments: Any = ARGS, args_binding: Binding = "strict", **kw: Any
) -> dict[str, Any]:
    policy = VerifierPolicy(args_binding=args_binding)
    verifier = v0_verifier(RING, SERVER, clock=lambda: NOW, policy=policy)
    return verifier.verify(envelope, tool="delete_file", arguments=arguments, **kw).to_dict()


HASH_ONLY = _projection({"digest": sha256_tag(rfc8785.dumps(ARGS))})
REF = {"ref": "cid://x", "digest": sha256_tag(rfc8785.dumps(ARGS)), "canonicalization": "jcs"}


@pytest.mark.parametrize(
    ("args", "binding"),
    [
        (HASH_ONLY, "ref-digest"),
        (REF, "ref-digest"),
        (_projection(ARGS), "identity"),
        (_projection({"path": "<redacted>"}), "redacted"),
    ],
)
def test_v0_commitments_bind_like_the_spec(args: dict[str, str], binding: str) -> None:
    facts = _verify(sign_v0(_body(args), RING), args_binding="spec")
    assert (facts["accepted"], facts["argsBinding"]) == (True, binding)


def test_v0_redacted_projection_refused_by_default() -> None:
    facts = _verify(sign_v0(_body(_projection({"path": "<redacted>"})), RING))
    assert (facts["reason"], facts["detail"]) == ("args_commitment_mismatch", "args.not_bound")


def test_v0_hash_only_and_ref_reject_other_arguments() -> None:
    for args in (HASH_ONLY, REF):
        facts = _verify(sign_v0(_body(args), RING), {"path": "/etc/passwd"})
        assert (facts["reason"], facts["detail"]) == ("args_commitment_mismatch", "ref.digest_mismatch")


@pytest.mark.parametrize(
    ("mutate", "detail"),
    [
        (lambda b: b.update(version=2), "malformed.version"),
        (lambda b: b.update(alg="none"), "malformed.alg_conflict"),
        (lambda b: b.pop("version"), "malformed.missing_field"),
        (lambda b: b.update(payloadDerived=[]), "malformed.type"),
        (lambda b: b["payloadDerived"]["toolCalls"][0].pop("args"), "malformed.missing_field"),
        (lambda b: b["payloadDerived"]["toolCalls"][0].update(args="x"), "malformed.type"),
        (
            lambda b: b["payloadDerived"]["toolCalls"][0]["args"].update(projectionDigest="sha256:00"),
            "malformed.digest",
        ),
        (
            lambda b: b["payloadDerived"]["toolCalls"][0]["args"].update(projectionDigest=sha256_tag(b"x")),
            "malformed.projection_digest",
        ),
        (
            lambda b: b["payloadDerived"]["toolCalls"][0]["args"].pop("projectionDigest"),
            "malformed.missing_field",
        ),
        (lambda b: b["payloadDerived"]["toolCalls"][0]["args"].update(projection=7), "malformed.type"),
        (
            lambda b: b["payloadDerived"]["toolCalls"][0].update(args={"ref": "cid://x"}),
            "malformed.missing_field",
        ),
        (
            lambda b: b["payloadDerived"]["toolCalls"][0].update(args={**REF, "canonicalization": "c14n"}),
            "malformed.canonicalization",
        ),
        (lambda b: b["payloadDerived"]["toolCalls"][0].update(args={**REF, "digest": 5}), "malformed.type"),
        (lambda b: b["payloadDerived"]["toolCalls"][0].update(args={}), "malformed.no_commitment"),
    ],
)
def test_v0_schema_rejections(mutate: Any, detail: str) -> None:
    body = _body(_projection(ARGS))
    mutate(body)
    facts = _verify(json.dumps({**body, "signature": "0" * 64}).encode())
    assert (facts["reason"], facts["detail"]) == ("signature_invalid", detail)


def test_v0_unknown_fields_are_signed_and_listed() -> None:
    body = _body({**_projection(ARGS), "x-a": 1}, extra={"b": 2})
    body["plannerDeclared"]["ticket"] = "T-1"
    body["payloadDerived"]["toolCalls"][0]["x-c"] = True
    envelope = sign_v0(body, RING)
    facts = _verify(envelope)
    assert facts["accepted"]
    assert facts["unknownFields"] == [
        "/extra",
        "/payloadDerived/toolCalls/0/args/x-a",
        "/payloadDerived/toolCalls/0/x-c",
        "/plannerDeclared/ticket",
    ]
    tampered = copy.deepcopy(envelope)
    tampered["extra"]["b"] = 3
    assert _verify(tampered)["detail"] == "signature.mismatch"


def test_v0_transports_text_header_and_conflict() -> None:
    envelope = sign_v0(_body(_projection(ARGS)), RING)
    raw = json.dumps(envelope)
    from_text = v0_verifier(RING, SERVER, clock=lambda: NOW).verify(raw, tool="delete_file", arguments=ARGS)
    assert from_text.accepted
    header = encode_header(from_wire(envelope))
    assert _verify(None, header=header)["accepted"]
    assert _verify(envelope, header=header)["accepted"]
    other = sign_v0(_body(_projection({"path": "<r>"})), RING)
    assert _verify(other, header=header)["detail"] == "transport.conflict"
    assert _verify(None, header="+/=")["detail"] == "malformed.header"
    assert _verify("\ud800")["detail"] == "malformed.surrogate"
    assert _verify(b'{"a": NaN}')["detail"] == "malformed.non_finite"
    assert _verify([1])["detail"] == "malformed.not_object"


def test_v0_dialect_is_never_read_by_the_spec_verifier() -> None:
    envelope = sign_v0(_body(_projection(ARGS)), RING)
    verdict = Verifier(RING, SERVER, clock=lambda: NOW).verify(envelope, tool="delete_file", arguments=ARGS)
    assert not verdict.accepted and verdict.detail == "malformed.no_commitment"


def test_from_wire_refuses_non_objects_and_hash_only_uri_is_unresolvable() -> None:
    with pytest.raises(MalformedEnvelopeError):
        from_wire([])  # type: ignore[arg-type]
    env = from_wire(sign_v0(_body(HASH_ONLY), RING))
    ref = env.tool_calls[0].args_ref
    assert ref is not None and ref.uri == HASH_ONLY_URI and env.tool_calls[0].args_projection is None
    assert hashlib.sha256(env.signing_input()).hexdigest()
