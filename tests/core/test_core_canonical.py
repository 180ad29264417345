"""PROFILE section 2: strict JSON and canonical bytes (C1-C4)."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
import rfc8785
from _core_helpers import ARGS, HS, SERVER, TOOL, dumps, entry, sign_wire, unsigned_wire
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_attest import (
    CanonicalizationError,
    Key,
    Reason,
    Verifier,
    canonicalize,
    parse_arguments,
)
from mcp_attest.canonical import canonicalize_arguments, parse_envelope_json
from mcp_attest.envelope import signing_input

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _envelope_detail(data: bytes) -> str:
    with pytest.raises(CanonicalizationError) as info:
        parse_envelope_json(data)
    return info.value.detail


def _assert_verifier_malformed(verifier: Verifier, data: Any, detail: str) -> None:
    verdict = verifier.verify(data, tool=TOOL, arguments=ARGS)
    assert not verdict.accepted
    assert (verdict.reason, verdict.detail) == (Reason.SIGNATURE_INVALID, detail)


def _signed_bytes(keys: dict[str, Key]) -> bytes:
    return dumps(sign_wire(unsigned_wire(HS), keys[HS]))


def _inject(data: bytes, member: bytes) -> bytes:
    """Insert a raw JSON member text right after the opening brace of the envelope."""
    assert data.startswith(b"{")
    return b"{" + member + b"," + data[1:]


# -- C1 -------------------------------------------------------------------------


def test_c1_signing_input_is_jcs_of_envelope_minus_top_level_signature(keys: dict[str, Key]) -> None:
    wire = unsigned_wire(HS)
    wire["ext"] = {"signature": "nested members named signature stay", "z": 1, "a": [True, None]}
    signed = sign_wire(wire, keys[HS])
    expected = rfc8785.dumps({k: v for k, v in signed.items() if k != "signature"})
    assert signing_input(signed) == expected
    assert b'"signature":"nested members named signature stay"' in expected
    assert b'"signature":"' + signed["signature"].encode() not in expected


def test_c1_wire_layout_does_not_change_the_signing_input(verifier: Verifier, keys: dict[str, Key]) -> None:
    signed = sign_wire(unsigned_wire(HS, intent='caf\u00e9 \U0001f600 / "q"'), keys[HS])
    pretty = json.dumps(signed, indent=3, ensure_ascii=True).encode()
    reordered = json.dumps(dict(reversed(list(signed.items()))), ensure_ascii=False).encode()
    for data in (pretty, reordered, dumps(signed)):
        verdict = verifier.verify(data, tool=TOOL, arguments=ARGS)
        assert verdict.accepted, verdict.detail
        at = verdict.verified_at
        verifier = Verifier(verifier.keyring, verifier.server_fingerprint, clock=lambda at=at: at)


def test_c1_signature_over_non_canonical_bytes_is_rejected(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = unsigned_wire(HS)
    non_jcs = json.dumps(wire, indent=1).encode()
    assert non_jcs != canonicalize(wire)
    wire["signature"] = keys[HS].sign(non_jcs)
    verdict = verifier.verify(dumps(wire), tool=TOOL, arguments=ARGS)
    assert (verdict.reason, verdict.detail) == (Reason.SIGNATURE_INVALID, "signature.mismatch")


# -- C2 -------------------------------------------------------------------------

DUPLICATES = [
    b'"issuerAsserted":{}',  # duplicates a top-level block
    b'"x":1,"x":1',
    b'"x":{"a":{"b":{"c":1,"c":2}}}',
    b'"x":[{"k":1},[{"k":1,"k":1}]]',
    b'"x":{"a:b":1,"a\\u003ab":2}',  # duplicate behind an escaped colon
    b'"x":{"a":1,"\\u0061":2}',
    b'"x":{"a":"v","a":"w:"}',  # a colon in a value cannot hide the merge
    b'"x\\u003ay":1,"x:y":2',
]


@pytest.mark.parametrize("member", DUPLICATES)
def test_c2_duplicate_keys_at_any_depth(verifier: Verifier, keys: dict[str, Key], member: bytes) -> None:
    data = _inject(_signed_bytes(keys), member)
    assert _envelope_detail(data) == "malformed.duplicate_key"
    _assert_verifier_malformed(verifier, data, "malformed.duplicate_key")


def test_c2_duplicate_key_inside_a_tool_call_entry(verifier: Verifier, keys: dict[str, Key]) -> None:
    data = _signed_bytes(keys).replace(b'"name":"read_file"', b'"name":"read_file","name":"delete_file"')
    assert b'"name":"delete_file"' in data
    _assert_verifier_malformed(verifier, data, "malformed.duplicate_key")


def test_c2_escaped_colon_in_a_unique_key_is_fine(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = unsigned_wire(HS)
    wire["x:y"] = {"a:b": "c:d"}
    data = dumps(sign_wire(wire, keys[HS])).replace(b'"x:y"', b'"x\\u003ay"')
    assert b"\\u003a" in data
    verdict = verifier.verify(data, tool=TOOL, arguments=ARGS)
    assert verdict.accepted, verdict.detail
    assert verdict.unknown_fields == ("/x:y",)


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        (b"NaN", "malformed.non_finite"),
        (b"Infinity", "malformed.non_finite"),
        (b"-Infinity", "malformed.non_finite"),
        (b"-0", "malformed.negative_zero"),
        (b"-0.0", "malformed.negative_zero"),
        (b"-0e5", "malformed.negative_zero"),
        (b"-0E-3", "malformed.negative_zero"),
        (b"-0.000", "malformed.negative_zero"),
        (b"1.5", "malformed.float"),
        (b"1.0", "malformed.float"),
        (b"1e2", "malformed.float"),
        (b"0.0", "malformed.float"),
        (b"9007199254740992", "malformed.int_range"),
        (b"-9007199254740992", "malformed.int_range"),
        (b"123456789012345678901234567890", "malformed.int_range"),
    ],
)
@pytest.mark.parametrize("where", ["top", "nested", "array"])
def test_c2_forbidden_numbers(
    verifier: Verifier, keys: dict[str, Key], token: bytes, detail: str, where: str
) -> None:
    member = {
        "top": b'"x":' + token,
        "nested": b'"x":{"y":{"z":' + token + b"}}",
        "array": b'"x":[1,[2,' + token + b"]]",
    }[where]
    data = _inject(_signed_bytes(keys), member)
    assert _envelope_detail(data) == detail
    _assert_verifier_malformed(verifier, data, detail)


def test_c2_safe_integer_bounds_and_zero_are_accepted(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = unsigned_wire(HS)
    wire["x"] = [9007199254740991, -9007199254740991, 0, -1]
    data = dumps(sign_wire(wire, keys[HS]))
    assert parse_envelope_json(data)["x"] == [2**53 - 1, -(2**53 - 1), 0, -1]
    assert verifier.verify(data, tool=TOOL, arguments=ARGS).accepted


@pytest.mark.parametrize(
    "member",
    [b'"x":"\\ud800"', b'"x":"\\udc00x"', b'"x":["a\\udbff"]', b'"\\ud800":1', b'"x":"\\ude00\\ud83d"'],
)
def test_c2_lone_surrogates(verifier: Verifier, keys: dict[str, Key], member: bytes) -> None:
    data = _inject(_signed_bytes(keys), member)
    assert _envelope_detail(data) == "malformed.surrogate"
    _assert_verifier_malformed(verifier, data, "malformed.surrogate")


def test_c2_surrogate_pair_is_a_valid_character(keys: dict[str, Key]) -> None:
    data = _inject(_signed_bytes(keys), b'"x":"\\ud83d\\ude00"')
    assert parse_envelope_json(data)["x"] == "\U0001f600"


def test_c2_lone_surrogate_in_a_python_string_or_object(verifier: Verifier, keys: dict[str, Key]) -> None:
    text = _signed_bytes(keys).decode()
    _assert_verifier_malformed(verifier, '{"x":"\ud800",' + text[1:], "malformed.surrogate")
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    wire["plannerDeclared"]["note"] = "\udfff"
    _assert_verifier_malformed(verifier, wire, "malformed.surrogate")


@pytest.mark.parametrize("bad", [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf8\x88\x80\x80\x80"])
def test_c2_invalid_utf8(verifier: Verifier, keys: dict[str, Key], bad: bytes) -> None:
    data = _inject(_signed_bytes(keys), b'"x":"' + bad + b'"')
    assert _envelope_detail(data) == "malformed.utf8"
    _assert_verifier_malformed(verifier, data, "malformed.utf8")


@pytest.mark.parametrize("data", [b"[]", b"[{}]", b'"x"', b"1", b"null", b"true"])
def test_c2_top_level_must_be_an_object(verifier: Verifier, data: bytes) -> None:
    assert _envelope_detail(data) == "malformed.not_object"
    _assert_verifier_malformed(verifier, data, "malformed.not_object")


@pytest.mark.parametrize("data", [b"", b"{", b"{}x", b"{'a':1}", b'{"a":1,}', b"\x00"])
def test_c2_not_json(verifier: Verifier, data: bytes) -> None:
    assert _envelope_detail(data) == "malformed.json"
    _assert_verifier_malformed(verifier, data, "malformed.json")


def test_c2_top_level_array_of_a_valid_envelope(verifier: Verifier, keys: dict[str, Key]) -> None:
    _assert_verifier_malformed(verifier, b"[" + _signed_bytes(keys) + b"]", "malformed.not_object")


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (float("nan"), "malformed.non_finite"),
        (float("inf"), "malformed.non_finite"),
        (-0.0, "malformed.negative_zero"),
        (2.5, "malformed.float"),
        (2**53, "malformed.int_range"),
        ({1: "x"}, "malformed.type"),
        ({"a", "b"}, "malformed.type"),
    ],
)
def test_c2_rules_apply_to_already_parsed_objects(
    verifier: Verifier, keys: dict[str, Key], value: Any, detail: str
) -> None:
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    wire["x"] = [value]
    _assert_verifier_malformed(verifier, wire, detail)


# -- C3 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("1152921504606847000", b"1152921504606847000"),
        ("9007199254740992", b"9007199254740992"),
        ("-9007199254740991", b"-9007199254740991"),
        ("1e20", b"100000000000000000000"),
        ("100000000000000000000", b"100000000000000000000"),
        ("1.0", b"1"),
        ("0.1", b"0.1"),
        ("1e-7", b"1e-7"),
        ("1e21", b"1e+21"),
        ("0.30000000000000004", b"0.30000000000000004"),
        ("5e-324", b"5e-324"),
        ("1.7976931348623157e308", b"1.7976931348623157e+308"),
        ("-1.5E+3", b"-1500"),
        ("0", b"0"),
    ],
)
def test_c3_numbers_read_as_doubles_and_written_as_jcs(text: str, canonical: bytes) -> None:
    value = parse_arguments('{"n":' + text + "}")
    assert canonicalize(value) == b'{"n":' + canonical + b"}"
    # and the integer token JCS writes reads back as the same double
    assert parse_arguments(canonical.decode()) == value["n"]


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("9007199254740993", "args.not_canonicalizable"),
        ("1152921504606846976", "args.not_canonicalizable"),
        ("-9007199254740993", "args.not_canonicalizable"),
        ("1e400", "args.not_canonicalizable"),
        ("-1e400", "args.not_canonicalizable"),
        ("-1e-400", "args.not_canonicalizable"),
        ("-0", "args.not_canonicalizable"),
        ("-0.0", "args.not_canonicalizable"),
        ("NaN", "args.not_canonicalizable"),
        ("Infinity", "args.not_canonicalizable"),
        ('{"a":1,"a":2}', "args.not_canonicalizable"),
        ('"\\ud800"', "args.not_canonicalizable"),
        ("[1,", "args.not_json"),
    ],
)
def test_c3_refused_argument_documents(text: str, detail: str) -> None:
    doc = text if text.startswith(("{", '"', "[")) else '{"n":' + text + "}"
    with pytest.raises(CanonicalizationError) as info:
        parse_arguments(doc)
    assert info.value.detail == detail


def test_c3_refused_python_argument_values() -> None:
    for value in (float("inf"), float("nan"), -0.0, 9007199254740993, 2**60, 10**400, "\ud800", {1: 2}):
        with pytest.raises(CanonicalizationError) as info:
            canonicalize_arguments({"v": value})
        assert info.value.detail == "args.not_canonicalizable"
    assert canonicalize_arguments({"v": 1152921504606847000}) == b'{"v":1152921504606847000}'


def test_c3_bom_and_invalid_utf8_arguments_are_not_json() -> None:
    for data in (b'\xef\xbb\xbf{"a":1}', b'{"a":"\xff"}'):
        with pytest.raises(CanonicalizationError) as info:
            parse_arguments(data)
        assert info.value.detail == "args.not_json"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"n":-0}',
        b'{"n":9007199254740993}',
        b'{"n":1e400}',
        b'{"n":-1e-400}',
        b'{"n":NaN}',
        b'{"a":1,"a":1}',
        b'{"s":"\\ud800"}',
        b"\xef\xbb\xbf{}",
        b"not json",
    ],
)
def test_c3_raw_argument_bytes_in_verification(hs_issuer: Any, verifier: Verifier, raw: bytes) -> None:
    env = hs_issuer.sign(tool=TOOL, arguments={"n": 1}, server_fingerprint=SERVER, intent="x")
    verdict = verifier.verify(env.to_json(), tool=TOOL, arguments=raw)
    assert (verdict.reason, verdict.detail) == (Reason.ARGS_COMMITMENT_MISMATCH, "args.not_canonicalizable")


def test_c3_raw_argument_bytes_with_big_integer_token_bind(hs_issuer: Any, verifier: Verifier) -> None:
    env = hs_issuer.sign(
        tool=TOOL, arguments={"n": 1152921504606847000}, server_fingerprint=SERVER, intent="x"
    )
    verdict = verifier.verify(env.to_json(), tool=TOOL, arguments=b'{ "n" : 1152921504606847000 }')
    assert verdict.accepted and verdict.args_binding == "identity"


@pytest.mark.parametrize(
    ("value", "ok"),
    [(1e20, True), (1152921504606847000, True), (9007199254740993, False), (float("inf"), False)],
)
def test_c3_runtime_arguments_in_verification(
    hs_issuer: Any, verifier: Verifier, value: Any, ok: bool
) -> None:
    env = hs_issuer.sign(tool=TOOL, arguments={"n": 1}, server_fingerprint=SERVER, intent="x")
    verdict = verifier.verify(env.to_json(), tool=TOOL, arguments={"n": value})
    if ok:  # canonicalizable, so the default strict binding is what refuses it
        assert (verdict.reason, verdict.detail) == (Reason.ARGS_COMMITMENT_MISMATCH, "args.not_bound")
    else:
        assert (verdict.reason, verdict.detail) == (
            Reason.ARGS_COMMITMENT_MISMATCH,
            "args.not_canonicalizable",
        )


def test_c3_float_argument_bound_by_identity_projection(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = unsigned_wire(HS, calls=[entry(projection='{"n":1e20,"m":2.50}')])
    verdict = verifier.verify(dumps(sign_wire(wire, keys[HS])), tool=TOOL, arguments={"m": 2.5, "n": 1e20})
    assert verdict.accepted and verdict.args_binding == "identity"


# -- C4 -------------------------------------------------------------------------

_finite = st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda f: not (f == 0.0 and math.copysign(1.0, f) < 0)
)
_text = st.text(
    st.characters(blacklist_categories=("Cs",))
    | st.sampled_from(["\x00", "\x1f", "\x7f", "\u2028", '"', "\\"])
)
_keys = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6) | st.sampled_from(
    ["\U0001f600", "\uffff", "\ue000", "\U00010000", "a", "A", ""]
)
_safe_int = st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
_scalars = st.none() | st.booleans() | _safe_int | _finite | _text
_json = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_keys, children, max_size=5),
    max_leaves=25,
)


@SETTINGS
@given(_json)
def test_c4_canonicalize_equals_rfc8785(value: Any) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)


@SETTINGS
@given(st.dictionaries(_keys, _safe_int | _text | st.booleans(), max_size=8))
def test_c4_fast_path_documents_equal_rfc8785(value: dict[str, Any]) -> None:
    """Documents the orjson fast path may take (no floats, BMP-or-not keys) stay exact."""
    assert canonicalize(value) == rfc8785.dumps(value)


@SETTINGS
@given(st.integers(min_value=-(2**80), max_value=2**80) | st.integers().map(lambda i: i * 2**30))
def test_c4_big_integers_exact_or_refused(value: int) -> None:
    if abs(value) <= 2**53 - 1:
        assert canonicalize(value) == rfc8785.dumps(value)
        return
    as_double = rfc8785.dumps(float(value)) if abs(value) < 2**1024 else None
    if as_double == str(value).encode():
        assert canonicalize(value) == as_double
    else:
        with pytest.raises(CanonicalizationError):
            canonicalize(value)


@SETTINGS
@given(_json)
def test_c4_arguments_round_trip_through_the_c3_reader(value: Any) -> None:
    text = rfc8785.dumps(value)
    assert canonicalize(parse_arguments(text)) == text


def test_c4_non_bmp_keys_sort_by_utf16_code_units() -> None:
    value = {"\uffff": 1, "\U0001f600": 2, "\ue000": 3}
    expected = rfc8785.dumps(value)
    assert canonicalize(value) == expected
    assert expected.index("\U0001f600".encode()) < expected.index("\uffff".encode())
    # the naive orjson fast path would sort by code point and get it wrong
    assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) != expected


def test_c4_floats_and_big_ints_leave_the_fast_path() -> None:
    assert canonicalize({"a": 1e21, "b": 0.1, "c": 5e-324}) == b'{"a":1e+21,"b":0.1,"c":5e-324}'
    assert canonicalize({"a": 1e20}) == b'{"a":100000000000000000000}'
    assert orjson.dumps({"a": 1e20}) == b'{"a":1e+20}'  # what an unguarded fast path would emit
    with pytest.raises(CanonicalizationError):
        canonicalize(2**53 + 1)
    with pytest.raises(CanonicalizationError) as info:
        canonicalize(-0.0)
    assert info.value.detail == "canonical.negative_zero"


def test_c4_control_characters_escaped_like_jcs() -> None:
    value = {"s": "".join(chr(c) for c in range(0x20)) + '\x7f\u2028"\\/'}
    assert canonicalize(value) == rfc8785.dumps(value)


_envelope_scalars = st.none() | st.booleans() | _safe_int | _text
_envelope_json = st.recursive(
    _envelope_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(_keys | st.sampled_from(["a:b", ":", "x::"]), children, max_size=4)
    ),
    max_leaves=20,
)


@SETTINGS
@given(st.dictionaries(_keys, _envelope_json, max_size=5), st.booleans(), st.booleans())
def test_c4_envelope_reader_round_trips_valid_documents(
    value: dict[str, Any], ascii_only: bool, pretty: bool
) -> None:
    data = json.dumps(value, ensure_ascii=ascii_only, indent=1 if pretty else None).encode()
    assert parse_envelope_json(data) == json.loads(data)


@SETTINGS
@given(st.binary(max_size=300) | _json.map(lambda v: json.dumps(v).encode()))
def test_c4_envelope_reader_raises_only_canonicalization_error(data: bytes) -> None:
    try:
        parsed = parse_envelope_json(data)
    except CanonicalizationError as exc:
        assert exc.detail.startswith("malformed.")
    else:
        assert type(parsed) is dict
