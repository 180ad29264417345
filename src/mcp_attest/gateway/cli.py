"""``mcp-attest gateway``: flags, config file, and the process lifecycle.

Exit codes follow CLI.md: 2 with one line on stderr for anything wrong
with the configuration (found before a socket opens or a process starts),
0 on a clean shutdown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import logging
import shlex
import signal
import socket
from collections.abc import Callable
from typing import Any

import uvicorn

from mcp_attest._cli import Parser, UsageError, usage_failure
from mcp_attest.gateway._app import Gateway
from mcp_attest.gateway._http import HttpListener
from mcp_attest.gateway._logs import announce
from mcp_attest.gateway._logs import configure as configure_logging
from mcp_attest.gateway._stdio import serve_stdio
from mcp_attest.gateway._stdio_link import kill_all
from mcp_attest.gateway.config import ConfigError, GatewayConfig, load_config

__all__ = ["main"]

logger = logging.getLogger("mcp_attest.gateway")


def _parser() -> Parser:
    p = Parser(
        prog="mcp-attest gateway", description="Verify or add tool-call attestations in front of MCP servers."
    )
    p.add_argument("--config", help="TOML config file (flags override it)")
    p.add_argument(
        "--mode", choices=("verify", "issue"), help="verify attestations (default) or add them"
    )
    p.add_argument("--stdio", action="store_true", default=None, help="serve one client on stdin/stdout")
    p.add_argument("--stdio-upstream", help="upstream the stdio client talks to (default: the first)")
    p.add_argument("--http", metavar="HOST:PORT", help="serve Streamable HTTP (e.g. 127.0.0.1:8787)")
    p.add_argument("--upstream-cmd", metavar="CMD", help="one stdio upstream command (shell-quoted)")
    p.add_argument("--upstream-url", metavar="URL", help="one Streamable HTTP upstream")
    p.add_argument("--name", default="default", help="name of the --upstream-* upstream")
    p.add_argument("--fingerprint", help="server fingerprint of the --upstream-* upstream")
    p.add_argument("--server-name", help="derive the fingerprint from a server name ...")
    p.add_argument("--server-id", help="... and an id, as the guard and client do")
    p.add_argument("--timeout", type=float, help="upstream timeout in seconds")
    p.add_argument("--keys", help="verify keyring (verify mode) or signing keyring (issue mode)")
    p.add_argument("--iss", help="issuer name (issue mode)")
    p.add_argument("--sub", help="subject (issue mode)")
    p.add_argument("--kid", help="signing key id (issue mode; default the newest)")
    p.add_argument(
        "--intent", dest="default_intent", help="default intent when no X-MCP-Intent header is sent"
    )
    p.add_argument(
        "--state-dir",
        help="directory for the replay store, audit log and pins "
        "(default: $XDG_STATE_HOME/mcp-attest/GATEWAY-NAME)",
    )
    p.add_argument("--replay", help="replay store: 'memory', a SQLite path, or a store URL")
    p.add_argument("--audit", help="audit sink URL, or 'none'")
    p.add_argument(
        "--checkpoint-key", help="audit checkpoint signing key (default: created in the state dir)"
    )
    p.add_argument("--witness", help="file or database URL receiving a copy of every audit checkpoint")
    p.add_argument(
        "--pin-tools",
        dest="pinning",
        action="store_true",
        default=None,
        help="refuse calls to tools whose definition changed",
    )
    p.add_argument("--max-body-bytes", type=int, help="largest POST body accepted (default 4 MiB)")
    limits = p.add_argument_group("limits (see docs/gateway.md; a client over one is refused, others go on)")
    limits.add_argument("--max-sessions", type=int, help="HTTP sessions in total (default 64)")
    limits.add_argument("--max-sessions-per-client", type=int, help="HTTP sessions per client address (16)")
    limits.add_argument("--max-stdio-children", type=int, help="upstream processes in total (32)")
    limits.add_argument("--idle-timeout", type=float, help="minutes before an unused session is closed (5)")
    limits.add_argument("--max-in-flight", type=int, help="unanswered requests per session (32)")
    limits.add_argument("--max-header-bytes", type=int, help="bytes of one HTTP request head (16384)")
    limits.add_argument("--header-timeout", type=float, help="seconds to send a request head (10)")
    limits.add_argument("--body-timeout", type=float, help="seconds to send a request body (30)")
    limits.add_argument("--keepalive-timeout", type=float, help="seconds an idle connection stays open (5)")
    limits.add_argument("--max-connections", type=int, help="open HTTP connections in total (512)")
    limits.add_argument("--max-connections-per-client", type=int, help="open connections per address (128)")
    p.add_argument("--log-level", help="DEBUG, INFO (default: one line per verdict), WARNING or ERROR")
    p.add_argument(
        "--log-format", choices=("text", "json"), help="log lines as text (default) or JSON Lines"
    )
    p.add_argument(
        "--gateway-name",
        dest="gateway_name",
        help="names the default state dir (default: MODE-UPSTREAMS)",
    )
    return p


def _overrides(ns: argparse.Namespace) -> dict[str, Any]:
    o = {k: v for k, v in vars(ns).items() if v is not None and k != "config"}
    if ns.upstream_cmd and ns.upstream_url:
        raise ConfigError("give --upstream-cmd or --upstream-url, not both")
    if ns.upstream_cmd or ns.upstream_url:
        up: dict[str, Any] = {"name": ns.name}
        if ns.upstream_cmd:
            up["command"] = shlex.split(ns.upstream_cmd)
        else:
            up["url"] = ns.upstream_url
        for key in ("fingerprint", "server_name", "server_id", "timeout"):
            if getattr(ns, key) is not None:
                up[key] = getattr(ns, key)
        o["upstream"] = up
    return o


def main(argv: list[str]) -> int:
    """Entry point of ``mcp-attest gateway``; returns the exit code."""
    try:
        ns = _parser().parse_args(argv)
        config = load_config(ns.config, _overrides(ns))
        configure_logging(config.log_level, config.log_format)
        gateway = Gateway(config)
        sock = None if config.http_host is None else _bind(config.http_host, config.http_port)
    except (UsageError, ValueError, OSError) as exc:  # ConfigError is a ValueError
        return usage_failure("mcp-attest gateway", exc)
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(run(gateway, sock))
    # Everything is closed. The interpreter's final collections over the SDK's objects take most of
    # a second, which a desktop client waiting for the process to exit would see on every close.
    gc.freeze()
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything is announced or started (a busy port is exit 2)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _banner(config: GatewayConfig, where: list[str], checkpoint_key: tuple[str, str] | None) -> None:
    """What runs where, on stderr: the fingerprint each upstream is enforced for, the state dir,
    and the key that signs audit checkpoints (an auditor pins its thumbprint)."""
    announce(
        config.log_format,
        f"mcp-attest gateway {config.name}: {config.mode} mode on {', '.join(where)}, "
        f"state {config.state_dir}",
        {"mode": config.mode, "listen": where, "stateDir": config.state_dir},
    )
    for up in config.upstreams:
        target = up.url or shlex.join(up.command)
        announce(
            config.log_format,
            f"  upstream {up.name}: {target} (fingerprint {up.fingerprint})",
            {"upstream": up.name, "target": target, "fingerprint": up.fingerprint},
        )
    if checkpoint_key is not None:
        thumbprint, public = checkpoint_key
        announce(
            config.log_format,
            f"  audit checkpoints signed by key {thumbprint} (public JWKS: {public})",
            {"checkpointKey": thumbprint, "publicJwks": public},
        )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (the ``gateway`` extra brings it): a faster loop for the proxy hop."""
    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:
        return None
    return uvloop.new_event_loop


def _guarded(config: GatewayConfig, gateway: Gateway) -> type[asyncio.Protocol]:
    """The HTTP protocol with connection limits; without httptools, h11 bounds only the head size."""
    from mcp_attest.gateway._connections import ConnectionLimits, guarded_protocol  # noqa: PLC0415

    c = config.connections
    limits = ConnectionLimits(
        gateway.metrics,
        max_connections=c.max_connections,
        max_connections_per_client=c.max_connections_per_client,
        max_header_bytes=c.max_header_bytes,
        header_timeout=c.header_timeout,
    )
    return guarded_protocol(limits)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class _Server(uvicorn.Server):
    """uvicorn, ending the gateway's own streams first, so a shutdown is quick and quiet.

    Left to uvicorn, an open server stream (GET) outlives the graceful
    period and is cancelled with a traceback; closing the sessions first
    ends every stream and answers every request in flight.
    """

    def __init__(self, config: uvicorn.Config, listener: HttpListener) -> None:
        super().__init__(config)
        self.listener = listener

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.listener.close()
        await super().shutdown(sockets)


async def run(gateway: Gateway, sock: socket.socket | None = None) -> None:
    """Serve until stdin closes (stdio) or a termination signal arrives (HTTP)."""
    config: GatewayConfig = gateway.config
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, gateway.reload_keys)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
    tasks: list[asyncio.Task[Any]] = []
    listener = None
    server = None
    served: asyncio.Task[None] | None = None
    where = [f"http://{config.http_host}:{config.http_port}{config.http_path}"] if sock is not None else []
    _banner(config, [*where, *(["stdio"] if config.listen_stdio else [])], gateway.checkpoint_key)
    if sock is not None:
        listener = HttpListener(gateway)
        uv = uvicorn.Config(
            listener,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http="h11",
            proxy_headers=False,  # the peer address is the client (per-client limits); no proxy trusted
            timeout_graceful_shutdown=2,
            timeout_keep_alive=config.connections.keepalive_timeout,  # type: ignore[arg-type]
            h11_max_incomplete_event_size=config.connections.max_header_bytes,
        )
        if _has("httptools"):  # header size, header timeout and connection counts
            uv.http = _guarded(config, gateway)
        server = _Server(uv, listener)
        served = asyncio.create_task(server.serve(sockets=[sock]))  # uvicorn handles SIGINT/SIGTERM itself
        served.add_done_callback(lambda _: stop.set())
        tasks.append(served)
        tasks.append(asyncio.create_task(listener.reap()))
    if config.listen_stdio:
        stdio = asyncio.create_task(serve_stdio(gateway))
        stdio.add_done_callback(lambda _: stop.set())
        tasks.append(stdio)
    try:
        await stop.wait()
    finally:
        if server is not None:
            server.should_exit = True
        if listener is not None:
            await listener.close()
        for task in tasks:
            if not task.done() and task is not served:
                task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=5.0)
        await gateway.close()
        kill_all()
