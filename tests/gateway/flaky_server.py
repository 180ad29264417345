"""A deliberately faulty stdio MCP server, for the gateway's fault tests.

Tools: ``ok`` answers; ``crash`` exits mid-call; ``hang`` never answers;
``garbage`` answers with a JSON object that is not JSON-RPC. The ``ok``
tool's description comes from the file named by ``FLAKY_DESCRIPTION`` when
it exists, so a test can change a tool definition under the gateway.
Every tools/call received is appended to ``FLAKY_LOG``. For lifecycle
tests: its pid is appended to ``FLAKY_PIDFILE``; after stdin ends it lingers
``FLAKY_EXIT_DELAY`` seconds, and ``FLAKY_IGNORE_TERM=1`` makes it ignore
SIGTERM (a slow-to-exit server).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def _description() -> str:
    path = os.environ.get("FLAKY_DESCRIPTION", "")
    if path and os.path.exists(path):
        with open(path) as fh:
            return fh.read()
    return "answers ok"


def _reply(request_id: object, result: object) -> None:
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}) + "\n")
    sys.stdout.flush()


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
                for name in ("ok", "crash", "hang", "garbage")
            ]
            _reply(request_id, {"tools": tools})
        elif method == "tools/call":
            with open(os.environ["FLAKY_LOG"], "a") as log:
                log.write(message["params"]["name"] + "\n")
            name = message["params"]["name"]
            if name == "crash":
                os._exit(3)
            if name == "garbage":
                sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": request_id}) + "\n")
                sys.stdout.flush()
            elif name != "hang":
                _reply(request_id, {"content": [{"type": "text", "text": f"ok pid={os.getpid()}"}]})
        else:
            sys.stdout.write(
                json.dumps({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": "no"}})
                + "\n"
            )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
