"""The Redis replay store against real servers: semantics, outage, recovery (R2, R3, V12)."""

from __future__ import annotations

import os
import time

import pytest
import redis

from _servers import SERVER, Decisions, ThrowawayRedis
from mcp_attest import Reason, ReplayStore, StoreUnavailableError, Verifier
from mcp_attest.replay import replay_key
from mcp_attest.replay.redis import DEFAULT_PREFIX, RedisReplayStore
from mcp_attest.stores import open_replay_store


def test_r3_redis_store_claims_once_and_reads_without_writing(redis_url: str, redis_prefix: str) -> None:
    store = RedisReplayStore(redis_url, redis_prefix)
    assert isinstance(store, ReplayStore)
    key, now = os.urandom(32), time.time()
    assert not store.is_claimed(key, now)
    assert not redis.Redis.from_url(redis_url).exists(redis_prefix.encode() + key.hex().encode())
    assert store.claim(key, now + 60, now)
    assert store.is_claimed(key, now)
    assert not store.claim(key, now + 60, now)
    store.close()


def test_r2_redis_keys_expire_at_the_window_end(redis_url: str, redis_prefix: str) -> None:
    store = RedisReplayStore(redis_url, redis_prefix)
    key, now = os.urandom(32), time.time()
    assert store.claim(key, now + 0.15, now)
    ttl = redis.Redis.from_url(redis_url).pttl(redis_prefix.encode() + key.hex().encode())
    assert 0 < ttl <= 150
    time.sleep(0.25)
    assert not store.is_claimed(key, time.time())
    assert store.claim(key, time.time() + 60, time.time())
    # A window already over still sets a short-lived key instead of failing.
    late = os.urandom(32)
    assert store.claim(late, now - 10, time.time())


def test_r3_redis_prefixes_isolate_deployments(redis_url: str, redis_prefix: str) -> None:
    first = open_replay_store(f"{redis_url}?prefix={redis_prefix}a:")
    second = open_replay_store(f"{redis_url}?prefix={redis_prefix}b:")
    key, now = os.urandom(32), time.time()
    assert first.claim(key, now + 60, now) and second.claim(key, now + 60, now)


def test_r3_redis_cluster_layout_is_single_key_with_optional_hash_tag(
    redis_url: str, redis_prefix: str
) -> None:
    """Every command names one key, so any slot works; a {tag} pins all keys to one slot."""
    client = redis.Redis.from_url(redis_url)
    tagged = RedisReplayStore(client, redis_prefix + "{replay}:")
    key, now = os.urandom(32), time.time()
    assert tagged.claim(key, now + 60, now)
    stored = client.keys(redis_prefix + "*")
    assert stored == [f"{redis_prefix}{{replay}}:{key.hex()}".encode()]
    tagged.close()  # the caller's client stays open
    assert client.ping()
    assert DEFAULT_PREFIX == "mcp-attest:replay:"


def test_v12_redis_down_fails_closed_then_recovers(throwaway_redis: ThrowawayRedis) -> None:
    """Stopped mid-run: nonce_replay / store.unavailable, quickly; accepted again once it is back."""
    decisions = Decisions.create()
    store = open_replay_store(throwaway_redis.url)
    verifier = Verifier(decisions.keyring, SERVER, replay_store=store)
    args = {"q": "weather"}

    def sign() -> dict[str, object]:
        return decisions.issuer.sign(
            tool="search", arguments=args, server_fingerprint=SERVER, intent="i"
        ).to_wire()

    first = sign()
    assert verifier.verify(first, tool="search", arguments=args).accepted
    throwaway_redis.stop()
    during = sign()
    started = time.monotonic()
    verdict = verifier.verify(during, tool="search", arguments=args)
    assert (verdict.accepted, verdict.reason, verdict.detail) == (
        False,
        Reason.NONCE_REPLAY,
        "store.unavailable",
    )
    assert time.monotonic() - started < 3
    with pytest.raises(StoreUnavailableError):
        store.claim(replay_key("i", "n", 0), time.time() + 60, time.time())
    throwaway_redis.start()
    assert verifier.verify(during, tool="search", arguments=args).accepted  # never claimed, so usable now
    assert verifier.verify(sign(), tool="search", arguments=args).accepted
    replay = verifier.verify(during, tool="search", arguments=args)
    assert (replay.reason, replay.detail) == (Reason.NONCE_REPLAY, "nonce.replayed")


def test_v12_redis_errors_other_than_connection_also_fail_closed(throwaway_redis: ThrowawayRedis) -> None:
    admin = redis.Redis(port=throwaway_redis.port)
    store = RedisReplayStore(throwaway_redis.url)
    admin.config_set("requirepass", "sesame")  # now every command from the store is refused
    with pytest.raises(StoreUnavailableError, match="redis replay store"):
        store.is_claimed(os.urandom(32), time.time())


def test_redis_store_refuses_a_bad_url() -> None:
    with pytest.raises(ValueError, match="invalid Redis URL"):
        RedisReplayStore("redis://host:notaport")
