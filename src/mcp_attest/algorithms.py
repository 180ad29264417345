"""HS256, ES256 and RS256 keys, each bound to exactly one algorithm (PROFILE K2, K6, E7).

A key object knows its algorithm; the verifier only ever asks a key to
verify an envelope whose ``alg`` equals the key's, so no byte string can be
reinterpreted as another algorithm's key (no algorithm confusion).
"""

from __future__ import annotations

import hashlib
import hmac
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Final, Generic, TypeVar

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from mcp_attest.envelope import b64url_decode, b64url_encode, lower_hex_bytes
from mcp_attest.errors import ConfigurationError

__all__ = [
    "ALGORITHMS",
    "ES256Key",
    "HS256Key",
    "Key",
    "KeyMaterialError",
    "RS256Key",
    "key_from_jwk",
]

ALGORITHMS: Final = ("HS256", "ES256", "RS256")
_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
# Equal-length big-endian bytes compare as the numbers they spell, so the
# 1..n-1 range check on r and s needs no int conversion.
_P256_ORDER_BYTES: Final = _P256_ORDER.to_bytes(32, "big")
_ZERO_32: Final = bytes(32)
_MIN_HMAC_BYTES: Final = 32
_MIN_RSA_BITS: Final = 2048
_SHA256: Final = hashes.SHA256()
_ECDSA: Final = ec.ECDSA(_SHA256)
_SHA256_DIGEST: Final = Prehashed(_SHA256)
_ECDSA_DIGEST: Final = ec.ECDSA(_SHA256_DIGEST)
_PKCS1: Final = padding.PKCS1v15()
_Public = TypeVar("_Public", ec.EllipticCurvePublicKey, rsa.RSAPublicKey)
_Private = TypeVar("_Private", ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)


class KeyMaterialError(ConfigurationError):
    """A key that must not be used; the message names it (K2, K3)."""


class Key(ABC):
    """One verification (and maybe signing) key with its kid and algorithm."""

    alg: ClassVar[str]
    kid: str

    @property
    @abstractmethod
    def can_sign(self) -> bool:
        """Whether the private half is present."""

    @abstractmethod
    def verify(self, signature_hex: str, message: bytes) -> bool:
        """Check an E7 signature; never raises for a bad signature."""

    def _verify_hashed(self, signature_hex: str, message: bytes, digest: bytes) -> bool:
        """``verify`` for a caller that already holds ``digest``, the SHA-256 of ``message``.

        The verifier hashes the signing input for the attestation id (A1)
        anyway; ES256 and RS256 check their signature against that digest
        instead of having ``cryptography`` hash the message again, which
        costs about 1 us of a 20-65 us verify. HS256 reads only ``message``
        (HMAC is keyed, a plain digest is no use to it). A key class of
        one's own implements ``verify`` and inherits this.
        """
        return self.verify(signature_hex, message)

    @abstractmethod
    def sign(self, message: bytes) -> str:
        """Return the E7 lowercase-hex signature of ``message``."""

    @abstractmethod
    def public_jwk(self) -> dict[str, Any]:
        """The verify-only JWK (for HS256 the secret itself: it is symmetric)."""

    @abstractmethod
    def private_jwk(self) -> dict[str, Any]:
        """The full JWK with private members, for signing keyrings."""

    def _jwk_head(self, kty: str) -> dict[str, Any]:
        return {"kty": kty, "kid": self.kid, "alg": self.alg}


def _looks_like_key_text(secret: bytes) -> bool:
    """Whether an HMAC secret is really another key pasted in (K2 confusion guard).

    Only text that parses as such counts: a random secret that happens to
    start with ``{`` or whitespace is still a fine secret.
    """
    text = secret.strip()
    if text.startswith(b"-----BEGIN"):
        return True
    if text.startswith(b"{"):
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            return False
        return isinstance(obj, dict) and "kty" in obj
    return False


class HS256Key(Key):
    """HMAC-SHA256 over a raw secret of at least 32 bytes."""

    alg = "HS256"

    def __init__(self, kid: str, secret: bytes) -> None:
        if len(secret) < _MIN_HMAC_BYTES:
            raise KeyMaterialError(f"key {kid!r}: HS256 secret is {len(secret)} bytes, need >= 32")
        if _looks_like_key_text(secret):
            raise KeyMaterialError(f"key {kid!r}: HS256 secret looks like a PEM or JWK key, not raw bytes")
        self.kid = kid
        self._secret = secret

    @property
    def can_sign(self) -> bool:
        return True

    def verify(self, signature_hex: str, message: bytes) -> bool:
        return self._verify_hashed(signature_hex, message, b"")  # HMAC reads the message, never a digest

    def _verify_hashed(self, signature_hex: str, message: bytes, digest: bytes) -> bool:
        # Only ASCII text can be compared in constant time; anything but the
        # expected lowercase hex then simply differs from it (E7).
        if not signature_hex.isascii():
            return False
        expected = hmac.digest(self._secret, message, "sha256").hex()
        return hmac.compare_digest(expected, signature_hex)

    def sign(self, message: bytes) -> str:
        return hmac.digest(self._secret, message, "sha256").hex()

    def public_jwk(self) -> dict[str, Any]:
        return self.private_jwk()

    def private_jwk(self) -> dict[str, Any]:
        return {**self._jwk_head("oct"), "k": b64url_encode(self._secret)}

    def __repr__(self) -> str:
        return f"HS256Key(kid={self.kid!r}, secret=<redacted>)"


class _AsymmetricKey(Key, Generic[_Public, _Private]):
    """The part ES256 and RS256 share: a public key, maybe its private half."""

    _public: _Public
    _private: _Private | None

    def __init__(self, kid: str, public: _Public, private: _Private | None = None) -> None:
        self.kid = kid
        self._public = public
        self._private = private

    @property
    def can_sign(self) -> bool:
        return self._private is not None

    def verify(self, signature_hex: str, message: bytes) -> bool:
        return self._verify_hashed(signature_hex, message, hashlib.sha256(message).digest())

    def _signer(self) -> _Private:
        private = self._private
        if private is None:
            raise KeyMaterialError(f"key {self.kid!r}: no private key to sign with")
        return private

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kid={self.kid!r}, private={self.can_sign})"


class ES256Key(_AsymmetricKey[ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey]):
    """ECDSA P-256 with SHA-256; signatures are raw r||s, never DER (E7)."""

    alg = "ES256"

    def __init__(
        self,
        kid: str,
        public: ec.EllipticCurvePublicKey,
        private: ec.EllipticCurvePrivateKey | None = None,
    ) -> None:
        if not isinstance(public.curve, ec.SECP256R1):
            raise KeyMaterialError(f"key {kid!r}: ES256 needs a P-256 key, got {public.curve.name}")
        super().__init__(kid, public, private)

    def _verify_hashed(self, signature_hex: str, message: bytes, digest: bytes) -> bool:
        raw = lower_hex_bytes(signature_hex) if len(signature_hex) == 128 else None
        der = _der_signature(raw[:32], raw[32:]) if raw is not None else None
        if der is None:
            return False
        try:
            self._public.verify(der, digest, _ECDSA_DIGEST)
        except InvalidSignature:
            return False
        return True

    def sign(self, message: bytes) -> str:
        r, s = decode_dss_signature(self._signer().sign(message, _ECDSA))
        if s > _P256_ORDER // 2:  # K6: issuers emit low-S
            s = _P256_ORDER - s
        return f"{r:064x}{s:064x}"

    def public_jwk(self) -> dict[str, Any]:
        nums = self._public.public_numbers()
        return {
            **self._jwk_head("EC"),
            "crv": "P-256",
            "x": b64url_encode(nums.x.to_bytes(32, "big")),
            "y": b64url_encode(nums.y.to_bytes(32, "big")),
        }

    def private_jwk(self) -> dict[str, Any]:
        jwk = self.public_jwk()
        if self._private is not None:
            d = self._private.private_numbers().private_value
            jwk["d"] = b64url_encode(d.to_bytes(32, "big"))
        return jwk


def _der_integer(big_endian: bytes) -> bytes:
    """A positive DER INTEGER: minimal length, a zero byte before a set high bit.

    A 32-byte value without leading zero bytes (all but 1 in 256 of
    them) takes one of two constant headers.
    """
    first = big_endian[0]
    if first & 0x80:
        return b"\x02\x21\x00" + big_endian
    if first:
        return b"\x02\x20" + big_endian
    digits = big_endian.lstrip(b"\x00")
    if digits[0] & 0x80:
        digits = b"\x00" + digits
    return b"\x02" + bytes((len(digits),)) + digits


def _der_signature(r: bytes, s: bytes) -> bytes | None:
    """``encode_dss_signature`` for the 32-byte r and s of P-256, or ``None`` unless both are in 1..n-1.

    Works on the bytes, with no int round trip (0.5 us of ES256's
    overhead). At most 2 * 35 bytes of content, so the short length form
    always applies.
    """
    if not (_ZERO_32 < r < _P256_ORDER_BYTES and _ZERO_32 < s < _P256_ORDER_BYTES):
        return None
    body = _der_integer(r) + _der_integer(s)
    return b"\x30" + bytes((len(body),)) + body


class RS256Key(_AsymmetricKey[rsa.RSAPublicKey, rsa.RSAPrivateKey]):
    """RSASSA-PKCS1-v1_5 with SHA-256 on a modulus of at least 2048 bits."""

    alg = "RS256"

    def __init__(
        self,
        kid: str,
        public: rsa.RSAPublicKey,
        private: rsa.RSAPrivateKey | None = None,
    ) -> None:
        if public.key_size < _MIN_RSA_BITS:
            raise KeyMaterialError(f"key {kid!r}: RSA modulus is {public.key_size} bits, need >= 2048")
        super().__init__(kid, public, private)
        self._hex_len = 2 * ((public.key_size + 7) // 8)

    def _verify_hashed(self, signature_hex: str, message: bytes, digest: bytes) -> bool:
        raw = lower_hex_bytes(signature_hex) if len(signature_hex) == self._hex_len else None
        if raw is None:
            return False
        try:
            self._public.verify(raw, digest, _PKCS1, _SHA256_DIGEST)
        except InvalidSignature:
            return False
        return True

    def sign(self, message: bytes) -> str:
        return self._signer().sign(message, _PKCS1, _SHA256).hex()

    def public_jwk(self) -> dict[str, Any]:
        nums = self._public.public_numbers()
        return {**self._jwk_head("RSA"), "n": _b64_int(nums.n), "e": _b64_int(nums.e)}

    def private_jwk(self) -> dict[str, Any]:
        jwk = self.public_jwk()
        if self._private is not None:
            p = self._private.private_numbers()
            jwk.update(
                d=_b64_int(p.d),
                p=_b64_int(p.p),
                q=_b64_int(p.q),
                dp=_b64_int(p.dmp1),
                dq=_b64_int(p.dmq1),
                qi=_b64_int(p.iqmp),
            )
        return jwk


def _b64_int(value: int) -> str:
    return b64url_encode(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def _jwk_bytes(jwk: dict[str, Any], member: str, name: str) -> bytes:
    value = jwk.get(member)
    if not isinstance(value, str):
        raise KeyMaterialError(f"key {name!r}: JWK member {member!r} is missing or not a string")
    try:
        return b64url_decode(value)
    except ValueError:
        raise KeyMaterialError(f"key {name!r}: JWK member {member!r} is not base64url") from None


def _jwk_int(jwk: dict[str, Any], member: str, name: str) -> int:
    return int.from_bytes(_jwk_bytes(jwk, member, name), "big")


_KTY_FOR_ALG: Final = {"HS256": "oct", "ES256": "EC", "RS256": "RSA"}


def key_from_jwk(jwk: Any, *, label: str) -> Key:
    """Build a key from one JWK, refusing anything K2/K3 forbid.

    ``label`` names the key in errors (issuer and position) so that an
    operator can find it in the file.
    """
    if not isinstance(jwk, dict):
        raise KeyMaterialError(f"key {label}: JWK is not an object")
    kid, alg, kty = jwk.get("kid"), jwk.get("alg"), jwk.get("kty")
    if not isinstance(kid, str) or not kid:
        raise KeyMaterialError(f"key {label}: JWK has no kid (the secretVersion)")
    name = f"{label} kid={kid}"
    if alg not in _KTY_FOR_ALG:
        raise KeyMaterialError(f"key {name!r}: alg {alg!r} is not one of {', '.join(ALGORITHMS)}")
    if kty != _KTY_FOR_ALG[alg]:
        raise KeyMaterialError(f"key {name!r}: kty {kty!r} does not match alg {alg}")
    try:
        if alg == "HS256":
            try:
                return HS256Key(kid, _jwk_bytes(jwk, "k", name))
            except KeyMaterialError as exc:
                raise KeyMaterialError(f"{label}: {exc}") from None
        if alg == "ES256":
            return _es256_from_jwk(jwk, kid, name)
        return _rs256_from_jwk(jwk, kid, name)
    except KeyMaterialError:
        raise
    except ValueError as exc:
        raise KeyMaterialError(f"key {name!r}: {exc}") from None


def _es256_from_jwk(jwk: dict[str, Any], kid: str, name: str) -> ES256Key:
    if jwk.get("crv") != "P-256":
        raise KeyMaterialError(f"key {name!r}: ES256 needs crv P-256, got {jwk.get('crv')!r}")
    x = _jwk_bytes(jwk, "x", name)
    y = _jwk_bytes(jwk, "y", name)
    if len(x) != 32 or len(y) != 32:
        raise KeyMaterialError(f"key {name!r}: P-256 coordinates must be 32 bytes")
    public_numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
    )
    public = public_numbers.public_key()
    private = None
    if "d" in jwk:
        d = _jwk_int(jwk, "d", name)
        private = ec.EllipticCurvePrivateNumbers(d, public_numbers).private_key()
    return ES256Key(kid, public, private)


def _rs256_from_jwk(jwk: dict[str, Any], kid: str, name: str) -> RS256Key:
    public_numbers = rsa.RSAPublicNumbers(_jwk_int(jwk, "e", name), _jwk_int(jwk, "n", name))
    public = public_numbers.public_key()
    if public.key_size < _MIN_RSA_BITS:
        raise KeyMaterialError(f"key {name!r}: RSA modulus is {public.key_size} bits, need >= 2048")
    private = None
    if "d" in jwk:
        d = _jwk_int(jwk, "d", name)
        if all(m in jwk for m in ("p", "q")):
            p, q = _jwk_int(jwk, "p", name), _jwk_int(jwk, "q", name)
        else:
            p, q = rsa.rsa_recover_prime_factors(public_numbers.n, public_numbers.e, d)
        private = rsa.RSAPrivateNumbers(
            p,
            q,
            d,
            rsa.rsa_crt_dmp1(d, p),
            rsa.rsa_crt_dmq1(d, q),
            rsa.rsa_crt_iqmp(p, q),
            public_numbers,
        ).private_key()
    return RS256Key(kid, public, private)
