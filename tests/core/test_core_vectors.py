"""The PR #2789 v0 vectors, read as plain JSON: canonical bytes (C1) and signatures (V3).

The full older-dialect reader (``--dialect vaara-v0``) is another issue; this
is the byte-level check that our JCS writer and signature code agree with
the reference implementation on every case that ships canonical bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from mcp_attest import CanonicalizationError, ES256Key, HS256Key, RS256Key, canonicalize
from mcp_attest.canonical import parse_envelope_json
from shared_paths import v0_vectors

REPO = Path(__file__).resolve().parents[2]
VECTORS = v0_vectors()
TAMPERED = {"07-tampered-planner-declared", "08-tampered-issuer-asserted", "14-alg-downgrade-none"}

if not VECTORS.is_dir():
    if os.environ.get("CI", "").lower() == "true":
        raise RuntimeError(f"v0 vectors missing at {VECTORS}; CI requires them")
    pytest.skip(f"v0 vectors not found at {VECTORS}", allow_module_level=True)


def _cases() -> list[Path]:
    return sorted(p.parent for p in VECTORS.glob("*/*/*/canonical_signing_input.bin"))


CASES = _cases()
NORMATIVE = [c for c in CASES if c.parts[-3] == "normative"]


def _body(case: Path) -> dict[str, Any]:
    path = case / "signed_envelope.json"
    if not path.exists():
        path = case / "unsigned_envelope.json"
    body = json.loads(path.read_text())
    body.pop("signature", None)
    return body


def _signature(case: Path) -> str:
    return str(json.loads((case / "signed_envelope.json").read_text())["signature"])


def _expected(case: Path) -> dict[str, Any]:
    return json.loads((case / "expected.json").read_text())  # type: ignore[no-any-return]


def _raw_verify(material: str, signature_hex: str, message: bytes) -> bool:
    """Verify with the plain cryptography/hmac APIs, independently of mcp_attest."""
    data = (VECTORS / material).read_bytes()
    sig = bytes.fromhex(signature_hex)
    if material.endswith(".bin"):
        return hmac.compare_digest(hmac.digest(data, message, "sha256"), sig)
    key = serialization.load_pem_public_key(data)
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            if len(sig) != 64:
                return False
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            key.verify(der, message, ec.ECDSA(hashes.SHA256()))
        else:
            assert isinstance(key, rsa.RSAPublicKey)
            key.verify(sig, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _our_verify(material: str, signature_hex: str, message: bytes) -> bool:
    """The same check through mcp_attest's key classes."""
    data = (VECTORS / material).read_bytes()
    if material.endswith(".bin"):
        return HS256Key("v1", data).verify(signature_hex, message)
    key = serialization.load_pem_public_key(data)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ES256Key("v1", key).verify(signature_hex, message)
    assert isinstance(key, rsa.RSAPublicKey)
    return RS256Key("v1", key).verify(signature_hex, message)


def _signer_material(case: Path) -> str:
    alg = _body(case)["issuerAsserted"]["alg"]
    return {"ES256": "keys/es256_public.pem", "RS256": "keys/rs256_public.pem"}.get(
        alg, "keys/hs256_secret.bin"
    )


def test_c1_v0_vectors_present() -> None:
    assert len(NORMATIVE) == 9, [c.name for c in NORMATIVE]
    assert len(CASES) == 13
    manifest = json.loads((VECTORS / "MANIFEST.json").read_text())
    for name, meta in manifest["keys"].items():
        assert hashlib.sha256((VECTORS / "keys" / name).read_bytes()).hexdigest() == meta["sha256"]


@pytest.mark.parametrize("case", NORMATIVE, ids=lambda c: c.name)
def test_c1_v0_vector_canonical_bytes(case: Path) -> None:
    expected = (case / "canonical_signing_input.bin").read_bytes()
    assert expected.hex() == (case / "canonical_signing_input.hex").read_text().strip()
    present = canonicalize(_body(case))
    if case.name in TAMPERED:
        assert present != expected
    else:
        assert present == expected


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_c1_v0_vector_bin_is_the_signed_input(case: Path) -> None:
    """Every shipped .bin verifies under the key that signed it; the present body does iff it is unchanged."""
    material, sig = _signer_material(case), _signature(case)
    signed = (case / "canonical_signing_input.bin").read_bytes()
    assert _raw_verify(material, sig, signed) is True
    assert _our_verify(material, sig, signed) is True
    present = canonicalize(_body(case))
    assert _raw_verify(material, sig, present) is (present == signed)


@pytest.mark.parametrize("case", NORMATIVE, ids=lambda c: c.name)
def test_v3_v0_vector_signature_verification(case: Path) -> None:
    expected = _expected(case)
    present = canonicalize(_body(case))
    sig = _signature(case)
    result = _raw_verify(expected["verifying_material"], sig, present)
    assert result is expected["verification_result"]
    assert _our_verify(expected["verifying_material"], sig, present) is result
    if case.name in TAMPERED:
        assert result is False
    else:
        assert result is True


def test_c2_v0_vector_09_float_rejected() -> None:
    case = VECTORS / "normative" / "negative" / "09-ieee754-float-in-canonical-input"
    assert _expected(case)["verification_result"] is False
    with pytest.raises(CanonicalizationError) as info:
        parse_envelope_json((case / "unsigned_envelope.json").read_bytes())
    assert info.value.detail == "malformed.float"
