"""Stores by URL: the one place that turns configuration strings into objects.

The guard, the gateway and the CLI all take a replay store and an audit
log as URLs, so deployments switch backends in configuration, not code.
Optional drivers (redis, psycopg) are imported only when their scheme is
asked for, so a SQLite-only installation never needs them.

URL forms:

* replay: ``memory:``, ``sqlite:///abs/path.db`` (or ``sqlite:rel/path.db``),
  ``redis://[user:pass@]host:port/db[?prefix=...]``, ``rediss://...``,
  ``unix:///path/redis.sock``;
* audit: ``sqlite:///abs/path.db`` (a bare path means the same),
  ``postgresql://user@host:port/db[?schema=name]`` (``postgres://`` too).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from mcp_attest.audit import AuditConfigError, AuditLog, CheckpointSigner, SQLiteAuditBackend
from mcp_attest.audit.backend import CheckpointSink
from mcp_attest.audit.custody import FileWitness, load_or_create_signer, remote_key_path, sqlite_key_path
from mcp_attest.audit.log import DEFAULT_CHECKPOINT_EVERY, DEFAULT_CHECKPOINT_INTERVAL
from mcp_attest.errors import ConfigurationError
from mcp_attest.replay import InMemoryReplayStore, ReplayStore, SQLiteReplayStore

__all__ = [
    "StoreConfigError",
    "open_audit_log",
    "open_keyed_audit_log",
    "open_replay_store",
    "open_witness",
    "sqlite_path",
]


class StoreConfigError(ConfigurationError):
    """A store URL that names no supported store; the message says which forms exist."""


def sqlite_path(url: str) -> str:
    """The file a ``sqlite:`` URL (or a bare path) names.

    ``sqlite:///var/lib/x.db`` is absolute, read like ``file:///var/lib/x.db``
    (empty host, absolute path); extra leading slashes are collapsed, so the
    SQLAlchemy spelling ``sqlite:////var/lib/x.db`` means the same file.
    ``sqlite:x.db`` is relative to the working directory.
    """
    if not url.startswith("sqlite:"):
        return url
    rest = url[len("sqlite:") :]
    if rest.startswith("//"):
        if not rest.startswith("///"):
            raise StoreConfigError(f"{url!r}: use sqlite:///absolute/path or sqlite:relative/path")
        rest = "/" + rest.lstrip("/")
    if not rest or rest.endswith("/"):
        raise StoreConfigError(f"{url!r} names no file")
    return rest


def _split_option(url: str, name: str) -> tuple[str, str | None]:
    """Remove our own query option from a URL the driver would otherwise reject."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    value = next((v for k, v in query if k == name), None)
    kept = urlencode([(k, v) for k, v in query if k != name])
    return urlunsplit(parts._replace(query=kept)), value


def open_replay_store(url: str, **options: Any) -> ReplayStore:
    """A replay store for ``url``; ``options`` go to the store's constructor."""
    scheme = url.partition(":")[0].lower()
    if scheme == "memory":
        return InMemoryReplayStore(**options)
    if scheme == "sqlite":
        return SQLiteReplayStore(sqlite_path(url), **options)
    if scheme in ("redis", "rediss", "unix"):
        from mcp_attest.replay.redis import DEFAULT_PREFIX, RedisReplayStore  # noqa: PLC0415 - optional driver

        clean, prefix = _split_option(url, "prefix")
        try:
            return RedisReplayStore(clean, prefix or DEFAULT_PREFIX, **options)
        except ValueError as exc:
            raise StoreConfigError(str(exc)) from None
    raise StoreConfigError(
        f"unsupported replay store {url!r}: use memory:, sqlite:///path or redis://host:port/db"
    )


def _open_backend(url: str, *, create: bool, durable: bool = False) -> Any:
    scheme = url.partition(":")[0].lower() if "://" in url or url.startswith("sqlite:") else ""
    if scheme in ("", "sqlite"):
        path = sqlite_path(url)
        if create:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return SQLiteAuditBackend(path, create=create, durable=durable)
    if scheme in ("postgresql", "postgres"):
        from mcp_attest.audit.postgres import DEFAULT_SCHEMA, PostgresAuditBackend  # noqa: PLC0415 - optional driver

        conninfo, schema = _split_option(url, "schema")
        return PostgresAuditBackend(conninfo, schema=schema or DEFAULT_SCHEMA, create=create)
    raise AuditConfigError(
        f"unsupported audit log {url!r}: use sqlite:///path or postgresql://user@host/db?schema=name"
    )


def open_audit_log(
    url: str,
    *,
    create: bool = True,
    store_envelope: bool = True,
    record_fields: Collection[str] = (),
    checkpoint_signer: CheckpointSigner | None = None,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL,
    witness: str | None = None,
    durable: bool = False,
) -> AuditLog:
    """An audit log at ``url``; ``create=False`` refuses to create a new one (readers)."""
    backend = _open_backend(url, create=create, durable=durable)
    return AuditLog(
        backend,
        store_envelope=store_envelope,
        record_fields=record_fields,
        checkpoint_signer=checkpoint_signer,
        checkpoint_every=checkpoint_every,
        checkpoint_interval=checkpoint_interval,
        witness=None if witness is None else open_witness(witness, create=create),
    )


def open_keyed_audit_log(
    url: str, *, checkpoint_key: str | os.PathLike[str] | None = None, **options: Any
) -> AuditLog:
    """A writer's audit log whose checkpoints are signed with a key the database never holds.

    ``checkpoint_key`` is the private key file, created at first use when
    missing. By default it lives beside a SQLite file, or for a database
    elsewhere in the user's XDG state dir (one key per log URL).
    """
    if checkpoint_key is None:
        scheme = url.partition(":")[0].lower() if "://" in url or url.startswith("sqlite:") else ""
        local = scheme in ("", "sqlite")
        checkpoint_key = sqlite_key_path(sqlite_path(url)) if local else remote_key_path(url)
    signer = load_or_create_signer(checkpoint_key)
    return open_audit_log(url, checkpoint_signer=signer, **options)


def open_witness(url: str, *, create: bool = True) -> CheckpointSink:
    """A witness: a database URL means that database's checkpoint table, anything else a file."""
    if url.startswith(("sqlite:", "postgresql:", "postgres:")):
        return _open_backend(url, create=create)  # type: ignore[no-any-return]
    return FileWitness(url)
