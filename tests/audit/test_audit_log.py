"""The audit chain on both backends: records, filters, checkpoints, verification, tampering.

Tamper tests edit the database underneath the log the way an intruder with
SQL access would, then check that ``verify`` names the first broken record.
"""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _servers import Chain, Decisions, pg_chain, sqlite_chain
from mcp_attest import ArgsBinding, Keyring, Reason, Verdict, canonicalize, generate_key
from mcp_attest.audit import (
    AuditConfigError,
    AuditLog,
    AuditRecord,
    AuditUnavailableError,
    CheckpointSigner,
    RecordQuery,
    SQLiteAuditBackend,
)
from mcp_attest.audit.record import GENESIS_HASH, RecordDraft, record_hash
from mcp_attest.envelope import b64url_encode
from mcp_attest.stores import open_audit_log
from mcp_attest.verdict import format_rfc3339

CP_ISSUER = "audit@test"


@pytest.fixture(params=["sqlite", "postgres"])
def chain(request: pytest.FixtureRequest, tmp_path: Path) -> Chain:
    if request.param == "sqlite":
        return sqlite_chain(tmp_path / "audit.db")
    return pg_chain(request.getfixturevalue("pg_url"), request.getfixturevalue("pg_schema"))


@pytest.fixture
def other_chain(request: pytest.FixtureRequest, chain: Chain, tmp_path: Path) -> Chain:
    """A second chain on the same backend, for swap-in attacks."""
    if chain.url.startswith("sqlite"):
        return sqlite_chain(tmp_path / "other.db")
    schema = request.getfixturevalue("pg_schema") + "_b"
    pg_url = request.getfixturevalue("pg_url")
    second = pg_chain(pg_url, schema)
    request.addfinalizer(lambda: second.run(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE', ()))
    return second


@pytest.fixture
def decisions() -> Decisions:
    return Decisions.create()


@pytest.fixture
def cp_key() -> tuple[CheckpointSigner, Keyring]:
    key = generate_key("ES256", "cp1")
    ring = Keyring().with_key(CP_ISSUER, key)
    public = Keyring.from_dict(ring.to_dict(private=False))
    return CheckpointSigner(key, CP_ISSUER), public


def _filled(chain: Chain, decisions: Decisions, count: int = 12, **options: Any) -> AuditLog:
    log = chain.open(**options)
    decisions.fill(log, count)
    return log


# -- records -------------------------------------------------------------------


def test_audit_record_holds_facts_digest_and_envelope_never_arguments(
    chain: Chain, decisions: Decisions
) -> None:
    verdict, wire = decisions.accepted(q="secret plans", token="s3cr3t")
    with chain.open() as log:
        log.append(verdict, tool="search", arguments={"q": "secret plans", "token": "s3cr3t"}, envelope=wire)
        (record,) = log.records()
    assert record.seq == 1 and record.body["prevHash"] == GENESIS_HASH
    assert record.facts == verdict.to_dict()
    assert record.tool == "search" and record.envelope == wire
    assert "args" not in record.body
    raw = record.to_json()
    assert b"s3cr3t" not in raw.replace(canonicalize(wire), b"")  # only the envelope (opt-out) may carry it
    digest = hashlib.sha256(canonicalize({"q": "secret plans", "token": "s3cr3t"})).digest()
    assert record.body["argsDigest"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert record.hash == record_hash(canonicalize(record.body))


def test_audit_record_opt_in_fields_and_envelope_off(tmp_path: Path, decisions: Decisions) -> None:
    verdict, wire = decisions.accepted(q="hello", token="s3cr3t")
    with open_audit_log(str(tmp_path / "a.db"), record_fields=("q",), store_envelope=False) as log:
        record = log.append(
            verdict, tool="search", arguments={"q": "hello", "token": "s3cr3t"}, envelope=wire
        )
    assert record.body["args"] == {"q": "hello"}
    assert "envelope" not in record.body
    assert b"s3cr3t" not in record.to_json()


def test_audit_record_survives_what_jcs_cannot_write(tmp_path: Path) -> None:
    """A malformed envelope or C3-refused arguments are still a recorded decision."""
    verdict = Verdict(False, Reason.SIGNATURE_INVALID, "malformed.float", time.time(), "fp")
    with open_audit_log(str(tmp_path / "a.db")) as log:
        record = log.append(
            verdict, tool="bad\ud800tool", arguments={"n": float("nan")}, envelope={"x": float("inf")}
        )
        assert record.body["argsDigest"] is None and record.body["argsError"] == "args.not_canonicalizable"
        assert "envelope" not in record.body and record.body["envelopeError"].startswith("canonical")
        assert record.tool == "bad\\ud800tool"
        assert log.append(verdict, tool="t", arguments=None, envelope=b"{not json").body["envelope"] == {
            "unparsed": True
        }
        assert log.append(verdict, tool="t", arguments=None, envelope='{"a": 1}').body["envelope"] == {"a": 1}
        assert log.verify().accepted


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    envelope=st.dictionaries(
        st.sampled_from(["prevHash", "seq", "zz", "a", "recordedAt", "\U0001f600"]), _json
    ),
    args=st.dictionaries(st.text(max_size=6), _json, max_size=4),
    tool=st.text(min_size=1, max_size=8),
    seq=st.integers(1, 2**40),
)
def test_audit_sealed_bytes_equal_jcs_of_the_whole_record(
    envelope: dict[str, Any], args: dict[str, Any], tool: str, seq: int
) -> None:
    """The prefix + chain members + suffix splice is exactly JCS of the record."""
    verdict = Verdict(
        True, None, None, 1700000000.25, "fp", attestation_id="ab" * 32, args_binding=ArgsBinding.REDACTED
    )
    draft = RecordDraft.build(
        verdict, chain_id="c" * 32, tool=tool, arguments=args, envelope=envelope, record_fields=list(args)[:1]
    )
    row = draft.seal(seq, "f" * 64, 1700000001.5)
    assert row.body == canonicalize(orjson.loads(row.body))
    assert row.hash == record_hash(row.body)
    assert draft.record(row) == AuditRecord.from_row(row)


def test_audit_sealed_bytes_splice_at_the_top_level_placeholder_only() -> None:
    """An envelope (or tool name) holding the placeholder's text cannot move where the chain members go."""
    verdict = Verdict(True, None, None, 1700000000.25, "fp", attestation_id="ab" * 32)
    envelope = {"recordedAt": "\x00", "nested": {"recordedAt": "\x00", "seq": 1}, "z": ["\x00"]}
    for tool in ("t", '"recordedAt":"\\u0000"', "\x00"):
        draft = RecordDraft.build(verdict, chain_id="c" * 32, tool=tool, arguments={}, envelope=envelope)
        row = draft.seal(7, "f" * 64, 1700000001.5)
        body = orjson.loads(row.body)
        assert row.body == canonicalize(body)
        assert (body["envelope"], body["tool"], body["seq"]) == (envelope, tool, 7)
        assert "recordedAt" not in draft.fields  # the placeholder never reaches a record


# -- reading -------------------------------------------------------------------


def test_audit_export_filters_by_time_subject_tool_reason(chain: Chain, decisions: Decisions) -> None:
    clock = iter(range(1000, 2000, 10))
    log = chain.open()
    log._clock = lambda: float(next(clock))  # type: ignore[method-assign]
    decisions.fill(log, 9)  # seq 1..9 at t=1000..1080, every third rejected (nonce_replay)
    other, _ = decisions.accepted(tool="fetch")
    log.append(other, tool="fetch", arguments={}, envelope=None)  # seq 10 at t=1090
    assert [r.seq for r in log.records(since=1020, until=1050)] == [3, 4, 5]
    assert [r.seq for r in log.records(reason="nonce_replay")] == [3, 6, 9]
    assert [r.seq for r in log.records(reason="accepted")] == [1, 2, 4, 5, 7, 8, 10]
    assert [r.seq for r in log.records(tool="fetch")] == [10]
    assert len(list(log.records(sub="agent-7"))) == 10
    assert list(log.records(sub="nobody")) == []
    assert [r.seq for r in log.records(RecordQuery(after_seq=7, limit=2))] == [8, 9]
    assert [r.seq for r in log.tail(3)] == [8, 9, 10]
    log.close()


def test_audit_records_page_through_long_chains(tmp_path: Path) -> None:
    verdict = Verdict(True, None, "attestation.absent", time.time(), "fp")
    with open_audit_log(str(tmp_path / "a.db")) as log:
        for i in range(2300):
            log.append(verdict, tool="t", arguments={"i": i})
        assert [r.seq for r in log.records()] == list(range(1, 2301))
        assert len(list(log.records(RecordQuery(limit=1500)))) == 1500


def test_audit_follow_yields_records_appended_later(tmp_path: Path, decisions: Decisions) -> None:
    path = tmp_path / "a.db"
    writer = open_audit_log(str(path))
    reader = open_audit_log(str(path), create=False)
    decisions.fill(writer, 2)
    seen: list[AuditRecord] = []
    stream = reader.follow(2, interval=0.01, stop=lambda: len(seen) >= 2)
    decisions.fill(writer, 2)
    seen.extend(stream)
    assert [r.seq for r in seen] == [3, 4]
    writer.close()
    reader.close()


# -- checkpoints ---------------------------------------------------------------


def test_audit_checkpoints_every_n_and_on_close(chain: Chain, decisions: Decisions, cp_key: Any) -> None:
    signer, public = cp_key
    log = _filled(chain, decisions, 25, checkpoint_signer=signer, checkpoint_every=10)
    assert [seq for seq, _ in log.backend.checkpoints()] == [10, 20]
    log.close()
    log.close()  # idempotent
    with chain.open(create=False) as reader:
        assert [seq for seq, _ in reader.backend.checkpoints()] == [10, 20, 25]
        report = reader.verify(decisions.keyring, checkpoint_keys=public)
    assert report.accepted, report.broken
    assert report.checkpoints == 3 and report.checkpoint_signatures_checked
    assert report.envelopes_verified == 25
    assert report.warnings == ()


def test_audit_verify_warns_what_it_could_not_check(chain: Chain, decisions: Decisions, cp_key: Any) -> None:
    with _filled(chain, decisions, 3) as log:
        report = log.verify()
        assert report.accepted and report.envelopes_verified == 0
        assert any("no checkpoints" in w for w in report.warnings)
    signer, _ = cp_key
    with chain.open(checkpoint_signer=signer) as log:
        decisions.fill(log, 2)
        assert log.checkpoint() == 5
        decisions.fill(log, 1)
        report = log.verify()
        assert any("6..6 are after the last checkpoint" in w for w in report.warnings)
        assert any("signatures not checked" in w for w in report.warnings)


def test_audit_checkpoint_signed_with_an_unknown_or_wrong_key(chain: Chain, decisions: Decisions) -> None:
    key = generate_key("ES256", "cp1")
    with _filled(chain, decisions, 3, checkpoint_signer=CheckpointSigner(key, CP_ISSUER)) as log:
        pass
    with chain.open(create=False) as log:
        report = log.verify(checkpoint_keys=Keyring())
        assert report.broken is not None and report.broken.seq == 3
        assert "no checkpoint key audit@test/cp1" in report.broken.problem
        wrong = Keyring().with_key(CP_ISSUER, generate_key("ES256", "cp1"))
        assert "does not verify" in str(log.verify(checkpoint_keys=wrong).broken)
        hs = Keyring().with_key(CP_ISSUER, generate_key("HS256", "cp1"))
        assert "is HS256, checkpoint says ES256" in str(log.verify(checkpoint_keys=hs).broken)


def test_audit_checkpoint_signer_needs_a_private_key(tmp_path: Path) -> None:
    ring = Keyring().with_key(CP_ISSUER, generate_key("ES256", "cp1"))
    public_key = Keyring.from_dict(ring.to_dict(private=False)).get(CP_ISSUER, "cp1")
    assert public_key is not None
    with pytest.raises(ValueError, match="no private part"):
        CheckpointSigner(public_key)
    with pytest.raises(ValueError, match="is HS256; use ES256 or RS256"):
        CheckpointSigner(generate_key("HS256", "cp1"))  # whoever verifies it could forge it
    with pytest.raises(ValueError, match="checkpoint_interval"):
        AuditLog(SQLiteAuditBackend(":memory:"), checkpoint_interval=-1)
    with pytest.raises(ValueError, match="checkpoint_every"):
        AuditLog(SQLiteAuditBackend(":memory:"), checkpoint_every=0)
    assert not Path(":memory:.lock").exists()


# -- tampering -----------------------------------------------------------------


def _broken(chain: Chain, decisions: Decisions | None = None, checkpoint_keys: Keyring | None = None) -> Any:
    with chain.open(create=False) as log:
        report = log.verify(None if decisions is None else decisions.keyring, checkpoint_keys=checkpoint_keys)
    assert not report.accepted
    return report.broken


def test_tamper_edit_a_field_is_named(chain: Chain, decisions: Decisions) -> None:
    _filled(chain, decisions).close()
    body = chain.row(5)[1]
    chain.sql(
        "UPDATE records SET body = ? WHERE seq = 5", body.replace('"accepted":true', '"accepted":false')
    )
    broken = _broken(chain)
    assert broken.seq == 5 and "edited" in broken.problem


def test_tamper_edit_and_rehash_one_record_breaks_the_next_link(chain: Chain, decisions: Decisions) -> None:
    _filled(chain, decisions).close()
    _, body, *rest = chain.row(6)  # a rejection: its detail is nothing the envelope can contradict
    body = body.replace('"detail":"nonce.replayed"', '"detail":"nonce.fresh"')
    chain.put(6, [record_hash(body.encode()), body, *rest])
    broken = _broken(chain)
    assert broken.seq == 7 and "prevHash does not match record 6" in broken.problem


def test_tamper_edit_and_rehash_a_fact_is_named_by_the_envelope(chain: Chain, decisions: Decisions) -> None:
    _filled(chain, decisions).close()
    _, body, *rest = chain.row(5)
    body = body.replace('"tool":"search"', '"tool":"delete"')
    chain.put(5, [record_hash(body.encode()), body, *rest[:2], "delete", rest[3]])
    broken = _broken(chain)
    assert broken.seq == 5 and "tool 'delete' is not the envelope's entry 0 ('search')" in broken.problem


def test_tamper_edit_an_index_column_is_named(chain: Chain, decisions: Decisions) -> None:
    _filled(chain, decisions).close()
    chain.sql("UPDATE records SET sub = 'someone-else' WHERE seq = 7")
    broken = _broken(chain)
    assert broken.seq == 7 and "index columns" in broken.problem


def test_tamper_delete_a_middle_record_is_named(chain: Chain, decisions: Decisions) -> None:
    _filled(chain, decisions).close()
    chain.sql("DELETE FROM records WHERE seq = 6")
    broken = _broken(chain)
    assert broken.seq == 6 and "missing" in broken.problem


def test_tamper_delete_the_tail_is_caught_by_the_checkpoint(
    chain: Chain, decisions: Decisions, cp_key: Any
) -> None:
    signer, public = cp_key
    _filled(
        chain, decisions, 12, checkpoint_signer=signer, checkpoint_every=100
    ).close()  # checkpoint on close
    chain.sql("DELETE FROM records WHERE seq > 9")
    broken = _broken(chain, checkpoint_keys=public)
    assert broken.seq == 10 and "tail was truncated" in broken.problem and "names seq 12" in broken.problem


def test_tamper_delete_the_tail_without_checkpoints_is_only_a_warning(
    chain: Chain, decisions: Decisions
) -> None:
    """Why checkpoints exist: links alone cannot see a cut tail."""
    _filled(chain, decisions).close()
    chain.sql("DELETE FROM records WHERE seq > 9")
    with chain.open(create=False) as log:
        report = log.verify()
    assert report.accepted and report.head_seq == 9
    assert any("truncated tail would go unnoticed" in w for w in report.warnings)


def test_tamper_reorder_two_records_is_named(chain: Chain, decisions: Decisions) -> None:
    _filled(chain, decisions).close()
    fifth, sixth = chain.row(5), chain.row(6)
    chain.put(5, sixth)
    chain.put(6, fifth)
    broken = _broken(chain)
    assert broken.seq == 5 and "reordered" in broken.problem


def test_tamper_swap_in_a_record_from_another_chain_is_named(
    chain: Chain, other_chain: Chain, decisions: Decisions
) -> None:
    _filled(chain, decisions).close()
    _filled(other_chain, decisions).close()
    chain.put(4, other_chain.row(4))
    broken = _broken(chain)
    assert broken.seq == 4 and "belongs to chain" in broken.problem


def _rewrite_from(chain: Chain, start: int, change: Any) -> None:
    """An intruder who re-hashes everything after an edit: every link holds again."""
    rows = chain.sql("SELECT seq, hash, body FROM records ORDER BY seq")
    prev = GENESIS_HASH
    for seq, stored_hash, stored_body in rows:
        prev_next = stored_hash
        if seq >= start:
            record = orjson.loads(stored_body)
            record["prevHash"] = prev
            if seq == start:
                change(record)
            body = canonicalize(record).decode()
            prev_next = record_hash(body.encode())
            chain.sql("UPDATE records SET hash = ?, body = ? WHERE seq = ?", prev_next, body, seq)
        prev = prev_next


def test_tamper_full_rewrite_is_caught_by_the_signed_checkpoint(
    chain: Chain, decisions: Decisions, cp_key: Any
) -> None:
    signer, public = cp_key
    _filled(chain, decisions, 12, checkpoint_signer=signer, checkpoint_every=10).close()
    _rewrite_from(chain, 3, lambda r: r["facts"].update(detail="forged"))
    broken = _broken(chain, checkpoint_keys=public)
    assert broken.seq == 10 and "records 1..10 differ from the signed tree head" in broken.problem


def test_tamper_rewritten_envelope_fails_re_verification(chain: Chain, decisions: Decisions) -> None:
    _filled(chain, decisions, 6).close()
    _rewrite_from(chain, 4, lambda r: r["envelope"]["plannerDeclared"].update(intent="something else"))
    with chain.open(create=False) as log:
        assert "attestationId" in str(log.verify().broken)
    _rewrite_from(
        chain,
        2,
        lambda r: (
            r["envelope"]["plannerDeclared"].update(intent="other"),
            r["facts"].update(attestationId=_attestation_id(r["envelope"])),
        ),
    )
    broken = _broken(chain, decisions)
    assert broken.seq == 2 and "signature does not verify" in broken.problem


def _attestation_id(envelope: dict[str, Any]) -> str:
    return hashlib.sha256(canonicalize({k: v for k, v in envelope.items() if k != "signature"})).hexdigest()


def test_audit_verify_needs_every_envelope_key(chain: Chain, decisions: Decisions) -> None:
    _filled(chain, decisions, 3).close()
    with chain.open(create=False) as log:
        broken = log.verify(Keyring()).broken
    assert broken is not None and broken.seq == 1 and "no key https://issuer.example/k1" in broken.problem


def test_tamper_garbage_body_and_forged_checkpoint_rows(
    chain: Chain, decisions: Decisions, cp_key: Any
) -> None:
    signer, _ = cp_key
    _filled(chain, decisions, 4, checkpoint_signer=signer, checkpoint_every=2).close()
    checkpoints = chain.table.replace("audit_records", "audit_checkpoints")
    chain.run(f"UPDATE {checkpoints} SET body = ? WHERE seq = 2", ['{"type":"nope"}'])
    broken = _broken(chain)
    assert broken.seq == 2 and "unreadable" in broken.problem
    chain.run(f"UPDATE {checkpoints} SET seq = 3 WHERE seq = 4", [])
    chain.run(f"DELETE FROM {checkpoints} WHERE seq = 2", [])
    broken = _broken(chain)
    assert broken.seq == 3 and "is for seq 4" in broken.problem
    garbage = "[1,2]"
    chain.sql("UPDATE records SET body = ?, hash = ? WHERE seq = 1", garbage, record_hash(garbage.encode()))
    assert "not a JSON object" in _broken(chain).problem
    spaced = '{"a": 1}'
    chain.sql("UPDATE records SET body = ?, hash = ? WHERE seq = 1", spaced, record_hash(spaced.encode()))
    assert "canonical" in _broken(chain).problem


# -- backends ------------------------------------------------------------------


def test_audit_reopen_continues_the_same_chain(chain: Chain, decisions: Decisions) -> None:
    with _filled(chain, decisions, 3) as log:
        first = log.backend.chain_id
    with chain.open() as log:
        assert log.backend.chain_id == first
        decisions.fill(log, 2)
        assert log.verify().accepted and log.backend.head()[0] == 5


def test_audit_readers_never_create_a_log(tmp_path: Path, pg_url: str, pg_schema: str) -> None:
    with pytest.raises(AuditConfigError, match="no audit log"):
        open_audit_log(str(tmp_path / "missing.db"), create=False)
    assert not (tmp_path / "missing.db").exists()
    (tmp_path / "other.db").touch()
    with pytest.raises(AuditConfigError, match="not an mcp-attest audit log"):
        open_audit_log(str(tmp_path / "other.db"), create=False)
    with pytest.raises(AuditConfigError, match="no mcp-attest audit log in PostgreSQL schema"):
        open_audit_log(f"{pg_url}?schema={pg_schema}", create=False)


def test_audit_refuses_a_schema_newer_than_the_code(chain: Chain) -> None:
    chain.open().close()
    version = chain.table.replace("audit_records", "schema_version")
    chain.run(f"UPDATE {version} SET version = 99", [])
    for create in (True, False):
        with pytest.raises(AuditConfigError, match="schema version 99"):
            chain.open(create=create)
    chain.run(f"UPDATE {version} SET version = 0", [])
    with pytest.raises(AuditConfigError, match="open it once with a writer"):
        chain.open(create=False)


def test_audit_postgres_bad_schema_name_and_unreachable_server() -> None:
    with pytest.raises(AuditConfigError, match="invalid PostgreSQL schema name"):
        open_audit_log("postgresql://postgres@127.0.0.1/test?schema=bad-name;")
    with pytest.raises(AuditUnavailableError):
        open_audit_log("postgresql://postgres@127.0.0.1:1/test")


def test_audit_postgres_recovers_after_its_connection_is_killed(
    pg_url: str, pg_log_url: str, decisions: Decisions
) -> None:
    with open_audit_log(pg_log_url) as log:
        decisions.fill(log, 2)
        pid = log.backend._main.conn.info.backend_pid  # type: ignore[attr-defined]
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        verdict, wire = decisions.accepted()
        args = {"q": "weather"}
        with pytest.raises(AuditUnavailableError):
            log.append(verdict, tool="search", arguments=args, envelope=wire)
        log.append(verdict, tool="search", arguments=args, envelope=wire)
        assert [r.seq for r in log.records()] == [1, 2, 3]
        assert log.verify().accepted
        assert log.location.startswith("postgresql://postgres@127.0.0.1:5432/test?schema=t_")
    assert "postgresql (schema" in log.location


def test_audit_sqlite_unwritable_log_is_unavailable(tmp_path: Path, decisions: Decisions) -> None:
    path = tmp_path / "a.db"
    log = open_audit_log(str(path))
    decisions.fill(log, 1)
    log.backend.close()
    verdict, _ = decisions.accepted()
    for action in (
        lambda: log.append(verdict, tool="t", arguments={}),
        lambda: list(log.records()),
        lambda: log.backend.add_checkpoint(1, b"{}"),
    ):
        with pytest.raises(AuditUnavailableError):
            action()
    log.close()  # the final checkpoint fails quietly
    with pytest.raises(AuditUnavailableError):
        SQLiteAuditBackend(tmp_path / "no" / "such" / "dir.db")


def test_audit_a_failed_checkpoint_does_not_unacknowledge_the_record(
    tmp_path: Path, decisions: Decisions, cp_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer, _ = cp_key
    log = open_audit_log(str(tmp_path / "a.db"), checkpoint_signer=signer, checkpoint_every=1)

    def down(seq: int, body: bytes) -> None:
        raise AuditUnavailableError("disk full")

    monkeypatch.setattr(log.backend, "add_checkpoint", down)
    decisions.fill(log, 1)
    assert log.backend.head()[0] == 1
    log.close()


def test_audit_empty_log_has_nothing_to_checkpoint(tmp_path: Path, cp_key: Any) -> None:
    with open_audit_log(str(tmp_path / "a.db"), checkpoint_signer=cp_key[0]) as log:
        assert log.checkpoint() is None
        report = log.verify()
        assert report.accepted and report.records == 0 and report.head_hash == GENESIS_HASH


def test_audit_sqlite_two_writers_interleaved_never_fork(tmp_path: Path, decisions: Decisions) -> None:
    """A writer whose cached head is stale falls back to the locked read, never forks."""
    first = open_audit_log(str(tmp_path / "a.db"))
    second = open_audit_log(str(tmp_path / "a.db"))
    for i in range(6):
        decisions.fill(first if i % 3 else second, 2)
    assert [r.seq for r in first.records()] == list(range(1, 13))
    assert first.verify().accepted
    first.close()
    second.close()


def test_audit_postgres_schema_v1_log_migrates_and_continues(
    pg_url: str, pg_log_url: str, pg_schema: str, decisions: Decisions
) -> None:
    """A log written by the head-row version (schema 1) keeps its records and grows under the newest."""
    from mcp_attest.audit.postgres import _MIGRATIONS, SCHEMA_VERSION  # noqa: PLC0415 - knows v1

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{pg_schema}"')
        conn.execute(f'CREATE TABLE "{pg_schema}".schema_version (version integer)')
        for stmt in _MIGRATIONS[0]:
            conn.execute(psycopg.sql.SQL(stmt).format(s=psycopg.sql.Identifier(pg_schema)))
        conn.execute(f'INSERT INTO "{pg_schema}".schema_version VALUES (1)')
        conn.execute(f"INSERT INTO \"{pg_schema}\".audit_meta VALUES ('chain_id', 'c1')")
        verdict, wire = decisions.accepted()
        draft = RecordDraft.build(
            verdict, chain_id="c1", tool="search", arguments={"q": "weather"}, envelope=wire
        )
        row = conn.execute(
            f'SELECT * FROM "{pg_schema}".audit_append(%s, %s, %s, %s, %s, %s, %s)',
            (
                draft.prefix.decode(),
                format_rfc3339(1e9),
                draft.suffix.decode(),
                1e9,
                draft.sub,
                draft.tool,
                None,
            ),
        ).fetchone()
        assert row is not None and row[0] == 1
    with open_audit_log(pg_log_url) as log:
        decisions.fill(log, 2)
        report = log.verify(decisions.keyring)
        assert [r.seq for r in log.records()] == [1, 2, 3] and report.accepted, report.broken
    with psycopg.connect(pg_url, autocommit=True) as conn:
        version = conn.execute(f'SELECT version FROM "{pg_schema}".schema_version').fetchone()
        source = conn.execute(
            "SELECT prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = %s AND p.proname = 'audit_append_many'",
            (pg_schema,),
        ).fetchone()
    assert version == (SCHEMA_VERSION,) == (6,)
    assert source is not None and "pg_logical_emit_message" in source[0]


def test_audit_postgres_append_waits_for_the_wal_flush(
    pg_url: str, pg_log_url: str, decisions: Decisions
) -> None:
    """Regression: an xid-only second commit was committed without a flush, so appends were not durable."""
    with open_audit_log(pg_log_url) as log, psycopg.connect(pg_url, autocommit=True) as conn:
        decisions.fill(log, 1)
        before = conn.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()
        decisions.fill(log, 40)
        for stmt in ("SELECT pg_stat_force_next_flush()", "SELECT 1"):  # publish the writer's WAL stats now
            log.backend._main.run(lambda c, stmt=stmt: c.execute(stmt))  # type: ignore[attr-defined]
        after = conn.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()
    assert before is not None and after is not None
    assert after[0] - before[0] >= 20  # about one flush per append (was 0-1 for 40)


def test_chain_report_has_no_truth_value(tmp_path: Path) -> None:
    """``if log.verify():`` must not pass a broken chain: the report refuses bool()."""
    with AuditLog(SQLiteAuditBackend(str(tmp_path / "a.db"))) as log:
        report = log.verify()
    with pytest.raises(TypeError, match=r"ChainReport has no truth value: read its \.accepted field"):
        bool(report)
    assert report.accepted and report.to_dict()["accepted"] is True


def test_audit_record_digests_arguments_that_are_not_an_object(tmp_path: Path) -> None:
    """Regression: the draft called ``dict()`` on the arguments.

    An untyped caller's list raised, and ``[[1, 2]]`` was quietly recorded
    as the object ``{1: 2}`` (then "not canonicalizable"). Any JSON value is
    digested as sent; opted-in fields are only picked from an object.
    """
    verdict = Verdict(False, Reason.ARGS_COMMITMENT_MISMATCH, "args.not_bound", time.time(), "fp")
    with open_audit_log(str(tmp_path / "a.db"), record_fields=("q",)) as log:
        for arguments in ([1, 2], [[1, 2]], "text", 5, {"q": "kept"}):
            record = log.append(verdict, tool="t", arguments=arguments, envelope=None)  # type: ignore[arg-type]
            digest = hashlib.sha256(canonicalize(arguments)).digest()
            assert record.body["argsDigest"] == b64url_encode(digest)
            assert "argsError" not in record.body
            assert record.body.get("args") == ({"q": "kept"} if isinstance(arguments, dict) else None)
        assert log.verify().accepted
