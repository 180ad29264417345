"""Core speed figures, each as a ratio to the raw primitive measured in the same process.

Run: ``.venv/bin/python bench/bench_core.py [--quick] [--no-reference]``.

1. ``Verifier.verify`` from the received wire bytes and the arguments to a
   verdict, in-memory replay read and claim included, for the pure-Python
   and the compiled (mypyc) build, each in its own process, against the
   raw ``hmac``/``cryptography`` verify of the same signing input.
2. How that grows with the size of the arguments (1 KB, 64 KB, 1 MB,
   committed by ``argsRef`` digest since a projection that large cannot fit
   the 64 KiB envelope) and with the number of toolCalls entries (1, 8, 64,
   the called tool being the last).
3. Peers over an equivalent payload, each against the raw primitive of its
   own signing input in its own process: PyJWT ``decode``, joserfc
   ``deserialize_compact`` + ``json.loads``, and the published reference
   implementation (``vaara``, in a virtualenv of its own under .cache/).
4. Canonicalization against ``rfc8785.dumps`` (byte-identical) and the
   in-memory replay store's bytes per live entry.

Times are the CPU time of the benchmark thread (``time.thread_time``), the
best of several rounds, raw and measured code alternating round by round:
on a machine shared with other work, wall-clock minima still include time
the thread spent descheduled, CPU time does not.
"""

from __future__ import annotations

import argparse
import gc
import hmac
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from mcp_attest import (
    InMemoryReplayStore,
    Issuer,
    Keyring,
    PlannedCall,
    RS256Key,
    Verifier,
    active_build,
    generate_key,
)
from mcp_attest._build import COMPILED
from mcp_attest.canonical import canonicalize
from mcp_attest.envelope import Envelope

try:
    import jwt
except ImportError:  # a peer, measured when installed
    jwt = None
try:
    from joserfc import jws
    from joserfc.jwk import ECKey, OctKey, RSAKey
except ImportError:  # a peer, measured when installed
    jws = None

ROOT = Path(__file__).resolve().parents[1]
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
TARGETS = {"HS256": (10.0, 6.0), "ES256": (1.3, 1.15), "RS256": (2.0, 1.5)}  # target, stretch
REFERENCE = "vaara==2.15.0"


def best_pair(
    raw: Callable[[], object], ours: Callable[[], object], n: int, rounds: int
) -> tuple[float, float]:
    """Seconds per call of ``raw`` and ``ours``: best of ``rounds`` alternating runs of ``n`` calls."""
    best_raw = best_ours = float("inf")
    for _ in range(rounds):
        for fn, slot in ((raw, 0), (ours, 1)):
            gc.collect()
            start = time.thread_time()
            for _ in range(n):
                fn()
            spent = (time.thread_time() - start) / n
            if slot:
                best_ours = min(best_ours, spent)
            else:
                best_raw = min(best_raw, spent)
    return best_raw, best_ours


def raw_verifier(alg: str, message: bytes) -> Callable[[], object]:
    """What a caller holding the key does with hmac/cryptography directly (DER pre-built)."""
    if alg == "HS256":
        secret = os.urandom(32)
        sig = hmac.digest(secret, message, "sha256").hex()
        return lambda: hmac.compare_digest(hmac.digest(secret, message, "sha256").hex(), sig)
    if alg == "ES256":
        ec_key = ec.generate_private_key(ec.SECP256R1())
        algo = ec.ECDSA(hashes.SHA256())
        der = ec_key.sign(message, algo)
        ec_public = ec_key.public_key()
        return lambda: ec_public.verify(der, message, algo)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pad, sha = padding.PKCS1v15(), hashes.SHA256()
    rsa_sig = rsa_key.sign(message, pad, sha)
    rsa_public = rsa_key.public_key()
    return lambda: rsa_public.verify(rsa_sig, message, pad, sha)


# ---------------------------------------------------------------------------
# Child: one build of mcp-attest, imported from PYTHONPATH
# ---------------------------------------------------------------------------


def _rows(size: int) -> dict[str, Any]:
    """Arguments of about ``size`` bytes of JCS, shaped like a batch of records."""
    row = {"id": 0, "name": "record-000000", "tags": ["alpha", "beta"], "active": True, "score": 17}
    count = max(1, size // (len(json.dumps(row, separators=(",", ":"))) + 1))
    return {"table": "events", "rows": [{**row, "id": i, "name": f"record-{i:06d}"} for i in range(count)]}


def child(quick: bool) -> dict[str, Any]:
    rounds = 5
    counts = {"HS256": 2000, "ES256": 400, "RS256": 400}
    if quick:
        counts = {alg: n // 10 for alg, n in counts.items()}

    def issuer(alg: str) -> tuple[Issuer, Keyring]:
        ring = Keyring().with_key("agent://bench", generate_key(alg, "k1") if alg != "RS256" else _rsa2048())
        return Issuer(ring, iss="agent://bench", sub="user:alice"), ring

    def measure(
        signer: tuple[Issuer, Keyring], wires: list[bytes], tool: str, args: Any, n: int
    ) -> dict[str, Any]:
        iss, ring = signer
        message = Envelope.from_json(wires[0]).signing_input()
        verifier = Verifier(ring, SERVER, replay_store=InMemoryReplayStore())
        fresh: Iterator[bytes] = iter(wires)
        last: list[Any] = []

        def ours() -> None:
            last.append(verifier.verify(next(fresh), tool=tool, arguments=args).accepted)

        raw_t, ours_t = best_pair(raw_verifier(iss.alg, message), ours, n, rounds)
        assert all(last), "a benchmark envelope was rejected"
        return {
            "wire": len(wires[0]),
            "raw_us": raw_t * 1e6,
            "ours_us": ours_t * 1e6,
            "ratio": ours_t / raw_t,
        }

    out: dict[str, Any] = {"build": active_build(), "verify": {}, "args": {}, "calls": {}, "canonical": {}}
    for alg, n in counts.items():
        signer = issuer(alg)
        wires = [
            signer[0]
            .sign(tool="delete_file", arguments=ARGS, server_fingerprint=SERVER, intent="archive report")
            .to_json()
            for _ in range(n * rounds)
        ]
        out["verify"][alg] = measure(signer, wires, "delete_file", ARGS, n)

    hs_signer = issuer("HS256")
    hs = hs_signer[0]
    for size in (1024, 64 * 1024, 1024 * 1024):
        args = _rows(size)
        n = max(5, (200 if quick else 2000) * 1024 // size)
        wires = [
            hs.sign(
                tool="import",
                arguments=args,
                server_fingerprint=SERVER,
                intent="import rows",
                commit="ref",
                ref_uri="urn:bench:rows",
            ).to_json()
            for _ in range(n * rounds)
        ]
        out["args"][str(size)] = {
            **measure(hs_signer, wires, "import", args, n),
            "args_bytes": len(canonicalize(args)),
        }
    for entries in (1, 8, 64):
        n = max(20, (200 if quick else 2000) // entries)
        plan = [PlannedCall(f"tool_{i}", ARGS, SERVER) for i in range(entries)]
        wires = [hs.sign_plan(plan, intent="batch").to_json() for _ in range(n * rounds)]
        out["calls"][str(entries)] = measure(hs_signer, wires, f"tool_{entries - 1}", ARGS, n)

    body = Envelope.from_json(wires[0]).wire
    for name, doc in (("envelope (64 calls)", body), ("arguments", ARGS)):
        assert canonicalize(doc) == rfc8785.dumps(doc)
        base, ours_c = best_pair(lambda d=doc: rfc8785.dumps(d), lambda d=doc: canonicalize(d), 200, rounds)
        out["canonical"][name] = {"rfc8785_us": base * 1e6, "ours_us": ours_c * 1e6, "speedup": base / ours_c}
    return out


def _rsa2048() -> Any:
    """RS256 at 2048 bits, the common deployed size (``generate_key`` makes 3072)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return RS256Key("k1", private.public_key(), private)


# ---------------------------------------------------------------------------
# Peers
# ---------------------------------------------------------------------------


def _jws_keys(alg: str) -> tuple[Any, Any]:
    if alg == "HS256":
        secret = os.urandom(32)
        return secret, secret
    private: Any = (
        ec.generate_private_key(ec.SECP256R1())
        if alg == "ES256"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    return private, private.public_key()


def peers(quick: bool) -> dict[str, dict[str, Any]]:
    """PyJWT and joserfc over a JWS whose payload is our envelope body: parse, verify, decode."""
    body = {"att": {"iss": "agent://bench", "sub": "user:alice", "nonce": "A" * 43, "args": ARGS}}
    results: dict[str, dict[str, Any]] = {}
    counts = {"HS256": 200 if quick else 2000, "ES256": 40 if quick else 400, "RS256": 40 if quick else 400}
    if jwt is None:
        print("PyJWT not installed: skipped", file=sys.stderr)
    else:
        row: dict[str, Any] = {}
        for alg, n in counts.items():
            private, public = _jws_keys(alg)
            token = jwt.encode(body, private, algorithm=alg)
            message = token.rsplit(".", 1)[0].encode()
            raw_t, peer_t = best_pair(
                raw_verifier(alg, message), lambda t=token, k=public, a=alg: jwt.decode(t, k, [a]), n, 5
            )
            row[alg] = {"raw_us": raw_t * 1e6, "ours_us": peer_t * 1e6, "ratio": peer_t / raw_t}
        results["PyJWT decode"] = row
    if jws is None:
        print("joserfc not installed: skipped", file=sys.stderr)
    else:
        row = {}
        payload = json.dumps(body, separators=(",", ":")).encode()
        for alg, n in counts.items():
            private, _ = _jws_keys(alg)
            key: Any
            if alg == "HS256":
                key = OctKey.import_key(private)
            elif alg == "ES256":
                key = ECKey.import_key(private)
            else:
                key = RSAKey.import_key(private)
            token = jws.serialize_compact({"alg": alg}, payload, key, algorithms=[alg])
            message = token.rsplit(".", 1)[0].encode()

            def decode(t: str = token, k: Any = key, a: str = alg) -> Any:
                return json.loads(jws.deserialize_compact(t, k, algorithms=[a]).payload)

            raw_t, peer_t = best_pair(raw_verifier(alg, message), decode, n, 5)
            row[alg] = {"raw_us": raw_t * 1e6, "ours_us": peer_t * 1e6, "ratio": peer_t / raw_t}
        results["joserfc deserialize + json.loads"] = row
    return results


# Runs in the reference implementation's own virtualenv; prints JSON.
REFERENCE_SIDE = r"""
import gc, hmac, json, os, sys, time
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from vaara.attestation import tool_call_attestation as t

quick, args, server = json.loads(sys.argv[1])
def best_pair(raw, ours, n, rounds=5):
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for slot, fn in enumerate((raw, ours)):
            gc.collect(); start = time.thread_time()
            for _ in range(n):
                fn()
            best[slot] = min(best[slot], (time.thread_time() - start) / n)
    return best
out = {}
for alg, n in (("HS256", 2000), ("ES256", 400), ("RS256", 400)):
    n = n // 10 if quick else n
    if alg == "HS256":
        private = public = os.urandom(32)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        public = private.public_key()
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = private.public_key()
    call = t.ToolCallBinding(name="delete_file", server_fingerprint=server, args=t.make_args_projection(args))
    env = t.emit_attestation(
        planner_declared=t.PlannerDeclared(intent="archive report"),
        payload_derived=t.PayloadDerived(tool_calls=(call,)), iss="agent://bench", sub="user:alice",
        secret_version="k1", alg=alg, signing_material=private)
    doc = env.to_dict()
    wire = json.dumps(doc, separators=(",", ":")).encode()
    message = t.canonical_json({k: v for k, v in doc.items() if k != "signature"})
    if alg == "HS256":
        sig = hmac.digest(private, message, "sha256").hex()
        raw = lambda: hmac.compare_digest(hmac.digest(private, message, "sha256").hex(), sig)
    elif alg == "ES256":
        der = private.sign(message, ec.ECDSA(hashes.SHA256()))
        raw = lambda: public.verify(der, message, ec.ECDSA(hashes.SHA256()))
    else:
        rsig = private.sign(message, padding.PKCS1v15(), hashes.SHA256())
        raw = lambda: public.verify(rsig, message, padding.PKCS1v15(), hashes.SHA256())
    now = time.time()
    def verify():
        e = t.parse_attestation(json.loads(wire))
        assert t.verify_attestation(e, verifying_material=public, now=now)
        for c in e.payload_derived.tool_calls:
            assert t.verify_args_commitment(c.args, runtime_arguments=args).ok
    raw_t, ref_t = best_pair(raw, verify, n)
    out[alg] = {"raw_us": raw_t * 1e6, "ours_us": ref_t * 1e6, "ratio": ref_t / raw_t}
json.dump(out, sys.stdout)
"""


def reference(quick: bool) -> dict[str, Any] | str:
    """The reference implementation in .cache/bench-reference; a reason string when it cannot run."""
    venv = ROOT / ".cache" / "bench-reference"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", REFERENCE],
        capture_output=True,
        text=True,
        check=False,
    )
    if pip.returncode:
        return f"{REFERENCE} did not install: {(pip.stderr.strip().splitlines() or ['?'])[-1]}"
    run = subprocess.run(
        [str(python), "-c", REFERENCE_SIDE, json.dumps([quick, ARGS, SERVER])],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode:
        return f"{REFERENCE} failed: {(run.stderr.strip().splitlines() or ['?'])[-1]}"
    return json.loads(run.stdout)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------
# Parent: both builds, peers, report
# ---------------------------------------------------------------------------


def build_trees(tmp: Path) -> dict[str, Path | None]:
    """Where each build imports from: a copy of the sources, and the venv or a fresh mypyc build."""
    pure = tmp / "pure"
    shutil.copytree(
        ROOT / "src" / "mcp_attest", pure / "mcp_attest", ignore=shutil.ignore_patterns("*.so", "__pycache__")
    )
    trees: dict[str, Path | None] = {"pure": pure}
    if active_build() == COMPILED:
        trees["compiled"] = None  # the venv's own (editable) install
    else:
        target = tmp / "compiled"
        print("building the compiled variant (mypyc, about half a minute)...", file=sys.stderr)
        env = {k: v for k, v in os.environ.items() if k != "MCP_ATTEST_PURE"}
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
             "--target", str(target), str(ROOT)],
            check=True, env=env,
        )  # fmt: skip
        trees["compiled"] = target
    return trees


def run_child(tree: Path | None, quick: bool) -> dict[str, Any]:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    argv = [sys.executable, __file__, "--child"] + (["--quick"] if quick else [])
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def bench_replay_memory(entries: int) -> dict[str, Any]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    store = InMemoryReplayStore(max_entries=entries + 1)
    now = time.time()
    exp = now + 3600
    for i in range(entries):
        store.claim(i.to_bytes(32, "little"), exp, now)
    per_entry = (tracemalloc.get_traced_memory()[0] - before) / entries
    tracemalloc.stop()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    plain = {os.urandom(32): exp for _ in range(min(entries, 200_000))}
    plain_per = (tracemalloc.get_traced_memory()[0] - before) / len(plain)
    tracemalloc.stop()
    return {"entries": entries, "bytes_per_entry": per_entry, "dict_bytes_per_entry": plain_per}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, load average {load}"
    )


def _verify_table(title: str, rows: dict[str, dict[str, Any]], first: str) -> None:
    print(f"\n{title}")
    print(f"| {first} | raw us | full us | ratio | target | stretch |")
    print("|---|---|---|---|---|---|")
    for alg, r in rows.items():
        target, stretch = TARGETS[alg]
        t_met = "met" if r["ratio"] <= target else "**not met**"
        s_met = "met" if r["ratio"] <= stretch else "not met"
        print(
            f"| {alg} | {r['raw_us']:.2f} | {r['ours_us']:.2f} | {r['ratio']:.2f}x "
            f"| <= {target}x {t_met} | <= {stretch}x {s_met} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference implementation")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        json.dump(child(opts.quick), sys.stdout)
        return 0
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: run_child(tree, opts.quick) for name, tree in build_trees(Path(tmp)).items()}
    for res in results.values():
        title = f"verify, {res['build']} build (wire bytes + arguments -> verdict, replay claim included)"
        _verify_table(title, res["verify"], "alg")
    print("\nHS256 verify vs argument size (argsRef digest) and vs toolCalls entries (last one called)")
    print("| case | " + " | ".join(f"{name} us | ratio" for name in results) + " | raw us |")
    print("|---|" + "---|---|" * len(results) + "---|")
    for group, label in (("args", "arguments {} B"), ("calls", "{} toolCalls")):
        for key in next(iter(results.values()))[group]:
            cells = [results[name][group][key] for name in results]
            what = label.format(cells[0].get("args_bytes", key))
            row = " | ".join(f"{c['ours_us']:.1f} | {c['ratio']:.1f}x" for c in cells)
            print(f"| {what} | {row} | {cells[0]['raw_us']:.1f} |")
    print("\ncanonicalization vs rfc8785.dumps (byte-identical)")
    for name, res in results.items():
        for what, c in res["canonical"].items():
            print(f"  {name:8} {what:20} rfc8785 {c['rfc8785_us']:8.2f} us  ours {c['ours_us']:7.2f} us  "
                  f"{c['speedup']:5.1f}x")  # fmt: skip
    peer_rows = peers(opts.quick)
    ref = "skipped (--no-reference)" if opts.no_reference else reference(opts.quick)
    if isinstance(ref, str):
        print(f"\nreference implementation: {ref}")
    else:
        peer_rows[f"reference ({REFERENCE}, no replay)"] = ref
    print("\npeers, each as a ratio to the raw primitive of its own signing input (same process)")
    print("| verifier | HS256 | ES256 | RS256 |")
    print("|---|---|---|---|")
    for res in results.values():
        print(
            f"| mcp-attest, {res['build']} | "
            + " | ".join(f"{r['ratio']:.2f}x" for r in res["verify"].values())
            + " |"
        )
    for name, row in peer_rows.items():
        print(f"| {name} | " + " | ".join(f"{row[a]['ratio']:.2f}x" for a in TARGETS) + " |")
    entries = 100_000 if opts.quick else 1_000_000
    mem = bench_replay_memory(entries)
    print(
        f"\nin-memory replay store at {entries:,} live entries: {mem['bytes_per_entry']:.1f} B/entry "
        f"(plain dict: {mem['dict_bytes_per_entry']:.1f}), target <= 100"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
