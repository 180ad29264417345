"""What a ``tools/call`` said on the wire: its envelope and arguments, exactly as sent.

The listeners read messages with orjson, which keeps the last of duplicate
keys, turns integers past 2^64 into doubles and ``-0`` into ``0``. Judged
on that reading, a duplicate ``signature`` key or a C3-refused number would
pass (PROFILE C2, C3 apply to the bytes received). So before a call is
verified, its raw message is checked: when nothing in it can have been
read lossily (no ``\\u`` escape, no bare ``-0``, no 20-digit number, and as
many colons as orjson writes back, so no member was merged) the parsed
values are exact; otherwise the message is read again keeping every
member and every number token as written, and the envelope and arguments
go to the verifier as JSON text, so the core's strict readers judge them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from mcp_attest import META_KEY
from mcp_attest.errors import Error

__all__ = ["AmbiguousCallError", "CallInputs", "call_inputs"]

_LOSSY = re.compile(rb"\\u|-0(?![.\deE])|\d{20}")


class AmbiguousCallError(Error, ValueError):
    """A call whose own structure (not its envelope or arguments) is ambiguous: refused, never judged."""


@dataclass(frozen=True, slots=True)
class CallInputs:
    """What the verifier gets: parsed values when exact, else the JSON text as sent."""

    envelope: Mapping[str, Any] | bytes | None
    arguments: Mapping[str, Any] | bytes
    size: int = 0
    """Bytes of the message as received: what decides whether judging it is heavy work."""


class _Members(list[tuple[str, Any]]):
    """An object with every member kept, duplicates included, in order."""


class _Number(str):
    """A number token exactly as written."""


def call_inputs(raw: bytes | None, message: Mapping[str, Any]) -> CallInputs:
    """The envelope and arguments of the ``tools/call`` in ``raw`` (``message`` is orjson's reading)."""
    params = message.get("params")
    params = params if isinstance(params, dict) else {}
    meta = params.get("_meta")
    if raw is None or (_LOSSY.search(raw) is None and raw.count(b":") == orjson.dumps(message).count(b":")):
        return CallInputs(_envelope_value(meta), params.get("arguments") or {}, len(raw or b""))
    return _exact(raw)


def _envelope_value(meta: Any) -> Mapping[str, Any] | bytes | None:
    """A present ``_meta.attestation`` that is not an object goes as JSON text (V1 rejects it)."""
    if not isinstance(meta, dict) or META_KEY not in meta:
        return None
    value = meta[META_KEY]
    return value if isinstance(value, dict) else orjson.dumps(value)


def _exact(raw: bytes) -> CallInputs:
    try:
        doc = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_Members,
            parse_int=_Number,
            parse_float=_Number,
            parse_constant=_Number,
        )
    except (ValueError, RecursionError):
        raise AmbiguousCallError("the message is not strict JSON") from None
    params = _member(doc, "params")
    meta = _member(params, "_meta")
    envelope = _member(meta, META_KEY, absent=_ABSENT)
    arguments = _member(params, "arguments")
    return CallInputs(
        None if envelope is _ABSENT else _write(envelope).encode(),
        {} if arguments is None else _write(arguments).encode(),
        len(raw),
    )


_ABSENT = object()


def _member(obj: Any, name: str, absent: Any = None) -> Any:
    """Member ``name`` of an object whose member names must be unique (they frame the call)."""
    if not isinstance(obj, _Members):
        return absent
    names = [key for key, _ in obj]
    if len(set(names)) != len(names):
        dup = next(key for i, key in enumerate(names) if key in names[:i])
        raise AmbiguousCallError(f"duplicate key {dup[:64]!r}")
    return dict(obj).get(name, absent)


def _write(value: Any) -> str:
    """ASCII JSON text with duplicate members and number tokens as the client wrote them."""
    if isinstance(value, _Members):
        return "{" + ",".join(json.dumps(k) + ":" + _write(v) for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_write(v) for v in value) + "]"
    if isinstance(value, _Number):
        return str(value)
    return json.dumps(value)
