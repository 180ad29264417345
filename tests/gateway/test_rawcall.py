"""``gateway.rawcall``: what the verifier is given for a call, read from the bytes received."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from mcp_attest.canonical import parse_arguments, parse_envelope_json
from mcp_attest.gateway._rawcall import AmbiguousCallError, call_inputs


def _inputs(raw: bytes) -> Any:
    return call_inputs(raw, orjson.loads(raw))


def _call(params: str) -> bytes:
    return b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":%s}' % params.encode()


def test_lossless_messages_keep_orjsons_reading() -> None:
    raw = _call('{"name":"t","arguments":{"a":[1,2.5,"x:y"]},"_meta":{"attestation":{"v":1}}}')
    got = _inputs(raw)
    assert got.envelope == {"v": 1} and got.arguments == {"a": [1, 2.5, "x:y"]} and got.size == len(raw)
    assert _inputs(_call('{"name":"t"}')).envelope is None
    assert _inputs(_call('{"name":"t","_meta":{"attestation":[1]}}')).envelope == b"[1]"  # V1 judges it


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        (
            '{"name":"t","arguments":{},"_meta":{"attestation":{"sub":"a","sub":"b"}}}',
            "malformed.duplicate_key",
        ),
        ('{"name":"t","arguments":{},"_meta":{"attestation":{"n":-0}}}', "malformed.negative_zero"),
        (
            '{"name":"t","arguments":{},"_meta":{"attestation":{"sub":"a","s\\u0075b":"b"}}}',
            "malformed.duplicate_key",
        ),
    ],
)
def test_lossy_envelopes_reach_the_verifier_as_written(params: str, detail: str) -> None:
    envelope = _inputs(_call(params)).envelope
    assert isinstance(envelope, bytes)
    with pytest.raises(ValueError) as caught:
        parse_envelope_json(envelope)
    assert getattr(caught.value, "detail", None) == detail


@pytest.mark.parametrize(
    "arguments", ['{"n":-0}', '{"n":18446744073709551617}', '{"n":1,"n":2}', '{"n":1E400}']
)
def test_lossy_arguments_reach_the_verifier_as_written(arguments: str) -> None:
    raw = _call('{"name":"t","arguments":%s}' % arguments)  # noqa: UP031
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:  # 1E400: orjson refuses it outright, the listener answers -32700
        return
    got = call_inputs(raw, message)
    assert isinstance(got.arguments, bytes)
    with pytest.raises(ValueError, match=r"negative zero|representable|duplicate"):
        parse_arguments(got.arguments)


def test_escaped_text_goes_the_exact_way_and_means_the_same() -> None:
    raw = _call('{"name":"t","arguments":{"k":"caf\\u00e9 \\ud83d\\ude00"}}')
    got = _inputs(raw)
    assert isinstance(got.arguments, bytes) and parse_arguments(got.arguments) == {"k": "café 😀"}


@pytest.mark.parametrize(
    "raw",
    [
        _call('{"name":"evil","name":"t","arguments":{}}'),
        _call('{"name":"t","_meta":{},"_meta":{"attestation":{"v":1}}}'),
        _call('{"name":"t","_meta":{"attestation":{"v":1},"attestation":{"v":2}}}'),
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"},"params":{"name":"t"}}',
    ],
)
def test_duplicates_that_frame_the_call_are_ambiguous(raw: bytes) -> None:
    with pytest.raises(AmbiguousCallError, match="duplicate key"):
        _inputs(raw)


def test_bytes_orjson_took_but_strict_json_does_not_are_ambiguous() -> None:
    raw = _call('{"name":"t","arguments":{"k":"\\u00e9"}}')
    with pytest.raises(AmbiguousCallError, match="not strict JSON"):
        call_inputs(raw[:-1] + b"\xff", orjson.loads(raw))
