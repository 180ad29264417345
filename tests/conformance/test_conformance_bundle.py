"""The committed v1 bundle: our runner passes all of it, and the generator rebuilds it exactly."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from mcp_attest.conformance import generate as gen
from mcp_attest.conformance._cases import CASES
from mcp_attest.conformance._model import Case
from mcp_attest.conformance.runner import run_v1
from mcp_attest.keys import Keyring
from shared_paths import REASONS

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "conformance" / "sep-2787" / "v1"


def _committed() -> dict[str, bytes]:
    return {str(p.relative_to(BUNDLE)): p.read_bytes() for p in BUNDLE.rglob("*") if p.is_file()}


def _expected() -> list[dict[str, object]]:
    return [json.loads(p.read_bytes()) for p in sorted(BUNDLE.rglob("expected.json"))]


def test_runner_passes_every_v1_case() -> None:
    rows = run_v1(BUNDLE)
    assert [r.case for r in rows if not r.ok] == []
    assert len({r.case.split(" #")[0] for r in rows}) == len(CASES) >= 60


def test_bundle_covers_every_reason_alg_binding_and_bucket() -> None:
    results = [c for e in _expected() for c in (e.get("calls") or [e])]  # type: ignore[attr-defined]
    assert {r["reason"] for r in results} - {None} == REASONS
    assert {r["argsBinding"] for r in results} - {None} == {
        "identity",
        "redacted",
        "ref-digest",
        "ref-resolved",
    }
    counts = json.loads((BUNDLE / "MANIFEST.json").read_bytes())["counts"]
    assert all(counts[b] >= 10 for b in ("normative/positive", "normative/negative", "verifier-policy"))
    accepted_algs = {
        json.loads((BUNDLE / str(e["case"]) / "canonical_signing_input.bin").read_bytes())["issuerAsserted"][
            "alg"
        ]
        for e in _expected()
        if e["accepted"] and (BUNDLE / str(e["case"]) / "canonical_signing_input.bin").exists()
    }
    assert accepted_algs == {"HS256", "ES256", "RS256"}


def test_c2_rejections_are_all_present() -> None:
    details = {e["detail"] for e in _expected()}
    for detail in (
        "malformed.duplicate_key",
        "malformed.non_finite",
        "malformed.negative_zero",
        "malformed.float",
        "malformed.int_range",
        "malformed.surrogate",
        "malformed.utf8",
        "malformed.not_object",
        "malformed.bom",
        "malformed.depth",
        "malformed.too_large",
        "transport.conflict",
        "args.not_canonicalizable",
    ):
        assert detail in details, detail


def test_manifest_lists_every_file_with_its_digest() -> None:
    files = _committed()
    manifest = json.loads(files.pop("MANIFEST.json"))
    assert manifest["files"] == {
        name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())
    }


def test_generator_reproduces_the_committed_bundle() -> None:
    assert gen.build_bundle(BUNDLE) == _committed()


def test_without_pins_only_es256_signatures_change_and_pins_verify(tmp_path: Path) -> None:
    shutil.copytree(BUNDLE / "keys", tmp_path / "keys")
    rebuilt = gen.build_bundle(tmp_path)
    committed = _committed()
    assert rebuilt.keys() == committed.keys()
    changed = {name for name in committed if rebuilt[name] != committed[name]}
    es256_cases = {
        c.case_id for c in CASES if c.alg == "ES256" or (c.signer and c.signer[1].startswith("es-"))
    }
    assert changed <= {gen.PINS_FILE, "MANIFEST.json"} | {f"{c}/envelope.json" for c in es256_cases}
    ring = Keyring.load(BUNDLE / "keys" / "keyring.json")
    key = ring.get("https://agent.example", "es-2026-06")
    assert key is not None
    for label, signature in json.loads(committed[gen.PINS_FILE]).items():
        case_dir = BUNDLE / label
        assert key.verify(signature, (case_dir / "canonical_signing_input.bin").read_bytes()) or label in {
            c.case_id for c in CASES if c.tamper
        }


def test_generate_writes_in_place_and_fresh_keys_work(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    assert gen.main([str(out), "--pinned", str(BUNDLE)]) == 0
    assert {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} == set(_committed())
    fresh = gen.build_bundle(None)  # first-ever build: new keys, fresh ES256 signatures
    assert fresh["keys/keyring.json"] != _committed()["keys/keyring.json"]
    assert gen.main([str(out), "--pinned", str(tmp_path / "nothing")]) == 2


@pytest.mark.parametrize("case", [c for c in CASES if c.calls], ids=lambda c: c.case_id)
def test_sequences_list_one_result_per_call(case: Case) -> None:
    expected = json.loads((BUNDLE / case.case_id / "expected.json").read_bytes())
    context = json.loads((BUNDLE / case.case_id / "context.json").read_bytes())
    assert len(expected["calls"]) == len(context["calls"]) == len(case.calls or ())
