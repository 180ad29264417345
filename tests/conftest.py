"""Real PostgreSQL and Redis for every test that needs them, each test isolated.

Every test gets its own PostgreSQL schema or Redis key prefix and removes
it afterwards, so the tests share the servers with anything else running.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from _servers import PG_URL, REDIS_URL, ThrowawayRedis, free_port, require_server


@pytest.fixture(scope="session")
def pg_url() -> str:
    require_server("PostgreSQL", lambda: psycopg.connect(PG_URL, connect_timeout=3).close())
    return PG_URL


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[str]:
    """A fresh schema name; the schema (created by the code under test) is dropped after."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    yield schema
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_log_url(pg_url: str, pg_schema: str) -> str:
    return f"{pg_url}?schema={pg_schema}"


@pytest.fixture(scope="session")
def redis_url() -> str:
    require_server("Redis", lambda: redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A fresh key prefix; every key under it is deleted after the test."""
    prefix = f"mcp-attest-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    client.close()


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    """A private redis-server on a free port, which the test may stop and restart."""
    require_server("redis-server binary", lambda: shutil.which("redis-server") or _missing("redis-server"))
    server = ThrowawayRedis(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


def _missing(name: str) -> None:
    raise FileNotFoundError(f"{name} is not on PATH")
