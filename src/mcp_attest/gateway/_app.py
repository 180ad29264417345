"""The gateway process: routes, shared state, and key reloading.

One ``Gateway`` owns what outlives any session: the replay store and
audit sink (so a restart neither forgets nonces nor loses records), the
pin stores, the metrics, one HTTP client per process (connection reuse to
HTTP upstreams) and the shared channel each upstream uses for sessionless
traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.request
from pathlib import Path
from typing import Any

import httpx

from mcp_attest import Keyring, KeyringError, StoreUnavailableError
from mcp_attest.audit.custody import public_jwks_path, state_key_path
from mcp_attest.audit.log import AuditLog
from mcp_attest.audit.record import AuditError
from mcp_attest.errors import Error
from mcp_attest.gateway._channel import Channel
from mcp_attest.gateway._h1 import H1Pool
from mcp_attest.gateway._http_link import HttpLink
from mcp_attest.gateway._link import Link
from mcp_attest.gateway._metrics import Metrics
from mcp_attest.gateway._pins import PinStore
from mcp_attest.gateway._policy import AuditSink, Route, build_guard, build_issuer
from mcp_attest.gateway._session import GatewaySession, Sink
from mcp_attest.gateway._stdio_link import StdioLink
from mcp_attest.gateway.config import ConfigError, GatewayConfig, UpstreamConfig
from mcp_attest.replay import ReplayStore
from mcp_attest.stores import open_keyed_audit_log, open_replay_store

__all__ = ["Gateway", "LimitReachedError"]

logger = logging.getLogger("mcp_attest.gateway")

_PROXY_SCHEMES = frozenset({"http", "all"})


def open_replay(config: GatewayConfig) -> ReplayStore:
    """Embedded SQLite in the state dir by default, so a restart remembers every nonce."""
    url = config.replay or f"sqlite:///{Path(config.state_dir).resolve() / 'replay.sqlite'}"
    if ":" not in url:
        url = f"sqlite:{url}"
    try:
        return open_replay_store(url)
    except (StoreUnavailableError, ValueError) as exc:
        raise ConfigError(f"replay store: {exc}") from None


def open_audit(config: GatewayConfig) -> AuditLog | None:
    """The audit log (verify mode), SQLite in the state dir unless configured otherwise.

    Its checkpoints are signed with a key kept in the state dir (or where
    configured), never in the audit database, so whoever can write the
    database still cannot re-seal history without it showing.
    """
    if config.audit == "none" or config.mode != "verify":
        return None
    url = config.audit or f"sqlite:///{Path(config.state_dir).resolve() / 'audit.sqlite'}"
    cp = config.checkpoints
    try:
        return open_keyed_audit_log(
            url,
            checkpoint_key=cp_key_path(config),
            checkpoint_every=cp.every,
            checkpoint_interval=cp.interval,
            witness=cp.witness,
        )
    except (AuditError, ValueError) as exc:
        raise ConfigError(f"audit log: {exc}") from None


def cp_key_path(config: GatewayConfig) -> Path:
    """Where the checkpoint key is: configured, or in the state dir."""
    return Path(config.checkpoints.key) if config.checkpoints.key else state_key_path(config.state_dir)


class LimitReachedError(Error):
    """A new session or upstream process would pass a configured limit; ``limit`` names it."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class Gateway:
    """Built from a validated config; every failure here is a configuration error."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        try:
            Path(config.state_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create state dir {config.state_dir}: {exc.strerror or exc}") from None
        self.replay = open_replay(config)
        log = open_audit(config)
        self.audit: AuditSink | None = log
        self.checkpoint_key: tuple[str, str] | None = None  # (thumbprint, public JWKS path)
        if log is not None and log.checkpoint_signer is not None:
            thumbprint = log.checkpoint_signer.thumbprint
            self.checkpoint_key = (thumbprint, str(public_jwks_path(cp_key_path(config))))
            self.metrics.checkpoint_key = thumbprint
        keyring = self._load_keys()
        self.routes: dict[str, Route] = {}
        for up in config.upstreams:
            pins = None
            if config.pinning:
                try:
                    pins = PinStore(Path(config.state_dir) / "pins" / f"{up.name}.json", dict(up.pins))
                except ValueError as exc:
                    raise ConfigError(str(exc)) from None
            self.routes[up.name] = Route(
                up,
                config,
                self.metrics,
                guard=build_guard(config, up, keyring, self.replay) if config.mode == "verify" else None,
                issuer=self._issuer(keyring) if config.mode == "issue" else None,
                audit=self.audit,
                pins=pins,
            )
        self._client: httpx.AsyncClient | None = None
        self._pool: H1Pool | None = None
        self._stateless: dict[str, Channel] = {}
        self._stateless_lock = asyncio.Lock()
        self._children: set[Channel] = set()

    def _keys_path(self) -> str:
        path = self.config.verify.keys if self.config.mode == "verify" else self.config.issue.keys
        assert path is not None
        return path

    def _load_keys(self) -> Keyring:
        try:
            return Keyring.load(self._keys_path())
        except KeyringError as exc:
            raise ConfigError(str(exc)) from None

    def _issuer(self, keyring: Keyring) -> Any:
        try:
            return build_issuer(self.config, keyring)
        except KeyringError as exc:
            raise ConfigError(str(exc)) from None

    def reload_keys(self) -> bool:
        """SIGHUP: swap keyrings in place; sessions and connections are untouched.

        A keyring that fails to load leaves the old one active, since a
        typo in a rotated file must not turn into an outage.
        """
        try:
            keyring = self._load_keys()
            issuer = self._issuer(keyring) if self.config.mode == "issue" else None
        except ConfigError as exc:
            logger.error("keyring reload failed, keeping the previous keys: %s", exc)
            self.metrics.error("key_reload_failed")
            return False
        for route in self.routes.values():
            if route.guard is not None:
                route.guard.verifier.replace_keyring(keyring)
            if issuer is not None:
                route.issuer = issuer
        logger.warning("keyring reloaded from %s (%d keys)", self._keys_path(), len(keyring))
        return True

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
            timeout = max(up.timeout for up in self.config.upstreams) + 5.0
            self._client = httpx.AsyncClient(timeout=timeout, limits=limits)
        return self._client

    @property
    def pool(self) -> H1Pool | None:
        """The lean client for plain-HTTP upstreams; None where a proxy is configured (httpx honours it)."""
        if self._pool is None and not _PROXY_SCHEMES & urllib.request.getproxies().keys():
            timeout = max(up.timeout for up in self.config.upstreams) + 5.0
            self._pool = H1Pool(timeout=timeout)
        return self._pool

    def route(self, name: str | None) -> Route:
        return self.routes[self.config.upstream(name).name]

    async def open_session(self, route: Route, sink: Sink) -> GatewaySession:
        """A session with its own upstream connection (process or HTTP session)."""
        channel = self._channel(route)
        session = GatewaySession(route, channel, sink)
        channel.owner = session
        await self._start(channel)
        return session

    async def stateless_session(self, route: Route, sink: Sink) -> GatewaySession:
        """A one-request session on the upstream's shared channel (no Mcp-Session-Id)."""
        async with self._stateless_lock:
            channel = self._stateless.get(route.name)
            if channel is None:
                channel = self._channel(route)
                await self._start(channel)
                self._stateless[route.name] = channel
        return GatewaySession(route, channel, sink)

    @staticmethod
    async def _start(channel: Channel) -> None:
        """Start, or close again: a channel that never started must not count as a process."""
        try:
            await channel.start()
        except BaseException:
            await channel.close()
            raise

    def _channel(self, route: Route) -> Channel:
        """A channel on a new link; a stdio one counts against ``max_stdio_children``."""
        if route.config.kind == "stdio":
            self._children = {c for c in self._children if not c.closed}
            limit = self.config.limits.max_stdio_children
            if len(self._children) >= limit:
                self.metrics.refusal("stdio_children")
                raise LimitReachedError("stdio_children", f"{limit} upstream processes already running")
        channel = Channel(self._link(route.config), route.config, self.metrics)
        if route.config.kind == "stdio":
            self._children.add(channel)
        return channel

    def _link(self, up: UpstreamConfig) -> Link:
        if up.kind != "http":
            return StdioLink(up, self.metrics)
        return HttpLink(up, self.client, self.metrics, self.pool)

    async def close(self) -> None:
        for channel in self._stateless.values():
            with contextlib.suppress(Exception):
                await channel.close()
        if self._client is not None:
            await self._client.aclose()
        if self._pool is not None:
            await self._pool.aclose()
        close = getattr(self.replay, "close", None)
        if close is not None:
            close()
        close = getattr(self.audit, "close", None)
        if close is not None:
            close()
