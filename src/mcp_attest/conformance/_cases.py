"""The v1 case catalogue: every case, its inputs and its declared verdict.

Buckets follow the PROFILE's markings. ``normative/*`` holds what the draft
states (bytes, signatures, the reasons it names); ``verifier-policy`` holds
cases whose outcome rests on a **[profile]** decision (limits, skew, key
rotation, replay bookkeeping, C3 number rules, strict binding), each naming
its rule. ``detail`` codes are mcp-attest's finer codes, informative for
other implementations.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from mcp_attest.conformance._model import (
    DEFAULT_ARGS,
    DROP,
    IAT_EPOCH,
    ISS,
    KIDS,
    OLD_HS_KID,
    OTHER_SERVER,
    Call,
    Case,
    Entry,
    Expect,
    no,
    ok,
)

__all__ = ["CASES", "P256_ORDER"]

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

SIG = "signature_invalid"
KEY = "key_unavailable"
EXP = "expired"
ARGS = "args_commitment_mismatch"
REPLAY = "nonce_replay"

OTHER_ARGS = {"path": "/srv/reports/q3.pdf", "mode": "read"}
SEND_MAIL = Entry(tool="send_mail", server=OTHER_SERVER, args={"to": "ops@example.com", "subject": "q2"})
LIST_DIR = Entry(tool="list_dir", args={"path": "/srv/reports"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jcs_text(value: Any) -> str:
    return rfc8785.dumps(value).decode()


def _digest(value: Any) -> str:
    return _b64(hashlib.sha256(rfc8785.dumps(value)).digest())


def _data_uri(content: bytes) -> str:
    return "data:application/json;base64," + base64.b64encode(content).decode()


def _replace(old: str, new: str) -> Callable[[str], str]:
    """An edit of the envelope text that must hit exactly once."""

    def edit(text: str) -> str:
        if text.count(old) != 1:
            raise ValueError(f"text edit {old!r} matches {text.count(old)} times")
        return text.replace(old, new)

    return edit


def _set(*path: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(wire: dict[str, Any]) -> None:
        node: Any = wire
        for step in path[:-1]:
            node = node[step]
        if value is DROP:
            del node[path[-1]]
        else:
            node[path[-1]] = value

    return edit


def _flip_last_hex(sig: str) -> str:
    return sig[:-1] + ("0" if sig[-1] != "0" else "1")


def _high_s(sig: str) -> str:
    return sig[:64] + f"{P256_ORDER - int(sig[64:], 16):064x}"


def _der(sig: str) -> str:
    return encode_dss_signature(int(sig[:64], 16), int(sig[64:], 16)).hex()


def _hmac_with(material: str) -> Callable[[bytes, dict[str, bytes]], str]:
    """Sign with raw bytes from the key folder, as an algorithm-confusion attacker would."""

    def sign(c1: bytes, keys: dict[str, bytes]) -> str:
        return hmac.digest(keys[material], c1, "sha256").hex()

    return sign


def _add_nested_unknowns(wire: dict[str, Any]) -> None:
    wire["plannerDeclared"]["ticket"] = "OPS-7"
    wire["payloadDerived"]["toolCalls"][0]["x-cost"] = 3


def _deep(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def _positive() -> list[Case]:
    b = "normative/positive"
    pretty = json.dumps({"path": "/srv/reports/q2.pdf", "mode": "read"}, indent=1).encode()
    return [
        Case(
            "01-hs256-projection-identity",
            b,
            "HS256, argsProjection equal to JCS(arguments)",
            ("C1", "E1", "V3", "A3"),
            ok(),
        ),
        Case(
            "02-es256-projection-identity",
            b,
            "ES256 (raw r||s, low-S), identity projection",
            ("C1", "E7", "V3", "A3"),
            ok(),
            alg="ES256",
        ),
        Case(
            "03-rs256-projection-identity",
            b,
            "RS256 (PKCS#1 v1.5), identity projection",
            ("C1", "E7", "V3", "A3"),
            ok(),
            alg="RS256",
        ),
        Case(
            "04-hs256-ref-digest",
            b,
            "argsRef whose digest equals SHA-256(JCS(arguments)): no fetch",
            ("A2", "E6"),
            ok("ref-digest"),
            entries=(Entry(commit="ref"),),
        ),
        Case(
            "05-es256-ref-digest",
            b,
            "ES256 with an argsRef digest binding",
            ("A2", "V3"),
            ok("ref-digest"),
            alg="ES256",
            entries=(Entry(commit="ref"),),
        ),
        Case(
            "06-rs256-both-identity",
            b,
            "argsRef and identity projection together: argsRef decides",
            ("A4",),
            ok("ref-digest"),
            alg="RS256",
            entries=(Entry(commit="both"),),
        ),
        Case(
            "07-hs256-ref-data-resolved",
            b,
            "argsRef to a data: URI whose content is not in JCS form: resolved, parsed, compared by JCS",
            ("A2",),
            ok("ref-resolved"),
            entries=(
                Entry(
                    commit="ref", ref_uri=_data_uri(pretty), ref_digest=_b64(hashlib.sha256(pretty).digest())
                ),
            ),
        ),
        Case(
            "08-hs256-projection-redacted",
            b,
            "a projection that differs from the arguments is accepted as redacted (NOT bound)",
            ("A3",),
            ok("redacted"),
            entries=(Entry(projection='{"mode":"read","path":"<redacted>"}'),),
        ),
        Case(
            "09-hs256-both-ref-and-redacted-projection",
            b,
            "argsRef binds while the projection beside it is redacted",
            ("A4",),
            ok("ref-digest"),
            entries=(Entry(commit="both", projection='{"path":"<redacted>"}'),),
        ),
        Case(
            "10-unknown-fields-are-signed",
            b,
            "unknown fields anywhere are kept, signed and listed",
            ("E8", "C1"),
            ok(unknown_fields=("/payloadDerived/toolCalls/0/x-cost", "/plannerDeclared/ticket", "/x-trace")),
            extra={"x-trace": {"id": "t-1", "hops": [1, 2]}},
            edit=_add_nested_unknowns,
        ),
        Case(
            "11-optional-planner-fields",
            b,
            "requestedCapability and plannerRef present",
            ("E1",),
            ok(),
            planner={"requestedCapability": "files.read", "plannerRef": "plan://7f3a"},
        ),
        Case(
            "12-multi-entry-plan-second-entry",
            b,
            "a two-entry plan; the call matches entry 1",
            ("V6", "R1"),
            ok(index=1),
            entries=(LIST_DIR, Entry()),
        ),
        Case(
            "13-multi-server-plan",
            b,
            "a plan naming two servers, accepted by default",
            ("V5",),
            ok(index=1),
            entries=(SEND_MAIL, Entry()),
        ),
        Case(
            "14-header-transport",
            b,
            "the envelope only in X-MCP-Attestation (base64url of JCS)",
            ("V11",),
            ok(),
            transport="header",
        ),
        Case(
            "15-header-and-meta-agree",
            b,
            "_meta (pretty-printed) and header (JCS) carry the same envelope: same JCS bytes",
            ("V11",),
            ok(),
            transport="both",
        ),
        Case(
            "16-utf16-key-order",
            b,
            "JCS sorts keys by UTF-16 code units (a non-BMP key sorts first)",
            ("C1", "C4"),
            ok(),
            entries=(Entry(args={"\ufb33": "dalet", "\U0001f600": "grin", "a": 1, "\u00e9": 2}),),
        ),
        Case(
            "17-c3-number-forms",
            b,
            "arguments numbers are doubles written the JCS way; an exact big integer reads back",
            ("C3",),
            ok(),
            args=b'{"big": 1152921504606847000, "f": 1e20, "x": 0.10, "n": -5, "e": 1E-7, "z": 0}\n',
            entries=(
                Entry(
                    projection='{"big":1152921504606847000,"e":1e-7,"f":100000000000000000000,'
                    '"n":-5,"x":0.1,"z":0}'
                ),
            ),
        ),
        Case(
            "18-iat-fraction-and-utc-offset",
            b,
            "verifiers accept a fraction and +00:00 in iat",
            ("E3",),
            ok(),
            issuer={"iat": "2026-06-01T12:00:00.250+00:00"},
        ),
        Case(
            "19-string-escapes",
            b,
            "control characters, quotes and non-ASCII in signed strings",
            ("C1",),
            ok(),
            planner={"intent": 'Read "q2"\n\t\u0007 report \u2013 \u00e9 \u2603 \U0001d11e \u2028'},
        ),
        Case(
            "20-es256-high-s",
            b,
            "an ES256 signature with high S still verifies",
            ("K6",),
            ok(),
            alg="ES256",
            sig_edit=_high_s,
        ),
        Case(
            "21-empty-arguments",
            b,
            "empty arguments commit as the projection {}",
            ("A3",),
            ok(),
            entries=(Entry(args={}),),
        ),
        Case(
            "22-nested-arguments",
            b,
            "nested arrays, objects, booleans and null",
            ("C1", "A3"),
            ok(),
            entries=(
                Entry(
                    args={
                        "q": {"and": [{"k": "a", "v": True}, {"k": "b", "v": None}]},
                        "limit": 10,
                        "tags": ["x", "y", []],
                    }
                ),
            ),
        ),
        Case(
            "23-depth-64-accepted",
            b,
            "an unknown field nested to exactly depth 64",
            ("E2",),
            ok(unknown_fields=("/x-deep",)),
            extra={"x-deep": _deep(63)},
        ),
    ]


def _c2(name: str, title: str, edit: Callable[[str], str | bytes], detail: str, **kw: Any) -> Case:
    return Case(name, "normative/negative", title, ("C2", "V1"), no(SIG, detail), text=edit, **kw)


def _negative() -> list[Case]:
    b = "normative/negative"
    mismatch = no(SIG, "signature.mismatch")
    ref_https = "https://blobs.example/args/7"
    return [
        Case(
            "01-tampered-intent",
            b,
            "plannerDeclared.intent changed after signing",
            ("C1", "V3"),
            mismatch,
            tamper=_set("plannerDeclared", "intent", value="exfiltrate the reports"),
        ),
        Case(
            "02-tampered-sub",
            b,
            "issuerAsserted.sub changed after signing",
            ("V3",),
            mismatch,
            tamper=_set("issuerAsserted", "sub", value="agent:intruder"),
        ),
        Case(
            "03-tampered-tool-name",
            b,
            "toolCalls[0].name changed after signing",
            ("V3",),
            mismatch,
            tool="delete_file",
            tamper=_set("payloadDerived", "toolCalls", 0, "name", value="delete_file"),
        ),
        Case(
            "04-tampered-projection",
            b,
            "argsProjection swapped for other arguments after signing",
            ("V3",),
            mismatch,
            args=OTHER_ARGS,
            tamper=_set("payloadDerived", "toolCalls", 0, "argsProjection", value=_jcs_text(OTHER_ARGS)),
        ),
        Case(
            "05-tampered-iat",
            b,
            "iat moved later after signing",
            ("V3",),
            mismatch,
            tamper=_set("issuerAsserted", "iat", value="2026-06-01T12:00:30Z"),
        ),
        Case(
            "06-unknown-field-added-after-signing",
            b,
            "an unknown member added after signing is covered",
            ("E8", "V3"),
            mismatch,
            tamper=_set("x-note", value="added"),
        ),
        Case(
            "07-unknown-field-removed-after-signing",
            b,
            "dropping a signed unknown member breaks the signature",
            ("E8", "V3"),
            mismatch,
            extra={"x-note": "signed"},
            tamper=_set("x-note", value=DROP),
        ),
        Case(
            "08-es256-signature-bit-flip",
            b,
            "ES256 signature with one nibble changed",
            ("V3",),
            mismatch,
            alg="ES256",
            sig_edit=_flip_last_hex,
        ),
        Case(
            "09-rs256-signature-bit-flip",
            b,
            "RS256 signature with one nibble changed",
            ("V3",),
            mismatch,
            alg="RS256",
            sig_edit=_flip_last_hex,
        ),
        Case(
            "10-hs256-wrong-secret",
            b,
            "MAC made with another issuer secret than the one named",
            ("V3", "K1"),
            mismatch,
            signer=(ISS, OLD_HS_KID),
        ),
        Case(
            "11-es256-r-zero",
            b,
            "ES256 signature with r = 0",
            ("K6", "V3"),
            mismatch,
            alg="ES256",
            sig_edit=lambda s: "0" * 64 + s[64:],
        ),
        Case(
            "12-es256-s-equals-order",
            b,
            "ES256 signature with s = n (outside [1, n-1])",
            ("K6", "V3"),
            mismatch,
            alg="ES256",
            sig_edit=lambda s: s[:64] + f"{P256_ORDER:064x}",
        ),
        Case(
            "13-es256-der-signature",
            b,
            "ES256 signature in DER instead of raw r||s",
            ("E7", "V1"),
            no(SIG, "malformed.signature_encoding"),
            alg="ES256",
            sig_edit=_der,
        ),
        Case(
            "14-signature-uppercase-hex",
            b,
            "signature in uppercase hex",
            ("E7", "V1"),
            no(SIG, "malformed.signature_encoding"),
            sig_edit=str.upper,
        ),
        Case(
            "15-rs256-signature-truncated",
            b,
            "RS256 signature one byte short of the modulus",
            ("E7", "V3"),
            mismatch,
            alg="RS256",
            sig_edit=lambda s: s[:-2],
        ),
        Case(
            "16-alg-confusion-hmac-over-rsa-public-key",
            b,
            "alg HS256 naming the RS256 key, MACed with its public PEM",
            ("K1", "K2", "V2"),
            no(KEY, "key.alg_mismatch"),
            kid=KIDS["RS256"],
            sign=_hmac_with("rs256-public.pem"),
        ),
        Case(
            "17-alg-none",
            b,
            'alg "none" is never accepted',
            ("K1", "V2"),
            no(KEY, "alg.not_allowed"),
            issuer={"alg": "none"},
        ),
        Case(
            "18-unknown-kid",
            b,
            "secretVersion with no key",
            ("K1", "V2"),
            no(KEY, "key.unknown"),
            issuer={"secretVersion": "hs-2099-01"},
            signer=(ISS, KIDS["HS256"]),
        ),
        Case(
            "19-unknown-issuer",
            b,
            "iss with no keys",
            ("K1", "V2"),
            no(KEY, "key.unknown"),
            issuer={"iss": "https://stranger.example"},
            signer=(ISS, KIDS["HS256"]),
        ),
        Case(
            "20-expired",
            b,
            "an hour past iat + expSeconds",
            ("V4",),
            no(EXP, "ttl.expired"),
            at=IAT_EPOCH + 300 + 3600,
        ),
        Case(
            "21-not-yet-valid",
            b,
            "an hour before iat",
            ("V4",),
            no(EXP, "ttl.not_yet_valid"),
            at=IAT_EPOCH - 3600,
        ),
        Case(
            "22-server-mismatch",
            b,
            "no entry names this server",
            ("V5",),
            no("server_mismatch", "server.not_in_plan"),
            entries=(Entry(server=OTHER_SERVER),),
        ),
        Case(
            "23-tool-mismatch",
            b,
            "no entry for this server names the called tool",
            ("V6",),
            no("tool_mismatch", "tool.not_in_plan"),
            tool="delete_file",
        ),
        Case(
            "24-attestation-required-absent",
            b,
            "no envelope in either transport on a requiring server",
            ("V0",),
            no("attestation_required", "attestation.absent"),
            transport="none",
        ),
        Case(
            "25-ref-digest-mismatch",
            b,
            "argsRef digest of other arguments; https: is not resolved",
            ("A2", "V8"),
            no(ARGS, "ref.digest_mismatch"),
            args=DEFAULT_ARGS,
            entries=(Entry(commit="ref", args=OTHER_ARGS, ref_uri=ref_https),),
        ),
        Case(
            "26-ref-data-content-mismatch",
            b,
            "data: content hashes to the digest but holds other arguments",
            ("A2", "V8"),
            no(ARGS, "ref.content_mismatch"),
            args=DEFAULT_ARGS,
            entries=(Entry(commit="ref", args=OTHER_ARGS),),
        ),
        Case(
            "27-ref-data-digest-mismatch",
            b,
            "data: content does not hash to the digest",
            ("A2", "V8"),
            no(ARGS, "ref.digest_mismatch"),
            entries=(Entry(commit="ref", ref_digest=_digest(OTHER_ARGS)),),
        ),
        Case(
            "28-ref-data-not-json",
            b,
            "data: content hashes to the digest but is not JSON",
            ("A2", "V8"),
            no(ARGS, "ref.not_json"),
            entries=(
                Entry(
                    commit="ref",
                    ref_uri=_data_uri(b"path=/srv/reports/q2.pdf"),
                    ref_digest=_b64(hashlib.sha256(b"path=/srv/reports/q2.pdf").digest()),
                ),
            ),
        ),
        Case(
            "29-ref-data-unresolvable",
            b,
            "a data: URI whose payload is not base64",
            ("A2", "V8"),
            no(ARGS, "ref.unresolvable"),
            args=DEFAULT_ARGS,
            entries=(Entry(commit="ref", args=OTHER_ARGS, ref_uri="data:application/json;base64,%%%"),),
        ),
        Case(
            "30-projection-not-json",
            b,
            "argsProjection that is not a JSON text",
            ("A3", "V8"),
            no(ARGS, "projection.not_json"),
            entries=(Entry(projection="{path: /srv/reports/q2.pdf}"),),
        ),
        Case(
            "31-both-projection-not-json",
            b,
            "argsRef binds but the projection beside it is not JSON",
            ("A4", "V8"),
            no(ARGS, "projection.not_json"),
            entries=(Entry(commit="both", projection="{"),),
        ),
        Case(
            "32-both-ref-mismatch-identity-projection",
            b,
            "identity projection cannot rescue an argsRef that does not bind",
            ("A4", "V8"),
            no(ARGS, "ref.digest_mismatch"),
            entries=(
                Entry(
                    commit="both",
                    ref_uri=ref_https,
                    ref_digest=_digest(OTHER_ARGS),
                    projection=_jcs_text({"path": "/srv/reports/q2.pdf", "mode": "read"}),
                ),
            ),
        ),
        Case(
            "33-replay-same-envelope",
            b,
            "the same envelope twice: the second call is a replay",
            ("V7", "R1"),
            calls=(Call(ok()), Call(no(REPLAY, "nonce.replayed"))),
        ),
        Case(
            "34-replay-across-transports",
            b,
            "first via _meta, then the same envelope via the header",
            ("V7", "V11"),
            calls=(Call(ok()), Call(no(REPLAY, "nonce.replayed"), transport="header")),
        ),
        _c2(
            "35-c2-duplicate-key",
            "a key repeated in issuerAsserted",
            _replace('"alg": "HS256",', '"alg": "HS256",\n    "alg": "HS256",'),
            "malformed.duplicate_key",
        ),
        _c2(
            "36-c2-duplicate-key-nested",
            "a key repeated inside a tool call with another value",
            _replace('"name": "read_file",', '"name": "read_file",\n        "name": "delete_file",'),
            "malformed.duplicate_key",
        ),
        _c2(
            "37-c2-nan",
            "NaN literal",
            _replace('"expSeconds": 300', '"expSeconds": NaN'),
            "malformed.non_finite",
        ),
        _c2(
            "38-c2-infinity",
            "Infinity literal",
            _replace('"expSeconds": 300', '"expSeconds": Infinity'),
            "malformed.non_finite",
        ),
        _c2(
            "39-c2-negative-infinity",
            "-Infinity literal",
            _replace('"expSeconds": 300', '"expSeconds": -Infinity'),
            "malformed.non_finite",
        ),
        _c2(
            "40-c2-negative-zero",
            "-0 in an unknown field",
            _replace('"x-n": 0', '"x-n": -0'),
            "malformed.negative_zero",
            extra={"x-n": 0},
        ),
        _c2(
            "41-c2-negative-zero-fraction",
            "-0.0",
            _replace('"x-n": 0', '"x-n": -0.0'),
            "malformed.negative_zero",
            extra={"x-n": 0},
        ),
        _c2(
            "42-c2-negative-zero-exponent",
            "-0e5",
            _replace('"x-n": 0', '"x-n": -0e5'),
            "malformed.negative_zero",
            extra={"x-n": 0},
        ),
        _c2(
            "43-c2-lone-surrogate",
            "a lone UTF-16 surrogate escape in intent",
            _replace('"intent": "Archive', '"intent": "\\ud800Archive'),
            "malformed.surrogate",
        ),
        _c2(
            "44-c2-invalid-utf8",
            "bytes that are not UTF-8 inside a string",
            lambda t: (
                _replace('"intent": "Archive', '"intent": "@@Archive')(t).encode().replace(b"@@", b"\xff\xfe")
            ),
            "malformed.utf8",
        ),
        _c2(
            "45-c2-top-level-array",
            "the envelope wrapped in an array",
            lambda t: "[" + t + "]",
            "malformed.not_object",
        ),
        _c2("46-not-json", "truncated JSON", lambda t: t[: len(t) // 2], "malformed.json"),
        Case(
            "47-e1-missing-issuer-block",
            b,
            "issuerAsserted absent",
            ("E1", "V1"),
            no(SIG, "malformed.missing_field"),
            tamper=_set("issuerAsserted", value=DROP),
        ),
        Case(
            "48-e1-empty-intent",
            b,
            "intent is the empty string",
            ("E1", "V1"),
            no(SIG, "malformed.empty"),
            planner={"intent": ""},
        ),
        Case(
            "49-e1-no-tool-calls",
            b,
            "toolCalls is empty",
            ("E1", "V1"),
            no(SIG, "malformed.tool_calls"),
            edit=_set("payloadDerived", "toolCalls", value=[]),
        ),
        Case(
            "50-e1-entry-without-commitment",
            b,
            "an entry with neither argsRef nor argsProjection",
            ("E1", "A4", "V1"),
            no(SIG, "malformed.no_commitment"),
            edit=_set("payloadDerived", "toolCalls", 0, "argsProjection", value=DROP),
        ),
        Case(
            "51-e6-digest-in-hex",
            b,
            "argsRef.digest written as hex, not base64url",
            ("E6", "V1"),
            no(SIG, "malformed.digest"),
            entries=(Entry(commit="ref", ref_digest=hashlib.sha256(b"{}").hexdigest()),),
        ),
        Case(
            "52-e1-alg-not-a-string",
            b,
            "alg is a number",
            ("E1", "V1"),
            no(SIG, "malformed.type"),
            issuer={"alg": 256},
        ),
    ]


def _c3(name: str, title: str, args: bytes, **kw: Any) -> Case:
    return Case(
        name, "verifier-policy", title, ("C3", "V8"), no(ARGS, "args.not_canonicalizable"), args=args, **kw
    )


def _policy() -> list[Case]:
    b = "verifier-policy"
    bad_exp = no(SIG, "malformed.exp_seconds")
    ref_https = "https://blobs.example/args/7"
    spec_then_strict = (Entry(args=OTHER_ARGS), Entry())
    return [
        Case(
            "01-rotation-older-kid",
            b,
            "an older kid of the issuer still verifies",
            ("K4",),
            ok(),
            kid=OLD_HS_KID,
        ),
        Case(
            "02-retired-kid",
            b,
            "a kid removed from the keyring is key_unavailable, not a bad signature",
            ("K4", "V2"),
            no(KEY, "key.unknown"),
            kid=OLD_HS_KID,
            keyring="keys/keyring-retired.public.json",
        ),
        Case(
            "03-alg-hs512-outside-allowlist",
            b,
            "HS512 is not an allowed algorithm",
            ("K1", "V2"),
            no(KEY, "alg.not_allowed"),
            issuer={"alg": "HS512"},
        ),
        Case(
            "04-policy-es256-only",
            b,
            "an HS256 envelope at a verifier that allows ES256 only",
            ("K1", "V2"),
            no(KEY, "alg.not_allowed"),
            policy={"algorithms": ["ES256"]},
        ),
        Case(
            "05-key-alg-mismatch",
            b,
            "alg ES256 naming an HS256 kid",
            ("K1", "V2"),
            no(KEY, "key.alg_mismatch"),
            issuer={"alg": "ES256"},
            signer=(ISS, KIDS["ES256"]),
        ),
        Case(
            "06-skew-late-boundary-accepted",
            b,
            "now = iat + expSeconds + skew",
            ("V4",),
            ok(),
            at=IAT_EPOCH + 330,
        ),
        Case(
            "07-skew-late-boundary-rejected",
            b,
            "now = iat + expSeconds + skew + 1",
            ("V4",),
            no(EXP, "ttl.expired"),
            at=IAT_EPOCH + 331,
        ),
        Case("08-skew-early-boundary-accepted", b, "now = iat - skew", ("V4",), ok(), at=IAT_EPOCH - 30),
        Case(
            "09-skew-early-boundary-rejected",
            b,
            "now = iat - skew - 1",
            ("V4",),
            no(EXP, "ttl.not_yet_valid"),
            at=IAT_EPOCH - 31,
        ),
        Case(
            "10-skew-zero",
            b,
            "skew 0: one second past iat + expSeconds",
            ("V4",),
            no(EXP, "ttl.expired"),
            policy={"skew": 0},
            at=IAT_EPOCH + 301,
        ),
        Case(
            "11-exp-seconds-max-ttl",
            b,
            "expSeconds = max_ttl (3600)",
            ("E4",),
            ok(),
            issuer={"expSeconds": 3600},
        ),
        Case(
            "12-exp-seconds-over-max-ttl",
            b,
            "expSeconds = 3601",
            ("E4", "V1"),
            bad_exp,
            issuer={"expSeconds": 3601},
        ),
        Case(
            "13-exp-seconds-over-policy-max-ttl",
            b,
            "max_ttl 300, expSeconds 600",
            ("E4", "V1"),
            bad_exp,
            issuer={"expSeconds": 600},
            policy={"max_ttl": 300},
        ),
        Case("14-exp-seconds-zero", b, "expSeconds 0", ("E4", "V1"), bad_exp, issuer={"expSeconds": 0}),
        Case(
            "15-exp-seconds-boolean", b, "expSeconds true", ("E4", "V1"), bad_exp, issuer={"expSeconds": True}
        ),
        Case(
            "16-exp-seconds-300-point-0",
            b,
            "expSeconds 300.0 is a float",
            ("E4", "C2", "V1"),
            no(SIG, "malformed.float"),
            text=_replace('"expSeconds": 300', '"expSeconds": 300.0'),
        ),
        Case(
            "17-exp-seconds-3e2",
            b,
            "expSeconds 3e2 is a float",
            ("E4", "C2", "V1"),
            no(SIG, "malformed.float"),
            text=_replace('"expSeconds": 300', '"expSeconds": 3e2'),
        ),
        Case(
            "18-c2-float-in-unknown-field",
            b,
            "no float anywhere in the envelope",
            ("C2", "V1"),
            no(SIG, "malformed.float"),
            extra={"x-score": 0},
            text=_replace('"x-score": 0', '"x-score": 0.5'),
        ),
        Case(
            "19-c2-integer-beyond-2-53",
            b,
            "an integer beyond 2^53-1",
            ("C2", "V1"),
            no(SIG, "malformed.int_range"),
            extra={"x-big": 1},
            text=_replace('"x-big": 1', '"x-big": 9007199254740992'),
        ),
        Case(
            "20-iat-other-offset",
            b,
            "iat with +02:00",
            ("E3", "V1"),
            no(SIG, "malformed.iat"),
            issuer={"iat": "2026-06-01T14:00:00+02:00"},
        ),
        Case(
            "21-iat-lowercase-z",
            b,
            "iat ending in lowercase z",
            ("E3", "V1"),
            no(SIG, "malformed.iat"),
            issuer={"iat": "2026-06-01T12:00:00z"},
        ),
        Case(
            "22-iat-leap-second",
            b,
            "iat with second 60",
            ("E3", "V1"),
            no(SIG, "malformed.iat"),
            issuer={"iat": "2026-06-30T23:59:60Z"},
        ),
        Case(
            "23-nonce-too-short",
            b,
            "nonce decoding to 12 bytes",
            ("E5", "V1"),
            no(SIG, "malformed.nonce"),
            issuer={"nonce": _b64(b"twelve bytes")},
        ),
        Case(
            "24-nonce-16-bytes",
            b,
            "nonce decoding to exactly 16 bytes",
            ("E5",),
            ok(),
            issuer={"nonce": _b64(b"sixteen bytes!!!")},
        ),
        Case(
            "25-nonce-padded",
            b,
            "nonce with base64 padding",
            ("E5", "V1"),
            no(SIG, "malformed.nonce"),
            issuer={"nonce": _b64(b"sixteen bytes!!!") + "=="},
        ),
        Case(
            "26-empty-optional-field",
            b,
            'requestedCapability sent as ""',
            ("E2", "V1"),
            no(SIG, "malformed.empty"),
            planner={"requestedCapability": ""},
        ),
        Case(
            "27-iss-over-512-bytes",
            b,
            "iss of 513 UTF-8 bytes",
            ("E2", "V1"),
            no(SIG, "malformed.too_long"),
            issuer={"iss": "https://" + "\u00e9" * 252 + "a"},
            signer=(ISS, KIDS["HS256"]),
        ),
        Case(
            "28-intent-over-4096-bytes",
            b,
            "intent of 4097 bytes",
            ("E2", "V1"),
            no(SIG, "malformed.too_long"),
            planner={"intent": "x" * 4097},
        ),
        Case(
            "29-65-tool-calls",
            b,
            "65 entries",
            ("E1", "V1"),
            no(SIG, "malformed.tool_calls"),
            entries=tuple(Entry() for _ in range(65)),
        ),
        Case(
            "30-envelope-over-64-kib",
            b,
            "an envelope larger than 64 KiB",
            ("E2", "V1"),
            no(SIG, "malformed.too_large"),
            extra={"x-pad": "a" * 65536},
        ),
        Case(
            "31-depth-65",
            b,
            "nesting depth 65",
            ("E2", "V1"),
            no(SIG, "malformed.depth"),
            extra={"x-deep": _deep(64)},
        ),
        Case(
            "32-byte-order-mark",
            b,
            "envelope bytes start with a UTF-8 BOM",
            ("E2", "V1"),
            no(SIG, "malformed.bom"),
            text=lambda t: b"\xef\xbb\xbf" + t.encode(),
        ),
        Case(
            "33-multi-server-refused",
            b,
            "a two-server plan where multi_server is off",
            ("V5",),
            no("server_mismatch", "server.multi_server_plan"),
            entries=(SEND_MAIL, Entry()),
            policy={"multi_server": False},
        ),
        Case(
            "34-tool-only-on-other-server",
            b,
            "the tool is planned, but for another server",
            ("V5", "V6"),
            no("tool_mismatch", "tool.not_in_plan"),
            entries=(SEND_MAIL, Entry()),
            tool="send_mail",
            args=SEND_MAIL.args,
        ),
        Case(
            "35-strict-redacted-rejected",
            b,
            "args_binding strict refuses a redacted projection",
            ("A3", "V8"),
            no(ARGS, "args.not_bound"),
            policy={"args_binding": "strict"},
            entries=(Entry(projection='{"path":"<redacted>"}'),),
        ),
        Case(
            "36-strict-identity-accepted",
            b,
            "args_binding strict accepts an identity projection",
            ("A3",),
            ok(),
            policy={"args_binding": "strict"},
        ),
        Case(
            "37-strict-ref-beside-redacted-projection",
            b,
            "strict: argsRef binds, projection redacted",
            ("A3", "A4"),
            ok("ref-digest"),
            policy={"args_binding": "strict"},
            entries=(Entry(commit="both", projection='{"path":"<redacted>"}'),),
        ),
        Case(
            "38-resolve-refs-data-uri",
            b,
            "resolve_refs always fetches: a data: URI is ref-resolved",
            ("A2",),
            ok("ref-resolved"),
            policy={"resolve_refs": True},
            entries=(Entry(commit="ref"),),
        ),
        Case(
            "39-resolve-refs-no-resolver",
            b,
            "resolve_refs with an https: URI and no resolver",
            ("A2", "V8"),
            no(ARGS, "ref.unresolvable"),
            policy={"resolve_refs": True},
            entries=(Entry(commit="ref", ref_uri=ref_https),),
        ),
        Case(
            "40-optional-server-absent",
            b,
            "required false and no envelope: accepted, not attested",
            ("V0",),
            Expect(True, None, "attestation.absent"),
            policy={"required": False},
            transport="none",
        ),
        Case(
            "41-optional-server-bad-envelope",
            b,
            "required false never excuses a bad envelope",
            ("V0", "V3"),
            no(SIG, "signature.mismatch"),
            policy={"required": False},
            tamper=_set("plannerDeclared", "intent", value="changed"),
        ),
        Case(
            "42-header-conflict",
            b,
            "_meta and header carry different envelopes",
            ("V11",),
            no(SIG, "transport.conflict"),
            transport="both",
            header_variant=_set("issuerAsserted", "nonce", value=_b64(b"another nonce of 32 bytes.......")),
        ),
        Case(
            "43-header-padded",
            b,
            "header value with = padding",
            ("V11", "V1"),
            no(SIG, "malformed.header"),
            transport="header",
            header_text=lambda h: h + "=" * (-len(h) % 4 or 4),
        ),
        Case(
            "44-header-standard-base64",
            b,
            "header in standard base64 (+ and /)",
            ("V11", "V1"),
            no(SIG, "malformed.header"),
            transport="header",
            header_text=lambda h: "+/" + h,
        ),
        Case(
            "45-header-not-json",
            b,
            "header decodes to bytes that are not JSON",
            ("V11", "V1"),
            no(SIG, "malformed.json"),
            transport="header",
            header_text=lambda h: _b64(b'{"issuerAsserted":'),
        ),
        Case(
            "46-replay-two-entries-same-tool",
            b,
            "one plan, two entries for one tool: two calls, then replay",
            ("R1", "V7"),
            entries=(Entry(), Entry()),
            calls=(Call(ok()), Call(ok(index=1)), Call(no(REPLAY, "nonce.replayed"))),
        ),
        Case(
            "47-replay-entry-order-spec",
            b,
            "spec binding: entries are tried in order and a redacted match consumes entry 0 first",
            ("R1", "A3"),
            entries=spec_then_strict,
            args=DEFAULT_ARGS,
            calls=(
                Call(ok("redacted", 0)),
                Call(ok("redacted", 1), args=json.dumps(OTHER_ARGS).encode()),
                Call(no(REPLAY, "nonce.replayed")),
            ),
        ),
        Case(
            "48-replay-entry-order-strict",
            b,
            "strict binding: each call takes the entry that binds it",
            ("R1", "A3"),
            entries=spec_then_strict,
            policy={"args_binding": "strict"},
            args=DEFAULT_ARGS,
            calls=(
                Call(ok(index=1)),
                Call(ok(index=0), args=json.dumps(OTHER_ARGS).encode()),
                Call(no(REPLAY, "nonce.replayed")),
            ),
        ),
        Case(
            "49-rejected-call-keeps-nonce",
            b,
            "a call rejected at V8 does not burn the nonce",
            ("V9", "R1"),
            entries=(Entry(commit="ref", ref_uri=ref_https),),
            calls=(
                Call(no(ARGS, "ref.digest_mismatch"), args=json.dumps(OTHER_ARGS).encode()),
                Call(ok("ref-digest")),
                Call(no(REPLAY, "nonce.replayed")),
            ),
        ),
        Case(
            "50-replay-after-expiry-is-expired",
            b,
            "after the key lifetime, TTL alone rejects",
            ("R2", "V4"),
            calls=(Call(ok()), Call(no(EXP, "ttl.expired"), at=IAT_EPOCH + 331)),
        ),
        _c3(
            "51-c3-args-overflow", "1e400 overflows a double", b'{"path": "/srv/reports/q2.pdf", "n": 1e400}'
        ),
        _c3(
            "52-c3-args-underflow-to-negative-zero",
            "-1e-400 rounds to -0",
            b'{"path": "/srv/reports/q2.pdf", "n": -1e-400}',
        ),
        _c3(
            "53-c3-args-inexact-integer",
            "9007199254740993 is not a double",
            b'{"path": "/srv/reports/q2.pdf", "n": 9007199254740993}',
        ),
        _c3("54-c3-args-nan", "NaN in arguments", b'{"path": "/srv/reports/q2.pdf", "n": NaN}'),
        _c3("55-c3-args-negative-zero", "-0 in arguments", b'{"path": "/srv/reports/q2.pdf", "n": -0}'),
        _c3(
            "56-c3-args-lone-surrogate",
            "a lone surrogate in arguments",
            b'{"path": "/srv/reports/q2\\udc00.pdf", "mode": "read"}',
        ),
        _c3(
            "57-c3-args-duplicate-key",
            "a duplicate key in arguments",
            b'{"path": "/srv/reports/q2.pdf", "path": "/etc/passwd", "mode": "read"}',
        ),
        Case(
            "58-order-time-before-arguments",
            b,
            "an expired envelope with bad arguments is expired (V4 < V8)",
            ("V4", "V8"),
            no(EXP, "ttl.expired"),
            at=IAT_EPOCH + 3600,
            args=b'{"path": "/srv/reports/q2.pdf", "n": 1e400}',
        ),
        Case(
            "59-order-key-before-time",
            b,
            "an unknown kid on an expired envelope is key_unavailable (V2 < V4)",
            ("V2", "V4"),
            no(KEY, "key.unknown"),
            at=IAT_EPOCH + 3600,
            issuer={"secretVersion": "hs-2099-01"},
            signer=(ISS, KIDS["HS256"]),
        ),
        Case(
            "60-order-server-before-tool",
            b,
            "wrong server and wrong tool: server_mismatch (V5 < V6)",
            ("V5", "V6"),
            no("server_mismatch", "server.not_in_plan"),
            tool="delete_file",
            entries=(Entry(server=OTHER_SERVER),),
        ),
    ]


CASES: tuple[Case, ...] = (*_positive(), *_negative(), *_policy())
