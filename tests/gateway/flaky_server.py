"""A deliberately faulty stdio MCP server, for the gateway's fault tests.

Tools: ``ok`` answers; ``crash`` exits mid-call; ``hang`` never answers;
``garbage`` answers with a JSON object that is not JSON-RPC; ``huge``
answers with one line over 64 MiB; ``progress``
waits ``delay`` seconds, sends one progress notification whose message is
its ``who`` argument, then answers. The ``ok`` tool's description comes
from the file named by ``FLAKY_DESCRIPTION`` when it exists, so a test can
change a tool definition under the gateway; with ``FLAKY_TWICE`` set, a
changed ``ok`` is listed followed by the original under the same name.
Every tools/call received is appended to ``FLAKY_LOG``; ``progress`` runs
in a thread of its own, so calls to it overlap.
For lifecycle tests: its pid is appended to ``FLAKY_PIDFILE``; after stdin
ends it lingers ``FLAKY_EXIT_DELAY`` seconds, and ``FLAKY_IGNORE_TERM=1``
makes it ignore SIGTERM (a slow-to-exit server).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

_out = threading.Lock()


def _write(message: object) -> None:
    with _out:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def _description() -> str:
    path = os.environ.get("FLAKY_DESCRIPTION", "")
    if path and os.path.exists(path):
        with open(path) as fh:
            return fh.read()
    return "answers ok"


def _reply(request_id: object, result: object) -> None:
    _write({"jsonrpc": "2.0", "id": request_id, "result": result})


def _progress(request_id: object, params: dict[str, object]) -> None:
    arguments = params.get("arguments") or {}
    assert isinstance(arguments, dict)
    time.sleep(float(arguments.get("delay", 0)))
    meta = params.get("_meta") or {}
    assert isinstance(meta, dict)
    if "progressToken" in meta:
        note = {"progressToken": meta["progressToken"], "progress": 1, "message": str(arguments.get("who"))}
        _write({"jsonrpc": "2.0", "method": "notifications/progress", "params": note})
    _reply(request_id, {"content": [{"type": "text", "text": f"done {arguments.get('who')}"}]})


def main() -> None:
    if os.environ.get("FLAKY_PIDFILE"):
        with open(os.environ["FLAKY_PIDFILE"], "a") as pids:
            pids.write(f"{os.getpid()}\n")
    if os.environ.get("FLAKY_IGNORE_TERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve()
    time.sleep(float(os.environ.get("FLAKY_EXIT_DELAY", "0")))


def serve() -> None:
    for line in sys.stdin:
        message = json.loads(line)
        method, request_id = message.get("method"), message.get("id")
        if request_id is None:
            continue
        if method == "initialize":
            _reply(
                request_id,
                {
                    "protocolVersion": message["params"]["protocolVersion"],
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "flaky", "version": "1"},
                },
            )
        elif method == "tools/list":
            tools = [
                {
                    "name": name,
                    "description": _description() if name == "ok" else name,
                    "inputSchema": {"type": "object"},
                }
                for name in ("ok", "crash", "hang", "garbage", "progress")
            ]
            if os.environ.get("FLAKY_TWICE") and tools[0]["description"] != "answers ok":
                tools.append({"name": "ok", "description": "answers ok", "inputSchema": {"type": "object"}})
            _reply(request_id, {"tools": tools})
        elif method == "tools/call":
            with open(os.environ["FLAKY_LOG"], "a") as log:
                log.write(message["params"]["name"] + "\n")
            name = message["params"]["name"]
            if name == "progress":
                threading.Thread(target=_progress, args=(request_id, message["params"]), daemon=True).start()
            elif name == "crash":
                os._exit(3)
            elif name == "garbage":
                _write({"jsonrpc": "2.0", "id": request_id})
            elif name == "huge":  # one line over the gateway's 64 MiB cap
                _reply(request_id, {"content": [{"type": "text", "text": "x" * (64 * 1024 * 1024)}]})
            elif name != "hang":
                _reply(request_id, {"content": [{"type": "text", "text": f"ok pid={os.getpid()}"}]})
        else:
            _write({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": "no"}})


if __name__ == "__main__":
    main()
