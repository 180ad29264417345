"""PROFILE section 4: verification order and outcomes (V0-V12)."""

from __future__ import annotations

import base64
import copy
import hmac as hmac_module
import json
import logging
from typing import Any

import pytest
from _core_helpers import (
    ALGS,
    ARGS,
    ARGS_DIGEST,
    HS,
    IAT,
    ISS,
    KID,
    NOW,
    OTHER_SERVER,
    SERVER,
    TOOL,
    Clock,
    dumps,
    entry,
    jcs_text,
    reason_of,
    sign_wire,
    unsigned_wire,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_attest import (
    AttestationRejectedError,
    InMemoryReplayStore,
    Key,
    Keyring,
    Reason,
    SQLiteReplayStore,
    StoreUnavailableError,
    Verifier,
    VerifierPolicy,
    algorithms,
    encode_header,
    generate_key,
)
from mcp_attest.envelope import b64url_encode, signing_input
from mcp_attest.replay import replay_key
from mcp_attest.transport import MAX_HEADER_CHARS
from shared_paths import REASONS


def _verify(verifier: Verifier, wire: Any, *, tool: str = TOOL, args: Any = None, **kw: Any) -> Any:
    data = wire if isinstance(wire, bytes | str) or wire is None else dumps(wire)
    return verifier.verify(data, tool=tool, arguments=ARGS if args is None else args, **kw)


# -- V0 -------------------------------------------------------------------------


def test_v0_absent_attestation_when_required(verifier: Verifier) -> None:
    verdict = verifier.verify(None, tool=TOOL, arguments=ARGS)
    assert not verdict.accepted
    assert reason_of(verdict) == (Reason.ATTESTATION_REQUIRED, "attestation.absent")
    with pytest.raises(AttestationRejectedError) as info:
        verifier.require(tool=TOOL, arguments=ARGS)
    assert info.value.reason is Reason.ATTESTATION_REQUIRED


def test_v0_absent_attestation_when_optional(make_verifier: Any) -> None:
    verdict = make_verifier(required=False).verify(None, tool=TOOL, arguments=ARGS)
    assert verdict.accepted and verdict.reason is None
    assert verdict.detail == "attestation.absent"
    assert verdict.attestation_id is None and not verdict.attested


def test_v0_optional_server_still_verifies_a_present_attestation(
    make_verifier: Any, keys: dict[str, Key]
) -> None:
    verifier = make_verifier(required=False)
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    wire["signature"] = "0" * 64
    assert reason_of(_verify(verifier, wire)) == (Reason.SIGNATURE_INVALID, "signature.mismatch")


# -- V1 / V2 ordering -------------------------------------------------------------


def test_v1_schema_checked_before_key_lookup(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = sign_wire(unsigned_wire(HS, iss="https://unknown.test", exp=0), keys[HS])
    assert reason_of(_verify(verifier, wire)) == (Reason.SIGNATURE_INVALID, "malformed.exp_seconds")


def test_v1_malformed_verdict_carries_no_identity(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = sign_wire(unsigned_wire(HS, nonce="short"), keys[HS])
    verdict = _verify(verifier, wire)
    assert reason_of(verdict) == (Reason.SIGNATURE_INVALID, "malformed.nonce")
    assert (verdict.iss, verdict.sub, verdict.attestation_id, verdict.alg) == (None, None, None, None)


def test_v2_key_checked_before_signature(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = sign_wire(unsigned_wire(HS, kid="hs-unknown"), keys[HS])
    wire["signature"] = "0" * 64
    assert reason_of(_verify(verifier, wire)) == (Reason.KEY_UNAVAILABLE, "key.unknown")


# -- V3: tampering ------------------------------------------------------------------


@pytest.fixture(scope="module")
def alt_keys() -> dict[str, dict[str, Key]]:
    """Second keys of each algorithm: same issuer under kid 'alt', and another issuer under the same kid."""
    return {a: {"same-iss": generate_key(a, "alt"), "other-iss": generate_key(a, KID[a])} for a in ALGS}


@pytest.fixture
def tamper_verifier(verify_ring: Keyring, alt_keys: dict[str, dict[str, Key]], clock: Clock) -> Verifier:
    ring = verify_ring
    for a in ALGS:
        ring = ring.with_key(ISS[a], alt_keys[a]["same-iss"])
        ring = ring.with_key("https://alt.issuer.test/" + a, alt_keys[a]["other-iss"])
    return Verifier(ring, SERVER, replay_store=InMemoryReplayStore(), clock=clock)


def _full_wire(alg_name: str) -> dict[str, Any]:
    wire = unsigned_wire(
        alg_name,
        calls=[entry(projection=jcs_text(ARGS), ref={"uri": "urn:args:1", "digest": ARGS_DIGEST})],
        planner_extra={"requestedCapability": "files.read", "plannerRef": "plan-1", "ticket": {"id": 7}},
    )
    wire["ext"] = {"trace": "abc", "list": [1, 2]}
    return wire


def _mutations(alg_name: str) -> dict[str, Any]:
    other_nonce = b64url_encode(bytes(range(1, 33)))
    tc = ("payloadDerived", "toolCalls", 0)

    def setter(path: tuple[Any, ...], value: Any) -> Any:
        def apply(w: dict[str, Any]) -> None:
            target = w
            for p in path[:-1]:
                target = target[p]
            target[path[-1]] = value

        return apply

    def deleter(path: tuple[Any, ...]) -> Any:
        def apply(w: dict[str, Any]) -> None:
            target = w
            for p in path[:-1]:
                target = target[p]
            del target[path[-1]]

        return apply

    return {
        "sub": setter(("issuerAsserted", "sub"), "agent:admin"),
        "secretVersion": setter(("issuerAsserted", "secretVersion"), "alt"),
        "iss": setter(("issuerAsserted", "iss"), "https://alt.issuer.test/" + alg_name),
        "iat": setter(("issuerAsserted", "iat"), IAT.replace(":40Z", ":41Z")),
        "iat-spelling": setter(("issuerAsserted", "iat"), IAT.replace("Z", "+00:00")),
        "expSeconds": setter(("issuerAsserted", "expSeconds"), 301),
        "nonce": setter(("issuerAsserted", "nonce"), other_nonce),
        "intent": setter(("plannerDeclared", "intent"), "delete everything"),
        "requestedCapability": setter(("plannerDeclared", "requestedCapability"), "files.write"),
        "requestedCapability-removed": deleter(("plannerDeclared", "requestedCapability")),
        "plannerRef": setter(("plannerDeclared", "plannerRef"), "plan-2"),
        "planner-unknown": setter(("plannerDeclared", "ticket", "id"), 8),
        "name": setter((*tc, "name"), "delete_file"),
        "serverFingerprint": setter((*tc, "serverFingerprint"), OTHER_SERVER),
        "argsProjection": setter((*tc, "argsProjection"), '{"lines":10,"path":"/etc/shadow"}'),
        "argsRef-uri": setter((*tc, "argsRef", "uri"), "urn:args:2"),
        "argsRef-digest": setter((*tc, "argsRef", "digest"), "B" * 43),
        "argsRef-removed": deleter((*tc, "argsRef")),
        "entry-unknown-added": setter((*tc, "note"), "x"),
        "entry-added": lambda w: w["payloadDerived"]["toolCalls"].append(entry(name="delete_file")),
        "top-unknown-changed": setter(("ext", "list", 1), 3),
        "top-unknown-removed": deleter(("ext",)),
        "top-unknown-added": setter(("x-extra",), True),
        "block-unknown-added": setter(("issuerAsserted", "kid2"), "x"),
    }


TAMPER_CASES = [(a, m) for a in ALGS for m in _mutations(a)]


@pytest.mark.parametrize(("alg_name", "mutation"), TAMPER_CASES)
def test_v3_tampering_any_field_is_signature_invalid(
    tamper_verifier: Verifier, keys: dict[str, Key], alg_name: str, mutation: str
) -> None:
    signed = sign_wire(_full_wire(alg_name), keys[alg_name])
    assert _verify(Verifier(tamper_verifier.keyring, SERVER, clock=lambda: NOW), signed).accepted
    tampered = copy.deepcopy(signed)
    _mutations(alg_name)[mutation](tampered)
    assert tampered != signed
    verdict = _verify(tamper_verifier, tampered)
    assert reason_of(verdict) == (Reason.SIGNATURE_INVALID, "signature.mismatch")
    assert verdict.iss is None and verdict.sub is None  # nothing unauthenticated in the facts


@pytest.mark.parametrize("alg_name", ALGS)
def test_v3_tampered_signature_is_signature_invalid(
    verifier: Verifier, keys: dict[str, Key], alg_name: str
) -> None:
    signed = sign_wire(_full_wire(alg_name), keys[alg_name])
    for position in (0, len(signed["signature"]) // 2, -1):
        sig = list(signed["signature"])
        sig[position] = "1" if sig[position] != "1" else "2"
        verdict = _verify(verifier, dict(signed, signature="".join(sig)))
        assert reason_of(verdict) == (Reason.SIGNATURE_INVALID, "signature.mismatch")
    # a valid signature from a different envelope
    other = sign_wire(_full_wire(alg_name) | {"x": 1}, keys[alg_name])
    verdict = _verify(verifier, dict(signed, signature=other["signature"]))
    assert reason_of(verdict) == (Reason.SIGNATURE_INVALID, "signature.mismatch")


@pytest.mark.parametrize("alg_name", ALGS)
def test_v3_tampered_alg_is_key_unavailable(verifier: Verifier, keys: dict[str, Key], alg_name: str) -> None:
    signed = sign_wire(_full_wire(alg_name), keys[alg_name])
    for other in ALGS:
        if other == alg_name:
            continue
        tampered = copy.deepcopy(signed)
        tampered["issuerAsserted"]["alg"] = other
        verdict = _verify(verifier, tampered)
        # the signature length may no longer fit the claimed alg (E7) or the key is bound to another alg (K1)
        assert reason_of(verdict) in {
            (Reason.KEY_UNAVAILABLE, "key.alg_mismatch"),
            (Reason.SIGNATURE_INVALID, "malformed.signature_encoding"),
        }
        assert not verdict.accepted


def test_v3_hs256_uses_constant_time_compare(
    verifier: Verifier, keys: dict[str, Key], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac_module.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(algorithms.hmac, "compare_digest", spy)
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    assert _verify(verifier, wire).accepted
    assert (wire["signature"], wire["signature"]) in calls


# -- V4 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (-30.001, (Reason.EXPIRED, "ttl.not_yet_valid")),
        (-30, None),
        (0, None),
        (300, None),
        (330, None),
        (330.001, (Reason.EXPIRED, "ttl.expired")),
        (86400, (Reason.EXPIRED, "ttl.expired")),
        (-86400, (Reason.EXPIRED, "ttl.not_yet_valid")),
    ],
)
def test_v4_skew_boundaries_with_injected_clock(
    make_verifier: Any, clock: Clock, keys: dict[str, Key], offset: float, expected: Any
) -> None:
    wire = sign_wire(unsigned_wire(HS, exp=300), keys[HS])  # iat == NOW
    clock.now = NOW + offset
    verdict = _verify(make_verifier(), wire)
    if expected is None:
        assert verdict.accepted, verdict.detail
        assert verdict.verified_at == NOW + offset
    else:
        assert reason_of(verdict) == expected
        # the signature verified, so the identity facts are the verifier's
        assert verdict.iss == ISS[HS] and verdict.attestation_id is not None


def test_v4_configured_skew(make_verifier: Any, clock: Clock, keys: dict[str, Key]) -> None:
    wire = sign_wire(unsigned_wire(HS, exp=60), keys[HS])
    clock.now = NOW + 60 + 5
    assert reason_of(_verify(make_verifier(skew=0), wire)) == (Reason.EXPIRED, "ttl.expired")
    assert _verify(make_verifier(skew=5), wire).accepted


def test_v4_fractional_iat(make_verifier: Any, clock: Clock, keys: dict[str, Key]) -> None:
    wire = sign_wire(unsigned_wire(HS, iat=IAT.replace("Z", ".5Z"), exp=10), keys[HS])
    clock.now = NOW + 0.5 + 10 + 30
    assert _verify(make_verifier(), wire).accepted
    clock.now += 0.01
    assert reason_of(_verify(make_verifier(), wire)) == (Reason.EXPIRED, "ttl.expired")


def test_v4_time_checked_before_server_and_tool(
    make_verifier: Any, clock: Clock, keys: dict[str, Key]
) -> None:
    wire = sign_wire(unsigned_wire(HS, calls=[entry(server=OTHER_SERVER)]), keys[HS])
    clock.now = NOW + 10_000
    assert reason_of(_verify(make_verifier(), wire, tool="nope")) == (Reason.EXPIRED, "ttl.expired")


# -- V5 -------------------------------------------------------------------------


def test_v5_server_not_in_plan(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = sign_wire(unsigned_wire(HS, calls=[entry(server=OTHER_SERVER)]), keys[HS])
    assert reason_of(_verify(verifier, wire)) == (Reason.SERVER_MISMATCH, "server.not_in_plan")


def test_v5_server_match_is_exact(verifier: Verifier, keys: dict[str, Key]) -> None:
    for server in (SERVER.upper(), SERVER + " ", SERVER[:-1]):
        wire = sign_wire(unsigned_wire(HS, calls=[entry(server=server)]), keys[HS])
        assert reason_of(_verify(verifier, wire)) == (Reason.SERVER_MISMATCH, "server.not_in_plan")


@pytest.mark.parametrize("multi_server", [True, False])
def test_v5_multi_server_plan_with_policy(
    make_verifier: Any, keys: dict[str, Key], multi_server: bool
) -> None:
    plan = [entry(server=OTHER_SERVER, name="send_mail"), entry()]
    wire = sign_wire(unsigned_wire(HS, calls=plan), keys[HS])
    verdict = _verify(make_verifier(multi_server=multi_server), wire)
    if multi_server:
        assert verdict.accepted and verdict.tool_call_index == 1
    else:
        assert reason_of(verdict) == (Reason.SERVER_MISMATCH, "server.multi_server_plan")


@pytest.mark.parametrize("multi_server", [True, False])
def test_v5_single_server_plan_with_several_entries_under_either_policy(
    make_verifier: Any, keys: dict[str, Key], multi_server: bool
) -> None:
    plan = [entry(name="list_dir"), entry()]
    wire = sign_wire(unsigned_wire(HS, calls=plan), keys[HS])
    verdict = _verify(make_verifier(multi_server=multi_server), wire)
    assert verdict.accepted and verdict.tool_call_index == 1


@pytest.mark.parametrize("multi_server", [True, False])
def test_v5_multi_server_plan_not_naming_this_server(
    make_verifier: Any, keys: dict[str, Key], multi_server: bool
) -> None:
    plan = [entry(server=OTHER_SERVER), entry(server="sha256:" + "2" * 64)]
    wire = sign_wire(unsigned_wire(HS, calls=plan), keys[HS])
    verdict = _verify(make_verifier(multi_server=multi_server), wire)
    assert reason_of(verdict) == (Reason.SERVER_MISMATCH, "server.not_in_plan")


# -- V6 -------------------------------------------------------------------------


def test_v6_tool_not_in_plan(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    assert reason_of(_verify(verifier, wire, tool="delete_file")) == (
        Reason.TOOL_MISMATCH,
        "tool.not_in_plan",
    )
    assert reason_of(_verify(verifier, wire, tool=TOOL.upper())) == (Reason.TOOL_MISMATCH, "tool.not_in_plan")


def test_v6_tool_planned_only_for_another_server(verifier: Verifier, keys: dict[str, Key]) -> None:
    plan = [entry(name="list_dir"), entry(name=TOOL, server=OTHER_SERVER)]
    wire = sign_wire(unsigned_wire(HS, calls=plan), keys[HS])
    assert reason_of(_verify(verifier, wire)) == (Reason.TOOL_MISMATCH, "tool.not_in_plan")


def test_v6_tool_checked_before_replay_and_arguments(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    assert _verify(verifier, wire).accepted
    verdict = _verify(verifier, wire, tool="other", args={"x": 1})
    assert reason_of(verdict) == (Reason.TOOL_MISMATCH, "tool.not_in_plan")


# -- V7 / V8 / V9 -------------------------------------------------------------------


class SpyStore:
    """Wraps a store and records every call."""

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner or InMemoryReplayStore()
        self.reads: list[bytes] = []
        self.claims: list[tuple[bytes, float]] = []

    def is_claimed(self, key: bytes, now: float) -> bool:
        self.reads.append(key)
        return bool(self.inner.is_claimed(key, now))

    def claim(self, key: bytes, expires_at: float, now: float) -> bool:
        self.claims.append((key, expires_at))
        return bool(self.inner.claim(key, expires_at, now))


def test_v7_replayed_envelope_is_nonce_replay(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    first = _verify(verifier, wire)
    assert first.accepted
    second = _verify(verifier, wire)
    assert reason_of(second) == (Reason.NONCE_REPLAY, "nonce.replayed")
    assert second.attestation_id == first.attestation_id


def test_v7_replay_detected_before_argument_check(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    assert _verify(verifier, wire).accepted
    verdict = _verify(verifier, wire, args={"path": "/etc/shadow"})
    assert reason_of(verdict) == (Reason.NONCE_REPLAY, "nonce.replayed")


def test_v7_is_a_read_and_v8_failure_does_not_burn_the_nonce(
    make_verifier: Any, keys: dict[str, Key]
) -> None:
    store = SpyStore()
    verifier = make_verifier(store=store, args_binding="strict")
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    bad = _verify(verifier, wire, args={"path": "/etc/shadow"})
    assert reason_of(bad) == (Reason.ARGS_COMMITMENT_MISMATCH, "args.not_bound")
    assert len(store.reads) == 1 and store.claims == []
    good = _verify(verifier, wire)
    assert good.accepted and len(store.claims) == 1


@pytest.mark.parametrize(
    ("reason_case", "mutate"),
    [
        ("expired", lambda w: w["issuerAsserted"].update(iat="2020-01-01T00:00:00Z")),
        ("server", lambda w: w["payloadDerived"]["toolCalls"][0].update(serverFingerprint=OTHER_SERVER)),
        ("tool", lambda w: w["payloadDerived"]["toolCalls"][0].update(name="other")),
    ],
)
def test_v7_earlier_rejections_never_touch_the_store(
    make_verifier: Any, keys: dict[str, Key], reason_case: str, mutate: Any
) -> None:
    store = SpyStore()
    wire = unsigned_wire(HS)
    mutate(wire)
    verdict = _verify(make_verifier(store=store), sign_wire(wire, keys[HS]))
    assert not verdict.accepted
    assert store.reads == [] and store.claims == []


def test_v8_arguments_differ_from_the_bound_commitment(make_verifier: Any, keys: dict[str, Key]) -> None:
    wire = sign_wire(unsigned_wire(HS, calls=[entry(ref={"uri": "urn:x", "digest": ARGS_DIGEST})]), keys[HS])
    verdict = _verify(make_verifier(), wire, args={"path": "/etc/shadow", "lines": 10})
    assert reason_of(verdict) == (Reason.ARGS_COMMITMENT_MISMATCH, "ref.digest_mismatch")
    assert verdict.iss == ISS[HS]


def test_v9_lost_race_is_nonce_replay_without_retry(make_verifier: Any, keys: dict[str, Key]) -> None:
    class LosingStore(SpyStore):
        def claim(self, key: bytes, expires_at: float, now: float) -> bool:
            self.claims.append((key, expires_at))
            return False

    store = LosingStore()
    plan = [entry(), entry()]  # a second unclaimed entry exists, but the verifier does not retry
    wire = sign_wire(unsigned_wire(HS, calls=plan), keys[HS])
    verdict = _verify(make_verifier(store=store), wire)
    assert reason_of(verdict) == (Reason.NONCE_REPLAY, "nonce.race")
    assert len(store.claims) == 1


def test_v9_claim_expiry_and_accepted_facts(make_verifier: Any, keys: dict[str, Key]) -> None:
    store = SpyStore()
    wire = sign_wire(unsigned_wire(HS, exp=120), keys[HS])
    verdict = _verify(make_verifier(store=store), wire)
    assert verdict.accepted
    assert store.claims == [(replay_key(ISS[HS], wire["issuerAsserted"]["nonce"], 0), NOW + 120 + 30)]
    facts = verdict.to_dict()
    assert facts["accepted"] is True and facts["reason"] is None and facts["detail"] is None
    assert (facts["iss"], facts["sub"], facts["secretVersion"], facts["alg"]) == (
        ISS[HS],
        "agent:tester",
        KID[HS],
        HS,
    )
    assert facts["toolCallIndex"] == 0 and facts["argsBinding"] == "identity"
    assert facts["verifierFingerprint"] == SERVER
    assert facts["verifiedAt"] == "2026-05-28T20:26:40.000Z"


# -- V10 ------------------------------------------------------------------------


def test_v10_error_text_shape(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    verdict = _verify(verifier, wire, tool="nope")
    body = json.loads(verdict.error_text())
    assert body == {"attestationError": True, "reason": "tool_mismatch", "detail": "tool.not_in_plan"}
    hidden = json.loads(verdict.error_text(include_detail=False))
    assert hidden == {"attestationError": True, "reason": "tool_mismatch", "detail": None}


def test_v10_policy_include_detail_flag() -> None:
    assert VerifierPolicy().include_detail is True
    assert VerifierPolicy(include_detail=False).include_detail is False


def test_v10_reason_is_always_one_of_the_eight() -> None:
    assert {r.value for r in Reason} == REASONS


# -- V11 ------------------------------------------------------------------------


def test_v11_header_alone_is_accepted(verifier: Verifier, hs_issuer: Any) -> None:
    env = hs_issuer.sign(tool=TOOL, arguments=ARGS, server_fingerprint=SERVER, intent="x")
    header = encode_header(env)
    assert "=" not in header and "+" not in header and "/" not in header
    verdict = verifier.verify(None, tool=TOOL, arguments=ARGS, header=header)
    assert verdict.accepted


def test_v11_header_is_base64url_of_jcs(hs_issuer: Any) -> None:
    env = hs_issuer.sign(tool=TOOL, arguments=ARGS, server_fingerprint=SERVER, intent="x")
    header = encode_header(env)
    raw = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
    assert raw == env.to_json() == jcs_text(env.to_wire()).encode()


def test_v11_header_and_meta_must_agree(verifier: Verifier, hs_issuer: Any) -> None:
    one = hs_issuer.sign(tool=TOOL, arguments=ARGS, server_fingerprint=SERVER, intent="one")
    two = hs_issuer.sign(tool=TOOL, arguments=ARGS, server_fingerprint=SERVER, intent="two")
    verdict = verifier.verify(one.to_wire(), tool=TOOL, arguments=ARGS, header=encode_header(two))
    assert reason_of(verdict) == (Reason.SIGNATURE_INVALID, "transport.conflict")
    # the same envelope in both, even spelled differently in _meta, is fine
    pretty = json.dumps(one.to_wire(), indent=2).encode()
    assert verifier.verify(pretty, tool=TOOL, arguments=ARGS, header=encode_header(one)).accepted


def test_v11_conflict_checked_before_the_signature(verifier: Verifier, hs_issuer: Any) -> None:
    one = hs_issuer.sign(tool=TOOL, arguments=ARGS, server_fingerprint=SERVER, intent="one")
    forged = one.to_wire()
    forged["plannerDeclared"]["intent"] = "forged"
    verdict = verifier.verify(forged, tool=TOOL, arguments=ARGS, header=encode_header(one))
    assert reason_of(verdict) == (Reason.SIGNATURE_INVALID, "transport.conflict")


@pytest.mark.parametrize(
    "header",
    ["abc=", "a+b/", "%%%", "A" * 5, "A" * (MAX_HEADER_CHARS + 1), "é"],
    ids=["padded", "std-alphabet", "junk", "len-mod-4", "too-long", "non-ascii"],
)
def test_v11_bad_header_value_is_malformed(verifier: Verifier, header: str) -> None:
    verdict = verifier.verify(None, tool=TOOL, arguments=ARGS, header=header)
    assert reason_of(verdict) == (Reason.SIGNATURE_INVALID, "malformed.header")


def test_v11_header_at_64_kib_is_allowed_and_content_still_strict(verifier: Verifier) -> None:
    # 48 KiB of bytes is 64 KiB of base64url: the header limit, carrying a top-level array
    payload = b"[" + b"0," * 24574 + b"0 ]"
    header = b64url_encode(payload)
    assert len(header) == MAX_HEADER_CHARS
    verdict = verifier.verify(None, tool=TOOL, arguments=ARGS, header=header)
    assert reason_of(verdict) == (Reason.SIGNATURE_INVALID, "malformed.not_object")


def test_v11_header_carrying_a_duplicate_key(verifier: Verifier, hs_issuer: Any) -> None:
    env = hs_issuer.sign(tool=TOOL, arguments=ARGS, server_fingerprint=SERVER, intent="x")
    data = b'{"x":1,"x":2,' + env.to_json()[1:]
    verdict = verifier.verify(None, tool=TOOL, arguments=ARGS, header=b64url_encode(data))
    assert reason_of(verdict) == (Reason.SIGNATURE_INVALID, "malformed.duplicate_key")


def test_v11_header_whitespace_is_trimmed(verifier: Verifier, hs_issuer: Any) -> None:
    env = hs_issuer.sign(tool=TOOL, arguments=ARGS, server_fingerprint=SERVER, intent="x")
    assert verifier.verify(None, tool=TOOL, arguments=ARGS, header=" " + encode_header(env) + " ").accepted


# -- V12 ------------------------------------------------------------------------


class BrokenStore:
    def __init__(self, exc: BaseException, *, on: str) -> None:
        self.exc, self.on = exc, on
        self.inner = InMemoryReplayStore()

    def is_claimed(self, key: bytes, now: float) -> bool:
        if self.on == "read":
            raise self.exc
        return self.inner.is_claimed(key, now)

    def claim(self, key: bytes, expires_at: float, now: float) -> bool:
        if self.on == "claim":
            raise self.exc
        return self.inner.claim(key, expires_at, now)


@pytest.mark.parametrize("on", ["read", "claim"])
def test_v12_store_unavailable_fails_closed_as_nonce_replay(
    make_verifier: Any, keys: dict[str, Key], on: str, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = make_verifier(store=BrokenStore(StoreUnavailableError("redis down"), on=on))
    with caplog.at_level(logging.ERROR, logger="mcp_attest.verifier"):
        verdict = _verify(verifier, sign_wire(unsigned_wire(HS), keys[HS]))
    assert reason_of(verdict) == (Reason.NONCE_REPLAY, "store.unavailable")
    assert "redis down" in caplog.text


@pytest.mark.parametrize("on", ["read", "claim"])
@pytest.mark.parametrize("exc", [RuntimeError("bug"), KeyError("k"), ConnectionError("reset")])
def test_v12_store_raising_anything_else_is_rejected_not_raised(
    make_verifier: Any, keys: dict[str, Key], on: str, exc: Exception
) -> None:
    verifier = make_verifier(store=BrokenStore(exc, on=on))
    verdict = _verify(verifier, sign_wire(unsigned_wire(HS), keys[HS]))
    assert not verdict.accepted
    # V12: any fault of the replay store fails closed as store.unavailable
    assert reason_of(verdict) == (Reason.NONCE_REPLAY, "store.unavailable")


def test_v12_unreachable_sqlite_store_is_store_unavailable(
    make_verifier: Any, keys: dict[str, Key], tmp_path: Any
) -> None:
    store = SQLiteReplayStore(tmp_path / "missing-dir" / "replay.db")
    verdict = _verify(make_verifier(store=store), sign_wire(unsigned_wire(HS), keys[HS]))
    assert reason_of(verdict) == (Reason.NONCE_REPLAY, "store.unavailable")


def test_v12_full_in_memory_store_fails_closed(make_verifier: Any, hs_issuer: Any) -> None:
    verifier = make_verifier(store=InMemoryReplayStore(max_entries=2))
    verdicts = [
        verifier.verify(
            hs_issuer.sign(tool=TOOL, arguments=ARGS, server_fingerprint=SERVER, intent="x").to_json(),
            tool=TOOL,
            arguments=ARGS,
        )
        for _ in range(3)
    ]
    assert [v.accepted for v in verdicts] == [True, True, False]
    assert reason_of(verdicts[2]) == (Reason.NONCE_REPLAY, "store.unavailable")


def test_v12_configuration_errors_surface_at_construction(verify_ring: Keyring) -> None:
    with pytest.raises(ValueError, match="server_fingerprint"):
        Verifier(verify_ring, "")
    for bad in ({"skew": -1}, {"skew": 301}, {"max_ttl": 0}, {"args_binding": "lenient"}):
        with pytest.raises(ValueError):
            VerifierPolicy(**bad)


def test_v12_require_raises_typed_exception_with_verdict(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    assert verifier.require(dumps(wire), tool=TOOL, arguments=ARGS).accepted
    with pytest.raises(AttestationRejectedError) as info:
        verifier.require(dumps(wire), tool=TOOL, arguments=ARGS)
    assert (info.value.reason, info.value.detail) == (Reason.NONCE_REPLAY, "nonce.replayed")
    assert info.value.verdict.attestation_id is not None


def test_verdict_has_no_truth_value(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = dumps(sign_wire(unsigned_wire(HS), keys[HS]))
    accepted, rejected = (verifier.verify(wire, tool=TOOL, arguments=ARGS) for _ in range(2))
    for verdict in (accepted, rejected):  # `if verdict:` must not pass a rejection, nor an acceptance
        with pytest.raises(TypeError, match=r"Verdict has no truth value: read its \.accepted field"):
            bool(verdict)
    assert (accepted.accepted, rejected.accepted) == (True, False)


@pytest.mark.parametrize(
    "envelope",
    [b"", b"\x00" * 10, "text", bytearray(b"{}"), {"issuerAsserted": None}, [], 42, object()],
)
def test_v12_odd_inputs_map_to_verdicts(verifier: Verifier, envelope: Any) -> None:
    verdict = verifier.verify(envelope, tool=TOOL, arguments=ARGS)
    assert not verdict.accepted and verdict.reason is Reason.SIGNATURE_INVALID
    assert verdict.detail is not None and verdict.detail.startswith("malformed.")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=15,
)
_V12 = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _check_verdict(verdict: Any) -> None:
    assert verdict.reason is None or verdict.reason.value in REASONS
    assert verdict.detail != "internal.error", "an input reached the internal-error fallback"


@_V12
@given(st.binary(max_size=400))
def test_v12_random_bytes_never_raise(verifier: Verifier, data: bytes) -> None:
    verdict = verifier.verify(data, tool=TOOL, arguments=ARGS)
    assert not verdict.accepted
    _check_verdict(verdict)


@_V12
@given(
    st.dictionaries(
        st.sampled_from(["issuerAsserted", "plannerDeclared", "payloadDerived", "signature", "x"]),
        _json_values,
    )
)
def test_v12_random_json_objects_never_raise(verifier: Verifier, obj: dict[str, Any]) -> None:
    for form in (obj, json.dumps(obj).encode()):
        verdict = verifier.verify(form, tool=TOOL, arguments=ARGS)
        assert not verdict.accepted
        _check_verdict(verdict)


@_V12
@given(st.data())
def test_v12_mutated_valid_envelopes_never_raise(
    make_verifier: Any, keys: dict[str, Key], data: st.DataObject
) -> None:
    alg_name = data.draw(st.sampled_from(ALGS))
    wire = _full_wire(alg_name)
    paths: list[tuple[Any, ...]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*path, i))

    walk(wire, ())
    path = data.draw(st.sampled_from(paths[1:]))
    value = data.draw(_json_values)
    target = wire
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value
    if data.draw(st.booleans()):
        wire = sign_wire(wire, keys[alg_name]) if _signable(wire) else wire
    args = data.draw(st.one_of(st.just(ARGS), _json_values.filter(lambda v: isinstance(v, dict))))
    verdict = make_verifier().verify(dumps(wire) if _signable(wire) else wire, tool=TOOL, arguments=args)
    _check_verdict(verdict)


def _signable(wire: Any) -> bool:
    try:
        dumps(wire)
        signing_input(wire)
    except (ValueError, TypeError):
        return False
    return True
