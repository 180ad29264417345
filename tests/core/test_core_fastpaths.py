"""Fast paths proven equal to their slow references (issue 11 item 6).

Three fast paths carry every call: the orjson envelope parse with its
duplicate-key proof (``parse_envelope_json``, ``Envelope.from_json``,
``Envelope.from_parsed``), the one-pass schema check (``_typical``) and the
orjson JCS writer (``canonicalize``). Each has a plain reference beside it
(``_reference_*``: the strict ``json`` reader, ``Envelope.from_wire``, the
full JCS writer), and the JCS writer also answers to the ``rfc8785``
package. The properties below feed both the same hostile input and demand
the same outcome: equal values (types and key order included), the same
refusal detail, byte-identical canonical output, and equal verdicts.
"""

from __future__ import annotations

import copy
import json
import math
import time
from typing import Any

import pytest
import rfc8785
from _core_helpers import (
    ARGS,
    ARGS_DIGEST,
    HS,
    NOW,
    SERVER,
    TOOL,
    Clock,
    entry,
    jcs_text,
    sign_wire,
    unsigned_wire,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mcp_attest import InMemoryReplayStore, Key, Keyring, Verifier, VerifierPolicy
from mcp_attest.canonical import (
    MAX_SAFE_INTEGER,
    CanonicalizationError,
    _reference_canonicalize,
    _reference_parse_envelope,
    canonicalize,
    parse_arguments,
    parse_envelope_json,
)
from mcp_attest.envelope import (
    Envelope,
    MalformedEnvelopeError,
    _reference_envelope,
    _reference_from_json,
    _reference_from_parsed,
    _typical,
    b64url_encode,
    signing_input,
)
from mcp_attest.verdict import format_rfc3339

PROPERTY = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)

# -- hostile values ---------------------------------------------------------------

_SPECIAL_TEXT = ["\ud800", "\udfff", "a\udc00b", "\U0001f600", "\uffff", "\ue000", "\u2028", '"', "\\",
                 "\x00", "\x1f", "\x7f", ":", '":"', "\\u0041", "é", ""]  # fmt: skip
_text = st.text(st.characters(exclude_categories=()), max_size=12) | st.sampled_from(_SPECIAL_TEXT)
_EDGE_INTS = [0, 1, -1, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER + 1, -(MAX_SAFE_INTEGER + 1),
              2**53 + 1, 2**53 + 2, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, 10**20, 10**21,
              1152921504606847000, 10**308, 10**309, -(10**400)]  # fmt: skip
_ints = st.integers(-(2**70), 2**70) | st.sampled_from(_EDGE_INTS)
_floats = st.floats() | st.sampled_from([-0.0, 0.0, 5e-324, 1e21, 1e-7, 0.1, 1.5, float("inf"), float("nan")])
_scalars = st.none() | st.booleans() | _ints | _floats | _text


def _nest(value: Any, depth: int) -> Any:
    for i in range(depth):
        value = [value] if i % 2 else {"d": value}
    return value


_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(_text, inner, max_size=4)
        | st.tuples(inner, st.sampled_from([62, 63, 64, 65])).map(lambda t: _nest(*t))
    ),
    max_leaves=12,
)


def _typed(value: Any) -> Any:
    """A form in which ``1``, ``1.0`` and ``True`` differ and key order counts."""
    if isinstance(value, dict):
        return ("dict", [(k, _typed(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_typed(v) for v in value])
    if isinstance(value, float):
        return ("float", value.hex())
    return (type(value).__name__, value)


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except (CanonicalizationError, MalformedEnvelopeError) as exc:
        return "refused", exc.detail


# -- a JSON writer that can lie -----------------------------------------------------


class _Liar:
    """Writes a value as JSON text with hostile spellings: escapes, duplicate keys, odd numbers.

    Its many small choices come from one drawn ``Random``, so an example costs
    one draw rather than one per character.
    """

    def __init__(self, data: st.DataObject) -> None:
        self.rnd = data.draw(st.randoms(use_true_random=False))
        self.space = self.rnd.choice(["", "", " ", "\n\t"])
        self.escape = self.rnd.choice([0.0, 0.0, 0.3, 1.0])
        self.duplicates = self.rnd.choice([0.0, 0.0, 0.2])
        self.odd_numbers = self.rnd.choice([0.0, 0.0, 0.2])

    def text(self, value: Any) -> bytes:
        out: list[str] = []
        self._value(value, out)
        raw = "".join(out).encode("utf-8")
        damage = self.rnd.choice(["none"] * 12 + ["bom", "truncate", "garbage", "bad_utf8"])
        cut = self.rnd.randint(0, len(raw))
        if damage == "bom":
            return b"\xef\xbb\xbf" + raw
        if damage == "truncate":
            return raw[:cut]
        if damage == "garbage":
            return raw + b"x"
        if damage == "bad_utf8":
            return raw[:cut] + b"\xff" + raw[cut:]
        return raw

    def _value(self, value: Any, out: list[str]) -> None:
        if isinstance(value, dict):
            self._object(value, out)
        elif isinstance(value, list | tuple):
            out.append("[")
            for i, v in enumerate(value):
                out.append("," + self.space if i else "")
                self._value(v, out)
            out.append("]")
        elif isinstance(value, str):
            self._string(value, out)
        elif value is True or value is False or value is None:
            out.append(json.dumps(value))
        elif isinstance(value, int):
            odd = self.rnd.random() < self.odd_numbers
            spellings = [f"{value}.0", f"{value}e0", f"{value}E+00", *(["-0"] if value == 0 else [])]
            out.append(self.rnd.choice(spellings) if odd else str(value))
        elif not math.isfinite(value):
            out.append(json.dumps(value))
        else:
            out.append(self.rnd.choice([repr(value), f"{value:.17e}"]))

    def _object(self, value: dict[str, Any], out: list[str]) -> None:
        members = list(value.items())
        if members and self.rnd.random() < self.duplicates:
            key, twin = self.rnd.choice(members)
            members.insert(self.rnd.randint(0, len(members)), (key, twin if self.rnd.random() < 0.8 else 0))
        out.append("{" + self.space)
        for i, (k, v) in enumerate(members):
            out.append("," if i else "")
            self._string(k, out)
            out.append(self.space + ":" + self.space)
            self._value(v, out)
        out.append(self.space + "}")

    def _string(self, text: str, out: list[str]) -> None:
        parts = ['"']
        for ch in text:
            surrogate = 0xD800 <= ord(ch) <= 0xDFFF
            if not surrogate and (self.escape == 0.0 or self.rnd.random() >= self.escape):
                parts.append(json.dumps(ch, ensure_ascii=False)[1:-1])
            elif ord(ch) <= 0xFFFF:
                parts.append(f"\\u{ord(ch):04x}")
            else:
                high, low = divmod(ord(ch) - 0x10000, 0x400)
                parts.append(f"\\u{0xD800 + high:04X}\\u{0xDC00 + low:04X}")
        out.append("".join(parts) + '"')


def _text_of(value: Any, data: st.DataObject) -> bytes:
    return _Liar(data).text(value)


# -- hostile envelopes -----------------------------------------------------------------

_CALL = ("payloadDerived", "toolCalls", 0)
_PATHS = [(), ("issuerAsserted",), ("plannerDeclared",), ("payloadDerived",), _CALL, (*_CALL, "argsRef")]
# Around each limit in characters (the one-pass check counts 4 bytes a character)
# and in UTF-8 bytes (E2): 1-, 2-, 3- and 4-byte characters on both sides of both.
_IDENT = ["", "x" * 128, "x" * 129, "é" * 256, "é" * 257, "€" * 170, "€" * 171, "\U0001f600" * 128,
          "\U0001f600" * 129, "x" * 512, "x" * 513]  # fmt: skip
_LONG = ["", "x" * 1024, "x" * 1025, "é" * 2048, "é" * 2049, "€" * 1365, "€" * 1366, "x" * 4096, "x" * 4097]
# Edge values per field name: the boundaries the one-pass check and E1-E8 draw differently.
_EDGES: dict[str, list[Any]] = {
    "alg": ["HS256", "ES256", "RS256", "none", "", "hs256"],
    "iss": [*_IDENT, "https://hs.issuer.test"],
    "sub": _IDENT,
    "secretVersion": [*_IDENT, "hs-1"],
    "iat": ["2026-05-28T20:26:40.5Z", "2026-05-28T20:26:40+00:00", "2026-05-28T20:26:40.1234567891Z",
            "2026-02-30T00:00:00Z", "2024-02-29T00:00:00Z", "2026-05-28T20:26:40", "2026-05-28 20:26:40Z",
            "2026-05-28T24:00:00Z"],
    "expSeconds": [0, 1, 300, 3600, 3601, -1, 2**53, True, 300.0],
    "nonce": ["A" * 2, "A" * 20, "A" * 21, "A" * 22, "A" * 23, "A" * 25, "A" * 21 + "=", "A" * 64, "A" * 65,
              "A" * 256, "A" * 257, "A+/" * 10, "a_-" * 10, "é" * 30],
    "intent": _LONG,
    "requestedCapability": ["", "c", "x" * 5000, 1, None],
    "plannerRef": ["", "p", None, []],
    "toolCalls": [[], [entry()] * 64, [entry()] * 65, "x", [[]], [entry(), 1]],
    "name": [*_IDENT, TOOL],
    "serverFingerprint": [*_IDENT, SERVER],
    "argsProjection": [jcs_text(ARGS), "{}", "", "[", '{"lines": 10, "path": "/srv/report.txt"}', 1],
    "argsRef": [{"uri": "data:,x", "digest": ARGS_DIGEST}, {"uri": "", "digest": ARGS_DIGEST},
                {"uri": "u", "digest": "x" * 43}, {"uri": "u", "digest": "!" * 43}, {"uri": "u"},
                {"uri": "u", "digest": ARGS_DIGEST, "x": 1}, "u"],
    "uri": ["", "data:,x", 1],
    "digest": [ARGS_DIGEST, ARGS_DIGEST + "=", "x" * 42, "x" * 44, "+" * 43],
    "signature": ["00" * 32, "AB" * 32, "ab" * 31, "ab" * 64, "", 1],
    "unknownField": ["y" * 70_000, -0.0, [[[0.5]]]],
}  # fmt: skip


def _hostile_wire(data: st.DataObject) -> dict[str, Any]:
    """A valid envelope with up to three edits: edge values, hostile values, unknown or removed fields."""
    calls = [entry(), entry(name="other", args={"b": 1})][: data.draw(st.integers(1, 2))]
    if data.draw(st.booleans()):
        calls[0] = entry(ref={"uri": "data:,x", "digest": ARGS_DIGEST}, projection=jcs_text(ARGS))
    wire = unsigned_wire(HS, calls=calls, planner_extra=data.draw(st.sampled_from([{}, {"plannerRef": "p"}])))
    for _ in range(data.draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
        target = _target(wire, data.draw(st.sampled_from(_PATHS)))
        if not isinstance(target, dict):
            continue
        key = data.draw(st.sampled_from([*target, "unknownField", "\U0001f600", "x:y"]))
        edit = data.draw(st.sampled_from(["edge", "edge", "edge", "hostile", "remove"]))
        if edit == "remove":
            target.pop(key, None)
        elif edit == "edge" and key in _EDGES:
            target[key] = copy.deepcopy(data.draw(st.sampled_from(_EDGES[key])))
        else:
            target[key] = data.draw(_values)
    return wire


def _target(wire: dict[str, Any], path: tuple[str | int, ...]) -> Any:
    """The object at ``path``, or None when an earlier edit removed or replaced it."""
    target: Any = wire
    for step in path:
        if isinstance(target, list):
            target = target[step] if isinstance(step, int) and step < len(target) else None
        elif isinstance(target, dict):
            target = target.get(step)
    return target


def _every_member_wire() -> dict[str, Any]:
    """A valid envelope in which every optional member is present."""
    call = entry(ref={"uri": "data:,x", "digest": ARGS_DIGEST}, projection=jcs_text(ARGS))
    return unsigned_wire(HS, calls=[call], planner_extra={"plannerRef": "p", "requestedCapability": "c"})


_REMOVE = object()


def _edits() -> list[tuple[tuple[str | int, ...], str, Any]]:
    """Every single edit of the edge table: each field at each edge value, removed, or a null."""
    base = _every_member_wire()
    edits: list[tuple[tuple[str | int, ...], str, Any]] = []
    for path in _PATHS:
        for key in [*_target(base, path), "unknownField", "\U0001f600"]:
            edits += [(path, key, value) for value in [*_EDGES.get(key, []), None, 1.5, "x", _REMOVE]]
    return edits


def _signed(wire: dict[str, Any], key: Key, data: st.DataObject) -> dict[str, Any]:
    how = data.draw(st.sampled_from(["sign", "sign", "sign", "stale", "hostile"]))
    if how == "sign":
        try:
            return sign_wire(wire, key)
        except (CanonicalizationError, TypeError, ValueError):
            return wire
    out = copy.deepcopy(wire)
    out["signature"] = (
        "00" * 32 if how == "stale" else data.draw(st.sampled_from(_EDGES["signature"]) | _values)
    )
    return out


def _summary(result: tuple[str, Any]) -> Any:
    """An envelope as the verifier sees it: every parsed field, the wire value and C1 bytes."""
    status, env = result
    if status != "ok":
        return result
    return (env[:5], _typed(env.wire), env.signing_input())


# -- the JCS writer ------------------------------------------------------------------


def _as_doubles(value: Any) -> Any:
    """Big integers as the doubles C3 reads them as, the only form rfc8785 takes."""
    if isinstance(value, dict):
        return {k: _as_doubles(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_doubles(v) for v in value]
    if type(value) is int and abs(value) > MAX_SAFE_INTEGER:
        return float(value)
    return value


def _writer_agrees(value: Any) -> None:
    fast, reference = _outcome(canonicalize, value), _outcome(_reference_canonicalize, value)
    assert fast == reference
    if fast[0] == "ok":
        assert fast[1] == rfc8785.dumps(_as_doubles(value))


@PROPERTY
@given(_values)
def test_jcs_fast_path_equals_full_writer_and_rfc8785(value: Any) -> None:
    _writer_agrees(value)


@PROPERTY
@given(
    st.dictionaries(
        _text, _text | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER) | st.booleans(), max_size=8
    )
)
def test_jcs_fast_path_taken_documents_equal_rfc8785(value: dict[str, Any]) -> None:
    """Documents the orjson path actually serves (no floats, no big integers)."""
    _writer_agrees(value)


@PROPERTY
@given(st.data())
def test_jcs_of_hostile_argument_text_equals_references(data: st.DataObject) -> None:
    text = _text_of(data.draw(_values), data)
    parsed = _outcome(parse_arguments, text)
    if parsed[0] == "ok":
        _writer_agrees(parsed[1])


# -- the envelope parse and schema check ----------------------------------------------------


@PROPERTY
@given(st.data())
def test_envelope_parse_fast_path_equals_strict_reader(keys: dict[str, Key], data: st.DataObject) -> None:
    raw = _text_of(_signed(_hostile_wire(data), keys[HS], data), data)
    fast, reference = _outcome(parse_envelope_json, raw), _outcome(_reference_parse_envelope, raw)
    assert (fast[0], _typed(fast[1])) == (reference[0], _typed(reference[1]))


@PROPERTY
@given(st.data())
def test_envelope_from_json_equals_reference(keys: dict[str, Key], data: st.DataObject) -> None:
    raw = _text_of(_signed(_hostile_wire(data), keys[HS], data), data)
    assert _summary(_outcome(Envelope.from_json, raw)) == _summary(_outcome(_reference_from_json, raw))


@PROPERTY
@given(st.data())
def test_envelope_from_parsed_equals_reference(keys: dict[str, Key], data: st.DataObject) -> None:
    wire = _signed(_hostile_wire(data), keys[HS], data)
    fast = _outcome(Envelope.from_parsed, copy.deepcopy(wire))
    assert _summary(fast) == _summary(_outcome(_reference_from_parsed, wire))


def _typical_of(wire: dict[str, Any]) -> Envelope | None:
    """The one-pass check as the parser calls it: with the signing input already proven."""
    try:
        proven = signing_input(wire)
    except CanonicalizationError:  # the parser never reaches the one-pass check with such a body
        return None
    return _typical(wire, 3600, proven)


@PROPERTY
@given(st.data())
def test_one_pass_schema_check_equals_from_wire(keys: dict[str, Key], data: st.DataObject) -> None:
    wire = _signed(_hostile_wire(data), keys[HS], data)
    typical = _typical_of(wire)
    assume(typical is not None)
    assert _summary(("ok", typical))[:2] == _summary(_outcome(Envelope.from_wire, wire))[:2]


def test_one_pass_schema_check_serves_the_common_envelope(keys: dict[str, Key]) -> None:
    """The property above is not vacuous: ordinary envelopes do take the one-pass check."""
    assert _typical_of(sign_wire(unsigned_wire(HS), keys[HS])) is not None


# -- verdicts ---------------------------------------------------------------------------


def _verdicts(envelope: Any, arguments: Any, ring: Keyring, header: str | None = None) -> tuple[Any, Any]:
    """The same call decided through the fast paths and through the reference reader."""
    out = []
    for reader in (None, _reference_envelope):
        verifier = Verifier(ring, SERVER, replay_store=InMemoryReplayStore(), policy=VerifierPolicy(),
                            clock=Clock(NOW), reader=reader)  # fmt: skip
        out.append(verifier.verify(envelope, tool=TOOL, arguments=arguments, header=header).to_dict())
    return out[0], out[1]


@PROPERTY
@given(st.data())
def test_verdict_through_fast_paths_equals_verdict_through_references(
    keys: dict[str, Key], verify_ring: Keyring, data: st.DataObject
) -> None:
    ring = verify_ring
    wire = _signed(_hostile_wire(data), keys[HS], data)
    raw = _text_of(wire, data)
    arguments = data.draw(
        st.sampled_from([ARGS, ARGS, {"b": 1}]) | st.dictionaries(_text, _values, max_size=3)
    )
    if data.draw(st.booleans()):
        arguments = _text_of(arguments, data)
    fast, reference = _verdicts(raw, arguments, ring)
    assert fast == reference
    assert fast["detail"] != "internal.error"
    form = data.draw(st.sampled_from(["parsed", "header"]))
    if form == "parsed":
        fast, reference = _verdicts(wire, arguments, ring)
    else:
        fast, reference = _verdicts(None, arguments, ring, header=b64url_encode(raw))
    assert fast == reference


@pytest.mark.parametrize(
    "where",
    ["plannerRef", "requestedCapability", "argsProjection", "argsRef"],
)
def test_optional_member_present_as_null_is_malformed_on_every_path(
    where: str, keys: dict[str, Key], verify_ring: Keyring
) -> None:
    """Found by the properties above: the one-pass check read ``null`` as "absent" and accepted."""
    wire = _every_member_wire()
    planner = where in {"plannerRef", "requestedCapability"}
    target = wire["plannerDeclared"] if planner else wire["payloadDerived"]["toolCalls"][0]
    target[where] = None
    wire = sign_wire(wire, keys[HS])
    raw = json.dumps(wire).encode()
    for parse in (Envelope.from_json, _reference_from_json):
        assert _outcome(parse, raw) == ("refused", "malformed.type")
    for parse_object in (Envelope.from_parsed, _reference_from_parsed, Envelope.from_wire):
        assert _outcome(parse_object, wire) == ("refused", "malformed.type")
    for verdict in _verdicts(raw, ARGS, verify_ring):
        assert (verdict["reason"], verdict["detail"]) == ("signature_invalid", "malformed.type")


@pytest.mark.parametrize(
    ("path", "key", "value"), _edits(), ids=lambda v: "-" if v is _REMOVE else ascii(v)[:24].replace(" ", "")
)
def test_every_edge_value_of_every_field_takes_the_same_decision_on_every_path(
    path: tuple[str | int, ...], key: str, value: Any, keys: dict[str, Key]
) -> None:
    """The edge table swept exhaustively, one edit at a time, signed so the schema decides."""
    wire = _every_member_wire()
    target = _target(wire, path)
    if value is _REMOVE:
        target.pop(key, None)
    else:
        target[key] = copy.deepcopy(value)
    try:
        wire = sign_wire(wire, keys[HS])
    except CanonicalizationError:  # nothing signs what C2 refuses; the readers still must agree
        wire["signature"] = "00" * 32
    raw = json.dumps(wire, ensure_ascii=False).encode()
    reference = _summary(_outcome(_reference_from_json, raw))
    assert _summary(_outcome(Envelope.from_json, raw)) == reference
    assert _summary(_outcome(Envelope.from_parsed, wire)) == _summary(_outcome(_reference_from_parsed, wire))
    typical = _typical_of(wire)
    if typical is not None:
        assert _summary(("ok", typical))[:2] == reference[:2]


# Spellings only the text shows: what orjson reads leniently and the strict reader refuses.
_TEXT_EDITS = [
    ('"expSeconds":300', '"expSeconds":-0'),
    ('"expSeconds":300', '"expSeconds":300.0'),
    ('"expSeconds":300', '"expSeconds":3e2'),
    ('"expSeconds":300', '"expSeconds":1e400'),
    ('"expSeconds":300', '"expSeconds":300,"expSeconds":300'),
    ('"expSeconds":300', '"expSeconds":9007199254740993'),
    ('"expSeconds":300', '"expSeconds":18446744073709551616'),
    ('"expSeconds":300', '"expSeconds":300,"x":-0'),
    ('"expSeconds":300', '"expSeconds":300,"x":[0,-0]'),
    ('"expSeconds":300', '"expSeconds":300,"x":{"a:b":1,"a:b":1}'),
    ('"expSeconds":300', '"expSeconds":300,"x":{"a":1,"a":1}'),
    ('"sub":"agent:tester"', '"sub":"agent\\u003atester"'),
    ('"sub":"agent:tester"', '"su\\u0062":"agent:tester"'),
    ('"sub":"agent:tester"', '"sub":"agent:tester","sub":"agent:tester"'),
    # a merged member hides one colon, an escaped colon adds one to the output: counts balance
    ('"sub":"agent:tester"', '"sub":"agent\\u003atester","sub":"agent\\u003atester"'),
    ('"sub":"agent:tester"', '"sub":"agent:tester","su\\u0062":"agent:tester"'),
    ('"sub":"agent:tester"', '"sub":"\\ud800"'),
    ('"sub":"agent:tester"', '"sub":"\\ud83d\\ude00"'),
    ('"intent":"summarize the report"', '"intent":"summarize the report","intent":"x"'),
    ('"plannerRef":"p"', '"plannerRef":"p","plannerRef":"p"'),
    ('"plannerRef":"p"', '"plannerRef":"p","\U0001f600":1,"\uffff":2'),
    ('"uri":"data:,x"', '"uri":"data:,x","uri":"data:,x"'),
    ('"uri":"data:,x"', '"uri":"data:,x","digest":"x"'),
    ('{"issuerAsserted"', '{"signature":"00","issuerAsserted"'),
    ('{"issuerAsserted"', ' \t\n{"issuerAsserted"'),
]


@pytest.mark.parametrize(("old", "new"), _TEXT_EDITS)
def test_every_lenient_spelling_takes_the_same_decision_on_every_path(
    old: str, new: str, keys: dict[str, Key], verify_ring: Keyring
) -> None:
    """Signed first, then respelled: only the reader can tell, and both readers must tell alike."""
    text = json.dumps(sign_wire(_every_member_wire(), keys[HS]), separators=(",", ":"), ensure_ascii=False)
    assert text.count(old) == 1
    raw = text.replace(old, new).encode()
    fast, reference = _outcome(parse_envelope_json, raw), _outcome(_reference_parse_envelope, raw)
    assert (fast[0], _typed(fast[1])) == (reference[0], _typed(reference[1]))
    assert _summary(_outcome(Envelope.from_json, raw)) == _summary(_outcome(_reference_from_json, raw))
    fast_verdict, reference_verdict = _verdicts(raw, ARGS, verify_ring)
    assert fast_verdict == reference_verdict


def test_oversized_envelope_with_a_schema_error_is_too_large_on_every_path(
    keys: dict[str, Key], verify_ring: Keyring
) -> None:
    """Found by the reference: ``from_parsed`` named the schema error, every other path the size."""
    wire = sign_wire(_every_member_wire(), keys[HS])
    wire["issuerAsserted"]["alg"] = ""
    wire["unknownField"] = "y" * 70_000
    for parse_object in (Envelope.from_parsed, _reference_from_parsed):
        assert _outcome(parse_object, wire) == ("refused", "malformed.too_large")
    raw = json.dumps(wire).encode()
    assert _outcome(Envelope.from_json, raw) == ("refused", "malformed.too_large")
    fast, reference = _verdicts(wire, ARGS, verify_ring)
    assert fast == reference and fast["detail"] == "malformed.too_large"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0, 4e9, allow_nan=False) | st.integers(0, 4_000_000_000), min_size=1, max_size=6))
def test_core_rfc3339_second_cache_equals_strftime(epochs: list[float]) -> None:
    """The cached second's text is what ``strftime`` would write, whatever order the times come in."""
    for epoch in epochs + epochs[::-1]:
        whole = int(epoch)
        expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        assert format_rfc3339(epoch) == f"{expected}.{int((epoch - whole) * 1000):03d}Z"


def test_core_rfc3339_two_alternating_seconds_are_formatted_once_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: a one-second cache missed every call when the verdict's and the record's alternated."""
    calls: list[float] = []
    real = time.strftime

    def counting(fmt: str, parts: time.struct_time) -> str:
        calls.append(time.mktime(parts))
        return real(fmt, parts)

    monkeypatch.setattr(time, "strftime", counting)
    base = 1_900_000_000  # far from any second another test formats
    texts = {format_rfc3339(base + (i % 2) + 0.25) for i in range(20)}
    assert len(texts) == 2 and len(calls) == 2


def test_core_rfc3339_second_cache_stays_bounded() -> None:
    """A long-running process formats a new second every second: the cache must not grow with them."""
    from mcp_attest import verdict  # noqa: PLC0415

    for second in range(2_000_000_000, 2_000_000_500):
        format_rfc3339(second + 0.5)
    assert 0 < len(verdict._SECONDS) <= verdict._SECONDS_KEPT
