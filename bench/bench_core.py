"""Core speed figures, each as a ratio to a baseline measured in the same run.

Run: ``.venv/bin/python bench/bench_core.py [--quick] [--markdown]``.

1-3. Full ``Verifier.verify`` from received bytes through the in-memory
     replay claim, per algorithm, against the raw ``hmac``/``cryptography``
     verify of the same signing input.
4.   Canonicalization of the envelope body and of the arguments against
     ``rfc8785.dumps``, byte-identical.
5.   In-memory replay store bytes per live entry at 1M entries.
"""

from __future__ import annotations

import argparse
import gc
import hmac
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import orjson
import rfc8785
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from mcp_attest import ES256Key, HS256Key, InMemoryReplayStore, Issuer, Keyring, RS256Key, Verifier
from mcp_attest.canonical import canonicalize
from mcp_attest.envelope import signing_input

SERVER = "sha256:" + "5e" * 32
ARGS: dict[str, Any] = {
    "path": "/srv/reports/2026/q3/quarterly-retention-report-final.txt",
    "reason": "archive obsolete report per the Q4 retention policy, ticket OPS-4711",
    "recursive": False,
    "dryRun": False,
    "maxFiles": 25,
    "tags": ["retention", "q4", "archive", "finance"],
    "owner": {"team": "finance-ops", "contact": "ops@example.com"},
}


def _best_per_call(fn: Callable[[], None], n: int, repeats: int) -> float:
    """Seconds per call: the best of ``repeats`` runs of ``n`` calls (least noise)."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best


def _keys(alg: str) -> Any:
    if alg == "HS256":
        return HS256Key("k1", os.urandom(32))
    if alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        return ES256Key("k1", private.public_key(), private)
    rsa_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return RS256Key("k1", rsa_private.public_key(), rsa_private)


def _raw_verifier(key: Any, message: bytes, signature_hex: str) -> Callable[[], None]:
    """The baseline: what a caller holding the key does with cryptography/hmac directly."""
    if isinstance(key, HS256Key):
        secret = key._secret
        return lambda: (
            hmac.compare_digest(hmac.digest(secret, message, "sha256").hex(), signature_hex) and None
        )
    if isinstance(key, ES256Key):
        der = encode_dss_signature(int(signature_hex[:64], 16), int(signature_hex[64:], 16))
        public = key._public
        algo = ec.ECDSA(hashes.SHA256())
        return lambda: public.verify(der, message, algo)
    sig = bytes.fromhex(signature_hex)
    rsa_public = key._public
    pad, sha = padding.PKCS1v15(), hashes.SHA256()
    return lambda: rsa_public.verify(sig, message, pad, sha)


def bench_verify(alg: str, n: int, repeats: int) -> dict[str, Any]:
    key = _keys(alg)
    ring = Keyring({"agent://bench": {"k1": key}})
    issuer = Issuer(ring, iss="agent://bench", sub="user:alice")
    wires = [
        issuer.sign(
            tool="delete_file", arguments=ARGS, server_fingerprint=SERVER, intent="archive report"
        ).to_json()
        for _ in range(n * repeats)
    ]
    size = len(wires[0])
    env = orjson.loads(wires[0])
    message = signing_input(env)
    raw = _raw_verifier(key, message, env["signature"])
    raw_t = _best_per_call(raw, n, repeats)

    best = float("inf")
    for r in range(repeats):
        verifier = Verifier(ring, SERVER, replay_store=InMemoryReplayStore())
        batch = wires[r * n : (r + 1) * n]
        gc.collect()
        start = time.perf_counter()
        for wire in batch:
            verdict = verifier.verify(wire, tool="delete_file", arguments=ARGS)
        best = min(best, (time.perf_counter() - start) / n)
        assert verdict.accepted, verdict
    return {
        "alg": alg,
        "wire_bytes": size,
        "raw_us": raw_t * 1e6,
        "ours_us": best * 1e6,
        "ratio": best / raw_t,
    }


def bench_canonical(n: int, repeats: int) -> list[dict[str, Any]]:
    key = HS256Key("k1", os.urandom(32))
    issuer = Issuer(Keyring({"agent://bench": {"k1": key}}), iss="agent://bench", sub="user:alice")
    env = issuer.sign(tool="delete_file", arguments=ARGS, server_fingerprint=SERVER, intent="archive report")
    body = {k: v for k, v in env.to_wire().items() if k != "signature"}
    rows = []
    for name, doc in (("envelope body", body), ("arguments", ARGS)):
        assert canonicalize(doc) == rfc8785.dumps(doc)
        base = _best_per_call(lambda d=doc: rfc8785.dumps(d), n, repeats)  # type: ignore[misc]
        ours = _best_per_call(lambda d=doc: canonicalize(d), n, repeats)  # type: ignore[misc]
        rows.append({"what": name, "rfc8785_us": base * 1e6, "ours_us": ours * 1e6, "speedup": base / ours})
    return rows


def bench_replay_memory(entries: int) -> dict[str, Any]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    store = InMemoryReplayStore(max_entries=entries + 1)
    now = time.time()
    exp = now + 3600
    for i in range(entries):
        store.claim(i.to_bytes(32, "little"), exp, now)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    per_entry = (after - before) / entries
    # A plain dict of 32-byte digests to expiry floats, for scale.
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    plain = {os.urandom(32): exp for _ in range(min(entries, 200_000))}
    plain_per = (tracemalloc.get_traced_memory()[0] - before) / len(plain)
    tracemalloc.stop()
    del plain
    return {"entries": entries, "bytes_per_entry": per_entry, "dict_bytes_per_entry": plain_per}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    opts = parser.parse_args()
    scale = 10 if opts.quick else 1
    print(f"machine: {machine()}")
    targets = {"HS256": 10.0, "ES256": 1.3, "RS256": 2.0}
    counts = {"HS256": 20_000, "ES256": 3_000, "RS256": 3_000}
    print("\nverify from wire through in-memory replay claim, vs raw verify of the same signing input")
    print(f"{'alg':6} {'wire B':>7} {'raw us':>8} {'ours us':>8} {'ratio':>6} {'target':>7}  met")
    for alg in ("HS256", "ES256", "RS256"):
        r = bench_verify(alg, max(100, counts[alg] // scale), 5)
        met = "yes" if r["ratio"] <= targets[alg] else "NO"
        print(
            f"{alg:6} {r['wire_bytes']:>7} {r['raw_us']:>8.2f} {r['ours_us']:>8.2f} "
            f"{r['ratio']:>5.2f}x {targets[alg]:>6.1f}x  {met}"
        )
    print("\ncanonicalization vs rfc8785.dumps (byte-identical), target >= 10x")
    for row in bench_canonical(max(200, 20_000 // scale), 5):
        met = "yes" if row["speedup"] >= 10 else "NO"
        print(
            f"{row['what']:14} rfc8785 {row['rfc8785_us']:7.2f} us  ours {row['ours_us']:6.2f} us  "
            f"{row['speedup']:5.1f}x  {met}"
        )
    entries = 1_000_000 // scale
    mem = bench_replay_memory(entries)
    met = "yes" if mem["bytes_per_entry"] <= 100 else "NO"
    print(
        f"\nin-memory replay store at {entries:,} live entries: {mem['bytes_per_entry']:.1f} B/entry "
        f"(plain dict: {mem['dict_bytes_per_entry']:.1f}), target <= 100  {met}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
