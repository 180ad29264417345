"""PROFILE section 3: keys (K1-K4, K6). K5 (discovery) is in tests/discovery."""

from __future__ import annotations

import hmac
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from _core_helpers import (
    ARGS,
    HS,
    ISS,
    KID,
    NOW,
    P256_N,
    SERVER,
    SUB,
    TOOL,
    Clock,
    dumps,
    reason_of,
    sign_wire,
    unsigned_wire,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from mcp_attest import (
    ES256Key,
    HS256Key,
    InMemoryReplayStore,
    Issuer,
    Key,
    Keyring,
    KeyringError,
    Reason,
    RS256Key,
    Verifier,
    VerifierPolicy,
    generate_key,
)
from mcp_attest._build import PURE, active_build
from mcp_attest.algorithms import KeyMaterialError, key_from_jwk
from mcp_attest.envelope import b64url_encode, signing_input


def _verify(verifier: Verifier, wire: dict[str, Any]) -> Any:
    return verifier.verify(dumps(wire), tool=TOOL, arguments=ARGS)


# -- K1 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("iss", "kid"), [("https://nobody.test", "hs-1"), (ISS[HS], "hs-9"), (ISS["ES256"], "hs-1")]
)
def test_k1_no_key_for_iss_and_secret_version_is_key_unknown(
    verifier: Verifier, keys: dict[str, Key], iss: str, kid: str
) -> None:
    wire = sign_wire(unsigned_wire(HS, iss=iss, kid=kid), keys[HS])
    verdict = _verify(verifier, wire)
    assert reason_of(verdict) == (Reason.KEY_UNAVAILABLE, "key.unknown")
    assert verdict.iss is None and verdict.attestation_id is None


@pytest.mark.parametrize(("env_alg", "key_alg"), [("HS256", "ES256"), ("ES256", "RS256"), ("RS256", "HS256")])
def test_k1_key_algorithm_differs_from_envelope_alg(
    verifier: Verifier, keys: dict[str, Key], env_alg: str, key_alg: str
) -> None:
    # the envelope names the key of another algorithm, signed with a key of its own alg
    wire = sign_wire(unsigned_wire(env_alg, iss=ISS[key_alg], kid=KID[key_alg]), keys[env_alg])
    assert reason_of(_verify(verifier, wire)) == (Reason.KEY_UNAVAILABLE, "key.alg_mismatch")


@pytest.mark.parametrize("alg_value", ["none", "HS512", "ES384", "RS512", "PS256", "x" * 10_000])
def test_k1_alg_outside_allowlist_is_alg_not_allowed(
    verifier: Verifier, keys: dict[str, Key], alg_value: str
) -> None:
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    wire["issuerAsserted"]["alg"] = alg_value
    # E1: any string outside the allowlist (the empty one included) is K1's, not a schema error
    assert reason_of(_verify(verifier, wire)) == (Reason.KEY_UNAVAILABLE, "alg.not_allowed")


def test_k1_allowlist_narrowed_by_policy(make_verifier: Any, keys: dict[str, Key]) -> None:
    es_only = make_verifier(algorithms=("ES256",))
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    assert reason_of(_verify(es_only, wire)) == (Reason.KEY_UNAVAILABLE, "alg.not_allowed")
    assert _verify(es_only, sign_wire(unsigned_wire("ES256"), keys["ES256"])).accepted


def test_k1_policy_refuses_unknown_algorithms() -> None:
    with pytest.raises(ValueError, match="algorithms"):
        VerifierPolicy(algorithms=("HS512",))
    with pytest.raises(ValueError, match="algorithms"):
        VerifierPolicy(algorithms=())


def test_k1_signer_default_is_last_key_listed(clock: Clock) -> None:
    old, new = generate_key(HS, "2025"), generate_key(HS, "2026")
    ring = Keyring({ISS[HS]: {"2025": old, "2026": new}})
    assert Issuer(ring, iss=ISS[HS], sub=SUB, clock=clock).kid == "2026"
    assert Issuer(ring, iss=ISS[HS], sub=SUB, kid="2025", clock=clock).kid == "2025"
    with pytest.raises(KeyringError):
        Issuer(ring, iss=ISS[HS], sub=SUB, kid="2027", clock=clock)
    with pytest.raises(KeyringError):
        Issuer(ring, iss="https://other.test", sub=SUB, clock=clock)


# -- K2 -------------------------------------------------------------------------


def test_k2_hs256_secret_shorter_than_32_bytes_refused() -> None:
    HS256Key("ok", b"k" * 32)
    with pytest.raises(KeyMaterialError, match=r"'short'.*31 bytes"):
        HS256Key("short", b"k" * 31)
    jwk = {"kty": "oct", "kid": "short", "alg": "HS256", "k": b64url_encode(b"k" * 31)}
    with pytest.raises(KeyringError, match=r"'short'.*31 bytes"):
        Keyring.from_dict({"issuers": {"iss": {"keys": [jwk]}}})


def _es_public_pem(key: ES256Key) -> bytes:
    return key._public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_k2_hs256_secret_that_looks_like_pem_or_jwk_refused(keys: dict[str, Key]) -> None:
    pem = _es_public_pem(keys["ES256"])  # type: ignore[arg-type]
    for secret in (pem, b"  \n" + pem, json.dumps(keys["ES256"].public_jwk()).encode()):
        with pytest.raises(KeyMaterialError, match="looks like a PEM or JWK"):
            HS256Key("confused", secret)
    jwk = {"kty": "oct", "kid": "confused", "alg": "HS256", "k": b64url_encode(pem)}
    with pytest.raises(KeyringError, match="confused"):
        Keyring.from_dict({"issuers": {"iss": {"keys": [jwk]}}})


def test_k2_alg_confusion_hs256_mac_keyed_with_es256_public_pem(
    verifier: Verifier, keys: dict[str, Key]
) -> None:
    """The classic attack: MAC with the verifier's public key bytes and claim HS256."""
    pem = _es_public_pem(keys["ES256"])  # type: ignore[arg-type]
    wire = unsigned_wire(HS, iss=ISS["ES256"], kid=KID["ES256"])
    wire["signature"] = hmac.digest(pem, signing_input(wire), "sha256").hex()
    verdict = _verify(verifier, wire)
    assert not verdict.accepted
    assert reason_of(verdict) == (Reason.KEY_UNAVAILABLE, "key.alg_mismatch")
    # also with the DER bytes and the raw point
    for material in (
        keys["ES256"]._public.public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    ):
        wire["signature"] = hmac.digest(material, signing_input(wire), "sha256").hex()
        assert reason_of(_verify(verifier, wire)) == (Reason.KEY_UNAVAILABLE, "key.alg_mismatch")


def test_k2_es256_requires_p256() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(KeyMaterialError, match="P-256"):
        ES256Key("p384", p384.public_key(), p384)
    jwk = {"kty": "EC", "kid": "p384", "alg": "ES256", "crv": "P-384", "x": "AA", "y": "AA"}
    with pytest.raises(KeyringError, match="kid=p384"):
        Keyring.from_dict({"issuers": {"iss": {"keys": [jwk]}}})


@pytest.fixture(scope="module")
def rsa_1024() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


def test_k2_rs256_requires_2048_bits(rsa_1024: rsa.RSAPrivateKey) -> None:
    with pytest.raises(KeyMaterialError, match="1024 bits"):
        RS256Key("small", rsa_1024.public_key(), rsa_1024)
    nums = rsa_1024.public_key().public_numbers()
    jwk = {
        "kty": "RSA",
        "kid": "small",
        "alg": "RS256",
        "n": b64url_encode(nums.n.to_bytes(128, "big")),
        "e": b64url_encode(nums.e.to_bytes(3, "big")),
    }
    with pytest.raises(KeyringError, match=r"kid=small.*1024"):
        Keyring.from_dict({"issuers": {"iss": {"keys": [jwk]}}})


def test_k2_one_bad_key_fails_the_whole_ring_naming_it(keys: dict[str, Key], tmp_path: Path) -> None:
    good = keys["ES256"].public_jwk()
    bad = {"kty": "oct", "kid": "weak", "alg": "HS256", "k": b64url_encode(b"x" * 8)}
    doc = {"issuers": {"https://a.test": {"keys": [good]}, "https://b.test": {"keys": [good, bad]}}}
    with pytest.raises(KeyringError, match=r"'weak'.*8 bytes"):
        Keyring.from_dict(doc)
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyringError, match=r"keys\.json.*'weak'"):
        Keyring.load(path)


# -- K3 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jwk", "message"),
    [
        ({"kty": "EC", "kid": "a", "alg": "HS256", "k": "AAAA"}, "kty 'EC' does not match alg HS256"),
        ({"kty": "oct", "kid": "a", "alg": "ES256", "k": "AAAA"}, "kty 'oct' does not match alg ES256"),
        ({"kty": "RSA", "kid": "a", "alg": "ES256"}, "kty 'RSA' does not match"),
        ({"kty": "oct", "kid": "a", "alg": "HS512", "k": "AAAA"}, "alg 'HS512'"),
        ({"kty": "OKP", "kid": "a", "alg": "EdDSA", "crv": "Ed25519"}, "alg 'EdDSA'"),
        ({"kty": "oct", "kid": "a", "k": "AAAA"}, "alg None"),
        ({"kty": "oct", "alg": "HS256", "k": "AAAA"}, "no kid"),
        ({"kty": "oct", "kid": "a", "alg": "HS256", "k": "!!"}, "not base64url"),
        ({"kty": "oct", "kid": "a", "alg": "HS256"}, "'k' is missing"),
        ({"kty": "EC", "kid": "a", "alg": "ES256", "crv": "P-256", "x": "AA", "y": "AA"}, "32 bytes"),
        ("not a jwk", "not an object"),
    ],
)
def test_k3_bad_jwks_refused_naming_the_key(jwk: Any, message: str) -> None:
    with pytest.raises(KeyringError) as info:
        Keyring.from_dict({"issuers": {"https://iss.test": {"keys": [jwk]}}})
    assert message in str(info.value)
    assert "https://iss.test#0" in str(info.value)


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {},
        {"issuers": []},
        {"issuers": {"i": []}},
        {"issuers": {"i": {"keys": {}}}},
        {"issuers": {"": {"keys": []}}},
    ],
)
def test_k3_bad_keyring_shapes_refused(doc: Any) -> None:
    with pytest.raises(KeyringError):
        Keyring.from_dict(doc)


def test_k3_duplicate_kid_refused(keys: dict[str, Key]) -> None:
    jwk = keys[HS].public_jwk()
    with pytest.raises(KeyringError, match="appears twice"):
        Keyring.from_dict({"issuers": {"i": {"keys": [jwk, jwk]}}})


def test_k3_jwk_shapes_per_algorithm(keys: dict[str, Key]) -> None:
    hs, es, rs = (keys[a].public_jwk() for a in ("HS256", "ES256", "RS256"))
    assert (hs["kty"], hs["alg"], hs["kid"]) == ("oct", "HS256", KID[HS])
    assert (es["kty"], es["crv"], es["alg"]) == ("EC", "P-256", "ES256") and "d" not in es
    assert (rs["kty"], rs["alg"]) == ("RSA", "RS256") and "d" not in rs
    assert "d" in keys["ES256"].private_jwk() and "d" in keys["RS256"].private_jwk()


def test_k3_keyring_file_round_trip_sign_and_verify(
    signing_ring: Keyring, tmp_path: Path, clock: Clock
) -> None:
    priv, pub = tmp_path / "signing.json", tmp_path / "verify.json"
    signing_ring.save(priv, private=True)
    signing_ring.save(pub, private=False)
    assert stat.S_IMODE(os.stat(priv).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(pub).st_mode) == 0o600  # holds an HS256 secret
    assert set(json.loads(pub.read_text())["issuers"]) == set(ISS.values())
    signer_ring, verify_ring = Keyring.load(priv), Keyring.load(pub)
    with pytest.raises(KeyringError, match="verify-only"):
        verify_ring.signing_key(ISS["ES256"])
    verifier = Verifier(verify_ring, SERVER, clock=clock)
    for alg_name in ("HS256", "ES256", "RS256"):
        env = Issuer(signer_ring, iss=ISS[alg_name], sub=SUB, clock=clock).sign(
            tool=TOOL, arguments=ARGS, server_fingerprint=SERVER, intent="x"
        )
        verdict = verifier.verify(env.to_json(), tool=TOOL, arguments=ARGS)
        assert verdict.accepted and verdict.alg == alg_name and verdict.secret_version == KID[alg_name]


def test_k3_public_only_asymmetric_ring_is_world_readable(keys: dict[str, Key], tmp_path: Path) -> None:
    ring = Keyring({"i": {"es-1": keys["ES256"], "rs-1": keys["RS256"]}})
    path = tmp_path / "pub.json"
    ring.save(path, private=False)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert '"d"' not in path.read_text()


@pytest.mark.parametrize("content", [b"", b"not json", b"[1]", b'{"issuers": 1}'])
def test_k3_unreadable_keyring_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "k.json"
    path.write_bytes(content)
    with pytest.raises(KeyringError, match=r"k\.json"):
        Keyring.load(path)
    with pytest.raises(KeyringError, match="cannot read"):
        Keyring.load(tmp_path / "missing.json")


def test_k3_rsa_private_jwk_without_primes_loads(keys: dict[str, Key]) -> None:
    jwk = keys["RS256"].private_jwk()
    for member in ("p", "q", "dp", "dq", "qi"):
        del jwk[member]
    key = key_from_jwk(jwk, label="x")
    message = b"hello"
    assert keys["RS256"].verify(key.sign(message), message)


# -- K4 -------------------------------------------------------------------------


def test_k4_several_kids_verify_at_once_and_signer_uses_newest(clock: Clock) -> None:
    ring = Keyring()
    for kid in ("v1", "v2", "v3"):
        ring = ring.with_key(ISS[HS], generate_key(HS, kid))
    verifier = Verifier(ring, SERVER, clock=clock)
    assert Issuer(ring, iss=ISS[HS], sub=SUB, clock=clock).kid == "v3"
    for kid in ("v1", "v2", "v3"):
        env = Issuer(ring, iss=ISS[HS], sub=SUB, kid=kid, clock=clock).sign(
            tool=TOOL, arguments=ARGS, server_fingerprint=SERVER, intent="x"
        )
        verdict = verifier.verify(env.to_json(), tool=TOOL, arguments=ARGS)
        assert verdict.accepted and verdict.secret_version == kid
    with pytest.raises(KeyringError, match="already has"):
        ring.with_key(ISS[HS], generate_key(HS, "v1"))


def test_k4_removed_key_is_key_unavailable_never_signature_invalid(
    signing_ring: Keyring, verify_ring: Keyring, clock: Clock, alg: str
) -> None:
    env = Issuer(signing_ring, iss=ISS[alg], sub=SUB, clock=clock).sign(
        tool=TOOL, arguments=ARGS, server_fingerprint=SERVER, intent="x"
    )
    pruned = verify_ring.without_key(ISS[alg], KID[alg])
    assert pruned.get(ISS[alg], KID[alg]) is None
    verdict = Verifier(pruned, SERVER, clock=clock).verify(env.to_json(), tool=TOOL, arguments=ARGS)
    assert reason_of(verdict) == (Reason.KEY_UNAVAILABLE, "key.unknown")
    # even a tampered envelope under a removed key is key_unavailable
    wire = env.to_wire()
    wire["plannerDeclared"]["intent"] = "tampered"
    verdict = Verifier(pruned, SERVER, clock=clock).verify(dumps(wire), tool=TOOL, arguments=ARGS)
    assert reason_of(verdict) == (Reason.KEY_UNAVAILABLE, "key.unknown")
    # the original ring still accepts it
    assert (
        Verifier(verify_ring, SERVER, clock=clock).verify(env.to_json(), tool=TOOL, arguments=ARGS).accepted
    )


# -- K6 -------------------------------------------------------------------------


def _es_wire(keys: dict[str, Key]) -> dict[str, Any]:
    return sign_wire(unsigned_wire("ES256"), keys["ES256"])


@pytest.mark.parametrize(
    ("r", "s"),
    [
        (0, 1),
        (1, 0),
        (0, 0),
        (P256_N, 1),
        (1, P256_N),
        (P256_N + 1, 5),
        (2**256 - 1, 2**256 - 1),
    ],
    ids=["r=0", "s=0", "both-0", "r=n", "s=n", "r=n+1", "max"],
)
def test_k6_es256_r_or_s_outside_range_is_signature_invalid(
    verifier: Verifier, keys: dict[str, Key], r: int, s: int
) -> None:
    wire = _es_wire(keys)
    wire["signature"] = f"{r:064x}{s:064x}"
    assert reason_of(_verify(verifier, wire)) == (Reason.SIGNATURE_INVALID, "signature.mismatch")


def test_k6_r_or_s_reduced_mod_n_is_not_accepted(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = _es_wire(keys)
    r, s = int(wire["signature"][:64], 16), int(wire["signature"][64:], 16)
    if s + P256_N < 2**256:
        wire["signature"] = f"{r:064x}{s + P256_N:064x}"
        assert reason_of(_verify(verifier, wire)) == (Reason.SIGNATURE_INVALID, "signature.mismatch")
    if r + P256_N < 2**256:
        wire["signature"] = f"{r + P256_N:064x}{s:064x}"
        assert reason_of(_verify(verifier, wire)) == (Reason.SIGNATURE_INVALID, "signature.mismatch")


def test_k6_issuer_emits_low_s(keys: dict[str, Key]) -> None:
    for i in range(40):
        sig = keys["ES256"].sign(b"message %d" % i)
        assert int(sig[64:], 16) <= P256_N // 2


def test_k6_high_s_accepted_with_the_same_attestation_id(make_verifier: Any, keys: dict[str, Key]) -> None:
    wire = _es_wire(keys)
    r, s = int(wire["signature"][:64], 16), int(wire["signature"][64:], 16)
    high = dict(wire, signature=f"{r:064x}{P256_N - s:064x}")
    assert P256_N - s > P256_N // 2
    low_verdict = _verify(make_verifier(), wire)
    high_verdict = _verify(make_verifier(), high)
    assert low_verdict.accepted and high_verdict.accepted
    assert low_verdict.attestation_id == high_verdict.attestation_id
    # so a re-encoded signature is the same attestation for replay
    shared = make_verifier()
    assert _verify(shared, wire).accepted
    assert reason_of(_verify(shared, high)) == (Reason.NONCE_REPLAY, "nonce.replayed")


def test_k6_der_encoded_signature_is_malformed(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = _es_wire(keys)
    r, s = int(wire["signature"][:64], 16), int(wire["signature"][64:], 16)
    der = encode_dss_signature(r, s).hex()
    assert len(der) != 128
    wire["signature"] = der
    assert reason_of(_verify(verifier, wire)) == (Reason.SIGNATURE_INVALID, "malformed.signature_encoding")


def test_k6_der_signature_of_128_hex_chars_is_not_accepted(verifier: Verifier, keys: dict[str, Key]) -> None:
    """A DER blob that happens to be 64 bytes long is read as r||s and fails verification."""
    wire = _es_wire(keys)
    r, s = 2**224 + 7, 2**224 + 9  # short integers make a 64-byte DER sequence
    der = encode_dss_signature(r, s).hex()
    assert len(der) == 128
    wire["signature"] = der
    assert reason_of(_verify(verifier, wire)) == (Reason.SIGNATURE_INVALID, "signature.mismatch")


def test_k6_keys_never_raise_on_garbage_signatures(keys: dict[str, Key]) -> None:
    for key in keys.values():
        for sig in ("", "00", "zz" * 64, "0" * 128, "f" * 512, "0" * 512):
            assert key.verify(sig, b"m") is False


def test_k6_generated_keys_match_profile(tmp_path: Path) -> None:
    es = generate_key("ES256", "g")
    assert isinstance(es, ES256Key) and es.can_sign
    with pytest.raises(KeyringError, match="unsupported"):
        generate_key("HS512", "g")
    store = InMemoryReplayStore()
    assert store.is_claimed(b"\x00" * 32, NOW) is False


def test_e7_key_verify_accepts_only_lowercase_hex(keys: dict[str, Key]) -> None:
    """Regression: ``int(x, 16)``/``bytes.fromhex`` made the key API take other spellings."""
    message = b"signed bytes"
    for key in keys.values():
        sig = key.sign(message)
        assert key.verify(sig, message) is True
        assert key.verify(sig.upper(), message) is False
        assert key.verify(" " + sig[1:], message) is False
        assert key.verify("\u00e9" * len(sig), message) is False
    es_sig = keys["ES256"].sign(message)
    r, s = es_sig[:64], es_sig[64:]
    # "0x" / "_" spellings of the same integers, padded back to 128 chars
    assert keys["ES256"].verify("0x" + r.lstrip("0").rjust(62, "0") + s, message) is False
    assert keys["ES256"].verify(r[:1] + "_" + r[1:63] + s, message) is False


class _KeyOfOnesOwn(Key):
    """A key class written by a user: it implements ``verify``, as ``Key`` asks, nothing private."""

    alg = "HS256"

    def __init__(self, inner: HS256Key) -> None:
        self.kid = inner.kid
        self._inner = inner
        self.calls = 0

    @property
    def can_sign(self) -> bool:
        return True

    def verify(self, signature_hex: str, message: bytes) -> bool:
        self.calls += 1
        return self._inner.verify(signature_hex, message)

    def sign(self, message: bytes) -> str:
        return self._inner.sign(message)

    def public_jwk(self) -> dict[str, Any]:
        return self._inner.public_jwk()

    def private_jwk(self) -> dict[str, Any]:
        return self._inner.private_jwk()


@pytest.mark.skipif(
    active_build() != PURE, reason="interpreted classes cannot subclass the compiled Key (pure build only)"
)
def test_core_a_key_class_of_ones_own_decides_through_its_verify() -> None:
    """Regression: the digest handover made a private method abstract, breaking user key classes."""
    key = _KeyOfOnesOwn(HS256Key(KID[HS], os.urandom(32)))
    ring = Keyring().with_key(ISS[HS], key)
    issuer = Issuer(ring, iss=ISS[HS], sub=SUB)
    verifier = Verifier(ring, SERVER)
    wire = issuer.sign(tool=TOOL, arguments=ARGS, server_fingerprint=SERVER, intent="x").to_wire()
    assert verifier.verify(wire, tool=TOOL, arguments=ARGS).accepted
    forged = {**wire, "signature": "00" * 32}
    verdict = verifier.verify(forged, tool=TOOL, arguments=ARGS)
    assert not verdict.accepted and verdict.reason == Reason.SIGNATURE_INVALID
    assert key.calls == 2
