"""Each fact an insider might rewrite is held to the stored envelope; and the writer's own tree heads."""

from __future__ import annotations

import copy
import hashlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from _servers import ISSUER, SERVER, Decisions
from mcp_attest import ArgsBinding, Issuer, Keyring, Reason, Verdict, Verifier, generate_key
from mcp_attest.audit import AuditUnavailableError, CheckpointSigner
from mcp_attest.audit.crosscheck import RecordFacts, envelope_problem, facts_problem
from mcp_attest.audit.record import record_hash
from mcp_attest.envelope import signing_input
from mcp_attest.stores import open_audit_log


@pytest.fixture
def decisions() -> Decisions:
    return Decisions.create()


def _record(decisions: Decisions, tmp_path: Path, **arguments: Any) -> dict[str, Any]:
    verdict, wire = decisions.accepted(**arguments)
    with open_audit_log(str(tmp_path / "one.db")) as log:
        log.append(verdict, tool="search", arguments=arguments or {"q": "weather"}, envelope=wire)
        (record,) = log.records()
    return copy.deepcopy(dict(record.body))


def _reidentify(body: dict[str, Any], _: object) -> None:
    """After an envelope edit, the attestation id an insider would recompute."""
    body["facts"]["attestationId"] = hashlib.sha256(signing_input(body["envelope"])).hexdigest()


def _problem(body: dict[str, Any], keys: Keyring | None) -> str | None:
    rec = RecordFacts(body)
    return facts_problem(rec) or envelope_problem(rec, keys)


def test_crosscheck_an_honest_accepted_record_holds(decisions: Decisions, tmp_path: Path) -> None:
    assert _problem(_record(decisions, tmp_path), decisions.keyring) is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda b: b["facts"].update(accepted="yes"), "not a boolean"),
        (lambda b: b["facts"].update(reason="expired"), "an accepted decision with reason"),
        (lambda b: b["facts"].update(accepted=False, reason="made_up"), "not one of the eight"),
        (lambda b: b["facts"].update(argsBinding="vibes"), "unknown argsBinding"),
        (lambda b: b["facts"].update(attestationId="0" * 64), "does not match the record's attestationId"),
        (lambda b: b["facts"].update(sub="user:ceo"), "facts.sub 'user:ceo' disagrees"),
        (lambda b: b["facts"].update(toolCallIndex=3), "names no entry of the envelope's plan"),
        (lambda b: b.update(tool="delete_all"), "not the envelope's entry 0"),
        (lambda b: b["facts"].update(verifierFingerprint="sha256:other"), "verifierFingerprint"),
        (
            lambda b: b["facts"].update(verifiedAt="2001-01-01T00:00:00.000Z"),
            "outside the envelope's validity",
        ),
        (lambda b: b["facts"].update(verifiedAt="yesterday"), "is not a time"),
        (lambda b: b["facts"].pop("verifiedAt"), "verifiedAt is missing"),
        (lambda b: b.update(argsDigest="A" * 43), "argsProjection (binding identity)"),
        (lambda b: b["facts"].update(argsBinding=None), "without argsBinding"),
        (
            lambda b: _reidentify(b, b["envelope"]["issuerAsserted"].pop("nonce")),
            "stored envelope is malformed",
        ),
        (lambda b: b["envelope"].update(x=float("nan")), "cannot be canonicalized"),
    ],
)
def test_crosscheck_an_edited_fact_is_named(
    decisions: Decisions, tmp_path: Path, edit: Any, message: str
) -> None:
    body = _record(decisions, tmp_path)
    edit(body)
    if "attestationId" not in message and "canonicalized" not in message and "malformed" not in message:
        assert message in str(_problem(body, None))  # no key needed to see these
    assert message in str(_problem(body, decisions.keyring))


def test_crosscheck_signature_and_key(decisions: Decisions, tmp_path: Path) -> None:
    body = _record(decisions, tmp_path)
    assert "no key" in str(_problem(body, Keyring()))
    other = Keyring().with_key(ISSUER, generate_key("HS256", "k1"))
    assert "signature does not verify" in str(_problem(body, other))


def test_crosscheck_ref_digest_binding(tmp_path: Path) -> None:
    ring = Keyring().with_key(ISSUER, generate_key("HS256", "k1"))
    args = {"q": "weather"}
    wire = (
        Issuer(ring, iss=ISSUER, sub="a")
        .sign(tool="search", arguments=args, server_fingerprint=SERVER, intent="i", commit="ref")
        .to_wire()
    )
    verdict = Verifier(ring, SERVER).verify(wire, tool="search", arguments=args)
    assert verdict.args_binding == ArgsBinding.REF_DIGEST
    with open_audit_log(str(tmp_path / "r.db")) as log:
        log.append(verdict, tool="search", arguments=args, envelope=wire)
        body = copy.deepcopy(dict(next(log.records()).body))
    assert _problem(body, ring) is None
    body["argsDigest"] = "A" * 43
    assert "argsRef digest (binding ref-digest)" in str(_problem(body, ring))


def test_crosscheck_rejections_before_identity_need_nothing_more(tmp_path: Path) -> None:
    verdict = Verdict(False, Reason.ATTESTATION_REQUIRED, "attestation.absent", time.time(), "fp")
    with open_audit_log(str(tmp_path / "j.db")) as log:
        log.append(verdict, tool="t", arguments={}, envelope={"junk": True})
        body = dict(next(log.records()).body)
    assert _problem(body, Keyring()) is None


def test_crosscheck_unattested_accepts_need_the_opt_in(tmp_path: Path) -> None:
    verdict = Verdict(True, None, "attestation.absent", time.time(), "fp")
    with open_audit_log(str(tmp_path / "u.db")) as log:
        log.append(verdict, tool="t", arguments={})
        assert "holds no envelope" in str(log.verify(Keyring()).broken)
        assert log.verify(Keyring(), allow_unattested=True).accepted


# -- the writer's own tree heads ------------------------------------------------


def _signer() -> tuple[CheckpointSigner, Keyring]:
    key = generate_key("ES256", "cp")
    return CheckpointSigner(key, "audit"), Keyring.from_dict(
        Keyring().with_key("audit", key).to_dict(private=False)
    )


def test_writer_signs_what_it_wrote_not_what_the_table_holds_later(
    decisions: Decisions, tmp_path: Path
) -> None:
    signer, public = _signer()
    path = tmp_path / "a.db"
    log = open_audit_log(str(path), checkpoint_signer=signer, checkpoint_interval=0)
    decisions.fill(log, 3)
    with sqlite3.connect(path) as conn:  # the insider strikes between the write and the checkpoint
        conn.execute(
            "UPDATE audit_records SET body = replace(body, 'nonce.replayed', 'nonce.fresh') WHERE seq = 3"
        )
        body = conn.execute("SELECT body FROM audit_records WHERE seq = 3").fetchone()[0]
        conn.execute("UPDATE audit_records SET hash = ? WHERE seq = 3", (record_hash(body.encode()),))
    assert log.checkpoint() == 3
    log.close()
    with open_audit_log(str(path), create=False) as reader:
        broken = reader.verify(checkpoint_keys=public).broken
    assert broken is not None and broken.seq == 3


def test_writer_reads_other_writers_records_into_its_tree(decisions: Decisions, tmp_path: Path) -> None:
    signer, public = _signer()
    url = str(tmp_path / "a.db")
    first = open_audit_log(url, checkpoint_signer=signer, checkpoint_interval=0)
    second = open_audit_log(url)
    decisions.fill(first, 1)
    decisions.fill(second, 2)
    decisions.fill(first, 1)
    assert first.checkpoint() == 4 and first.checkpoint() == 4  # a second call signs nothing new
    second.close()
    first.close()
    with open_audit_log(url, create=False) as reader:
        report = reader.verify(decisions.keyring, checkpoint_keys=public)
    assert report.accepted and report.checkpoints == 1


def test_writer_refuses_to_sign_over_a_cut_or_holed_chain(decisions: Decisions, tmp_path: Path) -> None:
    signer, _ = _signer()
    path = tmp_path / "a.db"
    log = open_audit_log(str(path), checkpoint_signer=signer, checkpoint_interval=0)
    decisions.fill(log, 3)
    assert log.checkpoint() == 3
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM audit_records WHERE seq = 3")
    log.backend._head = None  # type: ignore[attr-defined]
    with pytest.raises(AuditUnavailableError, match="below the signed tree size 3"):
        log.checkpoint()
    log.close()  # logs the failed final checkpoint, still closes
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM audit_records WHERE seq = 1")
    fresh = open_audit_log(str(path), checkpoint_signer=signer, checkpoint_interval=0)
    with pytest.raises(AuditUnavailableError, match="record 1 is missing"):
        fresh.checkpoint()
    fresh.close()


def test_writer_checkpoints_on_its_timer(decisions: Decisions, tmp_path: Path) -> None:
    signer, _ = _signer()
    with open_audit_log(str(tmp_path / "a.db"), checkpoint_signer=signer, checkpoint_interval=0.05) as log:
        decisions.fill(log, 2)
        deadline = time.monotonic() + 10
        while not log.backend.checkpoints() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [seq for seq, _ in log.backend.checkpoints()] == [2]
