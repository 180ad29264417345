"""The SEP-2787 envelope: wire model and schema rules (PROFILE section 1).

The envelope keeps the exact parsed wire object it was built from, because
the signing input is that object minus ``signature`` (E8): nothing is
dropped, renamed or defaulted before canonicalizing, and unknown fields stay
covered by the signature.
"""

from __future__ import annotations

import base64
import calendar
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple, NoReturn, TypeGuard

import orjson

from mcp_attest.canonical import (
    MAX_ENVELOPE_BYTES,
    CanonicalizationError,
    _reference_canonicalize,
    _reference_parse_envelope,
    canonicalize,
    check_envelope_value,
    dumps_sorted,
    parse_envelope_json,
    proven_clean,
)
from mcp_attest.details import DETAILS
from mcp_attest.errors import Error

__all__ = [
    "DEFAULT_MAX_TTL",
    "MAX_TOOL_CALLS",
    "ArgsRef",
    "Envelope",
    "IssuerAsserted",
    "MalformedEnvelopeError",
    "PlannerDeclared",
    "ToolCall",
    "b64url_decode",
    "b64url_encode",
    "lower_hex_bytes",
    "parse_iat",
    "signing_input",
]

DEFAULT_MAX_TTL: Final = 3600
MAX_TOOL_CALLS: Final = 64
_IDENT_LIMIT: Final = 512
_INTENT_LIMIT: Final = 4096
_NONCE_LIMIT: Final = 256
_MIN_NONCE_BYTES: Final = 16
_SIGNATURE_HEX: Final = {"HS256": 64, "ES256": 128}
_MIN_NONCE_B64: Final = 22  # the shortest unpadded base64url text of 16 bytes

_TOP: Final = frozenset({"issuerAsserted", "plannerDeclared", "payloadDerived", "signature"})
_ISSUER: Final = frozenset({"alg", "iss", "sub", "secretVersion", "iat", "expSeconds", "nonce"})
_PLANNER: Final = frozenset({"intent", "requestedCapability", "plannerRef"})
_PAYLOAD: Final = frozenset({"toolCalls"})
_CALL: Final = frozenset({"name", "argsRef", "argsProjection", "serverFingerprint"})
_REF: Final = frozenset({"uri", "digest"})
_COMMA_SIGNATURE: Final = b',"signature":'
# Builds a NamedTuple from a tuple of its fields in one C call: calling the
# class runs the interpreted ``__new__`` that namedtuple generates, which
# costs as much as the rest of the fast schema check.
_new: Final = tuple.__new__

_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
_IAT: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:Z|\+00:00)",
    re.ASCII,
)


class MalformedEnvelopeError(Error, ValueError):
    """A schema violation (E1-E8, C2); ``detail`` is the verdict's detail code."""

    def __init__(self, detail: str, message: str) -> None:
        super().__init__(message)
        self.detail = detail


def _bad(detail: str, message: str) -> NoReturn:
    assert detail in DETAILS, f"unregistered detail code {detail!r}"
    raise MalformedEnvelopeError(detail, message)


def b64url_encode(data: bytes) -> str:
    """Base64url without padding, the only encoding the profile uses."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def lower_hex_bytes(text: str) -> bytes | None:
    """E7: the bytes a non-empty lowercase-hex string spells, else ``None``.

    ``bytes.fromhex`` alone would also take uppercase and spaces; writing
    the bytes back and comparing refuses both, and beats a regex on the
    512 characters of an RS256 signature.
    """
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if raw and raw.hex() == text else None


def b64url_decode(text: str) -> bytes:
    """Strict inverse of ``b64url_encode``: no padding, no other alphabet."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@functools.lru_cache(maxsize=4096)
def parse_iat(text: str) -> float:
    """Read an E3 timestamp as epoch seconds; raise ``ValueError`` otherwise.

    Cached because a busy verifier sees the same second many times.
    """
    m = _IAT.fullmatch(text)
    if m is None:
        raise ValueError("not RFC 3339 UTC")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        raise ValueError("no such date")
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError("no such time")
    fraction = m.group(7)
    frac = int(fraction) / 10 ** len(fraction) if fraction else 0.0
    return calendar.timegm((year, month, day, hour, minute, second)) + frac


class IssuerAsserted(NamedTuple):
    """Who signs and when: the issuer's own claims, trusted only after V3."""

    alg: str
    iss: str
    sub: str
    secret_version: str
    iat: str
    exp_seconds: int
    nonce: str


class PlannerDeclared(NamedTuple):
    """Why: the intent the planner declared for the plan."""

    intent: str
    requested_capability: str | None
    planner_ref: str | None


class ArgsRef(NamedTuple):
    """A reference to the JCS bytes of the arguments and their digest (A2)."""

    uri: str
    digest: str


class ToolCall(NamedTuple):
    """One planned call: which tool on which server with which arguments."""

    name: str
    server_fingerprint: str
    args_ref: ArgsRef | None
    args_projection: str | None


class Envelope(NamedTuple):
    """A schema-valid envelope and the exact wire object it came from.

    Immutable value types are NamedTuples rather than frozen dataclasses:
    a verifier builds several per call, and a frozen dataclass pays one
    ``object.__setattr__`` per field.
    """

    issuer_asserted: IssuerAsserted
    planner_declared: PlannerDeclared
    tool_calls: tuple[ToolCall, ...]
    signature: str
    unknown_fields: tuple[str, ...]
    wire: Mapping[str, Any]
    proven_input: bytes | None = None

    @classmethod
    def from_json(cls, data: bytes, *, max_ttl: int = DEFAULT_MAX_TTL) -> Envelope:
        """Strict parse (C2) then schema (E1-E8), with a proven fast path.

        The fast path lets orjson parse, runs the schema check (which pins
        the type of every known field), walks only unknown subtrees, and
        takes the signing input from orjson's sorted output once
        ``_proven_signing_input`` has shown that no duplicate key was
        merged. Anything unproven, including every error, is decided again
        by the strict reader so details are exact.
        """
        return _from_json(data, max_ttl)

    @classmethod
    def from_parsed(cls, obj: Any, *, max_ttl: int = DEFAULT_MAX_TTL) -> Envelope:
        """C2 (all but duplicate keys, already merged by whoever parsed it) and E1-E8.

        For ``_meta.attestation`` as an SDK hands it over. When
        ``proven_clean`` holds, the signing input is orjson's sorted output
        and the 64 KiB cap is checked on the same bytes; otherwise the
        full C2 walk decides and names the defect.
        """
        return _from_parsed(obj, max_ttl)

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any], *, max_ttl: int = DEFAULT_MAX_TTL) -> Envelope:
        """Check the schema of an already strictly-parsed object.

        The object is kept by reference, not copied: callers hand over
        ownership (``from_json`` and the verifier do).
        """
        if not isinstance(obj, dict):
            _bad("malformed.not_object", "envelope is not an object")
        extra = obj.keys() - _TOP
        unknown: list[str] = [_pointer(k) for k in extra] if extra else []
        ia = _block(obj, "issuerAsserted", _ISSUER, unknown)
        pd = _block(obj, "plannerDeclared", _PLANNER, unknown)
        pl = _block(obj, "payloadDerived", _PAYLOAD, unknown)
        signature = _string(obj, "signature", "/signature", None)
        if lower_hex_bytes(signature) is None:
            _bad("malformed.signature_encoding", "signature is not lowercase hex")
        alg = ia.get("alg")
        if "alg" not in ia:
            _bad("malformed.missing_field", "/issuerAsserted/alg is missing")
        if type(alg) is not str:
            _bad("malformed.type", "/issuerAsserted/alg is not a string")
        if not alg:
            _bad("malformed.empty", "/issuerAsserted/alg is empty")
        expected_len = _SIGNATURE_HEX.get(alg)
        if expected_len is not None and len(signature) != expected_len:
            _bad("malformed.signature_encoding", f"{alg} signature must be {expected_len} hex chars")
        issuer = IssuerAsserted(
            alg=alg,
            iss=_string(ia, "iss", "/issuerAsserted/iss", _IDENT_LIMIT),
            sub=_string(ia, "sub", "/issuerAsserted/sub", _IDENT_LIMIT),
            secret_version=_string(ia, "secretVersion", "/issuerAsserted/secretVersion", _IDENT_LIMIT),
            iat=_iat(ia),
            exp_seconds=_exp_seconds(ia, max_ttl),
            nonce=_nonce(ia),
        )
        planner = PlannerDeclared(
            intent=_string(pd, "intent", "/plannerDeclared/intent", _INTENT_LIMIT),
            requested_capability=_optional(pd, "requestedCapability", "/plannerDeclared"),
            planner_ref=_optional(pd, "plannerRef", "/plannerDeclared"),
        )
        calls = _tool_calls(pl, unknown)
        return cls(issuer, planner, calls, signature, tuple(sorted(unknown)) if unknown else (), obj)

    def to_wire(self) -> dict[str, Any]:
        """A deep copy of the wire object; the envelope itself stays immutable."""
        return orjson.loads(orjson.dumps(self.wire))  # type: ignore[no-any-return]

    def to_json(self) -> bytes:
        """The envelope as canonical JSON bytes (what the header transport encodes)."""
        return canonicalize(self.wire)

    def signing_input(self) -> bytes:
        """C1: JCS of the wire object minus the top-level ``signature``."""
        if self.proven_input is not None:
            return self.proven_input
        return signing_input(self.wire)


def _from_json(data: bytes, max_ttl: int) -> Envelope:
    """``Envelope.from_json`` as a module function, which the compiled verifier calls natively.

    Under mypyc a NamedTuple's classmethod stays a generic call (a bound
    method and keyword parsing each time, about 0.4 us of a verification).
    """
    if len(data) <= MAX_ENVELOPE_BYTES:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            obj = None
        if type(obj) is dict:
            env = _fast_envelope(obj, data, max_ttl)
            if env is not None:
                return env
    return Envelope.from_wire(_c2(parse_envelope_json, data), max_ttl=max_ttl)


def _from_parsed(obj: Any, max_ttl: int) -> Envelope:
    """``Envelope.from_parsed`` as a module function, for the same reason as ``_from_json``."""
    if type(obj) is dict and proven_clean(obj):
        try:  # a Python str may hold a lone surrogate, which orjson refuses
            whole = dumps_sorted(obj)
            body = _minus_signature(obj, whole)
        except orjson.JSONEncodeError:
            whole = body = b""
        if body:
            if len(whole) > MAX_ENVELOPE_BYTES:  # before the schema, as the full C2 walk orders it
                _bad("malformed.too_large", f"envelope exceeds {MAX_ENVELOPE_BYTES} bytes")
            env = _typical(obj, max_ttl, body)
            return env or Envelope(*Envelope.from_wire(obj, max_ttl=max_ttl)[:-1], body)
    return Envelope.from_wire(_c2(check_envelope_value, obj), max_ttl=max_ttl)


def _reference_envelope(obj: Mapping[str, Any], max_ttl: int) -> Envelope:
    """``from_wire`` and the full JCS writer: what every fast path of this module must equal.

    Shaped as a ``Verifier`` reader, so a verifier can run on it too.
    """
    body = {k: v for k, v in obj.items() if k != "signature"}
    return Envelope.from_wire(obj, max_ttl=max_ttl)._replace(proven_input=_reference_canonicalize(body))


def _reference_from_json(data: bytes, max_ttl: int = DEFAULT_MAX_TTL) -> Envelope:
    """``Envelope.from_json`` without a fast path: strict reader, schema check, full writer."""
    return _reference_envelope(_c2(_reference_parse_envelope, data), max_ttl)


def _reference_from_parsed(obj: Any, max_ttl: int = DEFAULT_MAX_TTL) -> Envelope:
    """``Envelope.from_parsed`` without a fast path."""
    return _reference_envelope(_c2(check_envelope_value, obj), max_ttl)


def _c2(check: Callable[[Any], dict[str, Any]], value: Any) -> dict[str, Any]:
    """Run a C2 reader, reporting its refusal as the schema error it is."""
    try:
        return check(value)
    except CanonicalizationError as exc:
        raise MalformedEnvelopeError(exc.detail, str(exc)) from None


def _fast_envelope(obj: dict[str, Any], data: bytes, max_ttl: int) -> Envelope | None:
    """The fast path of ``from_json``; ``None`` means "not proven, ask the strict reader"."""
    proven = _proven_signing_input(obj, data)
    if proven is None:
        return None
    env = _typical(obj, max_ttl, proven)
    if env is not None:
        return env
    try:
        env = Envelope.from_wire(obj, max_ttl=max_ttl)
    except MalformedEnvelopeError:
        return None
    for pointer in env.unknown_fields:
        # The pointer holds the unknown key itself: keep non-BMP keys off the fast path.
        if max(pointer) > "\uffff" or not proven_clean(_lookup(obj, pointer), pointer.count("/") + 1):
            return None
    return Envelope(*env[:-1], proven)


def _proven_signing_input(obj: dict[str, Any], data: bytes) -> bytes | None:
    """The signing input from orjson's output, once no member was lost in parsing.

    orjson keeps the last of duplicate keys silently. Input equal to
    orjson's sorted output (a canonical sender, as our issuer is) cannot
    have lost a member. Otherwise, without ``\\u`` escapes every colon
    inside a string is literal in both input and output, so equal colon
    counts prove the parser saw every member.
    """
    try:
        whole = dumps_sorted(obj)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes: the strict reader names the depth
        return None
    if whole != data and (b"\\u" in data or data.count(b":") != whole.count(b":")):
        return None
    return _minus_signature(obj, whole)


def _minus_signature(obj: dict[str, Any], whole: bytes) -> bytes:
    """``dumps_sorted`` of ``obj`` without ``signature``, given ``whole = dumps_sorted(obj)``.

    With exactly the four top-level members ``signature`` sorts last, so
    the compact output is cut before it instead of being written again.
    """
    if obj.keys() == _TOP:
        cut = len(whole) - len(_COMMA_SIGNATURE) - len(orjson.dumps(obj["signature"]))
        return whole[: cut - 1] + b"}"
    return dumps_sorted({k: v for k, v in obj.items() if k != "signature"})


def _ok(value: Any, limit: int) -> TypeGuard[str]:
    return type(value) is str and len(value) > 0 and len(value) * 4 <= limit


def _typical(obj: dict[str, Any], max_ttl: int, proven: bytes) -> Envelope | None:
    """Schema check of the common shape in one pass, or ``None`` to defer.

    ``proven`` is the signing input the caller has already proven equal to
    JCS of ``obj`` minus ``signature``.

    Accepts only envelopes with no unknown field whose every value passes
    the E-rules through the cheapest test that proves it (a string of at
    most limit/4 characters cannot exceed limit UTF-8 bytes). Anything
    else, valid or not, is left to ``Envelope.from_wire``, which gives the
    exact detail; this function never rejects.
    """
    ia: Any = obj.get("issuerAsserted")
    pd: Any = obj.get("plannerDeclared")
    pl: Any = obj.get("payloadDerived")
    sig: Any = obj.get("signature")
    if not (
        len(obj) == 4
        and type(ia) is dict
        and type(pd) is dict
        and type(pl) is dict
        and type(sig) is str
        and len(ia) == 7
        and len(pl) == 1
        and pd.keys() <= _PLANNER
    ):
        return None
    # Typed names for the checked dicts: mypyc then reads them with native dict calls.
    issuer: dict[str, Any] = ia
    planner: dict[str, Any] = pd
    payload: dict[str, Any] = pl
    alg, iss, sub = issuer.get("alg"), issuer.get("iss"), issuer.get("sub")
    kid, iat, exp = issuer.get("secretVersion"), issuer.get("iat"), issuer.get("expSeconds")
    nonce, intent = issuer.get("nonce"), planner.get("intent")
    calls = payload.get("toolCalls")
    # Chained identity checks and character counts (4 UTF-8 bytes per
    # character at most) keep this to a handful of bytecodes per field.
    if not (
        type(alg) is type(iss) is type(sub) is type(kid) is type(iat) is type(nonce) is type(intent) is str
        and type(exp) is int
        and type(calls) is list
        and len(sig) == _SIGNATURE_HEX.get(alg, len(sig))
        and len(alg) > 0
        and 0 < len(iss) <= _IDENT_LIMIT // 4
        and 0 < len(sub) <= _IDENT_LIMIT // 4
        and 0 < len(kid) <= _IDENT_LIMIT // 4
        and 0 < len(intent) <= _INTENT_LIMIT // 4
        and _MIN_NONCE_B64 <= len(nonce) <= _NONCE_LIMIT // 4
        and len(nonce) % 4 != 1
        and 1 <= exp <= max_ttl
        and 1 <= len(calls) <= MAX_TOOL_CALLS
        and lower_hex_bytes(sig) is not None
        and _B64URL.fullmatch(nonce)
        and _iat_ok(iat)
    ):
        return None
    # Optional members are tested by presence, not by value: a member that is
    # present as null is a type error (E1), which ``from_wire`` must name.
    capability, planner_ref = planner.get("requestedCapability"), planner.get("plannerRef")
    if ("requestedCapability" in planner and not _ok(capability, 1 << 62)) or (
        "plannerRef" in planner and not _ok(planner_ref, 1 << 62)
    ):
        return None
    entries = []
    plan: list[Any] = calls
    for raw_call in plan:
        if type(raw_call) is not dict:
            return None
        call: dict[str, Any] = raw_call
        if not call.keys() <= _CALL:
            return None
        name: Any = call.get("name")
        fingerprint: Any = call.get("serverFingerprint")
        projection: Any = call.get("argsProjection")
        ref: Any = call.get("argsRef")
        if not (_ok(name, _IDENT_LIMIT) and _ok(fingerprint, _IDENT_LIMIT)):
            return None
        if "argsProjection" in call and not _ok(projection, 1 << 62):
            return None
        args_ref = None
        if "argsRef" in call:
            if type(ref) is not dict or len(ref) != 2:
                return None
            uri: Any = ref.get("uri")
            digest: Any = ref.get("digest")
            if not (_ok(uri, 1 << 62) and type(digest) is str and len(digest) == 43):
                return None
            if not _B64URL.fullmatch(digest):
                return None
            args_ref = _new(ArgsRef, (uri, digest))
        elif projection is None:
            return None
        entries.append(_new(ToolCall, (name, fingerprint, args_ref, projection)))
    return _new(
        Envelope,
        (
            _new(IssuerAsserted, (alg, iss, sub, kid, iat, exp, nonce)),
            _new(PlannerDeclared, (intent, capability, planner_ref)),
            tuple(entries),
            sig,
            (),
            obj,
            proven,
        ),
    )


def _iat_ok(text: str) -> bool:
    try:
        parse_iat(text)
    except ValueError:
        return False
    return True


def _lookup(obj: Mapping[str, Any], pointer: str) -> Any:
    node: Any = obj
    for part in pointer[1:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        node = node[int(key)] if type(node) is list else node[key]
    return node


def signing_input(wire: Mapping[str, Any]) -> bytes:
    """C1 for any wire object, signed or not: JCS of it minus ``signature``."""
    return canonicalize({k: v for k, v in wire.items() if k != "signature"})


def _pointer(*parts: str | int) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _block(obj: Mapping[str, Any], name: str, known: frozenset[str], unknown: list[str]) -> Any:
    block = obj.get(name)
    if type(block) is not dict:
        if name not in obj:
            _bad("malformed.missing_field", f"/{name} is missing")
        _bad("malformed.type", f"/{name} is not an object")
    extra = block.keys() - known
    if extra:
        unknown.extend(_pointer(name, k) for k in extra)
    return block


def _string(obj: Mapping[str, Any], key: str, path: str, limit: int | None) -> str:
    value = obj.get(key)
    if type(value) is str and value and (limit is None or len(value) * 4 <= limit):
        return value  # the common case, decided without encoding
    if key not in obj:
        _bad("malformed.missing_field", f"{path} is missing")
    if type(value) is not str:
        _bad("malformed.type", f"{path} is not a string")
    if not value:
        _bad("malformed.empty", f"{path} is empty")
    if limit is not None and len(value) * 4 > limit and len(value.encode("utf-8")) > limit:
        _bad("malformed.too_long", f"{path} exceeds {limit} UTF-8 bytes")
    return value


def _optional(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    if key not in obj:
        return None
    return _string(obj, key, f"{path}/{key}", None)


def _iat(ia: Mapping[str, Any]) -> str:
    text = _string(ia, "iat", "/issuerAsserted/iat", None)
    try:
        parse_iat(text)
    except ValueError:
        _bad("malformed.iat", "/issuerAsserted/iat is not RFC 3339 UTC")
    return text


def _exp_seconds(ia: Mapping[str, Any], max_ttl: int) -> int:
    if "expSeconds" not in ia:
        _bad("malformed.missing_field", "/issuerAsserted/expSeconds is missing")
    value = ia["expSeconds"]
    if type(value) is not int or not 1 <= value <= max_ttl:
        _bad(
            "malformed.exp_seconds",
            f"/issuerAsserted/expSeconds must be an integer in 1..{max_ttl}",
        )
    return value


def _nonce(ia: Mapping[str, Any]) -> str:
    text = _string(ia, "nonce", "/issuerAsserted/nonce", _NONCE_LIMIT)
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        _bad("malformed.nonce", "/issuerAsserted/nonce is not unpadded base64url")
    if len(text) * 3 // 4 < _MIN_NONCE_BYTES:  # decoded length, without decoding
        _bad(
            "malformed.nonce",
            f"/issuerAsserted/nonce decodes to fewer than {_MIN_NONCE_BYTES} bytes",
        )
    return text


def _tool_calls(payload: Mapping[str, Any], unknown: list[str]) -> tuple[ToolCall, ...]:
    if "toolCalls" not in payload:
        _bad("malformed.missing_field", "/payloadDerived/toolCalls is missing")
    calls = payload["toolCalls"]
    if type(calls) is not list:
        _bad("malformed.type", "/payloadDerived/toolCalls is not an array")
    if not 1 <= len(calls) <= MAX_TOOL_CALLS:
        _bad("malformed.tool_calls", f"toolCalls must have 1..{MAX_TOOL_CALLS} entries")
    return tuple([_tool_call(i, c, unknown) for i, c in enumerate(calls)])


def _tool_call(index: int, call: Any, unknown: list[str]) -> ToolCall:
    base = f"/payloadDerived/toolCalls/{index}"
    if type(call) is not dict:
        _bad("malformed.type", f"{base} is not an object")
    extra = call.keys() - _CALL
    if extra:
        unknown.extend(_pointer("payloadDerived", "toolCalls", index, k) for k in extra)
    ref = None
    if "argsRef" in call:
        raw_ref = call["argsRef"]
        if type(raw_ref) is not dict:
            _bad("malformed.type", f"{base}/argsRef is not an object")
        extra = raw_ref.keys() - _REF
        if extra:
            unknown.extend(_pointer("payloadDerived", "toolCalls", index, "argsRef", k) for k in extra)
        digest = _string(raw_ref, "digest", f"{base}/argsRef/digest", None)
        if len(digest) != 43 or not _B64URL.fullmatch(digest):
            _bad("malformed.digest", f"{base}/argsRef/digest is not a base64url SHA-256")
        ref = ArgsRef(uri=_string(raw_ref, "uri", f"{base}/argsRef/uri", None), digest=digest)
    projection = _optional(call, "argsProjection", base)
    if ref is None and projection is None:
        _bad("malformed.no_commitment", f"{base} has neither argsRef nor argsProjection")
    return ToolCall(
        name=_string(call, "name", f"{base}/name", _IDENT_LIMIT),
        server_fingerprint=_string(call, "serverFingerprint", f"{base}/serverFingerprint", _IDENT_LIMIT),
        args_ref=ref,
        args_projection=projection,
    )
