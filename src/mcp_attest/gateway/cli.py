"""``mcp-attest gateway``: flags, config file, and the process lifecycle.

Exit codes follow CLI.md: 2 with one line on stderr for anything wrong
with the configuration (found before a socket opens or a process starts),
0 on a clean shutdown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import shlex
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import uvicorn

from mcp_attest.gateway.app import Gateway
from mcp_attest.gateway.config import ConfigError, GatewayConfig, load_config
from mcp_attest.gateway.http import HttpListener
from mcp_attest.gateway.stdio import serve_stdio

__all__ = ["main"]

logger = logging.getLogger("mcp_attest.gateway")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as ConfigError (one line, exit 2) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _parser() -> _Parser:
    p = _Parser(
        prog="mcp-attest gateway", description="Verify or add tool-call attestations in front of MCP servers."
    )
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--mode", choices=("verify", "issue"))
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
    p.add_argument("--state-dir", help="directory for the replay store, audit log and pins")
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
    p.add_argument("--max-body-bytes", type=int)
    p.add_argument("--log-level")
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
        logging.basicConfig(
            level=config.log_level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s"
        )
        gateway = Gateway(config)
    except ConfigError as exc:
        print(f"mcp-attest gateway: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"mcp-attest gateway: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(run(gateway))
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (the ``gateway`` extra brings it): a faster loop for the proxy hop."""
    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:
        return None
    return uvloop.new_event_loop


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


async def run(gateway: Gateway) -> None:
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
    if config.http_host is not None:
        listener = HttpListener(gateway)
        uv = uvicorn.Config(
            listener,
            host=config.http_host,
            port=config.http_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http="httptools" if _has("httptools") else "h11",
            proxy_headers=False,  # nothing reads the client address; one ASGI layer less per request
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(uv)
        served = asyncio.create_task(server.serve())  # uvicorn handles SIGINT/SIGTERM itself
        served.add_done_callback(lambda _: stop.set())
        tasks.append(served)
        tasks.append(asyncio.create_task(listener.reap(1800.0)))
        print(
            f"mcp-attest gateway: {config.mode} mode, http://{config.http_host}:{config.http_port}{config.http_path}",
            file=sys.stderr,
            flush=True,
        )
    if gateway.checkpoint_key is not None:
        thumbprint, public = gateway.checkpoint_key
        print(
            f"mcp-attest gateway: audit checkpoints signed by key {thumbprint} (public JWKS: {public})",
            file=sys.stderr,
            flush=True,
        )
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
