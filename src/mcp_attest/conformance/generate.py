"""Rebuild the v1 conformance bundle: ``python -m mcp_attest.conformance.generate OUTDIR``.

Everything is derived from pinned inputs so that a rebuild is byte-identical:
the keyring in ``keys/keyring.json`` (created once, then committed), fixed
nonces and times from the case catalogue, and, because ECDSA is randomized,
the ES256 signatures recorded in ``es256-signatures.json`` (reused when they
still verify over the bytes being signed, otherwise replaced by fresh ones).

Signing input and commitments are produced with the ``rfc8785`` package
rather than our own canonicalizer, so the bundle is not a mirror of the
code it tests.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import json
import secrets
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mcp_attest.algorithms import ES256Key, HS256Key, Key, RS256Key
from mcp_attest.conformance._cases import CASES
from mcp_attest.conformance._model import (
    BUCKETS,
    DEFAULT_ARGS,
    DROP,
    IAT,
    INTENT,
    ISS,
    KIDS,
    OLD_HS_KID,
    SERVER,
    SUB,
    Call,
    Case,
    Entry,
    Expect,
    fixed_nonce,
)
from mcp_attest.conformance._readme import README
from mcp_attest.keys import Keyring

__all__ = ["PINS_FILE", "build_bundle", "generate", "main"]

PINS_FILE = "es256-signatures.json"
KEYRING_FILE = "keys/keyring.json"
MAX_BIN_BYTES = 64 * 1024
DEFAULT_POLICY: Mapping[str, Any] = {
    "required": True,
    "args_binding": "spec",
    "multi_server": True,
    "max_ttl": 3600,
    "skew": 30,
    "algorithms": ["HS256", "ES256", "RS256"],
    "resolve_refs": False,
}


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _rfc3339(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _signing_input(wire: Mapping[str, Any]) -> bytes:
    return rfc8785.dumps({k: v for k, v in wire.items() if k != "signature"})


# -- keys ------------------------------------------------------------------------


def _new_keyring() -> Keyring:
    """Only for the very first build; afterwards the committed keyring is reused."""
    es = ec.generate_private_key(ec.SECP256R1())
    rs = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ring = Keyring()
    for key in (
        HS256Key(OLD_HS_KID, secrets.token_bytes(32)),
        HS256Key(KIDS["HS256"], secrets.token_bytes(32)),
        ES256Key(KIDS["ES256"], es.public_key(), es),
        RS256Key(KIDS["RS256"], rs.public_key(), rs),
    ):
        ring = ring.with_key(ISS, key)
    return ring


def _int(jwk: Mapping[str, Any], member: str) -> int:
    text = jwk[member]
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def _pem_pair(key: Key) -> tuple[bytes, bytes]:
    """PKCS#8 private and SPKI public PEM, rebuilt from the JWK so any JOSE-less reader can use them."""
    jwk = key.private_jwk()
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if key.alg == "ES256":
        private = ec.derive_private_key(_int(jwk, "d"), ec.SECP256R1())
    else:
        public_numbers = rsa.RSAPublicNumbers(_int(jwk, "e"), _int(jwk, "n"))
        private = rsa.RSAPrivateNumbers(
            _int(jwk, "p"),
            _int(jwk, "q"),
            _int(jwk, "d"),
            _int(jwk, "dp"),
            _int(jwk, "dq"),
            _int(jwk, "qi"),
            public_numbers,
        ).private_key()
    priv = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return priv, pub


def _key_files(ring: Keyring) -> dict[str, bytes]:
    files = {
        KEYRING_FILE: _json_bytes(ring.to_dict(private=True)),
        "keys/keyring.public.json": _json_bytes(ring.to_dict(private=False)),
        "keys/keyring-retired.public.json": _json_bytes(
            ring.without_key(ISS, OLD_HS_KID).to_dict(private=False)
        ),
    }
    for _, key in ring:
        if key.alg == "HS256":
            secret = key.private_jwk()["k"]
            files[f"keys/{key.kid}.bin"] = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
        else:
            priv, pub = _pem_pair(key)
            stem = key.alg.lower()
            files[f"keys/{stem}-private.pem"] = priv
            files[f"keys/{stem}-public.pem"] = pub
    return files


# -- one case --------------------------------------------------------------------


@dataclass
class _Signer:
    ring: Keyring
    material: dict[str, bytes]
    pins: Mapping[str, str]
    used_pins: dict[str, str] = field(default_factory=dict)

    def sign(self, case: Case, body: Mapping[str, Any], label: str) -> str:
        c1 = _signing_input(body)
        if case.sign is not None:
            return case.sign(c1, self.material)
        iss, kid = case.signer or (ISS, case.key_id)
        key = self.ring.signing_key(iss, kid)
        if key.alg != "ES256":
            return key.sign(c1)
        pinned = self.pins.get(label)
        signature = pinned if pinned is not None and key.verify(pinned, c1) else key.sign(c1)
        self.used_pins[label] = signature
        return signature


def _apply(block: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    for name, value in overrides.items():
        if value is DROP:
            block.pop(name, None)
        else:
            block[name] = value
    return block


def _entry(entry: Entry) -> dict[str, Any]:
    content = rfc8785.dumps(entry.args)
    wire: dict[str, Any] = {"name": entry.tool, "serverFingerprint": entry.server}
    if entry.commit in ("projection", "both"):
        wire["argsProjection"] = entry.projection if entry.projection is not None else content.decode()
    if entry.commit in ("ref", "both"):
        wire["argsRef"] = {
            "uri": entry.ref_uri or "data:application/json;base64," + base64.b64encode(content).decode(),
            "digest": entry.ref_digest or _b64url(hashlib.sha256(content).digest()),
        }
    return wire


def _body(case: Case) -> dict[str, Any]:
    issuer = {
        "alg": case.alg,
        "iss": ISS,
        "sub": SUB,
        "secretVersion": case.key_id,
        "iat": IAT,
        "expSeconds": 300,
        "nonce": fixed_nonce(case.case_id),
    }
    body: dict[str, Any] = {
        **copy.deepcopy(dict(case.extra)),
        "issuerAsserted": _apply(issuer, case.issuer),
        "plannerDeclared": _apply({"intent": INTENT}, case.planner),
        "payloadDerived": {"toolCalls": [_entry(e) for e in case.entries]},
    }
    if case.edit is not None:
        case.edit(body)
    return body


def _signed(case: Case, signer: _Signer, label: str, variant: bool = False) -> dict[str, Any]:
    body = _body(case)
    if variant and case.header_variant is not None:
        case.header_variant(body)
    signature = signer.sign(case, body, label)
    if case.sig_edit is not None:
        signature = case.sig_edit(signature)
    return {**body, "signature": signature}


def _strict_object(data: bytes) -> dict[str, Any] | None:
    """The envelope as a C2-clean object, or None: decides whether a signing input exists.

    Deliberately stdlib-only and independent of mcp_attest's reader.
    """

    def refuse(*_: Any) -> Any:
        raise ValueError

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in items}) != len(items):
            raise ValueError
        return dict(items)

    def integer(token: str) -> int:
        value = int(token)
        if token.startswith("-0") or abs(value) > 2**53 - 1:
            raise ValueError
        return value

    try:
        if data.startswith(b"\xef\xbb\xbf"):
            return None
        obj = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=pairs,
            parse_constant=refuse,
            parse_float=refuse,
            parse_int=integer,
        )
        rfc8785.dumps(obj)  # refuses lone surrogates
    except (ValueError, RecursionError, rfc8785.CanonicalizationError):
        return None
    return obj if isinstance(obj, dict) else None


def _runtime_args(case: Case, override: bytes | None = None) -> bytes:
    if override is not None:
        return override
    if isinstance(case.args, bytes):
        return case.args
    if case.args is not None:
        return _json_bytes(case.args)
    planned = next((e.args for e in case.entries if e.tool == case.tool), DEFAULT_ARGS)
    return _json_bytes(planned)


@dataclass
class _Envelopes:
    """What a case sends: files, the per-transport values, and the attestation id if one exists."""

    files: dict[str, bytes]
    sent: dict[str, tuple[str | None, str | None]]  # transport -> (envelope file, header value)
    attestation_id: str | None


def _envelopes(case: Case, signer: _Signer) -> _Envelopes:
    wire = copy.deepcopy(_signed(case, signer, case.case_id))
    if case.tamper is not None:
        case.tamper(wire)
    edited = case.text(_json_bytes(wire).decode()) if case.text is not None else _json_bytes(wire)
    meta_bytes = edited.encode("utf-8") if isinstance(edited, str) else edited
    header_wire = _signed(case, signer, case.case_id + "#header", True) if case.header_variant else wire
    header = _b64url(rfc8785.dumps(header_wire))
    if case.header_text is not None:
        header = case.header_text(header)
    transports = {c.transport for c in case.calls} if case.calls else {case.transport}
    files: dict[str, bytes] = {}
    if transports & {"meta", "both"}:
        files["envelope.json"] = meta_bytes
    if "header" in transports:
        files["header_envelope.json"] = _json_bytes(header_wire)
    source = meta_bytes if transports & {"meta", "both"} else rfc8785.dumps(header_wire)
    obj = _strict_object(source) if transports != {"none"} else None
    attestation_id = None
    if obj is not None and len(source) <= MAX_BIN_BYTES:
        c1 = _signing_input(obj)
        files["canonical_signing_input.bin"] = c1
        files["canonical_signing_input.hex"] = (c1.hex() + "\n").encode()
        attestation_id = hashlib.sha256(c1).hexdigest()
    sent = {
        "meta": ("envelope.json", None),
        "header": (None, header),
        "both": ("envelope.json", header),
        "none": (None, None),
    }
    return _Envelopes(files, sent, attestation_id)


def _case_files(case: Case, signer: _Signer) -> dict[str, bytes]:
    env = _envelopes(case, signer)
    files = env.files
    calls = case.calls or (Call(case.expect or Expect(False), None, case.tool, case.at, case.transport),)
    arg_files: dict[bytes, str] = {}
    call_ctx: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for call in calls:
        data = _runtime_args(case, call.args)
        name = arg_files.setdefault(
            data, "arguments.json" if not arg_files else f"arguments-{len(arg_files) + 1}.json"
        )
        files[name] = data
        envelope, header = env.sent[call.transport]
        call_ctx.append(
            {
                "tool": call.tool if case.calls else case.tool,
                "arguments": name,
                "transport": call.transport,
                "envelope": envelope,
                "header": header,
                "verifyAt": _rfc3339(call.at),
                "verifyAtEpoch": call.at,
            }
        )
        result = call.expect.to_json()
        if call.expect.accepted and call.transport != "none" and env.attestation_id is not None:
            result["attestationId"] = env.attestation_id
        results.append(result)
    context: dict[str, Any] = {
        "case": case.case_id,
        "serverFingerprint": SERVER,
        "keyring": case.keyring,
        "policy": {**DEFAULT_POLICY, **case.policy},
    }
    expected: dict[str, Any] = {
        "case": case.case_id,
        "bucket": case.bucket,
        "title": case.title,
        "rules": list(case.rules),
        **results[-1],
    }
    if case.calls:
        context["calls"] = call_ctx
        expected["calls"] = results
    else:
        context.update(call_ctx[0])
    files["context.json"] = _json_bytes(context)
    files["expected.json"] = _json_bytes(expected)
    return {f"{case.case_id}/{name}": data for name, data in files.items()}


# -- the bundle ------------------------------------------------------------------


def _read_pins(pinned: Path) -> dict[str, str]:
    try:
        data = json.loads((pinned / PINS_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_bundle(pinned: Path | None) -> dict[str, bytes]:
    """Every file of the bundle, by relative path, from the keys and pins under ``pinned``."""
    keyring_path = pinned / KEYRING_FILE if pinned is not None else None
    ring = (
        Keyring.load(keyring_path) if keyring_path is not None and keyring_path.exists() else _new_keyring()
    )
    files = _key_files(ring)
    material = {Path(name).name: data for name, data in files.items()}
    signer = _Signer(ring, material, _read_pins(pinned) if pinned is not None else {})
    buckets: dict[str, list[str]] = {b: [] for b in BUCKETS}
    for case in CASES:
        files.update(_case_files(case, signer))
        buckets[case.bucket].append(case.name)
    files[PINS_FILE] = _json_bytes(dict(sorted(signer.used_pins.items())))
    readme = README.replace("@TOTAL@", str(len(CASES)))
    for bucket, names in buckets.items():
        readme = readme.replace(f"@{bucket}@", str(len(names)))
    files["README.md"] = readme.encode()
    manifest = {
        "name": "sep-2787-vectors",
        "version": "v1",
        "dialect": "spec",
        "generator": "python -m mcp_attest.conformance.generate OUTDIR",
        "pinned": {"iss": ISS, "sub": SUB, "iat": IAT, "serverFingerprint": SERVER, "kids": KIDS},
        "defaultPolicy": DEFAULT_POLICY,
        "buckets": buckets,
        "counts": {b: len(n) for b, n in buckets.items()} | {"total": len(CASES)},
        "files": {name: _sha256(data) for name, data in sorted(files.items())},
    }
    files["MANIFEST.json"] = _json_bytes(manifest)
    return files


def generate(outdir: Path, *, pinned: Path | None = None) -> dict[str, bytes]:
    """Write the bundle to ``outdir``, replacing a previous bundle there.

    Keys and ES256 pins are read from ``pinned`` (default: ``outdir``
    itself) before anything is written, so regenerating in place is safe.
    """
    files = build_bundle(pinned if pinned is not None else outdir)
    for top in ("normative", "verifier-policy", "keys"):
        shutil.rmtree(outdir / top, ignore_errors=True)
    for name, data in files.items():
        path = outdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (outdir / KEYRING_FILE).chmod(0o600)
    return files


def main(argv: list[str] | None = None) -> int:
    """Command-line entry; exit 2 with one line on a usage error."""
    parser = argparse.ArgumentParser(prog="python -m mcp_attest.conformance.generate")
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--pinned", type=Path, help="bundle to take keys and ES256 signatures from")
    args = parser.parse_args(argv)
    if args.pinned is not None and not (args.pinned / KEYRING_FILE).is_file():
        print(f"generate: {args.pinned} holds no {KEYRING_FILE}", file=sys.stderr)
        return 2
    files = generate(args.outdir, pinned=args.pinned)
    print(f"wrote {len(files)} files for {len(CASES)} cases to {args.outdir}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
