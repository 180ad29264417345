"""Writer and claimer processes for the evidence reliability tests.

Run as a script so each worker is a real, separate process (own
interpreter, own connections), exactly like verifier replicas. Protocol on
stdio: the worker prints ``ready`` once its store is open, waits for a line
on stdin (so all workers start together), then works:

* ``claim URL KEYS SEED``: claims replay keys 0..KEYS-1 in a shuffled order
  and prints one JSON line ``{"won": [...], "errors": n}``;
* ``append URL COUNT WORKER`` (or ``submit ...``): records COUNT decisions
  with ``AuditLog.append`` (or ``submit``, queued on PostgreSQL) and prints
  each acknowledged record's attestation id on its own line, flushed, as
  soon as the call returns (the crash test kills the worker mid-burst and
  checks every printed one); ids, not seqs, since a queued record has no
  seq yet;
* ``guard URL KEYS FINGERPRINT``: a guard built with default settings
  (``from_keyring(audit=URL)``) decides the insider scenario's calls, then
  the process exits cleanly, as a server shutting down would.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

from mcp_attest import Keyring
from mcp_attest.mcp import AttestationGuard
from mcp_attest.replay import StoreUnavailableError, replay_key
from mcp_attest.stores import open_audit_log, open_replay_store
from mcp_attest.verdict import ArgsBinding, Verdict


def _start() -> None:
    print("ready", flush=True)
    sys.stdin.readline()


def claim(url: str, keys: int, seed: int) -> None:
    store = open_replay_store(url)
    order = list(range(keys))
    random.Random(seed).shuffle(order)
    _start()
    won, errors = [], 0
    now = time.time()
    for i in order:
        try:
            if store.claim(replay_key("iss", f"nonce-{i:08d}-padding", 0), now + 600, now):
                won.append(i)
        except StoreUnavailableError as exc:
            errors += 1
            print(f"claim {i}: {exc}", file=sys.stderr, flush=True)
    print(json.dumps({"won": won, "errors": errors}), flush=True)


def append(url: str, count: int, worker: int, method: str) -> None:
    log = open_audit_log(url)
    record = log.submit if method == "submit" else log.append
    _start()
    out = sys.stdout
    for i in range(count):
        verdict = Verdict(
            accepted=True,
            reason=None,
            detail=None,
            verified_at=time.time(),
            verifier_fingerprint="sha256:worker",
            attestation_id=f"{worker:032x}{i:032x}",
            iss="https://issuer.example",
            sub=f"agent-{worker}",
            secret_version="k1",
            alg="HS256",
            tool_call_index=0,
            args_binding=ArgsBinding.IDENTITY,
        )
        record(verdict, tool="search", arguments={"q": f"w{worker}-{i}"})
        out.write(f"{verdict.attestation_id}\n")
        out.flush()
    log.close()
    print("done", flush=True)


def guard(url: str, keys: str, fingerprint: str) -> None:
    from _servers import insider_calls  # noqa: PLC0415 - only this command needs it

    ring = Keyring.load(keys)
    checker = AttestationGuard.from_keyring(ring, server_fingerprint=fingerprint, audit=url)
    for tool, args, envelope in insider_calls(ring, fingerprint):
        meta = None if envelope is None else {"attestation": envelope}
        asyncio.run(checker.check(tool, args, meta))
    print("done", flush=True)


if __name__ == "__main__":
    command, target = sys.argv[1], sys.argv[2]
    if command == "claim":
        claim(target, int(sys.argv[3]), int(sys.argv[4]))
    elif command == "guard":
        guard(target, sys.argv[3], sys.argv[4])
    else:
        append(target, int(sys.argv[3]), int(sys.argv[4]), command)
