"""Shared constants and plain helpers for the core suite (importable by spawned workers)."""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
import time
from typing import Any

from mcp_attest import Key, SQLiteReplayStore, canonicalize, server_fingerprint
from mcp_attest.envelope import b64url_encode, signing_input

NOW = 1_780_000_000.0  # 2026-05-28T20:26:40Z
IAT = "2026-05-28T20:26:40Z"
ALGS = ("HS256", "ES256", "RS256")
ISS = {
    "HS256": "https://hs.issuer.test",
    "ES256": "https://es.issuer.test",
    "RS256": "https://rs.issuer.test",
}
KID = {"HS256": "hs-1", "ES256": "es-1", "RS256": "rs-1"}
SUB = "agent:tester"
SERVER = server_fingerprint("files", "prod")
OTHER_SERVER = server_fingerprint("mail", "prod")
TOOL = "read_file"
ARGS: dict[str, Any] = {"path": "/srv/report.txt", "lines": 10}
NONCE = b64url_encode(bytes(range(32)))
ARGS_DIGEST = b64url_encode(hashlib.sha256(canonicalize(ARGS)).digest())
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def jcs_text(value: Any) -> str:
    return canonicalize(value).decode("utf-8")


def entry(
    *,
    name: str = TOOL,
    server: str = SERVER,
    args: Any = None,
    projection: str | None = None,
    ref: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One toolCalls entry; by default an identity projection of ``args``."""
    out: dict[str, Any] = {"name": name, "serverFingerprint": server}
    if projection is None and ref is None:
        projection = jcs_text(ARGS if args is None else args)
    if projection is not None:
        out["argsProjection"] = projection
    if ref is not None:
        out["argsRef"] = ref
    return out


def unsigned_wire(
    alg: str = "HS256",
    *,
    calls: list[dict[str, Any]] | None = None,
    iat: str = IAT,
    exp: Any = 300,
    nonce: str | None = None,
    iss: str | None = None,
    kid: str | None = None,
    intent: str = "summarize the report",
    planner_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "issuerAsserted": {
            "alg": alg,
            "iss": ISS.get(alg, ISS["HS256"]) if iss is None else iss,
            "sub": SUB,
            "secretVersion": KID.get(alg, "hs-1") if kid is None else kid,
            "iat": iat,
            "expSeconds": exp,
            "nonce": b64url_encode(secrets.token_bytes(32)) if nonce is None else nonce,
        },
        "plannerDeclared": {"intent": intent, **(planner_extra or {})},
        "payloadDerived": {"toolCalls": calls if calls is not None else [entry()]},
    }


def sign_wire(wire: dict[str, Any], key: Key) -> dict[str, Any]:
    """Return a copy of ``wire`` with a fresh signature by ``key`` over its C1 bytes."""
    out = copy.deepcopy(wire)
    out.pop("signature", None)
    out["signature"] = key.sign(signing_input(out))
    return out


def dumps(wire: Any) -> bytes:
    return json.dumps(wire, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Clock:
    """An injectable clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sqlite_claim_worker(path: str, key: bytes, start_at: float, result_queue: Any) -> None:
    """Spawned process: open the shared store, wait for the start time, claim once."""
    store = SQLiteReplayStore(path)
    store.is_claimed(key, NOW)  # open the connection and WAL before the race
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    won = store.claim(key, NOW + 600, NOW)
    store.close()
    result_queue.put(won)


HS = "HS256"


def reason_of(verdict: Any) -> tuple[Any, Any]:
    """(reason, detail): what most assertions compare."""
    return verdict.reason, verdict.detail
