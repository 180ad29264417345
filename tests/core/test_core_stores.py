"""Store URLs: every scheme the guard, gateway and CLI accept, and the refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_attest.audit import AuditConfigError, SQLiteAuditBackend
from mcp_attest.replay import InMemoryReplayStore, SQLiteReplayStore
from mcp_attest.replay.redis import RedisReplayStore
from mcp_attest.stores import StoreConfigError, open_audit_log, open_replay_store, sqlite_path


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///var/lib/a.db", "/var/lib/a.db"),
        ("sqlite:////var/lib/a.db", "/var/lib/a.db"),
        ("sqlite:state/a.db", "state/a.db"),
        ("/plain/path.db", "/plain/path.db"),
    ],
)
def test_sqlite_urls_name_files(url: str, path: str) -> None:
    assert sqlite_path(url) == path


@pytest.mark.parametrize("url", ["sqlite://host/a.db", "sqlite:", "sqlite:///dir/"])
def test_sqlite_urls_that_name_no_file_are_refused(url: str) -> None:
    with pytest.raises(StoreConfigError):
        sqlite_path(url)


def test_open_replay_store_by_scheme(tmp_path: Path, redis_url: str) -> None:
    assert isinstance(open_replay_store("memory:", max_entries=10), InMemoryReplayStore)
    assert isinstance(open_replay_store(f"sqlite://{tmp_path}/r.db"), SQLiteReplayStore)
    store = open_replay_store(f"{redis_url}?prefix=custom:")
    assert isinstance(store, RedisReplayStore) and store.prefix == b"custom:"
    assert open_replay_store(redis_url).prefix == b"mcp-attest:replay:"  # type: ignore[attr-defined]
    with pytest.raises(StoreConfigError, match="unsupported replay store"):
        open_replay_store("mongodb://x")
    with pytest.raises(StoreConfigError, match="invalid Redis URL"):
        open_replay_store("redis://h:port/0")


def test_open_audit_log_by_scheme(tmp_path: Path, pg_log_url: str) -> None:
    with open_audit_log(f"sqlite://{tmp_path}/deep/dir/a.db") as log:
        assert isinstance(log.backend, SQLiteAuditBackend)
        assert log.location == f"sqlite://{tmp_path}/deep/dir/a.db"
    with open_audit_log(pg_log_url.replace("postgresql://", "postgres://")) as log:
        assert "schema=t_" in log.location
    with pytest.raises(AuditConfigError, match="unsupported audit log"):
        open_audit_log("redis://127.0.0.1/0")
