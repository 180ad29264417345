"""A transparent stdio relay that logs every line the gateway sends upstream.

``python tap.py LOG -- CMD...`` runs CMD as a child and copies stdin to it
and its stdout back, appending each line it receives to LOG. Put in front
of a third-party server, it shows exactly which messages reached the
server, without changing the server.
"""

from __future__ import annotations

import subprocess
import sys
import threading


def main() -> None:
    log_path = sys.argv[1]
    command = sys.argv[sys.argv.index("--") + 1 :]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    out = child.stdout

    def pump_out() -> None:
        for line in iter(out.readline, b""):
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()

    threading.Thread(target=pump_out, daemon=True).start()
    with open(log_path, "ab", buffering=0) as log:
        for line in iter(sys.stdin.buffer.readline, b""):
            log.write(line)
            child.stdin.write(line)
            child.stdin.flush()
    child.stdin.close()
    child.wait()


if __name__ == "__main__":
    main()
