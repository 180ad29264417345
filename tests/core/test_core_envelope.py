"""PROFILE section 1: envelope schema (E1-E8)."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any

import pytest
from _core_helpers import (
    ARGS,
    ARGS_DIGEST,
    HS,
    IAT,
    ISS,
    KID,
    NOW,
    SERVER,
    TOOL,
    Clock,
    dumps,
    entry,
    jcs_text,
    sign_wire,
    unsigned_wire,
)

from mcp_attest import Envelope, Issuer, Key, MalformedEnvelopeError, PlannedCall, Reason, Verifier
from mcp_attest.envelope import b64url_decode, b64url_encode, signing_input


def _verify(verifier: Verifier, wire: Any, *, args: Any = None, tool: str = TOOL) -> Any:
    data = wire if isinstance(wire, bytes) else dumps(wire)
    return verifier.verify(data, tool=tool, arguments=ARGS if args is None else args)


def _assert_malformed(verdict: Any, detail: str) -> None:
    assert not verdict.accepted
    assert verdict.reason is Reason.SIGNATURE_INVALID
    assert verdict.detail == detail


def _assert_accepted(verdict: Any) -> None:
    assert verdict.accepted, (verdict.reason, verdict.detail)
    assert verdict.reason is None and verdict.detail is None


def _delete(wire: dict[str, Any], path: tuple[Any, ...]) -> None:
    target = wire
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]


def _set(wire: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    target = wire
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


REF = {"uri": "urn:example:args", "digest": ARGS_DIGEST}
REQUIRED_PATHS = [
    ("issuerAsserted",),
    ("plannerDeclared",),
    ("payloadDerived",),
    ("signature",),
    ("issuerAsserted", "alg"),
    ("issuerAsserted", "iss"),
    ("issuerAsserted", "sub"),
    ("issuerAsserted", "secretVersion"),
    ("issuerAsserted", "iat"),
    ("issuerAsserted", "expSeconds"),
    ("issuerAsserted", "nonce"),
    ("plannerDeclared", "intent"),
    ("payloadDerived", "toolCalls"),
    ("payloadDerived", "toolCalls", 0, "name"),
    ("payloadDerived", "toolCalls", 0, "serverFingerprint"),
    ("payloadDerived", "toolCalls", 0, "argsRef", "uri"),
    ("payloadDerived", "toolCalls", 0, "argsRef", "digest"),
]


@pytest.fixture
def full_wire(keys: dict[str, Key]) -> dict[str, Any]:
    """A signed HS256 envelope using every optional field."""
    wire = unsigned_wire(
        HS,
        calls=[entry(projection=jcs_text(ARGS), ref=dict(REF))],
        planner_extra={"requestedCapability": "files.read", "plannerRef": "plan-7"},
    )
    return sign_wire(wire, keys[HS])


# -- E1 -------------------------------------------------------------------------


@pytest.mark.parametrize("path", REQUIRED_PATHS, ids=lambda p: "/".join(map(str, p)))
def test_e1_missing_required_field_is_malformed(
    verifier: Verifier, full_wire: dict[str, Any], path: tuple[Any, ...]
) -> None:
    _delete(full_wire, path)
    _assert_malformed(_verify(verifier, full_wire), "malformed.missing_field")


def test_e1_optional_fields_may_be_absent(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    assert "requestedCapability" not in wire["plannerDeclared"]
    _assert_accepted(_verify(verifier, wire))


def test_e1_full_envelope_with_every_optional_field_is_accepted(
    verifier: Verifier, full_wire: dict[str, Any]
) -> None:
    verdict = _verify(verifier, full_wire)
    _assert_accepted(verdict)
    assert verdict.unknown_fields == ()


@pytest.mark.parametrize("alg_value", [256, None, True, ["HS256"], {"a": "HS256"}])
def test_e1_alg_that_is_not_a_string_is_a_schema_error(
    verifier: Verifier, full_wire: dict[str, Any], alg_value: Any
) -> None:
    full_wire["issuerAsserted"]["alg"] = alg_value
    _assert_malformed(_verify(verifier, full_wire), "malformed.type")


@pytest.mark.parametrize("alg_value", ["HS512", "none", "hs256", "EdDSA"])
def test_e1_alg_string_outside_allowlist_is_key_unavailable_not_schema(
    verifier: Verifier, full_wire: dict[str, Any], alg_value: str
) -> None:
    full_wire["issuerAsserted"]["alg"] = alg_value
    verdict = _verify(verifier, full_wire)
    assert (verdict.reason, verdict.detail) == (Reason.KEY_UNAVAILABLE, "alg.not_allowed")


def test_e1_intent_must_be_non_empty(verifier: Verifier, full_wire: dict[str, Any]) -> None:
    full_wire["plannerDeclared"]["intent"] = ""
    _assert_malformed(_verify(verifier, full_wire), "malformed.empty")


@pytest.mark.parametrize(("count", "ok"), [(0, False), (1, True), (64, True), (65, False)])
def test_e1_tool_calls_must_have_1_to_64_entries(
    verifier: Verifier, keys: dict[str, Key], count: int, ok: bool
) -> None:
    wire = sign_wire(unsigned_wire(HS, calls=[entry() for _ in range(count)]), keys[HS])
    verdict = _verify(verifier, wire)
    if ok:
        _assert_accepted(verdict)
        assert verdict.tool_call_index == 0
    else:
        _assert_malformed(verdict, "malformed.tool_calls")


def test_e1_entry_needs_args_ref_or_projection(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = unsigned_wire(HS)
    del wire["payloadDerived"]["toolCalls"][0]["argsProjection"]
    _assert_malformed(_verify(verifier, sign_wire(wire, keys[HS])), "malformed.no_commitment")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("issuerAsserted",), "x"),
        (("plannerDeclared",), []),
        (("payloadDerived",), None),
        (("payloadDerived", "toolCalls"), {"0": {}}),
        (("payloadDerived", "toolCalls", 0), "read_file"),
        (("payloadDerived", "toolCalls", 0, "argsRef"), "urn:x"),
        (("issuerAsserted", "iss"), 7),
        (("issuerAsserted", "nonce"), ["a"]),
        (("plannerDeclared", "intent"), {"text": "x"}),
        (("plannerDeclared", "requestedCapability"), 1),
        (("payloadDerived", "toolCalls", 0, "argsProjection"), {"path": "/x"}),
        (("payloadDerived", "toolCalls", 0, "name"), None),
        (("signature",), 12),
    ],
    ids=lambda v: "/".join(map(str, v)) if isinstance(v, tuple) else None,
)
def test_e1_wrong_json_type_is_malformed_type(
    verifier: Verifier, full_wire: dict[str, Any], path: tuple[Any, ...], value: Any
) -> None:
    _set(full_wire, path, value)
    _assert_malformed(_verify(verifier, full_wire), "malformed.type")


# -- E2 -------------------------------------------------------------------------

STRING_PATHS = [
    ("issuerAsserted", "iss"),
    ("issuerAsserted", "sub"),
    ("issuerAsserted", "secretVersion"),
    ("issuerAsserted", "iat"),
    ("issuerAsserted", "nonce"),
    ("plannerDeclared", "intent"),
    ("plannerDeclared", "requestedCapability"),
    ("plannerDeclared", "plannerRef"),
    ("payloadDerived", "toolCalls", 0, "name"),
    ("payloadDerived", "toolCalls", 0, "serverFingerprint"),
    ("payloadDerived", "toolCalls", 0, "argsProjection"),
    ("payloadDerived", "toolCalls", 0, "argsRef", "uri"),
    ("payloadDerived", "toolCalls", 0, "argsRef", "digest"),
    ("signature",),
]


@pytest.mark.parametrize("path", STRING_PATHS, ids=lambda p: "/".join(map(str, p)))
def test_e2_empty_string_field_is_malformed(
    verifier: Verifier, full_wire: dict[str, Any], path: tuple[Any, ...]
) -> None:
    _set(full_wire, path, "")
    _assert_malformed(_verify(verifier, full_wire), "malformed.empty")


def test_e2_empty_unknown_field_is_not_checked(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = unsigned_wire(HS)
    wire["plannerDeclared"]["note"] = ""
    verdict = _verify(verifier, sign_wire(wire, keys[HS]))
    _assert_accepted(verdict)
    assert verdict.unknown_fields == ("/plannerDeclared/note",)


LIMITS = [
    (("issuerAsserted", "iss"), 512),
    (("issuerAsserted", "sub"), 512),
    (("issuerAsserted", "secretVersion"), 512),
    (("payloadDerived", "toolCalls", 0, "name"), 512),
    (("payloadDerived", "toolCalls", 0, "serverFingerprint"), 512),
    (("plannerDeclared", "intent"), 4096),
]


@pytest.mark.parametrize(
    ("path", "limit"), LIMITS, ids=lambda v: "/".join(map(str, v)) if isinstance(v, tuple) else str(v)
)
def test_e2_length_limits_in_utf8_bytes(
    verifier: Verifier, full_wire: dict[str, Any], path: tuple[Any, ...], limit: int
) -> None:
    at_limit = copy.deepcopy(full_wire)
    _set(at_limit, path, "a" * (limit - 2) + "é")  # exactly `limit` bytes
    Envelope.from_wire(at_limit)  # schema accepts it
    over = copy.deepcopy(full_wire)
    _set(over, path, "a" * (limit - 2) + "€")  # limit+1 bytes, limit-1 characters
    with pytest.raises(MalformedEnvelopeError) as info:
        Envelope.from_wire(over)
    assert info.value.detail == "malformed.too_long"
    _assert_malformed(_verify(verifier, over), "malformed.too_long")


def test_e2_nonce_limit_256(verifier: Verifier, full_wire: dict[str, Any]) -> None:
    full_wire["issuerAsserted"]["nonce"] = "A" * 256
    Envelope.from_wire(full_wire)
    full_wire["issuerAsserted"]["nonce"] = "A" * 257
    _assert_malformed(_verify(verifier, full_wire), "malformed.too_long")


def test_e2_accepted_identifiers_at_the_limit_verify(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = unsigned_wire(HS, intent="i" * 4094 + "ü")
    wire["issuerAsserted"]["sub"] = "s" * 512
    _assert_accepted(_verify(verifier, sign_wire(wire, keys[HS])))


def _padded_to(wire: dict[str, Any], size: int, key: Key) -> bytes:
    """Signed envelope whose compact JSON is exactly ``size`` bytes (padding in an unknown field)."""
    wire = copy.deepcopy(wire)
    wire["padding"] = ""
    signed = sign_wire(wire, key)
    base = len(dumps(signed))
    wire["padding"] = "p" * (size - base)
    data = dumps(sign_wire(wire, key))
    assert len(data) == size
    return data


def test_e2_envelope_of_exactly_64_kib_is_accepted(verifier: Verifier, keys: dict[str, Key]) -> None:
    data = _padded_to(unsigned_wire(HS), 64 * 1024, keys[HS])
    verdict = _verify(verifier, data)
    _assert_accepted(verdict)
    assert verdict.unknown_fields == ("/padding",)


def test_e2_envelope_of_64_kib_plus_one_is_malformed(verifier: Verifier, keys: dict[str, Key]) -> None:
    data = _padded_to(unsigned_wire(HS), 64 * 1024 + 1, keys[HS])
    _assert_malformed(_verify(verifier, data), "malformed.too_large")
    with pytest.raises(MalformedEnvelopeError) as info:
        Envelope.from_json(data)
    assert info.value.detail == "malformed.too_large"


def test_e2_parsed_object_over_64_kib_is_malformed(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = unsigned_wire(HS)
    wire["padding"] = "p" * (64 * 1024)
    verdict = verifier.verify(sign_wire(wire, keys[HS]), tool=TOOL, arguments=ARGS)
    _assert_malformed(verdict, "malformed.too_large")


def _nested(depth: int, inner: Any) -> Any:
    """``inner`` wrapped so that it sits at container depth ``depth`` inside an envelope."""
    value = inner
    for _ in range(depth - 2):  # the envelope itself is depth 1, its member value depth 2
        value = {"n": value}
    return value


@pytest.mark.parametrize("inner", [{}, [], {"leaf": 1}, ["leaf"], {"leaf": "x"}])
def test_e2_depth_64_is_accepted(verifier: Verifier, keys: dict[str, Key], inner: Any) -> None:
    wire = unsigned_wire(HS)
    wire["deep"] = _nested(64, inner)
    verdict = _verify(verifier, sign_wire(wire, keys[HS]))
    _assert_accepted(verdict)


@pytest.mark.parametrize("inner", [{}, [], {"leaf": 1}])
def test_e2_depth_65_is_malformed(verifier: Verifier, keys: dict[str, Key], inner: Any) -> None:
    wire = unsigned_wire(HS)
    wire["deep"] = _nested(65, inner)
    data = dumps(wire | {"signature": "0" * 64})
    _assert_malformed(_verify(verifier, data), "malformed.depth")
    # the same depth arriving as an already-parsed object (``_meta``)
    _assert_malformed(verifier.verify(json.loads(data), tool=TOOL, arguments=ARGS), "malformed.depth")


def test_e2_utf8_bom_is_malformed(verifier: Verifier, keys: dict[str, Key]) -> None:
    data = dumps(sign_wire(unsigned_wire(HS), keys[HS]))
    _assert_accepted(_verify(verifier, data))
    _assert_malformed(_verify(verifier, b"\xef\xbb\xbf" + data), "malformed.bom")


# -- E3 -------------------------------------------------------------------------

ACCEPTED_IAT = [
    "2026-05-28T20:26:40Z",
    "2026-05-28T20:26:40.5Z",
    "2026-05-28T20:26:40.123456789Z",
    "2026-05-28T20:26:40+00:00",
    "2026-05-28T20:26:40.000001+00:00",
    "2026-05-28T20:26:39Z",
    "2026-05-28T20:26:41Z",
]
REFUSED_IAT = [
    "2026-05-28T20:26:40+01:00",
    "2026-05-28T20:26:40-00:00",
    "2026-05-28T20:26:40+0000",
    "2026-05-28T20:26:40",
    "2026-05-28",
    "2026-05-28T20:26:60Z",
    "2016-12-31T23:59:60Z",
    "2026-05-28t20:26:40Z",
    "2026-05-28T20:26:40z",
    "2026-05-28 20:26:40Z",
    "2026-05-28T20:26:40.Z",
    "2026-05-28T20:26:40.1234567890Z",
    "2026-05-28T24:00:00Z",
    "2026-05-28T20:60:00Z",
    "2026-02-30T20:26:40Z",
    "2026-13-01T20:26:40Z",
    "2026-00-01T20:26:40Z",
    "2026-5-28T20:26:40Z",
    "26-05-28T20:26:40Z",
    " 2026-05-28T20:26:40Z",
    "2026-05-28T20:26:40Z ",
    "2026-05-28T20:26:40ZZ",
    "\u0662\u0660\u0662\u0666-05-28T20:26:40Z",
    "1780000000",
]


@pytest.mark.parametrize("iat", ACCEPTED_IAT)
def test_e3_accepted_iat_forms(verifier: Verifier, keys: dict[str, Key], iat: str) -> None:
    verdict = _verify(verifier, sign_wire(unsigned_wire(HS, iat=iat), keys[HS]))
    _assert_accepted(verdict)


@pytest.mark.parametrize("iat", REFUSED_IAT)
def test_e3_refused_iat_forms_are_malformed(verifier: Verifier, keys: dict[str, Key], iat: str) -> None:
    verdict = _verify(verifier, sign_wire(unsigned_wire(HS, iat=iat), keys[HS]))
    _assert_malformed(verdict, "malformed.iat")


def test_e3_iat_rejects_lowercase_t(verifier: Verifier, keys: dict[str, Key]) -> None:
    verdict = _verify(verifier, sign_wire(unsigned_wire(HS, iat=IAT.replace("T", "t")), keys[HS]))
    _assert_malformed(verdict, "malformed.iat")


def test_e3_issuer_emits_whole_seconds_with_z(signing_ring: Any) -> None:
    clock = Clock(NOW + 0.75)
    env = Issuer(signing_ring, iss=ISS[HS], sub="s", clock=clock).sign(
        tool=TOOL, arguments=ARGS, server_fingerprint=SERVER, intent="x"
    )
    assert env.issuer_asserted.iat == IAT
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", env.issuer_asserted.iat)


# -- E4 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        ("300.0", "malformed.float"),
        ("3e2", "malformed.float"),
        ("3E2", "malformed.float"),
        ("true", "malformed.exp_seconds"),
        ("false", "malformed.exp_seconds"),
        ("0", "malformed.exp_seconds"),
        ("-1", "malformed.exp_seconds"),
        ("3601", "malformed.exp_seconds"),
        ('"300"', "malformed.exp_seconds"),
        ("null", "malformed.exp_seconds"),
    ],
)
def test_e4_exp_seconds_refused_tokens(
    verifier: Verifier, keys: dict[str, Key], token: str, detail: str
) -> None:
    wire = sign_wire(unsigned_wire(HS, exp=12345), keys[HS])
    data = dumps(wire).replace(b'"expSeconds":12345', b'"expSeconds":' + token.encode())
    assert token.encode() in data
    _assert_malformed(_verify(verifier, data), detail)


@pytest.mark.parametrize("exp", [1, 300, 3600])
def test_e4_exp_seconds_in_range_is_accepted(verifier: Verifier, keys: dict[str, Key], exp: int) -> None:
    _assert_accepted(_verify(verifier, sign_wire(unsigned_wire(HS, exp=exp), keys[HS])))


def test_e4_exp_seconds_bounded_by_configured_max_ttl(make_verifier: Any, keys: dict[str, Key]) -> None:
    verifier = make_verifier(max_ttl=600)
    _assert_accepted(_verify(verifier, sign_wire(unsigned_wire(HS, exp=600), keys[HS])))
    verdict = _verify(verifier, sign_wire(unsigned_wire(HS, exp=601), keys[HS]))
    _assert_malformed(verdict, "malformed.exp_seconds")


def test_e4_float_exp_seconds_in_parsed_object_is_malformed(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    wire["issuerAsserted"]["expSeconds"] = 300.0
    _assert_malformed(verifier.verify(wire, tool=TOOL, arguments=ARGS), "malformed.float")
    wire["issuerAsserted"]["expSeconds"] = True
    _assert_malformed(verifier.verify(wire, tool=TOOL, arguments=ARGS), "malformed.exp_seconds")


# -- E5 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "nonce",
    [
        b64url_encode(bytes(15)),
        b64url_encode(bytes(32)) + "=",
        b64url_encode(b"\xfb\xff" * 16).replace("-", "+").replace("_", "/"),
        "A" * 21 + "!",
        "A" * 25,  # length % 4 == 1 is never base64
        "AAAA AAAA AAAA AAAA AAAA AAAA",
    ],
    ids=["15-bytes", "padded", "std-alphabet", "bang", "len-mod-4-is-1", "spaces"],
)
def test_e5_bad_nonce_is_malformed(verifier: Verifier, keys: dict[str, Key], nonce: str) -> None:
    verdict = _verify(verifier, sign_wire(unsigned_wire(HS, nonce=nonce), keys[HS]))
    _assert_malformed(verdict, "malformed.nonce")


def test_e5_nonce_of_16_bytes_is_accepted(verifier: Verifier, keys: dict[str, Key]) -> None:
    nonce = b64url_encode(b"\xff" * 16)
    _assert_accepted(_verify(verifier, sign_wire(unsigned_wire(HS, nonce=nonce), keys[HS])))


def test_e5_issuer_uses_32_fresh_random_bytes(hs_issuer: Issuer) -> None:
    nonces = {
        hs_issuer.sign(tool=TOOL, arguments=ARGS, server_fingerprint=SERVER, intent="x").issuer_asserted.nonce
        for _ in range(5)
    }
    assert len(nonces) == 5
    assert all(len(b64url_decode(n)) == 32 for n in nonces)


# -- E6 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "digest",
    ["A" * 42, "A" * 44, "A" * 42 + "=", "A" * 42 + "+", "A" * 42 + "/", "sha256:" + "a" * 36, "Ä" * 43],
)
def test_e6_bad_digest_is_malformed(verifier: Verifier, full_wire: dict[str, Any], digest: str) -> None:
    full_wire["payloadDerived"]["toolCalls"][0]["argsRef"]["digest"] = digest
    _assert_malformed(_verify(verifier, full_wire), "malformed.digest")


def test_e6_digest_of_43_base64url_chars_passes_schema(verifier: Verifier, keys: dict[str, Key]) -> None:
    content = jcs_text(ARGS).encode()
    digest = b64url_encode(hashlib.sha256(content).digest())
    assert len(digest) == 43
    wire = sign_wire(unsigned_wire(HS, calls=[entry(ref={"uri": "urn:x", "digest": digest})]), keys[HS])
    verdict = _verify(verifier, wire)
    _assert_accepted(verdict)
    assert verdict.args_binding == "ref-digest"


# -- E7 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alg_name", "make_bad"),
    [
        ("HS256", lambda s: s.upper()),
        ("HS256", lambda s: s[:-1]),
        ("HS256", lambda s: s + "0"),
        ("HS256", lambda s: s[:-1] + "g"),
        ("HS256", lambda s: "0x" + s[2:]),
        ("ES256", lambda s: s.upper()),
        ("ES256", lambda s: s[:-2]),
        ("ES256", lambda s: s + "00"),
        ("RS256", lambda s: s.upper()),
        ("RS256", lambda s: s[:-1] + "G"),
    ],
)
def test_e7_signature_encoding_is_malformed(
    verifier: Verifier, keys: dict[str, Key], alg_name: str, make_bad: Any
) -> None:
    wire = sign_wire(unsigned_wire(alg_name), keys[alg_name])
    wire["signature"] = make_bad(wire["signature"])
    _assert_malformed(_verify(verifier, wire), "malformed.signature_encoding")


def test_e7_uppercase_hex_is_malformed_even_when_the_value_is_right(
    verifier: Verifier, keys: dict[str, Key]
) -> None:
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    assert any(c in "abcdef" for c in wire["signature"])
    wire["signature"] = wire["signature"].upper()
    _assert_malformed(_verify(verifier, wire), "malformed.signature_encoding")


@pytest.mark.parametrize("delta", [-2, 2])
def test_e7_rs256_length_checked_against_key_in_v3(
    verifier: Verifier, keys: dict[str, Key], delta: int
) -> None:
    wire = sign_wire(unsigned_wire("RS256"), keys["RS256"])
    sig = wire["signature"]
    wire["signature"] = sig[:delta] if delta < 0 else sig + "00"
    verdict = _verify(verifier, wire)
    assert (verdict.reason, verdict.detail) == (Reason.SIGNATURE_INVALID, "signature.mismatch")


def test_e7_issuer_signatures_have_the_profile_lengths(issuer: Issuer, alg: str) -> None:
    env = issuer.sign(tool=TOOL, arguments=ARGS, server_fingerprint=SERVER, intent="x")
    assert re.fullmatch(r"[0-9a-f]+", env.signature)
    assert len(env.signature) == {"HS256": 64, "ES256": 128, "RS256": 512}[alg]


# -- E8 -------------------------------------------------------------------------


def _with_unknown_fields(wire: dict[str, Any]) -> dict[str, Any]:
    wire = copy.deepcopy(wire)
    wire["ext"] = {"nested": [1, {"x": None}]}
    wire["a/b"] = True
    wire["issuerAsserted"]["kid~hint"] = "x"
    wire["plannerDeclared"]["ticket"] = "T-1"
    wire["payloadDerived"]["trace"] = 5
    wire["payloadDerived"]["toolCalls"][0]["hint"] = "h"
    wire["payloadDerived"]["toolCalls"][0]["argsRef"] = {**REF, "mediaType": "application/json"}
    return wire


EXPECTED_POINTERS = (
    "/a~1b",
    "/ext",
    "/issuerAsserted/kid~0hint",
    "/payloadDerived/toolCalls/0/argsRef/mediaType",
    "/payloadDerived/toolCalls/0/hint",
    "/payloadDerived/trace",
    "/plannerDeclared/ticket",
)


def test_e8_unknown_fields_are_kept_signed_and_listed(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = _with_unknown_fields(unsigned_wire(HS, calls=[entry(projection=jcs_text(ARGS), ref=dict(REF))]))
    signed = sign_wire(wire, keys[HS])
    verdict = _verify(verifier, signed)
    _assert_accepted(verdict)
    assert verdict.unknown_fields == EXPECTED_POINTERS
    assert verdict.to_dict()["unknownFields"] == list(EXPECTED_POINTERS)
    env = Envelope.from_json(dumps(signed))
    assert env.unknown_fields == EXPECTED_POINTERS
    assert env.to_wire() == signed
    assert env.signing_input() == signing_input(signed)
    assert b'"ticket":"T-1"' in env.signing_input()


@pytest.mark.parametrize("pointer", EXPECTED_POINTERS)
def test_e8_dropping_an_unknown_field_breaks_the_signature(
    make_verifier: Any, keys: dict[str, Key], pointer: str
) -> None:
    wire = _with_unknown_fields(unsigned_wire(HS, calls=[entry(projection=jcs_text(ARGS), ref=dict(REF))]))
    signed = sign_wire(wire, keys[HS])
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    _delete(signed, tuple(int(p) if p.isdigit() else p for p in parts))
    verdict = _verify(make_verifier(), signed)
    assert (verdict.reason, verdict.detail) == (Reason.SIGNATURE_INVALID, "signature.mismatch")


def test_e8_unknown_fields_listed_even_when_rejected(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = unsigned_wire(HS)
    wire["plannerDeclared"]["ticket"] = "T-1"
    signed = sign_wire(wire, keys[HS])
    signed["signature"] = "0" * 64
    verdict = _verify(verifier, signed)
    assert (verdict.reason, verdict.detail) == (Reason.SIGNATURE_INVALID, "signature.mismatch")
    assert verdict.unknown_fields == ("/plannerDeclared/ticket",)


def test_e8_issuer_extra_members_are_signed(hs_issuer: Issuer, verifier: Verifier) -> None:
    env = hs_issuer.sign_plan([PlannedCall(TOOL, ARGS, SERVER)], intent="x", extra={"x-trace": "abc"})
    assert env.unknown_fields == ("/x-trace",)
    wire = env.to_wire()
    verdict = verifier.verify(dumps(wire), tool=TOOL, arguments=ARGS)
    _assert_accepted(verdict)
    wire["x-trace"] = "abd"
    verdict = verifier.verify(dumps(wire), tool=TOOL, arguments=ARGS)
    assert (verdict.reason, verdict.detail) == (Reason.SIGNATURE_INVALID, "signature.mismatch")


def test_e8_kid_in_use_for_signature(keys: dict[str, Key]) -> None:
    """Sanity for the fixtures the E tests rely on."""
    assert keys[HS].kid == KID[HS]


def test_e2_empty_alg_is_malformed_empty_not_key_unavailable(
    verifier: Verifier, full_wire: dict[str, Any]
) -> None:
    # E2 (every schema string is non-empty) is more specific than K1's allowlist rule.
    full_wire["issuerAsserted"]["alg"] = ""
    _assert_malformed(_verify(verifier, full_wire), "malformed.empty")


def test_e2_unknown_member_nested_past_orjson_writer_is_malformed_depth(
    verifier: Verifier, keys: dict[str, Key]
) -> None:
    """Regression (found by hypothesis): 300 levels parse with orjson but do not write back.

    The fast path's signing-input proof raised TypeError there, so the
    verifier answered ``internal.error`` and logged a traceback per call.
    """
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    nested: Any = None
    for _ in range(300):
        nested = [nested]
    wire["futureMember"] = nested  # after signing: the depth is refused before any signature check
    raw = dumps(wire)
    with pytest.raises(MalformedEnvelopeError) as refused:
        Envelope.from_json(raw)
    assert refused.value.detail == "malformed.depth"
    _assert_malformed(_verify(verifier, raw), "malformed.depth")
