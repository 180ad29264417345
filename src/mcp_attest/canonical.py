"""Strict JSON reading (PROFILE C2, C3) and RFC 8785 canonical writing (C1, C4).

Two readers exist because the draft treats the envelope and the tool
arguments differently: the envelope has no number that is not an exact
integer, so anything else is a malformed envelope (C2); arguments carry any
finite number, read as an IEEE-754 double as RFC 8785 requires (C3).

The writer has a fast path through ``orjson`` that is taken only when a walk
over the value proves that orjson's sorted, compact output is byte-identical
to JCS (C4); everything else goes through the full JCS writer below, which is
differential-tested against the ``rfc8785`` package.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any, Final, NoReturn

import orjson

from mcp_attest.details import DETAILS
from mcp_attest.errors import Error

__all__ = [
    "MAX_DEPTH",
    "MAX_ENVELOPE_BYTES",
    "MAX_SAFE_INTEGER",
    "CanonicalizationError",
    "canonicalize",
    "canonicalize_arguments",
    "check_envelope_value",
    "dumps_sorted",
    "parse_arguments",
    "parse_envelope_json",
    "proven_clean",
]

MAX_ENVELOPE_BYTES: Final = 64 * 1024
MAX_DEPTH: Final = 64
MAX_SAFE_INTEGER: Final = 2**53 - 1
# Digit counts beyond which an integer token cannot be what its reader
# needs, decided before int() so no token reaches Python's int-string
# conversion limit (4300 digits, a ValueError) or float()'s OverflowError.
_SAFE_INTEGER_DIGITS: Final = len(str(MAX_SAFE_INTEGER))
_DOUBLE_DIGITS: Final = len(str(int(sys.float_info.max)))
_BOM: Final = b"\xef\xbb\xbf"
_SORT: Final = orjson.OPT_SORT_KEYS
# Depth counts containers only: a scalar inside a depth-64 container is at depth 64 (E2).
_CONTAINERS: Final = (dict, list)


class CanonicalizationError(Error, ValueError):
    """A document the strict reader or the JCS writer refuses.

    ``detail`` is the stable code that ends up in a verdict; the message is
    for humans and may name the offending token or path.
    """

    def __init__(self, detail: str, message: str) -> None:
        super().__init__(message)
        self.detail = detail


def _fail(detail: str, message: str) -> NoReturn:
    assert detail in DETAILS, f"unregistered detail code {detail!r}"
    raise CanonicalizationError(detail, message)


# ---------------------------------------------------------------------------
# Envelope reader (C2)
# ---------------------------------------------------------------------------


def parse_envelope_json(data: bytes) -> dict[str, Any]:
    """Parse received envelope bytes under every C2 rule.

    The fast path lets orjson parse and then proves the result clean: no
    ``\\u`` escape in the input (so no lone surrogate and no escaped colon),
    and ``proven_clean`` holds. orjson keeps the last of duplicate keys
    silently; without escapes every colon inside a string is literal in
    both input and orjson's output, so equal colon counts prove that no
    member was merged. Anything unproven goes to the slow reader, which is
    authoritative and names the exact defect.
    """
    _envelope_limits(data)
    if b"\\u" not in data:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            obj = None
        if type(obj) is dict and proven_clean(obj) and data.count(b":") == orjson.dumps(obj).count(b":"):
            return obj
    return _slow_parse_envelope(data)


def _reference_parse_envelope(data: bytes) -> dict[str, Any]:
    """``parse_envelope_json`` without its fast path: the reading it must equal."""
    _envelope_limits(data)
    return _slow_parse_envelope(data)


def _envelope_limits(data: bytes) -> None:
    if len(data) > MAX_ENVELOPE_BYTES:
        _fail("malformed.too_large", f"envelope is {len(data)} bytes, limit {MAX_ENVELOPE_BYTES}")
    if data.startswith(_BOM):
        _fail("malformed.bom", "envelope starts with a UTF-8 byte order mark")


def dumps_sorted(value: Any) -> bytes:
    """orjson's sorted compact form: equal to JCS for values ``proven_clean`` accepts."""
    return orjson.dumps(value, option=_SORT)


def proven_clean(value: Any, depth: int = 1) -> bool:
    """True when ``value`` provably holds nothing C2 refuses and JCS equals orjson's output.

    It refuses (returns False, never raises) floats, zero (which may have
    been ``-0``), integers beyond 2^53-1, keys outside the BMP (JCS sorts
    by UTF-16 code unit, orjson by code point), non-JSON types and depth
    beyond the cap. Leaves are checked inline: this runs on every call.
    """
    if depth > MAX_DEPTH:
        return False
    t = type(value)
    if t is dict:
        for k, v in value.items():
            if type(k) is not str or (not k.isascii() and max(k) > "\uffff"):
                return False
            tv = type(v)
            if tv is str:
                continue
            if tv is int:
                if not (0 < v <= MAX_SAFE_INTEGER or -MAX_SAFE_INTEGER <= v < 0):
                    return False
            elif not proven_clean(v, depth + 1):
                return False
        return True
    if t is list:
        return all(proven_clean(v, depth + 1) for v in value)
    if t is str or t is bool or value is None:
        return True
    if t is int:
        return bool(0 < value <= MAX_SAFE_INTEGER or -MAX_SAFE_INTEGER <= value < 0)
    return False


def _shown(token: str) -> str:
    """A number token as an error message quotes it: one short line whatever its length."""
    if len(token) <= 40:
        return repr(token)
    return f"'{token[:20]}...' ({len(token)} characters)"


def _digits(token: str) -> int:
    return len(token) - token.startswith("-")


def _reject_float(token: str) -> NoReturn:
    if token.startswith("-") and float(token) == 0.0:
        _fail("malformed.negative_zero", f"negative zero {_shown(token)}")
    _fail("malformed.float", f"non-integer number {_shown(token)} in envelope")


def _envelope_int(token: str) -> int:
    if _digits(token) > _SAFE_INTEGER_DIGITS:
        _fail("malformed.int_range", f"integer {_shown(token)} outside +-(2^53-1)")
    value = int(token)
    if value == 0 and token.startswith("-"):
        _fail("malformed.negative_zero", f"negative zero {_shown(token)}")
    if abs(value) > MAX_SAFE_INTEGER:
        _fail("malformed.int_range", f"integer {_shown(token)} outside +-(2^53-1)")
    return value


def _reject_constant(token: str) -> NoReturn:
    _fail("malformed.non_finite", f"{token} is not JSON")


def _unique_pairs(detail: str) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
            _fail(detail, f"duplicate key {dup!r}")
        return obj

    return hook


def _slow_parse_envelope(data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail("malformed.utf8", f"invalid UTF-8 at byte {exc.start}")
    obj = _ENVELOPE_JSON.loads(text)
    if type(obj) is not dict:
        _fail("malformed.not_object", "envelope top level is not an object")
    _check_strings_and_depth(obj, 1, "malformed.depth", "malformed.surrogate")
    return obj


def _check_strings_and_depth(value: Any, depth: int, depth_detail: str, surrogate_detail: str) -> None:
    """Refuse lone surrogates and excess depth, which ``json`` lets through."""
    if depth > MAX_DEPTH and type(value) in _CONTAINERS:
        _fail(depth_detail, f"nesting deeper than {MAX_DEPTH}")
    t = type(value)
    if t is str:
        _require_scalar_values(value, surrogate_detail)
    elif t is dict:
        for k, v in value.items():
            _require_scalar_values(k, surrogate_detail)
            _check_strings_and_depth(v, depth + 1, depth_detail, surrogate_detail)
    elif t is list:
        for v in value:
            _check_strings_and_depth(v, depth + 1, depth_detail, surrogate_detail)


def _require_scalar_values(text: str, detail: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            _fail(detail, "lone UTF-16 surrogate in a string")


def check_envelope_value(value: Any) -> dict[str, Any]:
    """Apply C2 to an envelope some other JSON parser already read (``_meta``).

    Duplicate keys are invisible here: that parser has already merged
    them. Everything else C2 forbids is still visible in the values.
    """
    if type(value) is not dict:
        _fail("malformed.not_object", "envelope is not an object")
    _check_value(value, 1)
    size = len(canonicalize(value))
    if size > MAX_ENVELOPE_BYTES:
        _fail("malformed.too_large", f"envelope is {size} bytes, limit {MAX_ENVELOPE_BYTES}")
    return value


def _check_value(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH and type(value) in _CONTAINERS:
        _fail("malformed.depth", f"nesting deeper than {MAX_DEPTH}")
    t = type(value)
    if t is dict:
        for k, v in value.items():
            if type(k) is not str:
                _fail("malformed.type", "object key is not a string")
            _require_scalar_values(k, "malformed.surrogate")
            _check_value(v, depth + 1)
    elif t is list:
        for v in value:
            _check_value(v, depth + 1)
    elif t is str:
        _require_scalar_values(value, "malformed.surrogate")
    elif t is int:
        if abs(value) > MAX_SAFE_INTEGER:
            _fail("malformed.int_range", f"integer of {value.bit_length()} bits outside +-(2^53-1)")
    elif t is float:
        if value == 0.0 and math.copysign(1.0, value) < 0:
            _fail("malformed.negative_zero", "negative zero")
        if not math.isfinite(value):
            _fail("malformed.non_finite", f"{value!r} is not JSON")
        _fail("malformed.float", f"non-integer number {value!r} in envelope")
    elif not (t is bool or value is None):
        _fail("malformed.type", f"{t.__name__} is not a JSON type")


# ---------------------------------------------------------------------------
# Arguments reader (C3)
# ---------------------------------------------------------------------------

_ARGS: Final = "args.not_canonicalizable"


def _args_float(token: str) -> float:
    value = float(token)
    if math.isinf(value):
        _fail(_ARGS, f"number {_shown(token)} overflows to infinity")
    if value == 0.0 and math.copysign(1.0, value) < 0:
        _fail(_ARGS, f"number {_shown(token)} is negative zero")
    return value


def _args_int(token: str) -> int | float:
    if _digits(token) > _DOUBLE_DIGITS:
        _fail(_ARGS, f"integer {_shown(token)} overflows a double")
    value = int(token)
    if value == 0 and token.startswith("-"):
        _fail(_ARGS, "number '-0' is negative zero")
    if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return value
    try:
        as_double = float(value)
    except OverflowError:
        _fail(_ARGS, f"integer {_shown(token)} overflows a double")
    if _format_number(as_double) != token:
        _fail(_ARGS, f"integer {_shown(token)} is not exactly representable as a double")
    return as_double


def _args_constant(token: str) -> NoReturn:
    _fail(_ARGS, f"{token} is not a finite number")


class _StrictJSON:
    """``json.loads`` with the hooks of one reading, its failures mapped to detail codes."""

    def __init__(
        self,
        *,
        pairs_detail: str,
        parse_float: Callable[[str], Any],
        parse_int: Callable[[str], Any],
        parse_constant: Callable[[str], Any],
        depth_detail: str,
        syntax_detail: str,
    ) -> None:
        self._hooks: dict[str, Any] = {
            "object_pairs_hook": _unique_pairs(pairs_detail),
            "parse_float": parse_float,
            "parse_int": parse_int,
            "parse_constant": parse_constant,
        }
        self._depth_detail = depth_detail
        self._syntax_detail = syntax_detail

    def loads(self, text: str) -> Any:
        try:
            return json.loads(text, **self._hooks)
        except RecursionError:
            _fail(self._depth_detail, f"nesting deeper than {MAX_DEPTH}")
        except json.JSONDecodeError as exc:
            _fail(self._syntax_detail, f"not JSON: {exc.msg} at {exc.pos}")


_ENVELOPE_JSON = _StrictJSON(
    pairs_detail="malformed.duplicate_key",
    parse_float=_reject_float,
    parse_int=_envelope_int,
    parse_constant=_reject_constant,
    depth_detail="malformed.depth",
    syntax_detail="malformed.json",
)
_ARGS_JSON = _StrictJSON(
    pairs_detail=_ARGS,
    parse_float=_args_float,
    parse_int=_args_int,
    parse_constant=_args_constant,
    depth_detail=_ARGS,
    syntax_detail="args.not_json",
)


def parse_arguments(data: bytes | str) -> Any:
    """Read a JSON document by C3 rules: numbers are doubles, nothing lossy passes."""
    if isinstance(data, bytes):
        if data.startswith(_BOM):
            _fail("args.not_json", "document starts with a byte order mark")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            _fail("args.not_json", f"invalid UTF-8 at byte {exc.start}")
    value = _ARGS_JSON.loads(data)
    _check_strings_and_depth(value, 1, _ARGS, _ARGS)
    return value


# ---------------------------------------------------------------------------
# Writer (C1, C4)
# ---------------------------------------------------------------------------


def canonicalize(value: Any) -> bytes:
    """Return the RFC 8785 bytes of a JSON value.

    Raises ``CanonicalizationError`` for values JCS cannot represent
    (non-finite or negative-zero floats, integers that are not exact
    doubles, lone surrogates, non-string keys, non-JSON types).
    """
    if _fast_ok(value, 1):
        try:
            return orjson.dumps(value, option=_SORT)
        except orjson.JSONEncodeError:
            pass  # lone surrogate: the full writer names it
    return _reference_canonicalize(value)


def _reference_canonicalize(value: Any) -> bytes:
    """The full JCS writer alone: the output the orjson fast path must equal byte for byte."""
    parts: list[str] = []
    _write(value, parts, 1)
    return "".join(parts).encode("utf-8")


def canonicalize_arguments(value: Any) -> bytes:
    """Canonicalize runtime arguments, mapping every refusal to the C3 detail."""
    try:
        return canonicalize(value)
    except CanonicalizationError as exc:
        raise CanonicalizationError(_ARGS, str(exc)) from None


def _fast_ok(value: Any, depth: int) -> bool:
    """Prove orjson's sorted output equals JCS for ``value``.

    orjson sorts keys by code point and JCS by UTF-16 code unit; the two
    orders agree unless a key holds a character outside the BMP. Floats are
    formatted differently by the two, and integers beyond 2^53-1 need the C3
    exactness check, so both take the slow path. Unlike ``proven_clean``,
    zero is fine here: a Python int has no negative zero. Leaves are checked
    inline because this runs on the arguments of every call.
    """
    if depth > MAX_DEPTH:
        return False
    t = type(value)
    if t is dict:
        obj: dict[Any, Any] = value  # typed, so that mypyc iterates it natively
        for k, v in obj.items():
            if type(k) is not str or (not k.isascii() and max(k) > "\uffff") or not _fast_member(v, depth):
                return False
        return True
    if t is list:
        seq: list[Any] = value
        return all(_fast_member(v, depth) for v in seq)
    return _fast_leaf(value)


def _fast_member(v: Any, depth: int) -> bool:
    """One member or element: the common leaves inline, containers one level deeper."""
    tv = type(v)
    if tv is str or tv is bool or v is None:
        return True
    if tv is int:
        return bool(-MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER)
    return _fast_ok(v, depth + 1)


def _fast_leaf(value: Any) -> bool:
    t = type(value)
    if t is int:
        return bool(-MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER)
    return t is str or t is bool or value is None


_ESCAPES: Final = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def _write_string(text: str, parts: list[str]) -> None:
    _require_scalar_values(text, "canonical.surrogate")
    out = ['"']
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    parts.append("".join(out))


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _write(value: Any, parts: list[str], depth: int) -> None:
    if depth > MAX_DEPTH and isinstance(value, Mapping | list | tuple):
        _fail("canonical.depth", f"nesting deeper than {MAX_DEPTH}")
    if value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, str):
        _write_string(value, parts)
    elif isinstance(value, int):
        parts.append(_format_int(value))
    elif isinstance(value, float):
        parts.append(_format_number(value))
    elif isinstance(value, Mapping):  # any mapping, as the type hints promise (MappingProxyType, ...)
        if not all(isinstance(k, str) for k in value):
            _fail("canonical.key_type", "object keys must be strings")
        parts.append("{")
        for i, key in enumerate(sorted(value, key=_utf16_key)):
            if i:
                parts.append(",")
            _write_string(key, parts)
            parts.append(":")
            _write(value[key], parts, depth + 1)
        parts.append("}")
    elif isinstance(value, list | tuple):
        parts.append("[")
        for i, item in enumerate(value):
            if i:
                parts.append(",")
            _write(item, parts, depth + 1)
        parts.append("]")
    else:
        _fail("canonical.type", f"{type(value).__name__} is not a JSON type")


def _format_int(value: int) -> str:
    """Integers are doubles in JCS: accept one only if it survives the round trip."""
    if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return str(value)
    try:  # before str(): an int too long for a double may be too long for str() too
        as_double = float(value)
    except OverflowError:
        _fail("canonical.int_range", f"integer of {value.bit_length()} bits overflows a double")
    token = str(value)
    if _format_number(as_double) != token:
        _fail("canonical.int_range", f"integer {_shown(token)} is not exactly representable as a double")
    return token


def _format_number(value: float) -> str:
    """ECMAScript Number::toString, which RFC 8785 section 3.2.2.3 prescribes."""
    if math.isnan(value) or math.isinf(value):
        _fail("canonical.non_finite", f"{value!r} is not a finite number")
    if value == 0.0:
        if math.copysign(1.0, value) < 0:
            _fail("canonical.negative_zero", "negative zero has no canonical form")
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exp_text = repr(abs(value)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part.rstrip("0")).lstrip("0")
    # n: position of the decimal point relative to the digit string.
    point = len(int_part) + (int(exp_text) if exp_text else 0)
    if int_part == "0":
        stripped = frac_part.rstrip("0")
        point = -(len(stripped) - len(stripped.lstrip("0"))) + (int(exp_text) if exp_text else 0)
        digits = stripped.lstrip("0")
    k = len(digits)
    if k <= point <= 21:
        return sign + digits + "0" * (point - k)
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * (-point) + digits
    exponent = point - 1
    exp_sign = "+" if exponent >= 0 else "-"
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{head}e{exp_sign}{abs(exponent)}"
