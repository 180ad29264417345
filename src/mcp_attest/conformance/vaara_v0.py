"""The older ``vaara-v0`` envelope dialect (PROFILE section 10), read by opt-in only.

The PR #2789 vectors and the ``vaara`` package put ``version`` and ``alg`` at
the top level and commit to arguments through ``toolCalls[].args``: either
``{ref, digest, canonicalization}`` or ``{projection, projectionDigest}``,
with digests spelled ``sha256:<hex>``. A projection of exactly
``{"digest": "sha256:<hex>"}`` is vaara's "hash-only identity": it binds
the arguments by digest without carrying them.

Rather than a second verifier, a v0 envelope is translated into the spec
model (same issuer block, ``args`` mapped onto ``argsRef``/``argsProjection``
with base64url digests) and verified by the ordinary ``Verifier`` pipeline.
The signature stays over the v0 wire object exactly as received (E8), so
translation can never make a forged envelope verify: only the commitment
bookkeeping is shared. Differences from the ``vaara`` package itself are
listed in ``docs/interop.md``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, NoReturn

from mcp_attest.envelope import (
    DEFAULT_MAX_TTL,
    Envelope,
    MalformedEnvelopeError,
    b64url_encode,
    signing_input,
)
from mcp_attest.keys import Keyring
from mcp_attest.verifier import Verifier

__all__ = [
    "DIALECT",
    "HASH_ONLY_URI",
    "from_wire",
    "hash_only_projection",
    "read_v0",
    "sha256_tag",
    "sign_v0",
    "v0_verifier",
]

DIALECT = "vaara-v0"
VERSION = 1
# The argsRef URI a hash-only projection becomes. No resolver serves this
# scheme, so a digest that differs from the arguments is a plain mismatch.
HASH_ONLY_URI = "urn:vaara-v0:hash-only"

_TOP = frozenset({"version", "alg", "issuerAsserted", "plannerDeclared", "payloadDerived", "signature"})
_CALL = frozenset({"name", "serverFingerprint", "args"})
_ARGS = frozenset({"ref", "digest", "canonicalization", "projection", "projectionDigest"})
_BLOCK_KNOWN = {
    "issuerAsserted": frozenset({"alg", "iss", "sub", "secretVersion", "iat", "expSeconds", "nonce"}),
    "plannerDeclared": frozenset({"intent", "requestedCapability", "plannerRef"}),
    "payloadDerived": frozenset({"toolCalls"}),
}
_SHA256_TAG = re.compile(r"sha256:([0-9a-f]{64})")


def _bad(detail: str, message: str) -> NoReturn:
    raise MalformedEnvelopeError(detail, message)


def sha256_tag(data: bytes) -> str:
    """The dialect's digest spelling, ``sha256:<lowercase hex>``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _digest_to_b64url(tag: Any, path: str) -> str:
    if type(tag) is not str:
        _bad("malformed.type", f"{path} is not a string")
    m = _SHA256_TAG.fullmatch(tag)
    if m is None:
        _bad("malformed.digest", f"{path} is not sha256:<64 lowercase hex>")
    return b64url_encode(bytes.fromhex(m.group(1)))


def hash_only_projection(projection: str) -> str | None:
    """The embedded digest when ``projection`` is vaara's hash-only identity form.

    Mirrors vaara's own test (a JSON object whose only key is ``digest``,
    holding a ``sha256:`` string); anything else is an ordinary projection.
    """
    try:
        obj = json.loads(projection)
    except (ValueError, RecursionError):  # RecursionError: a projection nested past the stack
        return None
    if not isinstance(obj, dict) or set(obj) != {"digest"}:
        return None
    digest = obj["digest"]
    return digest if isinstance(digest, str) and digest.startswith("sha256:") else None


def _translate_args(index: int, args: Any, unknown: list[str]) -> dict[str, Any]:
    base = f"/payloadDerived/toolCalls/{index}/args"
    if type(args) is not dict:
        _bad("malformed.type", f"{base} is not an object")
    unknown.extend(f"{base}/{_escape(k)}" for k in sorted(args.keys() - _ARGS))
    out: dict[str, Any] = {}
    if "ref" in args:
        if "digest" not in args:
            _bad("malformed.missing_field", f"{base}/digest is missing")
        if args.get("canonicalization", "jcs") != "jcs":
            _bad("malformed.canonicalization", f"{base}/canonicalization is not 'jcs'")
        out["argsRef"] = {"uri": args["ref"], "digest": _digest_to_b64url(args["digest"], f"{base}/digest")}
    if "projection" in args:
        projection = args["projection"]
        if type(projection) is not str:
            _bad("malformed.type", f"{base}/projection is not a string")
        if "projectionDigest" not in args:
            _bad("malformed.missing_field", f"{base}/projectionDigest is missing")
        claimed = _digest_to_b64url(args["projectionDigest"], f"{base}/projectionDigest")
        if claimed != b64url_encode(hashlib.sha256(projection.encode("utf-8")).digest()):
            _bad("malformed.projection_digest", f"{base}/projectionDigest does not match the projection")
        embedded = hash_only_projection(projection)
        if embedded is not None:
            out.setdefault(
                "argsRef", {"uri": HASH_ONLY_URI, "digest": _digest_to_b64url(embedded, f"{base}/projection")}
            )
        else:
            out["argsProjection"] = projection
    return out


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def from_wire(obj: Mapping[str, Any], *, max_ttl: int = DEFAULT_MAX_TTL) -> Envelope:
    """Schema-check a strictly parsed v0 object and return it in the spec model.

    The returned envelope keeps ``obj`` as its wire object, so its signing
    input is the v0 body as received; the issuer and planner blocks go
    through the spec's own schema rules (E1-E7) unchanged.
    """
    if not isinstance(obj, dict):
        _bad("malformed.not_object", "envelope is not an object")
    for name in ("version", "alg", *_BLOCK_KNOWN):
        if name not in obj:
            _bad("malformed.missing_field", f"/{name} is missing")
    version = obj["version"]
    if type(version) is not int or version != VERSION:
        _bad("malformed.version", f"/version must be the integer {VERSION}")
    unknown = [f"/{_escape(k)}" for k in sorted(obj.keys() - _TOP)]
    for name, known in _BLOCK_KNOWN.items():
        block = obj[name]
        if type(block) is dict:
            unknown.extend(f"/{name}/{_escape(k)}" for k in sorted(block.keys() - known))
    if type(obj["payloadDerived"]) is not dict:
        _bad("malformed.type", "/payloadDerived is not an object")
    calls = obj["payloadDerived"].get("toolCalls")
    translated_calls: Any = calls
    if type(calls) is list:
        translated_calls = []
        for i, call in enumerate(calls):
            if type(call) is not dict:
                translated_calls.append(call)
                continue
            unknown.extend(f"/payloadDerived/toolCalls/{i}/{_escape(k)}" for k in sorted(call.keys() - _CALL))
            entry = {k: call[k] for k in ("name", "serverFingerprint") if k in call}
            if "args" not in call:
                _bad("malformed.missing_field", f"/payloadDerived/toolCalls/{i}/args is missing")
            entry.update(_translate_args(i, call["args"], unknown))
            translated_calls.append(entry)
    spec_wire = {
        "issuerAsserted": obj["issuerAsserted"],
        "plannerDeclared": obj["plannerDeclared"],
        "payloadDerived": {"toolCalls": translated_calls},
        "signature": obj.get("signature"),
    }
    spec = Envelope.from_wire(spec_wire, max_ttl=max_ttl)
    if obj["alg"] != spec.issuer_asserted.alg:
        # A top-level alg that disagrees with the signed issuer block is
        # ambiguous about which algorithm was meant: refuse it outright.
        _bad("malformed.alg_conflict", "/alg differs from /issuerAsserted/alg")
    # Positional: the wire object is the sixth field of Envelope.
    return Envelope(
        spec.issuer_asserted,
        spec.planner_declared,
        spec.tool_calls,
        spec.signature,
        tuple(sorted(unknown)),
        obj,
    )


def v0_verifier(keyring: Keyring, server_fingerprint: str, **options: Any) -> Verifier:
    """A ``Verifier`` whose V1 schema step reads the vaara-v0 dialect; V0 and V2-V12 are unchanged.

    Only the reader differs, so every policy knob, replay store and
    resolver behaves exactly as for spec envelopes.
    """
    return Verifier(keyring, server_fingerprint, reader=read_v0, **options)


def read_v0(obj: Mapping[str, Any], max_ttl: int) -> Envelope:
    """The ``EnvelopeReader`` for ``--dialect vaara-v0``."""
    return from_wire(obj, max_ttl=max_ttl)


def sign_v0(body: Mapping[str, Any], keyring: Keyring) -> dict[str, Any]:
    """Sign a v0 body (everything but ``signature``) with the key it names.

    For interop tests only: the project never emits this dialect on the
    wire (PROFILE section 10).
    """
    ia = body["issuerAsserted"]
    key = keyring.signing_key(ia["iss"], ia["secretVersion"])
    return {**body, "signature": key.sign(signing_input(body))}
