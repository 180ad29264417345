"""PROFILE section 6: replay (R1-R3)."""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _core_helpers import (
    ARGS,
    HS,
    ISS,
    NOW,
    OTHER_SERVER,
    SERVER,
    TOOL,
    Clock,
    dumps,
    entry,
    jcs_text,
    reason_of,
    sign_wire,
    sqlite_claim_worker,
    unsigned_wire,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_attest import (
    InMemoryReplayStore,
    Key,
    Reason,
    ReplayStore,
    SQLiteReplayStore,
    StoreUnavailableError,
    Verifier,
)
from mcp_attest.envelope import parse_iat
from mcp_attest.replay import replay_key

# -- R1 -------------------------------------------------------------------------


def test_r1_replay_key_exact_bytes_for_a_known_input() -> None:
    key = replay_key("https://issuer.example", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", 2)
    assert key.hex() == "f56b84b2809e4c3a3e3a8b5571260a9d1f19be6c43b6ea0436dd81b088d377f8"
    # lengths are UTF-8 byte lengths ("é" is two bytes)
    assert replay_key("iss-\u00e9", "n" * 22, 0).hex() == (
        "a1c70864f99c55c4a7df26e855166a535b0dfa9bb745bf6b0019c9d897af22f6"
    )


def test_r1_replay_key_is_length_prefixed_and_indexed() -> None:
    assert replay_key("ab", "c", 0) != replay_key("a", "bc", 0)
    assert replay_key("a", "b", 0) != replay_key("a", "b", 1)
    assert len(replay_key("a", "b", 0)) == 32


def _plan_wire(keys: dict[str, Key], calls: list[dict[str, Any]]) -> bytes:
    return dumps(sign_wire(unsigned_wire(HS, calls=calls), keys[HS]))


def test_r1_several_entries_for_one_server_consumed_once_each_in_order(
    verifier: Verifier, keys: dict[str, Key]
) -> None:
    envelope = _plan_wire(keys, [entry(), entry(), entry()])
    indexes = [verifier.verify(envelope, tool=TOOL, arguments=ARGS).tool_call_index for _ in range(3)]
    assert indexes == [0, 1, 2]
    assert reason_of(verifier.verify(envelope, tool=TOOL, arguments=ARGS)) == (
        Reason.NONCE_REPLAY,
        "nonce.replayed",
    )


def test_r1_entries_for_other_tools_and_servers_are_skipped(verifier: Verifier, keys: dict[str, Key]) -> None:
    plan = [entry(), entry(server=OTHER_SERVER), entry(name="write_file"), entry(name="list_dir"), entry()]
    envelope = _plan_wire(keys, plan)
    assert verifier.verify(envelope, tool=TOOL, arguments=ARGS).tool_call_index == 0
    assert verifier.verify(envelope, tool="write_file", arguments=ARGS).tool_call_index == 2
    assert verifier.verify(envelope, tool=TOOL, arguments=ARGS).tool_call_index == 4
    assert reason_of(verifier.verify(envelope, tool=TOOL, arguments=ARGS)) == (
        Reason.NONCE_REPLAY,
        "nonce.replayed",
    )
    assert verifier.verify(envelope, tool="list_dir", arguments=ARGS).tool_call_index == 3


def test_r1_first_unclaimed_entry_that_passes_v8_under_strict(
    make_verifier: Any, keys: dict[str, Key]
) -> None:
    a, b, c = ({"path": p} for p in ("/a", "/b", "/c"))
    envelope = _plan_wire(keys, [entry(args=a), entry(args=b), entry(args=c)])
    verifier = make_verifier(args_binding="strict")
    assert verifier.verify(envelope, tool=TOOL, arguments=b).tool_call_index == 1
    verdict = verifier.verify(envelope, tool=TOOL, arguments=b)
    assert reason_of(verdict) == (Reason.ARGS_COMMITMENT_MISMATCH, "args.not_bound")
    assert verifier.verify(envelope, tool=TOOL, arguments=c).tool_call_index == 2
    assert verifier.verify(envelope, tool=TOOL, arguments=a).tool_call_index == 0
    assert reason_of(verifier.verify(envelope, tool=TOOL, arguments=a)) == (
        Reason.NONCE_REPLAY,
        "nonce.replayed",
    )


def test_r1_under_spec_a_redacted_entry_passes_for_any_arguments(
    make_verifier: Any, keys: dict[str, Key]
) -> None:
    a, b = {"path": "/a"}, {"path": "/b"}
    envelope = _plan_wire(keys, [entry(args=a), entry(args=b)])
    verifier = make_verifier(args_binding="spec")
    first = verifier.verify(envelope, tool=TOOL, arguments=b)
    assert (first.tool_call_index, first.args_binding) == (0, "redacted")
    second = verifier.verify(envelope, tool=TOOL, arguments=b)
    assert (second.tool_call_index, second.args_binding) == (1, "identity")


def test_r1_each_deployment_consumes_independently(make_verifier: Any, keys: dict[str, Key]) -> None:
    envelope = _plan_wire(keys, [entry()])
    one, two = make_verifier(), make_verifier()
    assert one.verify(envelope, tool=TOOL, arguments=ARGS).accepted
    assert two.verify(envelope, tool=TOOL, arguments=ARGS).accepted
    assert not one.verify(envelope, tool=TOOL, arguments=ARGS).accepted


def test_r1_replay_key_uses_iss_nonce_and_index(keys: dict[str, Key], make_verifier: Any) -> None:
    store = InMemoryReplayStore()
    wire = sign_wire(unsigned_wire(HS, calls=[entry(name="x"), entry()]), keys[HS])
    assert make_verifier(store=store).verify(dumps(wire), tool=TOOL, arguments=ARGS).accepted
    assert store.is_claimed(replay_key(ISS[HS], wire["issuerAsserted"]["nonce"], 1), NOW)
    assert not store.is_claimed(replay_key(ISS[HS], wire["issuerAsserted"]["nonce"], 0), NOW)


# -- R2 -------------------------------------------------------------------------


def test_r2_key_lives_until_iat_plus_exp_plus_skew(
    keys: dict[str, Key], clock: Clock, make_verifier: Any
) -> None:
    store = InMemoryReplayStore()
    wire = sign_wire(unsigned_wire(HS, exp=60), keys[HS])
    clock.now = NOW + 50  # verified late in the window: the lifetime is absolute, not now + exp
    assert make_verifier(store=store).verify(dumps(wire), tool=TOOL, arguments=ARGS).accepted
    key = replay_key(ISS[HS], wire["issuerAsserted"]["nonce"], 0)
    expiry = parse_iat(wire["issuerAsserted"]["iat"]) + 60 + 30
    assert store.is_claimed(key, expiry - 1)
    assert not store.is_claimed(key, expiry)
    # once the key is gone, the TTL check alone rejects the envelope
    clock.now = expiry + 0.5
    verdict = make_verifier(store=store).verify(dumps(wire), tool=TOOL, arguments=ARGS)
    assert reason_of(verdict) == (Reason.EXPIRED, "ttl.expired")


def test_r2_sqlite_claim_expires(tmp_path: Path) -> None:
    store = SQLiteReplayStore(tmp_path / "r.db")
    key = os.urandom(32)
    assert store.claim(key, NOW + 10, NOW)
    assert store.is_claimed(key, NOW + 9.9)
    assert not store.claim(key, NOW + 20, NOW + 9.9)
    assert not store.is_claimed(key, NOW + 10)
    assert store.claim(key, NOW + 20, NOW + 10)
    store.close()


# -- R3 -------------------------------------------------------------------------


def _race(store_for_thread: Any, key: bytes, n: int = 16) -> list[bool]:
    barrier = threading.Barrier(n)
    results: list[bool] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        store = store_for_thread(i)
        barrier.wait()
        won = store.claim(key, NOW + 600, NOW)
        with lock:
            results.append(won)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == n
    return results


def test_r3_in_memory_exactly_one_winner_with_threads() -> None:
    store = InMemoryReplayStore()
    for _ in range(20):
        assert _race(lambda i: store, os.urandom(32)).count(True) == 1


def test_r3_sqlite_exactly_one_winner_with_threads(tmp_path: Path) -> None:
    shared = SQLiteReplayStore(tmp_path / "shared.db")
    for _ in range(5):
        assert _race(lambda i: shared, os.urandom(32)).count(True) == 1
    # one connection per thread, like separate workers on one file
    path = tmp_path / "per-thread.db"
    SQLiteReplayStore(path).is_claimed(b"x", NOW)
    stores = [SQLiteReplayStore(path) for _ in range(8)]
    for _ in range(3):
        assert _race(lambda i: stores[i], os.urandom(32), n=8).count(True) == 1


def test_r3_verifier_threads_exactly_one_accept(
    make_verifier: Any, keys: dict[str, Key], tmp_path: Path
) -> None:
    envelope = _plan_wire(keys, [entry()])
    for store in (InMemoryReplayStore(), SQLiteReplayStore(tmp_path / "v.db")):
        verifier = make_verifier(store=store)
        barrier = threading.Barrier(12)
        verdicts: list[Any] = []

        def call(v: Verifier = verifier, b: threading.Barrier = barrier, out: list[Any] = verdicts) -> None:
            b.wait()
            out.append(v.verify(envelope, tool=TOOL, arguments=ARGS))

        threads = [threading.Thread(target=call) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert [v.accepted for v in verdicts].count(True) == 1
        assert {reason_of(v) for v in verdicts if not v.accepted} <= {
            (Reason.NONCE_REPLAY, "nonce.replayed"),
            (Reason.NONCE_REPLAY, "nonce.race"),
        }


@pytest.mark.slow
def test_r3_sqlite_exactly_one_winner_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "procs.db")
    SQLiteReplayStore(path).is_claimed(b"init", NOW)  # create schema and WAL up front
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    key = os.urandom(32)
    start_at = time.time() + 2.5
    procs = [ctx.Process(target=sqlite_claim_worker, args=(path, key, start_at, queue)) for _ in range(4)]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    results = [queue.get(timeout=20) for _ in procs]
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0
    assert results.count(True) == 1, results
    assert SQLiteReplayStore(path).is_claimed(key, NOW)
    assert time.monotonic() - t0 < 10


def test_r3_sqlite_survives_restart(tmp_path: Path) -> None:
    key = os.urandom(32)
    first = SQLiteReplayStore(tmp_path / "r.db")
    assert first.claim(key, NOW + 60, NOW)
    first.close()
    second = SQLiteReplayStore(tmp_path / "r.db")
    assert second.is_claimed(key, NOW)
    assert not second.claim(key, NOW + 60, NOW)


def test_r3_in_memory_eviction_by_expiry_and_fail_closed_when_full() -> None:
    store = InMemoryReplayStore(max_entries=3)
    first = [os.urandom(32) for _ in range(3)]
    for k in first:
        assert store.claim(k, NOW + 10, NOW)
    with pytest.raises(StoreUnavailableError, match="full"):
        store.claim(os.urandom(32), NOW + 10, NOW)
    assert all(store.is_claimed(k, NOW) for k in first)  # live claims are never evicted
    later = NOW + 11
    assert store.claim(os.urandom(32), later + 10, later)  # expired entries were evicted
    assert len(store) <= 3
    assert not store.is_claimed(first[0], later)
    # and the bound still holds afterwards
    assert store.claim(os.urandom(32), later + 10, later)
    assert store.claim(os.urandom(32), later + 10, later)
    with pytest.raises(StoreUnavailableError):
        store.claim(os.urandom(32), later + 10, later)


def test_r3_in_memory_reclaim_after_expiry_and_growth() -> None:
    store = InMemoryReplayStore()
    keys = [os.urandom(32) for _ in range(3000)]  # forces the table to grow past its first size
    assert all(store.claim(k, NOW + 5, NOW) for k in keys)
    assert not any(store.claim(k, NOW + 5, NOW) for k in keys)
    assert all(store.is_claimed(k, NOW) for k in keys)
    assert store.claim(keys[0], NOW + 20, NOW + 6)
    assert len(store) == len(keys)  # the expired key was reclaimed in place, not added
    with pytest.raises(ValueError):
        InMemoryReplayStore(max_entries=0)


_STORE_OPS = st.lists(
    st.tuples(st.booleans(), st.integers(0, 63), st.integers(0, 12), st.sampled_from([0.5, 1, 2.5, 4])),
    max_size=150,
)


@settings(max_examples=60, deadline=None)
@given(filler=st.sampled_from([0, 480, 990]), ops=_STORE_OPS)
def test_r3_in_memory_store_answers_as_a_dict_of_expiries(filler: int, ops: list[Any]) -> None:
    """The open-addressing table against the plain model it compresses.

    Keys that share their 16-byte prefix are one key; all others, filler
    included, agree on their first eight bytes. The filler claims bring
    the table to almost half full (so lookups probe past other keys), and
    it grows under some runs; lifetimes end on and between whole seconds
    (the table keeps seconds).
    """
    store = InMemoryReplayStore()
    model: dict[bytes, int] = {}
    for i in range(filler):
        assert store.claim(bytes(8) + hashlib.sha256(b"%d" % i).digest()[:24], 10_000.5, 0.0)
    keys = [bytes(8) + (n % 32).to_bytes(8, "big") + bytes([n]) * 16 for n in range(64)]
    for is_claim, n, now, ttl in ops:
        key, expires_at = keys[n], now + ttl
        live = model.get(key[:16], 0) > now
        if is_claim:
            assert store.claim(key, expires_at, now) is not live
            if not live:
                model[key[:16]] = math.ceil(expires_at)
        else:
            assert store.is_claimed(key, now) is live


def test_r3_stores_implement_the_protocol(tmp_path: Path) -> None:
    assert isinstance(InMemoryReplayStore(), ReplayStore)
    assert isinstance(SQLiteReplayStore(tmp_path / "p.db"), ReplayStore)


def test_r3_identity_projection_text_is_jcs() -> None:
    """Sanity for the fixtures: identity projections are JCS text."""
    assert jcs_text({"b": 1, "a": 2}) == '{"a":2,"b":1}'
    assert SERVER.startswith("sha256:")
