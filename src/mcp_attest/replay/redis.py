"""A replay store in Redis, shared by every verifier process of a deployment (R3).

A claim is one ``SET key 1 NX PXAT expiry`` command: Redis runs commands
one at a time, so of any number of concurrent claims exactly one sees the
key absent and sets it, and the key disappears by itself once the
envelope's window is over (R2). Only single-key commands are used, so any
key can live in any hash slot and the store works unchanged on Redis
Cluster; a ``{tag}`` in the prefix pins every key to one slot, which is
only worth it when one shard should hold them all.

Every Redis fault (connection refused or lost, timeout, OOM, a read-only
replica) raises ``StoreUnavailableError``, and the verifier rejects the call
(V12): an unreachable store must never read as "not yet claimed". Socket
timeouts are short and the client retries once, without backoff, so a
pooled connection that died with a restarted server is replaced at once
and an outage costs each call a fraction of a second, not seconds.
"""

from __future__ import annotations

import math
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from mcp_attest.errors import ConfigurationError
from mcp_attest.replay.base import StoreUnavailableError

__all__ = ["DEFAULT_PREFIX", "RedisReplayStore"]

DEFAULT_PREFIX = "mcp-attest:replay:"


class RedisReplayStore:
    """Replay claims as Redis keys ``<prefix><hex of the R1 key>``.

    ``url_or_client`` is a ``redis://``, ``rediss://`` or ``unix://`` URL,
    or a ready client (``redis.Redis`` or ``redis.cluster.RedisCluster``)
    that the caller configured and owns. Expiry follows the Redis
    server's clock, so verifier hosts and Redis should agree on the time
    within the verifier's skew.
    """

    def __init__(
        self,
        url_or_client: str | Any,
        prefix: str = DEFAULT_PREFIX,
        *,
        socket_timeout: float = 0.5,
        connect_timeout: float = 0.5,
    ) -> None:
        self.prefix = prefix.encode("utf-8")
        self._owned = isinstance(url_or_client, str)
        if isinstance(url_or_client, str):
            try:
                self._client: Any = redis.Redis.from_url(
                    url_or_client,
                    socket_timeout=socket_timeout,
                    socket_connect_timeout=connect_timeout,
                    retry=Retry(NoBackoff(), 1),
                    health_check_interval=0,
                )
            except ValueError as exc:
                raise ConfigurationError(f"invalid Redis URL: {exc}") from None
        else:
            self._client = url_or_client

    def _key(self, key: bytes) -> bytes:
        return self.prefix + key.hex().encode("ascii")

    def is_claimed(self, key: bytes, now: float) -> bool:
        try:
            return bool(self._client.exists(self._key(key)))
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"redis replay store: {type(exc).__name__}: {exc}") from None

    def claim(self, key: bytes, expires_at: float, now: float) -> bool:
        # A window already over (clock drift between callers) still gets a
        # key that lives a moment: PXAT must be in the future to set at all.
        expiry_ms = max(math.ceil(expires_at * 1000), math.ceil(now * 1000) + 1)
        try:
            return bool(self._client.set(self._key(key), b"1", nx=True, pxat=expiry_ms))
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"redis replay store: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        """Close the connection pool this store opened; a caller's client is left alone."""
        if self._owned:
            self._client.close()
