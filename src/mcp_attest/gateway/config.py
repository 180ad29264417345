"""Gateway configuration: one TOML file, overridable by flags.

Everything is validated here, before a socket is opened or a process is
spawned, so that every mistake an operator can make is one line on stderr
and exit code 2 (CLI.md) rather than a failure on the first call.
"""

from __future__ import annotations

import os
import shlex
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from mcp_attest.errors import ConfigurationError
from mcp_attest.fingerprint import server_fingerprint

__all__ = [
    "ConfigError",
    "GatewayConfig",
    "IssueConfig",
    "LimitsConfig",
    "UpstreamConfig",
    "VerifyConfig",
    "load_config",
]

Mode = Literal["verify", "issue"]
_T = TypeVar("_T")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class ConfigError(ConfigurationError):
    """A configuration the gateway refuses to start with; always exit 2."""


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """One upstream MCP server: a stdio command or a Streamable HTTP URL."""

    name: str
    fingerprint: str
    command: tuple[str, ...] = ()
    url: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    timeout: float = 30.0
    pins: tuple[tuple[str, str], ...] = ()

    @property
    def kind(self) -> Literal["stdio", "http"]:
        return "http" if self.url else "stdio"


@dataclass(frozen=True, slots=True)
class VerifyConfig:
    keys: str | None = None
    required: bool = True
    args_binding: Literal["spec", "strict"] = "strict"
    multi_server: bool = True
    include_detail: bool = True
    skew: int = 30
    max_ttl: int = 3600


@dataclass(frozen=True, slots=True)
class IssueConfig:
    keys: str | None = None
    iss: str | None = None
    sub: str = "gateway"
    kid: str | None = None
    default_intent: str = "tool call forwarded by mcp-attest gateway"
    commit: Literal["projection", "ref", "both"] = "both"
    exp_seconds: int = 300
    header: bool = True


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """What one client may hold: sessions, upstream processes, requests in flight.

    Sized for a few desktop agents per gateway; every stdio session costs a
    process (tens of MB), so the totals are what bounds memory.
    """

    max_sessions: int = 64
    max_sessions_per_client: int = 16
    max_stdio_children: int = 32
    idle_timeout: float = 5.0  # minutes
    max_in_flight: int = 32


@dataclass(frozen=True, slots=True)
class ListenLimits:
    """What one HTTP connection may hold: header bytes, time, and how many per address."""

    max_header_bytes: int = 16 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 5.0
    max_connections: int = 512
    max_connections_per_client: int = 128


@dataclass(frozen=True, slots=True)
class CheckpointConfig:
    """``[checkpoints]``: the audit log's signed tree heads (docs/operations.md).

    ``key`` None means ``audit-checkpoint-key.json`` in the state dir,
    created at first start: a key the audit database never holds.
    """

    key: str | None = None
    every: int = 1000
    interval: float = 60.0
    witness: str | None = None


def _checkpoints(doc: dict[str, Any], o: dict[str, Any], base: Path) -> CheckpointConfig:
    table = _section(doc, "checkpoints")
    _check_keys(table, {"key", "every", "interval", "witness"}, "[checkpoints]")
    every = _expect(table.get("every", 1000), int, "[checkpoints] every")
    interval = _expect(table.get("interval", 60.0), (int, float), "[checkpoints] interval")
    if every < 1 or interval < 0:
        raise ConfigError("[checkpoints] every must be >= 1 and interval >= 0 (0: no timer)")
    witness = o.get("witness") or table.get("witness")
    if witness is not None and "://" not in witness and not witness.startswith("sqlite:"):
        witness = _resolve(witness, base)
    return CheckpointConfig(
        key=_resolve(o.get("checkpoint_key") or table.get("key"), base),
        every=every,
        interval=float(interval),
        witness=witness,
    )


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    mode: Mode
    upstreams: tuple[UpstreamConfig, ...]
    state_dir: str
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    issue: IssueConfig = field(default_factory=IssueConfig)
    listen_stdio: bool = False
    stdio_upstream: str | None = None
    http_host: str | None = None
    http_port: int = 8787
    http_path: str = "/mcp"
    max_body_bytes: int = 4 * 1024 * 1024
    replay: str | None = None
    audit: str | None = None
    checkpoints: CheckpointConfig = field(default_factory=CheckpointConfig)
    pinning: bool = False
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    name: str = "gateway"
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    connections: ListenLimits = field(default_factory=ListenLimits)

    def upstream(self, name: str | None) -> UpstreamConfig:
        """The named upstream, or the first one when ``name`` is None."""
        if name is None:
            return self.upstreams[0]
        for up in self.upstreams:
            if up.name == name:
                return up
        raise ConfigError(f"no upstream named {name!r}")


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in kinds):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{where} must be {names}")
    return value


def _section(doc: dict[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name, {})
    return dict(_expect(value, dict, f"[{name}]"))


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown setting {unknown[0]!r}")


def _upstream(raw: Any, index: int, base: Path) -> UpstreamConfig:
    where = f"[[upstream]] #{index + 1}"
    table = dict(_expect(raw, dict, where))
    _check_keys(
        table,
        {
            "name",
            "command",
            "url",
            "env",
            "cwd",
            "timeout",
            "fingerprint",
            "server_name",
            "server_id",
            "pins",
        },
        where,
    )
    name = str(
        _expect(table.get("name", "default" if index == 0 else f"upstream{index + 1}"), str, f"{where} name")
    )
    if not name or set(name) - _NAME_CHARS:
        raise ConfigError(f"{where}: name {name!r} must be letters, digits, '-', '_' or '.'")
    command_raw = table.get("command")
    command: tuple[str, ...] = ()
    if isinstance(command_raw, str):
        command = tuple(shlex.split(command_raw))
    elif isinstance(command_raw, list) and all(isinstance(c, str) for c in command_raw):
        command = tuple(command_raw)
    elif command_raw is not None:
        raise ConfigError(f"{where}: command must be a string or a list of strings")
    url = table.get("url")
    if url is not None:
        url = str(_expect(url, str, f"{where} url"))
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: url must start with http:// or https://")
    if bool(command) == bool(url):
        raise ConfigError(f"upstream {name!r}: give exactly one of command or url")
    env = table.get("env", {})
    _expect(env, dict, f"{where} env")
    if not all(isinstance(v, str) for v in env.values()):
        raise ConfigError(f"{where}: env values must be strings")
    timeout = float(_expect(table.get("timeout", 30.0), (int, float), f"{where} timeout"))
    if not 0 < timeout <= 3600:
        raise ConfigError(f"{where}: timeout must be in (0, 3600] seconds")
    pins = table.get("pins", {})
    _expect(pins, dict, f"{where} pins")
    if not all(isinstance(v, str) and v.startswith("sha256:") for v in pins.values()):
        raise ConfigError(f"{where}: pins must map tool names to 'sha256:<hex>' digests")
    cwd = table.get("cwd")
    if command and cwd is None and "/" in command[0]:
        command = (str(base / command[0]), *command[1:])  # like every path in the file: not the cwd's
    return UpstreamConfig(
        name=name,
        fingerprint=_fingerprint(table, name, where),
        command=command,
        url=url,
        env=tuple(sorted(env.items())),
        cwd=str(base / str(_expect(cwd, str, f"{where} cwd"))) if cwd is not None else None,
        timeout=timeout,
        pins=tuple(sorted(pins.items())),
    )


def _fingerprint(table: dict[str, Any], name: str, where: str) -> str:
    """Explicit fingerprint, or the core's default derivation from name and id.

    Derived by the same function the guard and the client use, so an
    operator who configures the same two strings on both sides needs no
    hash copied around.
    """
    given = table.get("fingerprint")
    if given is not None:
        if "server_name" in table or "server_id" in table:
            raise ConfigError(f"{where}: give fingerprint or server_name/server_id, not both")
        return str(_expect(given, str, f"{where} fingerprint")) or _fail(f"{where}: fingerprint is empty")
    server_name = str(_expect(table.get("server_name", name), str, f"{where} server_name"))
    server_id = str(_expect(table.get("server_id", ""), str, f"{where} server_id"))
    return server_fingerprint(server_name, server_id)


def _typed(default: _T, table: dict[str, Any], where: str) -> _T:
    """Apply a TOML table to a settings dataclass, type-checked against its defaults.

    A setting whose default is None takes a string (paths, names); a bool
    setting refuses integers, because TOML's ``1`` for ``true`` is a typo.
    """
    known = {f.name: getattr(default, f.name) for f in fields(default)}  # type: ignore[arg-type]
    _check_keys(table, set(known), where)
    for key, value in table.items():
        expected: type = str if known[key] is None else type(known[key])
        ok = isinstance(value, expected) and (expected is bool or not isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ConfigError(f"{where} {key} must be {expected.__name__}")
    return replace(default, **table)  # type: ignore[type-var]


def _fail(message: str) -> str:
    raise ConfigError(message)


def _resolve(path: str | None, base: Path) -> str | None:
    if path is None:
        return None
    p = Path(os.path.expanduser(path))
    return str(p if p.is_absolute() else base / p)


def _gateway_name(given: Any, mode: str, upstreams: tuple[UpstreamConfig, ...]) -> str:
    """The gateway's name: its own state dir, so two gateways never share one by accident."""
    if given is None:
        return f"{mode}-" + "+".join(u.name for u in upstreams)
    name = str(_expect(given, str, "name"))
    if not name or set(name) - _NAME_CHARS or name.startswith("."):
        raise ConfigError(f"gateway name {name!r} must be letters, digits, '-', '_' or '.'")
    return name


def _default_state_dir(name: str) -> Path:
    """Per user (XDG state home), never the working directory: desktop clients start servers in /."""
    xdg = os.environ.get("XDG_STATE_HOME", "")
    home = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "state"
    return home / "mcp-attest" / name


def _read(path: str | None) -> tuple[dict[str, Any], Path]:
    if path is None:
        return {}, Path.cwd()
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError, and tomllib's int and depth limits
        raise ConfigError(f"config {path} is not valid TOML: {str(exc) or type(exc).__name__}") from None
    return doc, Path(path).resolve().parent


def _upstreams(doc: dict[str, Any], o: dict[str, Any], base: Path) -> tuple[UpstreamConfig, ...]:
    raw = doc.get("upstream", [])
    _expect(raw, list, "[[upstream]]")
    upstreams = [_upstream(u, i, base) for i, u in enumerate(raw)]
    if o.get("upstream") is not None:
        upstreams = [_upstream(o["upstream"], 0, Path.cwd())]
    if not upstreams:
        raise ConfigError("no upstream configured (use [[upstream]] or --upstream-cmd/--upstream-url)")
    names = [u.name for u in upstreams]
    if len(set(names)) != len(names):
        raise ConfigError("upstream names must be unique")
    return tuple(upstreams)


def _signing(doc: dict[str, Any], o: dict[str, Any], base: Path) -> tuple[Mode, VerifyConfig, IssueConfig]:
    """Mode and its key settings; flags win over the file, paths resolve against it."""
    mode = o.get("mode") or doc.get("mode", "verify")
    if mode not in ("verify", "issue"):
        raise ConfigError("mode must be 'verify' or 'issue'")
    verify = _typed(VerifyConfig(), _section(doc, "verify"), "[verify]")
    issue = _typed(IssueConfig(), _section(doc, "issue"), "[issue]")
    for flag in ("iss", "sub", "kid", "default_intent"):
        if o.get(flag):
            issue = replace(issue, **{flag: o[flag]})
    if o.get("keys"):
        if mode == "verify":
            verify = replace(verify, keys=o["keys"])
        else:
            issue = replace(issue, keys=o["keys"])
    verify = replace(verify, keys=_resolve(verify.keys, base))
    issue = replace(issue, keys=_resolve(issue.keys, base))
    if verify.args_binding not in ("spec", "strict"):
        raise ConfigError("[verify] args_binding must be 'spec' or 'strict'")
    if issue.commit not in ("projection", "ref", "both"):
        raise ConfigError("[issue] commit must be projection, ref or both")
    if mode == "verify" and not verify.keys:
        raise ConfigError("verify mode needs a keyring ([verify] keys or --keys)")
    if mode == "issue" and (not issue.keys or not issue.iss):
        raise ConfigError(
            "issue mode needs a signing keyring and an issuer ([issue] keys/iss or --keys/--iss)"
        )
    return mode, verify, issue


def _bounds(default: _T, table: dict[str, Any], o: dict[str, Any], where: str) -> _T:
    """A limits table from the file, flags on top; every limit is a positive number."""
    known = {f.name for f in fields(default)}  # type: ignore[arg-type]
    values = _typed(default, table, where)
    values = replace(values, **{k: v for k, v in o.items() if k in known and v is not None})  # type: ignore[type-var]
    for name in sorted(known):
        value = getattr(values, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{where} {name} must be a positive number")
    return values


def _listen(doc: dict[str, Any], o: dict[str, Any]) -> dict[str, Any]:
    listen = _section(doc, "listen")
    limits = {f.name for f in fields(ListenLimits)}
    connections = {k: listen.pop(k) for k in list(listen) if k in limits}
    _check_keys(listen, {"stdio", "stdio_upstream", "http", "path", "max_body_bytes"}, "[listen]")
    http = o.get("http", listen.get("http"))
    host, port = None, 8787
    if http:
        host, _, port_s = str(http).rpartition(":")
        try:
            port = int(port_s)
        except ValueError:
            raise ConfigError(f"listen address {http!r} must be HOST:PORT") from None
        host = host.strip("[]") or "127.0.0.1"
    stdio = bool(o.get("stdio", listen.get("stdio", False)))
    if not stdio and host is None:
        raise ConfigError("nothing to listen on (use --stdio and/or --http HOST:PORT)")
    http_path = str(listen.get("path", "/mcp"))
    if not http_path.startswith("/") or http_path.endswith("/"):
        raise ConfigError("[listen] path must start with '/' and not end with one")
    max_body = o.get("max_body_bytes") or listen.get("max_body_bytes", 4 * 1024 * 1024)
    if not isinstance(max_body, int) or max_body < 1024:
        raise ConfigError("max_body_bytes must be an integer of at least 1024")
    return {
        "listen_stdio": stdio,
        "stdio_upstream": o.get("stdio_upstream") or listen.get("stdio_upstream"),
        "http_host": host,
        "http_port": port,
        "http_path": http_path,
        "max_body_bytes": max_body,
        "connections": _bounds(ListenLimits(), connections, o, "[listen]"),
    }


def load_config(path: str | None, overrides: dict[str, Any] | None = None) -> GatewayConfig:
    """Read the TOML file (if any) and apply flag overrides on top.

    Relative paths in the file are relative to the file, not to the working
    directory, so a config keeps working when the gateway is started from
    elsewhere (a service manager, a desktop client).
    """
    doc, base = _read(path)
    o = overrides or {}
    top = {"mode", "state_dir", "log_level", "listen", "verify", "issue", "upstream", "replay", "audit"}
    _check_keys(doc, top | {"pinning", "limits", "name", "log_format", "checkpoints"}, "config")
    mode, verify, issue = _signing(doc, o, base)
    upstreams = _upstreams(doc, o, base)
    name = _gateway_name(o.get("gateway_name") or doc.get("name"), mode, upstreams)
    state_dir = _resolve(o.get("state_dir") or doc.get("state_dir"), base) or str(_default_state_dir(name))
    log_format = o.get("log_format") or doc.get("log_format", "text")
    if log_format not in ("text", "json"):
        raise ConfigError("log_format must be 'text' or 'json'")
    config = GatewayConfig(
        mode=mode,
        upstreams=upstreams,
        state_dir=str(Path(state_dir).resolve()),
        name=name,
        log_format=log_format,
        verify=verify,
        issue=issue,
        replay=o.get("replay") or doc.get("replay"),
        audit=o.get("audit") or doc.get("audit"),
        checkpoints=_checkpoints(doc, o, base),
        pinning=bool(o.get("pinning") or doc.get("pinning", False)),
        log_level=str(o.get("log_level") or doc.get("log_level", "INFO")).upper(),
        limits=_bounds(LimitsConfig(), _section(doc, "limits"), o, "[limits]"),
        **_listen(doc, o),
    )
    if config.stdio_upstream is not None:
        config.upstream(config.stdio_upstream)
    return config
