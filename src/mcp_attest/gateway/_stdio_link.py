"""The link to an upstream that is a child process speaking JSON-RPC on stdio."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping

from mcp_attest.gateway._jsonrpc import Message, dumps, parse_message
from mcp_attest.gateway._link import OnMessage, UpstreamStartError, nothing
from mcp_attest.gateway._metrics import Metrics
from mcp_attest.gateway.config import UpstreamConfig

__all__ = ["StdioLink"]

logger = logging.getLogger("mcp_attest.gateway")

_MAX_LINE = 64 * 1024 * 1024
# Stopping a child (the MCP stdio shutdown, as the gateway's own client side): close its stdin,
# wait, SIGTERM, wait, SIGKILL. Both waits together stay well under the 2 s a desktop client
# gives the gateway before its own SIGTERM, so the gateway is never gone before its child.
EOF_GRACE = 0.5
TERM_GRACE = 0.5
_LIVE: set[asyncio.subprocess.Process] = set()


def kill_all() -> None:
    """Last resort at exit: no child outlives the gateway, whatever path the shutdown took."""
    for proc in list(_LIVE):
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    _LIVE.clear()


async def _exited(proc: asyncio.subprocess.Process, grace: float) -> bool:
    try:
        await asyncio.wait_for(proc.wait(), timeout=grace)
    except TimeoutError:
        return False
    return True


async def stop_process(proc: asyncio.subprocess.Process, name: str) -> None:
    """End a child and reap it; if this is cancelled half-way, the child is killed at once."""
    try:
        if proc.returncode is None and proc.stdin is not None:
            proc.stdin.close()
        if await _exited(proc, EOF_GRACE):
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        if await _exited(proc, TERM_GRACE):
            return
        logger.warning("upstream %s ignored end of input and SIGTERM; killing it", name)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
    except BaseException:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        raise
    finally:
        _LIVE.discard(proc)


class StdioLink:
    """A child process speaking newline-delimited JSON-RPC, restarted with backoff.

    The process stays up for the life of the link (no spawn per call); when
    it dies, pending requests are failed by the channel (``on_down``) and a
    new process is started after a delay that doubles up to ``max_backoff``
    and resets once a process has stayed up for a while.
    """

    def __init__(self, config: UpstreamConfig, metrics: Metrics, *, max_backoff: float = 10.0) -> None:
        self.config = config
        self.metrics = metrics
        self.max_backoff = max_backoff
        self.on_message: OnMessage = nothing
        self.on_down: Callable[[str], Awaitable[None]] = nothing
        self.on_up: Callable[[], Awaitable[None]] = nothing
        self._proc: asyncio.subprocess.Process | None = None
        self._ready = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self._replaying = False
        self._start_error: str | None = None
        self._why_down: str | None = None
        self.starts = 0

    async def start(self) -> None:
        """Start the supervisor; if no process comes up in time, stop it again.

        Nobody holds a link whose start failed, so a supervisor left running
        would retry forever and, once the command works, leave a process
        that belongs to no session.
        """
        self._task = asyncio.create_task(self._supervise(), name=f"upstream-{self.config.name}")
        try:
            await asyncio.wait_for(self._ready.wait(), timeout=self.config.timeout)
        except BaseException:
            await self.close()
            raise
        if self._start_error is not None:
            await self.close()
            raise UpstreamStartError(self._start_error)

    async def _spawn(self) -> asyncio.subprocess.Process:
        env = {**os.environ, **dict(self.config.env)}
        proc = await asyncio.create_subprocess_exec(
            *self.config.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # inherited: upstream logs stay visible next to the gateway's
            env=env,
            cwd=self.config.cwd,
            limit=_MAX_LINE,
        )
        _LIVE.add(proc)
        return proc

    async def _supervise(self) -> None:
        backoff = 0.2
        while not self._closed:
            started = time.monotonic()
            try:
                self._proc = await self._spawn()
            except OSError as exc:
                # The program only: its arguments may hold secrets, and this text reaches clients.
                why = f"cannot start {self.config.command[0]}: {exc.strerror or exc}"
                logger.error("upstream %s %s", self.config.name, why)
                if self.starts == 0:  # never came up: the client is told at once (start raises)
                    self._start_error = f"upstream {self.config.name} {why}"
                    self._ready.set()
                    return
                await self.on_down(f"cannot be started ({exc.strerror or exc})")
            else:
                self.starts += 1
                if self.starts > 1:
                    self.metrics.restart(self.config.name)
                    self._replaying = True
                    try:
                        await self.on_up()
                    finally:
                        self._replaying = False
                self._ready.set()
                code = await self._pump(self._proc)
                self._ready.clear()
                if self._closed:
                    return
                logger.warning("upstream %s exited with code %s; restarting", self.config.name, code)
                await self.on_down(self._why_down or f"exited (code {code})")
                self._why_down = None
            if time.monotonic() - started > 10 * self.max_backoff:
                backoff = 0.2
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def _pump(self, proc: asyncio.subprocess.Process) -> int | None:
        assert proc.stdout is not None
        while True:
            try:
                line = await proc.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                logger.error(
                    "upstream %s wrote a line over %d bytes; restarting it", self.config.name, _MAX_LINE
                )
                self._why_down = f"sent a message over {_MAX_LINE} bytes, the gateway's cap; restarted"
                proc.kill()
                break
            if not line:
                break
            if not line.strip():
                continue
            await self.on_message(parse_message(line), ())
        code = await proc.wait()
        _LIVE.discard(proc)
        return code

    async def send(self, message: Message, headers: Mapping[str, str], request_id: int | None) -> None:
        if not self._replaying:  # the handshake replay writes before anyone else may
            await self._ready.wait()
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        async with self._write_lock:
            try:
                proc.stdin.write(dumps(message) + b"\n")
                await proc.stdin.drain()
            except (ConnectionError, RuntimeError) as exc:
                logger.warning("upstream %s: write failed: %s", self.config.name, exc)

    async def close(self) -> None:
        self._closed = True
        if self._proc is not None:
            await stop_process(self._proc, self.config.name)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
