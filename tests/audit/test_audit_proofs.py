"""Proofs a third party checks without the database; the checkpoint key's custody; the witness."""

from __future__ import annotations

import atexit
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from _servers import Decisions
from mcp_attest import Keyring, canonicalize, generate_key
from mcp_attest.audit import AuditConfigError, AuditUnavailableError
from mcp_attest.audit.cli import main
from mcp_attest.audit.custody import (
    CHECKPOINT_ISSUER,
    FileWitness,
    load_checkpoint_keys,
    load_or_create_signer,
    public_jwks_path,
    remote_key_path,
)
from mcp_attest.audit.proofs import check_proof
from mcp_attest.audit.record import record_hash
from mcp_attest.gateway.config import ConfigError, load_config
from mcp_attest.keys import KeyringError
from mcp_attest.stores import open_audit_log, open_keyed_audit_log


@pytest.fixture
def proved(tmp_path: Path) -> dict[str, Any]:
    """A 10-record log with signed tree heads at 4, 8 and 10, and a file witness."""
    decisions = Decisions.create()
    key = tmp_path / "cp-key.json"
    witness = tmp_path / "witness.jsonl"
    url = f"sqlite://{tmp_path / 'audit.db'}"
    with open_keyed_audit_log(
        url, checkpoint_key=key, checkpoint_every=4, checkpoint_interval=0, witness=str(witness)
    ) as log:
        decisions.fill(log, 10)
    return {"url": url, "jwks": public_jwks_path(key), "witness": witness, "dir": tmp_path}


def _run(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _save(path: Path, doc: Any) -> Path:
    path.write_bytes(orjson.dumps(doc))
    return path


def test_proof_inclusion_round_trip_without_the_database(
    proved: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "prove", proved["url"], 6)
    proof = json.loads(out)
    assert code == 0 and proof["treeSize"] == 8 and proof["leafIndex"] == 5 and proof["record"]["seq"] == 6
    path = _save(proved["dir"] / "p6.json", proof)
    (proved["dir"] / "audit.db").unlink()  # the auditor has no database
    code, out, err = _run(capsys, "check-proof", path, "--checkpoint-keys", proved["jwks"])
    assert (code, out, err) == (0, "ok: inclusion proof holds\n", "")


def test_proof_for_a_changed_record_fails(proved: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = _run(capsys, "prove", proved["url"], 3, "--tree-size", 10)
    proof = json.loads(out)
    proof["record"]["tool"] = "delete_all"
    code, _, err = _run(
        capsys, "check-proof", _save(proved["dir"] / "p.json", proof), "--checkpoint-keys", proved["jwks"]
    )
    assert code == 1 and "the record was changed" in err and err.count("\n") == 1
    keys = load_checkpoint_keys(proved["jwks"])
    proof = json.loads(_run(capsys, "prove", proved["url"], 3)[1])
    rehashed = {**proof, "record": {**proof["record"], "tool": "delete_all"}}
    body = {k: v for k, v in rehashed["record"].items() if k != "hash"}
    rehashed["record"]["hash"] = record_hash(canonicalize(body))
    assert "not in the signed tree" in str(check_proof(rehashed, keys))
    assert "not leaf 3" in str(check_proof({**proof, "leafIndex": 3}, keys))


def test_proof_against_an_own_tree_head_and_forged_heads(
    proved: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    proof = json.loads(_run(capsys, "prove", proved["url"], 1)[1])
    heads = [orjson.loads(line) for line in proved["witness"].read_bytes().splitlines()]
    assert [h["seq"] for h in heads] == [4, 8, 10]
    own = _save(proved["dir"] / "head4.json", heads[0])
    path = _save(proved["dir"] / "p1.json", proof)
    assert _run(capsys, "check-proof", path, "--checkpoint-keys", proved["jwks"], "--tree-head", own)[0] == 0
    keys = load_checkpoint_keys(proved["jwks"])
    other = Keyring().with_key(CHECKPOINT_ISSUER, generate_key("ES256", "x"))
    assert "no checkpoint key" in str(check_proof(proof, other))
    assert "size" in str(check_proof(proof, keys, tree_head=heads[2]))  # a head of another size
    assert "carries no Merkle root" in str(check_proof(proof, keys, tree_head={**heads[0], "root": "zz"}))
    assert "not a signed tree head" in str(check_proof(proof, keys, tree_head={"type": "x"}))
    assert check_proof([], keys) == "not a proof document"
    assert "unknown type" in str(check_proof({"type": "x"}, keys))
    assert "hex" in str(check_proof({**proof, "path": ["zz"]}, keys))
    assert "lacks" in str(check_proof({**proof, "record": None}, keys))


def test_proof_consistency_between_two_heads(
    proved: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "consistency", proved["url"], 4, 10)
    proof = json.loads(out)
    assert code == 0 and proof["oldHead"]["seq"] == 4 and proof["newHead"]["seq"] == 10
    path = _save(proved["dir"] / "c.json", proof)
    assert _run(capsys, "check-proof", path, "--checkpoint-keys", proved["jwks"]) == (
        0,
        "ok: consistency proof holds\n",
        "",
    )
    keys = load_checkpoint_keys(proved["jwks"])
    assert "does not extend" in str(check_proof({**proof, "path": proof["path"][:-1]}, keys))
    swapped = {**proof, "oldHead": proof["newHead"], "newHead": proof["oldHead"]}
    assert "does not extend" in str(check_proof(swapped, keys))
    assert (
        check_proof({**proof, "newHead": proof["oldHead"], "path": []}, keys) is None
    )  # a head extends itself


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["prove", "LOG", "11"], "no signed tree head covers record 11"),
        (["prove", "LOG", "5", "--tree-size", "4"], "record 5 is not in a tree of size 4"),
        (["prove", "LOG", "1", "--tree-size", "5"], "no signed tree head at size 5"),
        (["consistency", "LOG", "8", "4"], "need 1 <= OLD <= NEW"),
        (
            ["check-proof", "/no/such/proof.json", "--checkpoint-keys", "JWKS"],
            "cannot read /no/such/proof.json",
        ),
        (["check-proof", "JWKS", "--checkpoint-keys", "LOGFILE"], "are not JSON"),
        (["check-proof", "LOGFILE", "--checkpoint-keys", "JWKS"], "is not JSON"),
        (["check-proof", "x.json"], "the following arguments are required: --checkpoint-keys"),
    ],
)
def test_proof_usage_errors_exit_2_with_one_line(
    proved: dict[str, Any], capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    names = {"LOG": proved["url"], "JWKS": str(proved["jwks"]), "LOGFILE": str(proved["dir"] / "audit.db")}
    code, out, err = _run(capsys, *[names.get(a, a) for a in argv])
    assert code == 2 and out == "" and message in err and err.count("\n") == 1


def test_proof_refused_when_the_records_no_longer_match_their_head(
    proved: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    with sqlite3.connect(proved["dir"] / "audit.db") as conn:
        conn.execute("UPDATE audit_records SET body = body || ' ' WHERE seq = 2")
    code, _, err = _run(capsys, "prove", proved["url"], 3)
    assert code == 2 and "no longer match the signed tree head at seq 4" in err


def test_witness_catches_a_tail_cut_together_with_its_checkpoints(
    proved: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    with sqlite3.connect(proved["dir"] / "audit.db") as conn:
        conn.execute("DELETE FROM audit_records WHERE seq > 8")
        conn.execute("DELETE FROM audit_checkpoints WHERE seq > 8")
    argv = ["verify", proved["url"], "--checkpoint-keys", proved["jwks"]]
    code, out, _ = _run(capsys, *argv)
    assert code == 0  # what the database alone cannot show
    code, out, _ = _run(capsys, *argv, "--witness", proved["witness"])
    assert code == 1 and "record 9: records from seq 9 on are missing" in out


def test_witness_in_another_database(tmp_path: Path) -> None:
    decisions = Decisions.create()
    witness = f"sqlite://{tmp_path / 'witness.db'}"
    with open_keyed_audit_log(
        str(tmp_path / "a.db"), checkpoint_key=tmp_path / "k.json", witness=witness
    ) as log:
        decisions.fill(log, 3)
    with open_audit_log(witness, create=False) as other:
        assert [seq for seq, _ in other.backend.checkpoints()] == [3]
    with open_audit_log(str(tmp_path / "a.db"), create=False, witness=witness) as log:
        assert log.verify(checkpoint_keys=load_checkpoint_keys(tmp_path / "k.jwks.json")).checkpoints == 2


def test_witness_file_tolerates_a_torn_line_and_reports_faults(tmp_path: Path) -> None:
    witness = FileWitness(tmp_path / "w.jsonl")
    assert witness.checkpoints() == []
    witness.add_checkpoint(
        1, b'{"type":"mcp-attest/audit-checkpoint","v":1,"seq":1,"hash":"h","chainId":"c"}'
    )
    with (tmp_path / "w.jsonl").open("ab") as fh:
        fh.write(b'{"type":"mcp-attest/audit-chec')
    assert [seq for seq, _ in witness.checkpoints()] == [1]
    broken = FileWitness(tmp_path / "no" / "dir" / "w.jsonl")
    with pytest.raises(AuditUnavailableError, match="witness"):
        broken.add_checkpoint(1, b"{}")
    with pytest.raises(AuditUnavailableError, match="witness"):
        FileWitness(tmp_path).checkpoints()


def test_checkpoint_key_created_once_0600_with_its_public_jwks(tmp_path: Path) -> None:
    path = tmp_path / "state" / "cp.json"
    signers: list[Any] = []
    threads = [threading.Thread(target=lambda: signers.append(load_or_create_signer(path))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({s.thumbprint for s in signers}) == 1  # racing first starts agree on one key
    signer = signers[0]
    assert oct(path.stat().st_mode & 0o777) == "0o600" and signer.key.alg == "ES256"
    assert signer.key.kid == signer.thumbprint and signer.issuer == CHECKPOINT_ISSUER
    jwks = orjson.loads(public_jwks_path(path).read_bytes())
    assert "d" not in jwks["keys"][0] and jwks["keys"][0]["kid"] == signer.thumbprint
    assert load_checkpoint_keys(public_jwks_path(path)).get(CHECKPOINT_ISSUER, signer.thumbprint) is not None
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_checkpoint_key_readable_by_others_or_unusable_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    load_or_create_signer(path)
    os.chmod(path, 0o644)
    with pytest.raises(AuditConfigError, match="readable by others"):
        load_or_create_signer(path)
    Keyring().with_key("x", generate_key("HS256", "h")).save(path, private=True)
    with pytest.raises(AuditConfigError, match="is HS256"):
        load_or_create_signer(path)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(KeyringError, match="checkpoint keys"):
        load_checkpoint_keys(tmp_path / "missing.json")
    (tmp_path / "jwks.json").write_text('{"keys": [{"kty": "EC"}]}')
    with pytest.raises(KeyringError, match="checkpoint keys"):
        load_checkpoint_keys(tmp_path / "jwks.json")


def test_guard_default_key_beside_sqlite_and_in_xdg_for_a_remote_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_keyed_audit_log(f"sqlite://{tmp_path / 'g.db'}") as log:
        assert log.checkpoint_signer is not None
    assert (tmp_path / "g.db.checkpoint-key.json").exists() and (
        tmp_path / "g.db.checkpoint-key.jwks.json"
    ).exists()
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    one, two = remote_key_path("postgresql://a@h/db"), remote_key_path("postgresql://a@h/other")
    assert one.parent == tmp_path / "xdg" / "mcp-attest" and one != two


def test_gateway_checkpoint_settings_from_file_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(
        'state_dir = "s"\n[listen]\nstdio = true\n[verify]\nkeys = "k.json"\n'
        '[[upstream]]\ncommand = ["x"]\nfingerprint = "fp"\n'
        '[checkpoints]\nkey = "cp.json"\nevery = 10\ninterval = 5\nwitness = "w.jsonl"\n'
    )
    cp = load_config(str(config)).checkpoints
    assert (cp.key, cp.every, cp.interval, cp.witness) == (
        str(tmp_path / "cp.json"),
        10,
        5.0,
        str(tmp_path / "w.jsonl"),
    )
    flags = load_config(
        str(config), {"witness": "postgresql://w@h/db", "checkpoint_key": "/k.json"}
    ).checkpoints
    assert flags.witness == "postgresql://w@h/db" and flags.key == "/k.json"
    plain = tmp_path / "plain.toml"
    plain.write_text(config.read_text().split("[checkpoints]")[0])
    defaults = load_config(str(plain)).checkpoints
    assert (defaults.key, defaults.every, defaults.interval, defaults.witness) == (None, 1000, 60.0, None)
    config.write_text(config.read_text().replace("every = 10", "every = 0"))
    with pytest.raises(ConfigError, match="every must be >= 1"):
        load_config(str(config))


def test_gateway_keys_its_audit_log_and_labels_metrics_with_the_thumbprint(tmp_path: Path) -> None:
    import asyncio  # noqa: PLC0415

    from mcp_attest.gateway._app import Gateway  # noqa: PLC0415

    keys = tmp_path / "keys.json"
    Keyring().with_key("iss", generate_key("HS256", "k")).save(keys, private=True)
    overrides = {"keys": str(keys), "stdio": True, "state_dir": str(tmp_path / "state")}
    overrides["upstream"] = {"command": ["true"], "fingerprint": "fp"}
    gateway = Gateway(load_config(None, overrides))
    assert gateway.checkpoint_key is not None
    thumbprint, public = gateway.checkpoint_key
    assert public == str(tmp_path / "state" / "audit-checkpoint-key.jwks.json")
    assert (
        f'mcp_attest_gateway_audit_checkpoint_key_info{{thumbprint="{thumbprint}"}} 1'
        in gateway.metrics.render()
    )
    asyncio.run(gateway.close())
    with open_audit_log(str(tmp_path / "state" / "audit.sqlite"), create=False) as log:
        assert log.verify(checkpoint_keys=load_checkpoint_keys(public)).accepted


def test_gateway_with_a_postgres_log_shares_commits_between_concurrent_calls(
    tmp_path: Path, pg_log_url: str
) -> None:
    """A PostgreSQL append waits on the network and a flush: off the event loop, calls share a commit."""
    import asyncio  # noqa: PLC0415

    from mcp_attest import Issuer  # noqa: PLC0415
    from mcp_attest.gateway._app import Gateway  # noqa: PLC0415
    from mcp_attest.gateway._rawcall import CallInputs  # noqa: PLC0415

    ring = Keyring().with_key("iss", generate_key("HS256", "k"))
    keys = tmp_path / "keys.json"
    ring.save(keys, private=True)
    overrides = {"keys": str(keys), "stdio": True, "state_dir": str(tmp_path / "s"), "audit": pg_log_url}
    overrides["upstream"] = {"command": ["true"], "fingerprint": "fp"}
    gateway = Gateway(load_config(None, overrides))
    route = next(iter(gateway.routes.values()))
    issuer = Issuer(ring, iss="iss", sub="agent")
    calls = []
    for i in range(32):
        args = {"i": i}
        env = issuer.sign(tool="t", arguments=args, server_fingerprint="fp", intent="x").to_wire()
        calls.append(({"name": "t", "arguments": args}, CallInputs(env, args)))

    async def go() -> list[Any]:
        return await asyncio.gather(*(route.decide(p, {}, inputs) for p, inputs in calls))

    decisions = asyncio.run(go())
    assert all(d.reply is None for d in decisions)  # every call forwarded
    backend = gateway.audit.backend  # type: ignore[union-attr]
    assert 0 < backend._queue.flushes < 32  # some calls shared a commit
    asyncio.run(gateway.close())
    with open_audit_log(pg_log_url, create=False) as log:
        records = list(log.records())
        assert len(records) == 32 and all(r.facts["accepted"] for r in records)


def test_guard_with_a_postgres_log_records_off_the_event_loop(
    tmp_path: Path, pg_log_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio  # noqa: PLC0415

    from mcp_attest import Issuer  # noqa: PLC0415
    from mcp_attest.mcp import AttestationGuard  # noqa: PLC0415

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    ring = Keyring().with_key("iss", generate_key("HS256", "k"))
    guard = AttestationGuard.from_keyring(ring, server_fingerprint="fp", audit=pg_log_url)
    env = Issuer(ring, iss="iss", sub="a").sign(tool="t", arguments={}, server_fingerprint="fp", intent="x")
    loop_thread = threading.get_ident()
    appended_in: list[int] = []

    async def go() -> None:
        verdicts = await asyncio.gather(
            *(guard.check("t", {}, {"attestation": env.to_wire()}) for _ in range(2))
        )
        assert sorted(v.accepted for v in verdicts) == [False, True]  # one is a replay

    import mcp_attest.audit.log as log_module  # noqa: PLC0415

    real_submit = log_module.AuditLog.submit

    opened: list[Any] = []

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        appended_in.append(threading.get_ident())
        opened.append(self)
        return real_submit(self, *args, **kwargs)

    monkeypatch.setattr(log_module.AuditLog, "submit", spy)
    asyncio.run(go())
    assert len(appended_in) == 2 and loop_thread not in appended_in
    opened[0].close()  # what the guard's exit hook does, before the test's schema goes
    atexit.unregister(opened[0].close)
    with open_audit_log(pg_log_url, create=False) as log:
        assert sorted(r.facts["accepted"] for r in log.records()) == [False, True]
