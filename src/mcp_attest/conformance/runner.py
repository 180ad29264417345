"""Run a conformance bundle against this implementation and compare verdicts.

Two layouts are understood. The v1 bundle (spec dialect) states every input
of a call in ``context.json``, so a case is replayed exactly. The PR #2789
v0 bundle (vaara-v0 dialect) states none of the verifier context: no
arguments, server or clock. Its ``verification_result`` covers strict
parsing, canonical bytes, the signature and the TTL only, so a v0 case is
judged on those steps (V1-V4) of our verdict, plus byte checks of its
``canonical_signing_input.bin``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mcp_attest.algorithms import ES256Key, HS256Key, Key, RS256Key
from mcp_attest.canonical import CanonicalizationError, parse_envelope_json
from mcp_attest.conformance.vaara_v0 import v0_verifier
from mcp_attest.envelope import parse_iat, signing_input
from mcp_attest.errors import Error
from mcp_attest.keys import Keyring, KeyringError
from mcp_attest.replay import InMemoryReplayStore
from mcp_attest.verdict import Verdict
from mcp_attest.verifier import Verifier, VerifierPolicy

__all__ = ["BundleError", "Row", "run_bundle", "run_v0", "run_v1"]

# Reasons decided after V4: reaching them means parse, key, signature and TTL passed.
_AFTER_V4 = frozenset({"server_mismatch", "tool_mismatch", "nonce_replay", "args_commitment_mismatch"})
_COMPARED = ("accepted", "reason", "detail", "argsBinding", "toolCallIndex", "attestationId", "unknownFields")


class BundleError(Error):
    """A bundle that cannot be run (missing or unreadable files): a usage error."""


@dataclass(frozen=True)
class Row:
    """One verified call: what the bundle expects, what we decided, and whether they match."""

    case: str
    bucket: str
    expected: str
    got: str
    ok: bool
    note: str = ""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        raise BundleError(f"cannot read {path}: {exc}") from None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from None


def _case_dirs(root: Path, marker: str) -> Iterator[Path]:
    yield from sorted(p.parent for p in root.rglob(marker))


def _run_cases(root: Path, marker: str, run_case: Callable[[Path], list[Row]]) -> list[Row]:
    """Every case under ``root``; a case file of the wrong shape is a bundle error, not a crash."""
    rows: list[Row] = []
    for case_dir in _case_dirs(root, marker):
        try:
            rows.extend(run_case(case_dir))
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            where = case_dir.relative_to(root)
            raise BundleError(f"{where}: not a valid case ({type(exc).__name__}: {exc})") from None
    return rows


def _summary(facts: dict[str, Any]) -> str:
    if facts["accepted"]:
        extra = [facts.get("argsBinding"), facts.get("toolCallIndex")]
        return "accepted" + "".join(f" {x}" for x in extra if x is not None)
    return f"{facts['reason']} ({facts['detail']})"


# -- v1 (spec dialect) -------------------------------------------------------------


def _policy(raw: dict[str, Any]) -> VerifierPolicy:
    try:
        return VerifierPolicy(
            required=bool(raw["required"]),
            algorithms=tuple(raw["algorithms"]),
            skew=int(raw["skew"]),
            max_ttl=int(raw["max_ttl"]),
            args_binding=raw["args_binding"],
            multi_server=bool(raw["multi_server"]),
            resolve_refs=bool(raw.get("resolve_refs", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"bad policy in context: {exc}") from None


class _Clock:
    """The verifier's clock, moved to each call's ``verifyAtEpoch``."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _load_keyring(path: Path, cache: dict[Path, Keyring]) -> Keyring:
    if path not in cache:
        try:
            cache[path] = Keyring.load(path)
        except KeyringError as exc:
            raise BundleError(str(exc)) from None
    return cache[path]


def _v1_case(root: Path, case_dir: Path, keyrings: dict[Path, Keyring]) -> list[Row]:
    context = _read_json(case_dir / "context.json")
    expected = _read_json(case_dir / "expected.json")
    name = str(case_dir.relative_to(root))
    clock = _Clock()
    verifier = Verifier(
        _load_keyring(root / context["keyring"], keyrings),
        context["serverFingerprint"],
        replay_store=InMemoryReplayStore(),
        policy=_policy(context["policy"]),
        clock=clock,
    )
    calls = context.get("calls") or [context]
    results = expected.get("calls") or [expected]
    if len(calls) != len(results):
        raise BundleError(f"{name}: {len(calls)} calls but {len(results)} expected results")
    rows = []
    for number, (call, want) in enumerate(zip(calls, results, strict=True), 1):
        clock.now = float(call["verifyAtEpoch"])
        envelope = _read_bytes(case_dir / call["envelope"]) if call.get("envelope") else None
        verdict = verifier.verify(
            envelope,
            tool=call["tool"],
            arguments=_read_bytes(case_dir / call["arguments"]),
            header=call.get("header"),
        )
        got = verdict.to_dict()
        diffs = [k for k in _COMPARED if k in want and got.get(k) != want[k]]
        label = name if len(calls) == 1 else f"{name} #{number}"
        rows.append(
            Row(
                label,
                expected["bucket"],
                _summary(want),
                _summary(got),
                not diffs,
                "differs: " + ", ".join(diffs) if diffs else "",
            )
        )
    return rows


def run_v1(root: Path) -> list[Row]:
    """Every case of a v1 bundle, in path order."""
    keyrings: dict[Path, Keyring] = {}
    rows = _run_cases(root, "context.json", lambda case_dir: _v1_case(root, case_dir, keyrings))
    if not rows:
        raise BundleError(
            f"{root} holds no v1 cases (no context.json); for the v0 bundle use --dialect vaara-v0"
        )
    return rows


# -- v0 (vaara-v0 dialect) -----------------------------------------------------------


def _v0_key(root: Path, material: str, kid: str) -> Key:
    data = _read_bytes(root / material)
    if material.endswith(".bin"):
        return HS256Key(kid, data)
    public = serialization.load_pem_public_key(data)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return ES256Key(kid, public)
    if isinstance(public, rsa.RSAPublicKey):
        return RS256Key(kid, public)
    raise BundleError(f"{material}: unsupported key type")


def _v0_private(root: Path, material: str, kid: str) -> Key | None:
    """The signing twin of a v0 verifying key, to check deterministic signatures byte for byte."""
    if material.endswith(".bin"):
        return _v0_key(root, material, kid)
    private_path = root / material.replace("_public.pem", "_private.pem")
    if not private_path.is_file():
        return None
    private = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    if isinstance(private, rsa.RSAPrivateKey):
        return RS256Key(kid, private.public_key(), private)
    return None  # ES256 is randomized: verify only


def _v0_wire_ok(verdict: Verdict) -> bool:
    """Whether V1-V4 passed; the profile fixes the step order, so a later reason implies it."""
    return verdict.accepted or (verdict.reason is not None and verdict.reason.value in _AFTER_V4)


def _v0_bytes_checks(case_dir: Path, expected: dict[str, Any], sent: bytes, key: Key) -> list[str]:
    """Problems with the case's canonical bytes and signature, checked apart from the verdict."""
    bin_path = case_dir / "canonical_signing_input.bin"
    if not bin_path.is_file() or not expected["bucket"].startswith("normative"):
        return []
    c1 = bin_path.read_bytes()
    problems = []
    if (case_dir / "canonical_signing_input.hex").read_text().strip() != c1.hex():
        problems.append(".hex differs from .bin")
    obj = parse_envelope_json(sent)
    if expected["verification_result"] and signing_input(obj) != c1:
        problems.append("our C1 bytes differ from canonical_signing_input.bin")
    if not key.verify(obj["signature"], c1):
        problems.append("signature does not verify over canonical_signing_input.bin")
    if expected.get("signature_hex_deterministic") and key.can_sign and key.sign(c1) != obj["signature"]:
        problems.append("re-signing does not reproduce the signature")
    return problems


def _v0_case(root: Path, case_dir: Path, pinned: dict[str, Any]) -> Row:
    expected = _read_json(case_dir / "expected.json")
    signed = case_dir / "signed_envelope.json"
    sent = _read_bytes(signed if signed.is_file() else case_dir / "unsigned_envelope.json")
    iss, kid = pinned["iss"], pinned["secretVersion"]
    material = expected.get("verifying_material", "keys/hs256_secret.bin")
    key = _v0_key(root, material, kid)
    signer = _v0_private(root, material, kid) or key
    at = expected.get("verify_at_epoch", parse_iat(pinned["iat"]))
    try:
        entry = json.loads(sent)["payloadDerived"]["toolCalls"][0]
        server, tool = entry["serverFingerprint"], entry["name"]
    except (ValueError, KeyError, IndexError, TypeError, RecursionError):
        server, tool = "unused", "unused"
    verifier = v0_verifier(Keyring({iss: {kid: key}}), server, clock=lambda: float(at))
    verdict = verifier.verify(sent, tool=tool, arguments=None)
    wire_ok = _v0_wire_ok(verdict)
    want = bool(expected["verification_result"])
    try:
        problems = _v0_bytes_checks(case_dir, expected, sent, signer)
    except (CanonicalizationError, KeyError, OSError) as exc:
        problems = [f"byte checks failed: {exc}"]
    bucket = expected["bucket"]
    got = "valid" if wire_ok else "invalid"
    facts = verdict.to_dict()
    decided = _summary(facts)
    note = f"ours: {decided}"
    if wire_ok and not verdict.accepted:
        note += "; V1-V4 passed, the v0 bundle supplies no runtime arguments"
    if "policy_dependency" in expected:
        note += f"; policy {expected['policy_dependency']}"
    if problems:
        note += "; " + "; ".join(problems)
    return Row(
        str(case_dir.relative_to(root)),
        bucket,
        "valid" if want else "invalid",
        got,
        wire_ok == want and not problems,
        note,
    )


def run_v0(root: Path) -> list[Row]:
    """Every case of the PR #2789 v0 bundle, through the vaara-v0 dialect reader."""
    manifest = _read_json(root / "MANIFEST.json") if (root / "MANIFEST.json").is_file() else None
    if not isinstance(manifest, dict) or "pinned_values" not in manifest:
        raise BundleError(f"{root} is not a v0 bundle (no MANIFEST.json with pinned_values)")
    pinned = manifest["pinned_values"]
    rows = _run_cases(root, "expected.json", lambda case_dir: [_v0_case(root, case_dir, pinned)])
    if not rows:
        raise BundleError(f"{root} holds no v0 cases")
    return rows


def run_bundle(root: Path, dialect: str) -> list[Row]:
    """Dispatch on the dialect the caller chose; layouts are never auto-detected (PROFILE 10)."""
    if not root.is_dir():
        raise BundleError(f"{root} is not a directory")
    if dialect == "spec":
        return run_v1(root)
    if dialect == "vaara-v0":
        return run_v0(root)
    raise BundleError(f"unknown dialect {dialect!r}")
