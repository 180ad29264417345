"""Hostile input against a real gateway process: the client side and the upstream side.

The upstream is a scripted HTTP/1.1 server in this process (raw sockets, no
framework) that logs every request body it receives and answers each
``tools/call`` the way its tool name says: a normal answer, or a response
that is split, folded, oversized, doubly framed or cut off. The gateway in
front of it runs in verify mode, so every call needs an envelope; a call it
rejects must never show up in the upstream's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from mcp_attest import Issuer, Keyring, server_fingerprint
from mcp_attest.gateway._h1 import H1Pool, RemoteProtocolError
from mcp_attest.transport import encode_header

pytestmark = pytest.mark.slow

NAME = "hostile"
FP = server_fingerprint(NAME, "")
LIMIT = 4096  # --max-body-bytes of the gateway under test
BIG_RESPONSE = 64 * 1024 * 1024 + 1024  # over the gateway's cap on one upstream answer

# -- the scripted upstream ------------------------------------------------------------------


def _head(status: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _json(body: bytes, *extra: tuple[str, str]) -> bytes:
    return (
        _head("200 OK", [("content-type", "application/json"), ("content-length", str(len(body))), *extra])
        + body
    )


def _rpc(request_id: Any, result: Any) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "result": result})


def _text_result(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}]}


class Upstream:
    """A Streamable HTTP upstream that misbehaves on request; ``calls`` is every tools/call body it got."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def calls(self) -> list[dict[str, Any]]:
        with self.lock:
            messages = [orjson.loads(b) for b in self.bodies]
        return [m for m in messages if m.get("method") == "tools/call"]

    def close(self) -> None:
        self.closed = True
        self.sock.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = buf[:length], buf[length:]
                if not head.startswith(b"POST "):  # no server stream (GET); DELETE ends nothing here
                    status = "200 OK" if head.startswith(b"DELETE ") else "405 Method Not Allowed"
                    conn.sendall(_head(status, [("content-length", "0")]))
                    continue
                with self.lock:
                    self.bodies.append(body)
                if not self._answer(conn, head, orjson.loads(body)):
                    return

    def _answer(self, conn: socket.socket, head: bytes, message: dict[str, Any]) -> bool:
        """Send the answer; False when the connection must end after it."""
        method, rid = message.get("method"), message.get("id")
        if rid is None or "method" not in message:
            conn.sendall(_head("202 Accepted", [("content-length", "0")]))
            return True
        if method == "initialize":
            result = {
                "protocolVersion": "2025-11-25",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": NAME, "version": "1"},
            }
            conn.sendall(_json(_rpc(rid, result), ("mcp-session-id", f"up-{rid}")))
            return True
        if method != "tools/call":
            conn.sendall(
                _json(orjson.dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "no"}}))
            )
            return True
        params = message["params"]
        tool = params["name"]
        echo = _rpc(rid, _text_result(orjson.dumps(params.get("arguments")).decode()))
        if tool == "split":  # a second, forged response in the same write
            forged = _rpc(rid + 1, _text_result("FORGED"))
            conn.sendall(_json(echo) + _json(forged, ("x-smuggled", "1")))
            return True
        if tool == "crlf":  # a bare LF inside a header value: a header injection attempt
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-a: a\nmcp-session-id: evil\r\n"
                + b"content-length: %d\r\n\r\n" % len(echo)
                + echo
            )
            return False
        if tool == "fold":  # obsolete line folding
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-a: a\r\n mcp-session-id: evil\r\n"
                + b"content-length: %d\r\n\r\n" % len(echo)
                + echo
            )
            return False
        if tool == "cl_te":  # both framings: the classic smuggling setup
            chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(echo), echo)
            conn.sendall(
                _head(
                    "200 OK",
                    [
                        ("content-type", "application/json"),
                        ("content-length", "5"),
                        ("transfer-encoding", "chunked"),
                    ],
                )
                + chunked
            )
            return False
        if tool == "truncate":  # a complete JSON answer, but less than the declared length
            conn.sendall(
                _head(
                    "200 OK",
                    [
                        ("content-type", "application/json"),
                        ("connection", "close"),
                        ("content-length", str(len(echo) + 100)),
                    ],
                )
                + echo
            )
            return False
        if tool == "truncate_chunked":
            conn.sendall(
                _head(
                    "200 OK",
                    [
                        ("content-type", "application/json"),
                        ("connection", "close"),
                        ("transfer-encoding", "chunked"),
                    ],
                )
                + b"%x\r\n%s\r\n" % (len(echo), echo)
            )
            return False
        if tool == "deep":  # nested past what the gateway can write back out
            nested = b"[" * 1000 + b"]" * 1000
            conn.sendall(_json(b'{"jsonrpc":"2.0","id":%d,"result":{"content":[],"x":%s}}' % (rid, nested)))
            return True
        if tool == "big":
            pad = b" " * (BIG_RESPONSE - len(echo))
            conn.sendall(_json(echo[:-1] + pad + b"}"))
            return True
        conn.sendall(_json(echo))
        return True


# -- the gateway under test and its client ------------------------------------------------------------


@pytest.fixture()
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.close()


@pytest.fixture()
def gateway(hs_keys: Path, tmp_path: Path, http_gateway: Any, upstream: Upstream) -> str:
    gw = http_gateway(
        "--keys",
        hs_keys,
        "--upstream-url",
        upstream.url,
        "--name",
        NAME,
        "--timeout",
        "5",
        "--state-dir",
        tmp_path / "state",
        "--max-body-bytes",
        str(LIMIT),
    )
    return str(gw.url)


@pytest.fixture()
def issuer(hs_keys: Path) -> Issuer:
    return Issuer(Keyring.load(hs_keys), iss="agent", sub="tester")


JSON_H = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


class Client:
    def __init__(self, base: str) -> None:
        self.url = base + "/mcp"
        self.http = httpx.Client(timeout=20)
        self.sid = ""
        self.ids = 0
        init = {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        }
        resp = self.post_json({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
        assert resp.status_code == 200, resp.text
        self.sid = resp.headers["mcp-session-id"]
        self.post_json({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def post(self, content: Any, headers: Any = None) -> httpx.Response:
        h = [*JSON_H.items(), *([("mcp-session-id", self.sid)] if self.sid else []), *(headers or [])]
        return self.http.post(self.url, content=content, headers=h)

    def post_json(self, message: Any, headers: Any = None) -> httpx.Response:
        return self.post(orjson.dumps(message), headers)

    def call(
        self, tool: str, args: dict[str, Any], envelope: Any = None, headers: Any = None
    ) -> dict[str, Any]:
        self.ids += 1
        params: dict[str, Any] = {"name": tool, "arguments": args}
        if envelope is not None:
            params["_meta"] = {"attestation": envelope}
        resp = self.post_json(
            {"jsonrpc": "2.0", "id": self.ids, "method": "tools/call", "params": params}, headers
        )
        assert resp.status_code == 200, resp.text
        return dict(resp.json())


def _signed(issuer: Issuer, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    return issuer.sign(tool=tool, arguments=args, server_fingerprint=FP, intent="hostile test").to_wire()


def _ok(client: Client, issuer: Issuer, marker: str) -> None:
    """A well-formed call still goes through, end to end."""
    reply = client.call("ok", {"m": marker}, _signed(issuer, "ok", {"m": marker}))
    assert json.loads(reply["result"]["content"][0]["text"]) == {"m": marker}, reply


def _rejected(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["result"]["isError"] is True, reply
    return dict(json.loads(reply["result"]["content"][0]["text"]))


# -- client side: bodies over the limit --------------------------------------------------------------


def _raw_exchange(base: str, request: bytes, wait: float = 5.0) -> bytes:
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(request)
        chunks = []
        try:
            while data := s.recv(65536):
                chunks.append(data)
                if b"\r\n\r\n" in b"".join(chunks):
                    break
        except TimeoutError:
            pass
    return b"".join(chunks)


def test_oversized_bodies_are_413_whatever_the_framing(
    gateway: str, upstream: Upstream, issuer: Issuer
) -> None:
    client = Client(gateway)
    big_args = {"x": "a" * (2 * LIMIT)}
    message = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {
            "name": "ok",
            "arguments": big_args,
            "_meta": {"attestation": _signed(issuer, "ok", big_args)},
        },
    }
    body = orjson.dumps(message)
    # with an honest Content-Length
    assert client.post(body).status_code == 413

    # chunked, no Content-Length: the limit is counted as the body arrives
    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    resp = client.http.post(client.url, content=chunks(), headers={**JSON_H, "mcp-session-id": client.sid})
    assert resp.status_code == 413 and "content-length" not in resp.request.headers
    # a declared length over the limit is refused before the body is sent at all
    head = (
        f"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\naccept: application/json\r\n"
        f"mcp-session-id: {client.sid}\r\ncontent-length: {100 * LIMIT}\r\n\r\n"
    ).encode()
    assert _raw_exchange(gateway, head + b"{").startswith(b"HTTP/1.1 413")
    # one byte over, declared exactly
    at_limit = b'{"jsonrpc":"2.0","method":"notifications/x","params":{"p":"' + b"a" * LIMIT + b'"}}'
    assert client.post(at_limit).status_code == 413
    assert upstream.calls == []
    _ok(client, issuer, "after-413")
    _ok(Client(gateway), issuer, "other-session")


# -- client side: hostile JSON ----------------------------------------------------------------------------


def test_regression_huge_or_deeply_nested_attestation_is_rejected_not_forwarded(
    gateway: str, upstream: Upstream, issuer: Issuer
) -> None:
    client = Client(gateway)
    # huge, but inside the body limit
    reply = client.call("ok", {}, {"v": 1, "junk": "x" * (LIMIT - 300)})
    assert _rejected(reply)["attestationError"] is True
    # nested past what the JSON parser takes: a parse error, not a crash
    deep = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ok","_meta":{"attestation":'
    resp = client.post(deep + b"[" * 1500 + b"]" * 1500 + b"}}}")
    assert resp.status_code in (400, 413)
    # nested as deep as parsing allows, in the envelope, the arguments and the _meta
    for depth in (200, 300, 1000):
        nest = b"[" * depth + b"]" * depth
        for where in (
            b'{"name":"ok","arguments":{},"_meta":{"attestation":%s}}',
            b'{"name":"ok","arguments":{"a":%s},"_meta":{"attestation":{"v":1}}}',
            b'{"name":"ok","arguments":{},"_meta":{"progressToken":%s,"attestation":{"v":1}}}',
        ):
            params = where % nest
            body = b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":' + params + b"}"
            resp = client.post(body)
            assert resp.status_code in (200, 400), (depth, resp.status_code, resp.text[:200])
            if resp.status_code == 200 and b"progressToken" in params:  # a list is no progress token
                assert resp.json()["error"]["code"] == -32602
            elif resp.status_code == 200:
                assert _rejected(resp.json())["attestationError"] is True
    assert upstream.calls == []
    _ok(client, issuer, "after-nesting")


def test_batches_are_refused_and_nothing_reaches_the_upstream(
    gateway: str, upstream: Upstream, issuer: Issuer
) -> None:
    client = Client(gateway)
    signed = _signed(issuer, "ok", {})
    call: dict[str, Any] = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "ok", "arguments": {}},
    }
    good = {**call, "id": 2, "params": {**call["params"], "_meta": {"attestation": signed}}}
    for batch in ([call], [good, call], [call, good], [], [[good]]):
        resp = client.post_json(batch)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == -32600
    assert upstream.calls == []
    _ok(client, issuer, "after-batch")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys forwarded: {keys}"
    return dict(pairs)


def test_duplicate_keys_cannot_smuggle_a_different_call_past_the_verifier(
    gateway: str, upstream: Upstream, issuer: Issuer
) -> None:
    """Whatever a duplicate key means to the gateway, the upstream must get exactly the verified call."""
    client = Client(gateway)
    env = orjson.dumps(_signed(issuer, "ok", {"m": "safe"})).decode()
    signed, evil = '"arguments":{"m":"safe"}', '"arguments":{"m":"rm -rf"}'
    bodies = [
        # the signed name first, another one second (and the other way round)
        '{"name":"ok",SIGNED,"_meta":{"attestation":ENV},"name":"evil"}',
        '{"name":"evil",SIGNED,"_meta":{"attestation":ENV},"name":"ok"}',
        # the signed arguments, then others (and the other way round, and inside arguments)
        '{"name":"ok",SIGNED,"_meta":{"attestation":ENV},EVIL}',
        '{"name":"ok",EVIL,SIGNED,"_meta":{"attestation":ENV}}',
        '{"name":"ok","arguments":{"m":"safe","m":"rm -rf"},"_meta":{"attestation":ENV}}',
        '{"name":"ok","arguments":{"m":"rm -rf","m":"safe"},"_meta":{"attestation":ENV}}',
        # two _meta objects, one of them without the attestation
        '{"name":"ok",SIGNED,"_meta":{"attestation":ENV},"_meta":{}}',
        '{"name":"ok",SIGNED,"_meta":{},"_meta":{"attestation":ENV}}',
        # two attestations in one _meta
        '{"name":"ok",SIGNED,"_meta":{"attestation":{"v":1},"attestation":ENV}}',
    ]
    rounds = [b.replace("SIGNED", signed).replace("EVIL", evil).replace("ENV", env) for b in bodies]
    # two params objects, two methods, two ids
    good = '{"name":"ok",%s,"_meta":{"attestation":%s}}' % (signed, env)  # noqa: UP031
    rounds += [
        good + ',"params":{"name":"evil"}',
        '{"name":"evil"},"params":' + good,
    ]
    for i, params in enumerate(rounds):
        before = len(upstream.calls)
        raw = f'{{"jsonrpc":"2.0","id":{100 + i},"method":"tools/call","params":{params}}}'
        if i == len(rounds) - 1:
            raw = raw.replace('"method":"tools/call"', '"method":"tools/call","method":"ping"', 1)
        resp = client.post(raw.encode())
        assert resp.status_code in (200, 400), resp.text
        reached = upstream.calls[before:]
        if resp.status_code == 400 or "error" in resp.json() or resp.json()["result"].get("isError"):
            assert reached == [], (params, reached)
            continue
        # accepted: the upstream got one call, and it is the call that was signed
        assert len(reached) == 1, params
        assert reached[0]["params"]["name"] == "ok", params
        assert reached[0]["params"]["arguments"] == {"m": "safe"}, params
    for call in upstream.calls:
        assert (call["params"]["name"], call["params"]["arguments"]) == ("ok", {"m": "safe"})
    # the forwarded bytes carry no duplicate key a differently-minded upstream parser could pick
    for body in upstream.bodies:
        json.loads(body, object_pairs_hook=_no_duplicates)
    _ok(client, issuer, "after-duplicates")


def test_regression_attestation_header_sent_twice_is_not_half_verified(
    gateway: str, upstream: Upstream, issuer: Issuer
) -> None:
    client = Client(gateway)
    good = issuer.sign(tool="ok", arguments={"m": "h"}, server_fingerprint=FP, intent="hostile test")
    other = issuer.sign(tool="ok", arguments={"m": "h"}, server_fingerprint=FP, intent="hostile test")
    headers = [("x-mcp-attestation", encode_header(other)), ("x-mcp-attestation", encode_header(good))]
    reply = client.call("ok", {"m": "h"}, good.to_wire(), headers)
    assert _rejected(reply)["attestationError"] is True
    headers = [("x-mcp-attestation", "garbage"), ("x-mcp-attestation", encode_header(good))]
    reply = client.call("ok", {"m": "h"}, good.to_wire(), headers)
    assert _rejected(reply)["attestationError"] is True
    assert upstream.calls == []
    _ok(client, issuer, "after-double-header")


# -- upstream side ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["crlf", "fold", "cl_te", "truncate", "truncate_chunked"])
def test_malformed_upstream_responses_are_errors(
    tool: str, gateway: str, upstream: Upstream, issuer: Issuer
) -> None:
    client, other = Client(gateway), Client(gateway)
    reply = client.call(tool, {"m": tool}, _signed(issuer, tool, {"m": tool}))
    assert "error" in reply and reply["error"]["code"] == -32002, reply
    assert [c["params"]["name"] for c in upstream.calls] == [tool]  # it was accepted and forwarded once
    _ok(client, issuer, f"same-session-after-{tool}")
    _ok(other, issuer, f"other-session-after-{tool}")


def test_regression_split_upstream_response_is_not_taken_for_the_next_request(
    gateway: str, upstream: Upstream, issuer: Issuer
) -> None:
    client, other = Client(gateway), Client(gateway)
    reply = client.call("split", {"m": "s"}, _signed(issuer, "split", {"m": "s"}))
    assert reply["result"]["content"][0]["text"] == '{"m":"s"}', reply  # the first answer, intact
    for i in range(5):  # none of them may see the forged answer left on the connection
        for c in (client, other):
            _ok(c, issuer, f"after-split-{i}")


def test_regression_oversized_upstream_response_is_an_error(
    gateway: str, upstream: Upstream, issuer: Issuer
) -> None:
    client, other = Client(gateway), Client(gateway)
    started = time.monotonic()
    reply = client.call("big", {}, _signed(issuer, "big", {}))
    assert "error" in reply and reply["error"]["code"] == -32002, str(reply)[:300]
    assert (
        reply["error"]["message"]
        == f"upstream {NAME} answered with more than 67108864 bytes, the gateway's cap"
    )
    assert time.monotonic() - started < 20
    _ok(client, issuer, "after-big")
    _ok(other, issuer, "other-after-big")


def test_regression_upstream_answer_nested_too_deep_is_an_error_not_a_server_error(
    gateway: str, upstream: Upstream, issuer: Issuer
) -> None:
    client, other = Client(gateway), Client(gateway)
    reply = client.call("deep", {}, _signed(issuer, "deep", {}))  # asserts HTTP 200, not 500
    assert "error" in reply and "result" not in reply, str(reply)[:300]
    _ok(client, issuer, "after-deep")
    _ok(other, issuer, "other-after-deep")


# -- regressions in the lean HTTP/1.1 client ----------------------------------------------------------


def _h1(payload: bytes, **pool: Any) -> tuple[int, dict[str, str], bytes] | Exception:
    """One POST through the lean client to a server that answers ``payload``; the result or the error."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(payload)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def main() -> tuple[int, dict[str, str], bytes] | Exception:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        h1 = H1Pool(timeout=5, **pool)
        try:
            resp = await h1.post("127.0.0.1", server.sockets[0].getsockname()[1], "/", [], b"{}")
            try:
                return resp.status_code, resp.headers, await resp.read()
            finally:
                resp.close()
        except RemoteProtocolError as exc:
            return exc
        finally:
            await h1.aclose()
            server.close()

    return asyncio.run(asyncio.wait_for(main(), 10))


def test_regression_second_response_in_one_write_is_not_merged_into_the_first() -> None:
    forged = b"HTTP/1.1 200 OK\r\nx-smuggled: 1\r\ncontent-length: 6\r\n\r\nFORGED"
    got = _h1(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok" + forged)
    assert got == (200, {"content-length": "2"}, b"ok")


def test_regression_interim_response_is_skipped() -> None:
    got = _h1(b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    assert got == (200, {"content-length": "2"}, b"ok")


@pytest.mark.parametrize(
    "framing", [b"content-length: 100\r\n\r\n{}", b"transfer-encoding: chunked\r\n\r\n2\r\n{}\r\n"]
)
def test_regression_body_cut_short_by_close_is_an_error(framing: bytes) -> None:
    got = _h1(b"HTTP/1.1 200 OK\r\nconnection: close\r\n" + framing)
    assert isinstance(got, RemoteProtocolError), got
    # a body with neither framing does end with the connection
    assert _h1(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{}")[2] == b"{}"  # type: ignore[index]


def test_regression_response_body_is_capped_after_decoding() -> None:
    plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2000\r\n\r\n" + b"x" * 2000
    assert isinstance(_h1(plain, max_body=1000), RemoteProtocolError)
    assert _h1(plain, max_body=2000)[2] == b"x" * 2000  # type: ignore[index]
    bomb = zlib.compress(b"\0" * 10_000_000)  # about 10 kB that inflate to 10 MB
    gz = b"HTTP/1.1 200 OK\r\ncontent-encoding: deflate\r\ncontent-length: %d\r\n\r\n" % len(bomb)
    got = _h1(gz + bomb, max_body=1_000_000)
    assert isinstance(got, RemoteProtocolError) and "over 1000000 bytes" in str(got)
    assert _h1(gz + bomb, max_body=10_000_000)[2] == b"\0" * 10_000_000  # type: ignore[index]
