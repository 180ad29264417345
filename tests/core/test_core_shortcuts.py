"""The verify path's shortcuts give exactly what the plain code would (both builds).

Each shortcut skips a Python-level step that mypyc cannot speed up (a
namedtuple's generated ``__new__``, a regex, a second serialization); these
tests pin each one to the slow form it replaces.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from _core_helpers import OTHER_SERVER, P256_N, entry, sign_wire, unsigned_wire
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from mcp_attest import ArgsBinding, Envelope, Key, Verdict
from mcp_attest.algorithms import _der_signature
from mcp_attest.canonical import canonicalize
from mcp_attest.envelope import lower_hex_bytes
from mcp_attest.verifier import _accepted_verdict


def test_accepted_verdict_matches_the_keyword_constructor_field_by_field() -> None:
    fields: dict[str, Any] = {
        "verified_at": 1.5,
        "verifier_fingerprint": "fp",
        "attestation_id": "id",
        "iss": "iss",
        "sub": "sub",
        "secret_version": "kid",
        "alg": "ES256",
        "tool_call_index": 3,
        "args_binding": ArgsBinding.REF_DIGEST,
        "unknown_fields": ("/x",),
        "projection_binding": ArgsBinding.REDACTED,
    }
    fast = _accepted_verdict(**fields)
    slow = Verdict(accepted=True, reason=None, detail=None, **fields)
    assert type(fast) is Verdict
    assert fast._asdict() == slow._asdict()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00ff", b"\x00\xff"),
        ("", None),
        ("00FF", None),
        ("00 ff", None),
        ("0", None),
        ("0x00", None),
        ("\u00e9\u00e9", None),
    ],
)
def test_lower_hex_bytes_takes_only_non_empty_lowercase_hex(text: str, expected: bytes | None) -> None:
    assert lower_hex_bytes(text) == expected


_SCALAR = st.one_of(
    st.integers(1, P256_N - 1),
    st.integers(1, 2**64),  # leading zero bytes to strip
    st.integers(1, 2**248 - 1).map(lambda v: v | 1 << (v.bit_length() // 8 * 8 + 7)),  # stripped, high bit
    st.sampled_from([1, 0x7F, 0x80, 0xFF, 2**255, 2**255 - 1, P256_N - 1]),  # sign-bit edges
    st.sampled_from([0, P256_N, P256_N + 1, 2**256 - 1]),  # outside 1..n-1
    st.integers(P256_N, 2**256 - 1),
)


@given(_SCALAR, _SCALAR)
def test_der_signature_equals_cryptography_encoding(r: int, s: int) -> None:
    expected = encode_dss_signature(r, s) if 0 < r < P256_N and 0 < s < P256_N else None
    assert _der_signature(r.to_bytes(32, "big"), s.to_bytes(32, "big")) == expected


def _plain_verify(key: Key, signature_hex: str, message: bytes) -> bool:
    """ES256 and RS256 verify as written without shortcuts: ints, ``encode_dss_signature``,
    ``cryptography`` hashing the message itself."""
    if lower_hex_bytes(signature_hex) is None:
        return False
    public: Any = key._public  # type: ignore[attr-defined]
    try:
        if key.alg == "RS256":
            if len(signature_hex) != public.key_size // 4:
                return False
            public.verify(bytes.fromhex(signature_hex), message, padding.PKCS1v15(), hashes.SHA256())
            return True
        if len(signature_hex) != 128:
            return False
        r, s = int(signature_hex[:64], 16), int(signature_hex[64:], 16)
        if not (0 < r < P256_N and 0 < s < P256_N):
            return False
        public.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


@given(alg=st.sampled_from(["ES256", "RS256"]), message=st.binary(max_size=300), data=st.data())
def test_asymmetric_verify_equals_the_plain_cryptography_calls(
    keys: dict[str, Key], alg: str, message: bytes, data: st.DataObject
) -> None:
    """The digest handed over (``_verify_hashed``) and the bytes-only DER decide as the plain calls."""
    key = keys[alg]
    good = key.sign(message)
    half = len(good) // 2
    if alg == "ES256":
        r, s = (data.draw(st.one_of(st.just(int(part, 16)), _SCALAR)) for part in (good[:half], good[half:]))
        signature = f"{r:064x}{s:064x}"
    else:
        signature = data.draw(st.sampled_from([good, good[:-1] + "0", "0" * len(good)]))
    signed = data.draw(st.sampled_from([message, message + b"x"]))
    expected = _plain_verify(key, signature, signed)
    assert key.verify(signature, signed) is expected
    assert key._verify_hashed(signature, signed, hashlib.sha256(signed).digest()) is expected


def test_key_verify_refuses_a_signature_with_a_space_between_bytes(keys: dict[str, Key]) -> None:
    """``bytes.fromhex`` skips whitespace between bytes; the round trip must not."""
    for key in keys.values():
        sig = key.sign(b"m")
        assert key.verify(sig[:2] + " " + sig[2:-1], b"m") is False


@pytest.mark.parametrize(
    "calls",
    [
        None,
        [entry(), entry(name="other", server=OTHER_SERVER, ref={"uri": "urn:x", "digest": "A" * 43})],
    ],
)
@pytest.mark.parametrize("canonical_bytes", [True, False])
def test_fast_reader_builds_the_envelope_the_schema_reader_builds(
    keys: dict[str, Key], calls: list[dict[str, Any]] | None, canonical_bytes: bool
) -> None:
    """Canonical input takes the byte-equality proof, other spacing the colon count."""
    wire = sign_wire(unsigned_wire("HS256", calls=calls), keys["HS256"])
    data = canonicalize(wire) if canonical_bytes else json.dumps(wire, indent=1).encode()
    fast = Envelope.from_json(data)
    slow = Envelope.from_wire(json.loads(data))
    assert fast[:-1] == slow[:-1]
    assert fast.signing_input() == slow.signing_input() == canonicalize(
        {k: v for k, v in wire.items() if k != "signature"}
    )
    assert fast.proven_input is not None
    assert type(fast.issuer_asserted) is type(slow.issuer_asserted)
