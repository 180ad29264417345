"""Attacks on a verify-mode gateway (issue 10), each against the stdio and the HTTP listener.

The upstream is the faulty stdio server behind a tap that logs every line
the gateway sends it, so "never forwarded" is checked on what the server
actually received, notifications included. Audit records are read back
from the gateway's own audit database.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from gateway_helpers import HERE, PY, gateway_argv, received, tap

from mcp_attest import Issuer, Keyring, server_fingerprint
from mcp_attest.stores import open_audit_log

pytestmark = pytest.mark.slow

NAME = "flaky"
FP = server_fingerprint(NAME, "")
INIT = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
AUDIT_CLI = [
    PY,
    "-c",
    "import sys; from mcp_attest.cli import main; sys.exit(main(['audit', *sys.argv[1:]]))",
]
JSON_H = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


@pytest.fixture()
def issuer(hs_keys: Path) -> Issuer:
    return Issuer(Keyring.load(hs_keys), iss="agent", sub="tester")


def _signed(issuer: Issuer, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    return issuer.sign(tool=tool, arguments=args, server_fingerprint=FP, intent="attack test").to_wire()


def _call(rid: Any, tool: str, args: Any, envelope: Any = None, **meta: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"name": tool, "arguments": args}
    if envelope is not None:
        meta["attestation"] = envelope
    if meta:
        params["_meta"] = meta
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": "tools/call", "params": params}
    if rid is not None:
        message["id"] = rid
    return message


def _upstream(tmp_path: Path, **env: str) -> tuple[str, Path]:
    """The faulty server behind a tap: (its command, the tap log)."""
    log = tmp_path / "tap.log"
    settings = {"FLAKY_LOG": str(tmp_path / "calls.log"), **env}
    command = ["env", *(f"{k}={v}" for k, v in settings.items()), PY, HERE / "flaky_server.py"]
    return tap(log, *command), log


def _setup(hs_keys: Path, tmp_path: Path, *extra: str | Path, **env: str) -> tuple[list[str | Path], Path]:
    """Gateway flags in front of the tapped faulty server, and the tap log."""
    command, log = _upstream(tmp_path, **env)
    return _flags(hs_keys, tmp_path, command, *extra), log


def _flags(hs_keys: Path, tmp_path: Path, command: str, *extra: str | Path) -> list[str | Path]:
    return [
        "--keys",
        hs_keys,
        "--upstream-cmd",
        command,
        "--name",
        NAME,
        "--state-dir",
        tmp_path / "state",
        *extra,
    ]


def _records(tmp_path: Path) -> list[dict[str, Any]]:
    log = open_audit_log(f"sqlite:///{tmp_path / 'state' / 'audit.sqlite'}")
    try:
        return [r.to_dict() for r in log.records()]
    finally:
        log.close()


class Stdio:
    """The gateway's stdio listener driven line by line."""

    def __init__(self, *flags: str | Path) -> None:
        self.proc = subprocess.Popen(
            gateway_argv("--stdio", *flags), stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT})
        assert "result" in self.next()
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def send(self, message: Any) -> None:
        self.send_raw(orjson.dumps(message))

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data + b"\n")
        self.proc.stdin.flush()

    def next(self, timeout: float = 15) -> dict[str, Any]:
        return self.lines.get(timeout=timeout)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture()
def stdio_gateway() -> Iterator[Any]:
    peers: list[Stdio] = []

    def start(*flags: str | Path) -> Stdio:
        peer = Stdio(*flags)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.close()


class Http:
    def __init__(self, base: str, session: bool = True) -> None:
        self.url = base + "/mcp"
        self.http = httpx.Client(timeout=20)
        self.sid = ""
        if session:
            resp = self.post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT})
            self.sid = resp.headers["mcp-session-id"]
            self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def post_raw(self, body: bytes, **headers: str | bytes) -> httpx.Response:
        h = {**JSON_H, **({"mcp-session-id": self.sid} if self.sid else {}), **headers}
        return self.http.post(self.url, content=body, headers=h)

    def post(self, message: Any, **headers: str) -> httpx.Response:
        return self.post_raw(orjson.dumps(message), **headers)


def _text(reply: dict[str, Any]) -> str:
    return str(reply["result"]["content"][0]["text"])


def _refusal(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["result"]["isError"] is True, reply
    return dict(json.loads(_text(reply)))


# -- 1. notification bypass -------------------------------------------------------------------------


def test_notification_bypass_signed_tools_call_without_id_never_reaches_upstream(
    hs_keys: Path, tmp_path: Path, issuer: Issuer, http_gateway: Any, stdio_gateway: Any
) -> None:
    flags, log = _setup(hs_keys, tmp_path)
    stdio = stdio_gateway(*flags)
    stdio.send(_call(None, "ok", {"via": "stdio"}, _signed(issuer, "ok", {"via": "stdio"})))
    answer = stdio.next()
    assert answer["id"] is None and answer["error"]["code"] == -32600, answer
    stdio.send(_call(None, "ok", {"via": "stdio-unsigned"}))
    assert stdio.next()["error"]["code"] == -32600
    stdio.send(_call(1, "ok", {"m": 1}, _signed(issuer, "ok", {"m": 1})))
    assert "ok pid=" in _text(stdio.next())
    stdio.close()

    client = Http(http_gateway(*flags).url)
    resp = client.post(_call(None, "ok", {"via": "http"}, _signed(issuer, "ok", {"via": "http"})))
    assert resp.status_code == 400 and resp.json()["error"]["code"] == -32600, resp.text
    sessionless = Http(client.url.removesuffix("/mcp"), session=False)
    assert sessionless.post(_call(None, "ok", {"via": "sessionless"})).status_code == 400

    assert [c["params"]["arguments"] for c in received(log)] == [{"m": 1}]  # type: ignore[index]
    refused = [r for r in _records(tmp_path) if r["facts"].get("detail") == "gateway.not_a_request"]
    assert len(refused) == 4 and all(r["facts"]["accepted"] is False for r in refused)
    assert all(r["argsDigest"] is None and "envelope" not in r for r in refused)


# -- 3. duplicate in-flight ids ---------------------------------------------------------------------


def test_duplicate_inflight_id_is_refused_and_the_first_request_still_gets_its_answer(
    hs_keys: Path, tmp_path: Path, issuer: Issuer, http_gateway: Any, stdio_gateway: Any
) -> None:
    flags, _ = _setup(hs_keys, tmp_path, "--timeout", "3")
    stdio = stdio_gateway(*flags)
    stdio.send(_call(7, "hang", {}, _signed(issuer, "hang", {})))
    stdio.send(_call(7, "ok", {}, _signed(issuer, "ok", {})))
    second = stdio.next()
    assert second["id"] == 7 and second["error"]["code"] == -32600, second
    first = stdio.next()
    assert first["id"] == 7 and first["error"]["code"] == -32001  # the hang timed out, answered once

    client = Http(http_gateway(*flags).url)
    answers: list[httpx.Response] = []
    hung = threading.Thread(
        target=lambda: answers.append(client.post(_call(5, "hang", {}, _signed(issuer, "hang", {}))))
    )
    hung.start()
    time.sleep(0.5)
    dup = client.post(_call(5, "ok", {}, _signed(issuer, "ok", {})))
    assert dup.status_code == 409 and dup.json()["error"]["code"] == -32600, dup.text
    client.http.delete(client.url, headers={"mcp-session-id": client.sid})
    hung.join(10)
    # the DELETE cancelled the hung call: its POST ends with no answer, and its state is freed
    assert not hung.is_alive() and answers[0].status_code == 200 and "data:" not in answers[0].text


# -- 8. progress hijack -----------------------------------------------------------------------------


def _sse_events(resp: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in resp.text.splitlines() if line.startswith("data:")]


def test_progress_hijack_sessionless_clients_with_the_same_token_get_only_their_own_progress(
    hs_keys: Path, tmp_path: Path, issuer: Issuer, http_gateway: Any
) -> None:
    flags, _ = _setup(hs_keys, tmp_path)
    gw = http_gateway(*flags)
    streams: dict[str, list[dict[str, Any]]] = {}

    def victim_or_thief(who: str, delay: float) -> None:
        args = {"who": who, "delay": delay}
        message = _call(1, "progress", args, _signed(issuer, "progress", args), progressToken="shared")
        streams[who] = _sse_events(Http(gw.url, session=False).post(message))

    threads = [threading.Thread(target=victim_or_thief, args=("victim", 1.0))]
    threads[0].start()
    time.sleep(0.3)
    threads.append(threading.Thread(target=victim_or_thief, args=("thief", 2.0)))
    threads[1].start()
    for t in threads:
        t.join(20)
    for who in ("victim", "thief"):
        progress = [e for e in streams[who] if e.get("method") == "notifications/progress"]
        assert [p["params"]["message"] for p in progress] == [who], streams
        assert progress[0]["params"]["progressToken"] == "shared"
        assert streams[who][-1]["result"]["content"][0]["text"] == f"done {who}"


def test_progress_is_routed_back_with_the_clients_token_over_stdio(
    hs_keys: Path, tmp_path: Path, issuer: Issuer, stdio_gateway: Any
) -> None:
    flags, log = _setup(hs_keys, tmp_path)
    stdio = stdio_gateway(*flags)
    args = {"who": "me", "delay": 0}
    stdio.send(_call(3, "progress", args, _signed(issuer, "progress", args), progressToken={"o": 1}))
    assert stdio.next()["error"]["code"] == -32602  # an object is no progress token
    stdio.send(_call(4, "progress", args, _signed(issuer, "progress", args), progressToken="mine"))
    progress, answer = stdio.next(), stdio.next()
    assert progress["params"] == {"progressToken": "mine", "progress": 1, "message": "me"}
    assert answer["id"] == 4 and _text(answer) == "done me"
    forwarded = received(log)[-1]["params"]["_meta"]["progressToken"]  # type: ignore[index]
    assert forwarded != "mine"  # upstream sees the gateway's own token


# -- 10. stdio listener crashes ---------------------------------------------------------------------


def test_stdio_listener_survives_list_and_object_ids_and_object_progress_tokens(
    hs_keys: Path, tmp_path: Path, issuer: Issuer, stdio_gateway: Any, http_gateway: Any
) -> None:
    flags, log = _setup(hs_keys, tmp_path)
    stdio = stdio_gateway(*flags)
    hostile = [
        {"jsonrpc": "2.0", "id": [1], "method": "ping"},
        {"jsonrpc": "2.0", "id": {"a": 1}, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": True, "method": "ping"},
        {"jsonrpc": "2.0", "id": 2, "method": "ping", "params": {"_meta": {"progressToken": {"a": 1}}}},
        {"jsonrpc": "2.0", "id": 3, "method": "ping", "params": {"_meta": {"progressToken": [1]}}},
    ]
    for message in hostile:
        stdio.send(message)
        answer = stdio.next()
        assert answer["error"]["code"] in (-32600, -32602), answer
    stdio.send(_call(9, "ok", {}, _signed(issuer, "ok", {})))
    assert "ok pid=" in _text(stdio.next())
    assert stdio.proc.poll() is None

    client = Http(http_gateway(*flags).url)
    resp = client.post(hostile[3])
    assert resp.json()["error"]["code"] == -32602
    assert "ok pid=" in _text(client.post(_call(10, "ok", {}, _signed(issuer, "ok", {}))).json())
    assert [m.get("method") for m in received(log, "ping")] == []


# -- 9. raw-bytes checks ------------------------------------------------------------------------------


def _raw_attacks(issuer: Issuer) -> list[tuple[str, bytes]]:
    """(what, raw tools/call) pairs that orjson reads as a valid call and C2/C3 refuse."""
    env = _signed(issuer, "ok", {"n": 0})
    text = orjson.dumps(env).decode()
    dup_signature = text.replace('"signature":', '"signature":"00","signature":', 1)
    ia = '"issuerAsserted":{'
    dup_sub = text.replace(ia, ia + '"sub":"admin",', 1)
    assert dup_sub != text and dup_signature != text
    big = 18446744073709551617  # 2^64 + 1: orjson reads a double, C3 refuses the token
    big_env = orjson.dumps(_signed(issuer, "ok", {"n": float(big)})).decode()

    def call(envelope: str, arguments: str) -> bytes:
        return (
            '{"jsonrpc":"2.0","id":ID,"method":"tools/call","params":{"name":"ok",'
            f'"arguments":{arguments},"_meta":{{"attestation":{envelope}}}}}}}'
        ).encode()

    return [
        ("duplicate signature", call(dup_signature, '{"n":0}')),
        ("duplicate sub", call(dup_sub, '{"n":0}')),
        ("negative zero", call(text, '{"n":-0}')),
        ("integer past 2^64", call(big_env, f'{{"n":{big}}}')),
        ("duplicate argument", call(text, '{"n":1,"n":0}')),
        ("duplicate name", call(text, '{"n":0}').replace(b'"name":"ok"', b'"name":"evil","name":"ok"')),
    ]


def test_raw_bytes_duplicate_keys_and_c3_numbers_are_rejected_not_forwarded(
    hs_keys: Path, tmp_path: Path, issuer: Issuer, http_gateway: Any, stdio_gateway: Any
) -> None:
    flags, log = _setup(hs_keys, tmp_path)
    stdio = stdio_gateway(*flags)
    client = Http(http_gateway(*flags).url)
    for i, (what, raw) in enumerate(_raw_attacks(issuer)):
        stdio.send_raw(raw.replace(b"ID", b"%d" % (2 * i)))
        over_stdio = stdio.next()
        over_http = client.post_raw(raw.replace(b"ID", b"%d" % (2 * i + 1))).json()
        for reply in (over_stdio, over_http):
            refusal = _refusal(reply)
            assert refusal.get("attestationError") or refusal.get("reason") == "invalid_params", (what, reply)
    assert received(log) == []
    # the same calls, written plainly, are accepted: the refusals were about the bytes
    env = _signed(issuer, "ok", {"n": 0})
    stdio.send(_call(100, "ok", {"n": 0}, env))
    assert "ok pid=" in _text(stdio.next())
    details = {r["facts"].get("detail") for r in _records(tmp_path)}
    assert {"malformed.duplicate_key", "args.not_canonicalizable"} <= details, details


# -- 11. issue mode, non-ASCII intent -----------------------------------------------------------------


def test_issue_mode_non_ascii_intent_is_signed_as_sent(
    hs_keys: Path, tmp_path: Path, http_gateway: Any
) -> None:
    command, log = _upstream(tmp_path)
    gw = http_gateway(
        "--mode", "issue", "--keys", hs_keys, "--iss", "agent", "--upstream-cmd", command, "--name", NAME,
        "--state-dir", tmp_path / "state",
    )  # fmt: skip
    client = Http(gw.url)
    intent = "archivé → 档案"
    resp = client.post_raw(orjson.dumps(_call(1, "ok", {})), **{"x-mcp-intent": intent.encode()})
    assert "ok pid=" in _text(resp.json())
    envelope = received(log)[0]["params"]["_meta"]["attestation"]  # type: ignore[index]
    assert envelope["plannerDeclared"]["intent"] == intent
    latin1 = "été".encode("latin-1")  # not UTF-8
    bad = client.post_raw(orjson.dumps(_call(2, "ok", {})), **{"x-mcp-intent": latin1})
    assert _refusal(bad.json())["reason"] == "cannot_sign"
    assert len(received(log)) == 1


# -- 6. pinning bypass ---------------------------------------------------------------------------------


def test_tool_pinning_bypass_by_listing_the_original_again_is_refused_and_audited(
    hs_keys: Path, tmp_path: Path, issuer: Issuer, http_gateway: Any, stdio_gateway: Any
) -> None:
    description = tmp_path / "description.txt"
    flags, log = _setup(hs_keys, tmp_path, "--pin-tools", FLAKY_DESCRIPTION=str(description), FLAKY_TWICE="1")
    gw = http_gateway(*flags)
    first, second = Http(gw.url), Http(gw.url)
    first.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    description.write_text("now does something else entirely")
    # the changed definition, then the original under the same name, in one list
    first.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    description.unlink()
    second.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})  # another session sees the original
    for client in (first, second):
        refusal = _refusal(client.post(_call(3, "ok", {}, _signed(issuer, "ok", {}))).json())
        assert refusal["reason"] == "tool_definition_changed", refusal
    description.write_text("changed again")
    stdio = stdio_gateway(*flags)  # same pin file: a changed and the original `ok` in one list
    stdio.send({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert [t["name"] for t in stdio.next()["result"]["tools"]].count("ok") == 2
    stdio.send(_call(2, "ok", {}, _signed(issuer, "ok", {})))
    assert _refusal(stdio.next())["reason"] == "tool_definition_changed"
    assert received(log) == []
    pinned = [r for r in _records(tmp_path) if r["facts"].get("detail") == "gateway.tool_definition_changed"]
    assert len(pinned) == 3 and pinned[0]["facts"]["reason"] == "tool_mismatch"


# -- 5. audit growth ------------------------------------------------------------------------------------


def test_audit_growth_rejected_call_records_are_bounded(
    hs_keys: Path, tmp_path: Path, issuer: Issuer, http_gateway: Any, stdio_gateway: Any
) -> None:
    flags, log = _setup(hs_keys, tmp_path, "--max-body-bytes", str(8 * 1024 * 1024))
    client = Http(http_gateway(*flags).url)
    huge_envelope = {"v": 1, "junk": "x" * (1024 * 1024)}
    resp = client.post(_call(1, "n" * 100_000, {}, huge_envelope))
    assert _refusal(resp.json())["attestationError"] is True
    stdio = stdio_gateway(*flags)
    stdio.send(_call(2, "\u202eevil\x85", {}, {"v": 1}))
    assert _refusal(stdio.next())["attestationError"] is True
    records = _records(tmp_path)
    assert len(records[0]["tool"]) < 300 and "envelope" not in records[0]
    assert len(orjson.dumps(records[0])) < 4096
    export = subprocess.run(
        [*AUDIT_CLI, "export", f"sqlite:///{tmp_path / 'state' / 'audit.sqlite'}"],
        capture_output=True,
        check=True,
    ).stdout
    assert b"\xe2\x80\xae" not in export and b"\xc2\x85" not in export  # U+202E, U+0085: escaped
    assert b"\\u202eevil\\u0085" in export
    assert received(log) == []


# A latency bound: run alone (scripts/test's serial pass), not beside another worker's load.
@pytest.mark.timing
def test_audit_growth_large_argument_array_rejected_at_v0_does_not_block_other_clients(
    hs_keys: Path, tmp_path: Path, issuer: Issuer, http_gateway: Any
) -> None:
    flags, _ = _setup(hs_keys, tmp_path, "--max-body-bytes", str(8 * 1024 * 1024))
    gw = http_gateway(*flags)
    bystander, attacker = Http(gw.url), Http(gw.url)
    floats = orjson.dumps(_call(1, "ok", {"x": [i + 0.5 for i in range(400_000)]}))
    assert len(floats) > 3_000_000
    done = threading.Event()
    worst = 0.0

    def attack() -> None:
        for _ in range(3):
            attacker.post_raw(floats)
        done.set()

    threading.Thread(target=attack).start()
    while not done.is_set():
        started = time.monotonic()
        assert bystander.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}).status_code == 200
        worst = max(worst, time.monotonic() - started)
    records = _records(tmp_path)
    assert [r["facts"]["reason"] for r in records] == ["attestation_required"] * 3
    assert all(r["argsDigest"] is None for r in records)
    assert worst < 0.75, worst


# -- 7. failed upstream start ---------------------------------------------------------------------------


def test_failed_upstream_start_leaves_no_supervisor_and_no_orphan(
    hs_keys: Path, tmp_path: Path, http_gateway: Any
) -> None:
    script, started = tmp_path / "late-server", tmp_path / "started.log"
    gw = http_gateway(*_flags(hs_keys, tmp_path, str(script), "--timeout", "1"))
    client = Http(gw.url, session=False)
    resp = client.post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT})
    assert resp.status_code >= 400 or "error" in resp.json()
    script.write_text(f"#!/bin/sh\necho $$ >> {started}\nexec {PY} {HERE / 'flaky_server.py'}\n")
    script.chmod(0o755)
    time.sleep(4)  # longer than the supervisor's backoff had reached
    assert not started.exists(), "a supervisor nobody holds started the upstream"
