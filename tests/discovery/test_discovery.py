"""PROFILE K5: JWKS discovery over HTTPS, against a real local TLS server."""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
import time
from typing import Any

import orjson
import pytest
from _discovery_helpers import Reply, Site
from cryptography.hazmat.primitives.asymmetric import rsa

from mcp_attest import (
    DiscoveringKeyring,
    Issuer,
    Key,
    Keyring,
    Reason,
    Verifier,
    generate_key,
    server_fingerprint,
)
from mcp_attest.discovery import WELL_KNOWN_PATH, cache_lifetime, is_public_address
from mcp_attest.envelope import b64url_encode

SERVER = server_fingerprint("files", "prod")
TOOL = "read_file"
ARGS = {"path": "/srv/report.txt"}


class Clock:
    """The cache's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _jwks(*keys: Key) -> bytes:
    return orjson.dumps({"keys": [k.public_jwk() for k in keys]})


def _publish(site: Site, *keys: Key, max_age: int | None = 300, path: str = WELL_KNOWN_PATH) -> None:
    headers = {} if max_age is None else {"Cache-Control": f"max-age={max_age}"}
    site.routes[path] = Reply(_jwks(*keys), headers=headers)


@pytest.fixture(scope="module")
def es1() -> Key:
    return generate_key("ES256", "es-1")


@pytest.fixture(scope="module")
def es2() -> Key:
    return generate_key("ES256", "es-2")


def _same(found: Key | None, expected: Key) -> bool:
    return found is not None and found.public_jwk() == expected.public_jwk()


def _addrinfo(*addresses: str) -> Any:
    def fake(host: str, port: int, *_: Any, **__: Any) -> list[Any]:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    return fake


# -- discovery and use -----------------------------------------------------------


def test_k5_discovered_keys_verify_with_a_real_verifier(site: Site, es1: Key) -> None:
    _publish(site, es1)
    issuer = Issuer(Keyring({site.iss: {es1.kid: es1}}), iss=site.iss, sub="agent:alice")
    verifier = Verifier(site.keyring(), SERVER)
    envelope = issuer.sign(tool=TOOL, arguments=ARGS, server_fingerprint=SERVER, intent="read")
    verdict = verifier.verify(envelope.to_json(), tool=TOOL, arguments=ARGS)
    assert verdict.accepted, (verdict.reason, verdict.detail)
    assert verdict.iss == site.iss
    assert site.hits[WELL_KNOWN_PATH] == 1


def test_k5_unknown_kid_is_key_unavailable_in_the_verdict(site: Site, es1: Key, es2: Key) -> None:
    _publish(site, es1)
    issuer = Issuer(Keyring({site.iss: {es2.kid: es2}}), iss=site.iss, sub="agent:alice")
    envelope = issuer.sign(tool=TOOL, arguments=ARGS, server_fingerprint=SERVER, intent="read")
    verdict = Verifier(site.keyring(), SERVER).verify(envelope.to_json(), tool=TOOL, arguments=ARGS)
    assert verdict.reason is Reason.KEY_UNAVAILABLE


def test_k5_configured_url_for_a_non_url_issuer(site: Site, es1: Key) -> None:
    _publish(site, es1, path="/keys/planner.json?v=1")
    ring = site.keyring(issuers={"agent://planner": f"https://localhost:{site.port}/keys/planner.json?v=1"})
    assert _same(ring.get("agent://planner", "es-1"), es1)
    assert ring.get("agent://other", "es-1") is None
    assert "agent://planner" in repr(ring)


def test_k5_well_known_path_is_on_the_issuer_host_whatever_its_path(site: Site, es1: Key) -> None:
    _publish(site, es1)
    iss = f"{site.iss}/tenants/a"
    assert _same(site.keyring(issuers=[iss]).get(iss, "es-1"), es1)


def test_k5_static_keyring_wins_for_issuers_it_lists(site: Site, es1: Key, es2: Key) -> None:
    _publish(site, es2)
    static = Keyring({site.iss: {es1.kid: es1}})
    ring = site.keyring(static=static)
    assert _same(ring.get(site.iss, "es-1"), es1)
    assert ring.get(site.iss, "es-2") is None
    assert site.hits[WELL_KNOWN_PATH] == 0


def test_k5_static_keyring_and_discovery_side_by_side(site: Site, es1: Key, es2: Key) -> None:
    _publish(site, es2)
    ring = site.keyring(static=Keyring({"agent://local": {es1.kid: es1}}))
    assert _same(ring.get("agent://local", "es-1"), es1)
    assert _same(ring.get(site.iss, "es-2"), es2)


# -- caching and refresh ----------------------------------------------------------


def test_k5_cache_honours_max_age(site: Site, es1: Key) -> None:
    clock = Clock()
    _publish(site, es1, max_age=600)
    ring = site.keyring(clock=clock)
    for _ in range(5):
        assert _same(ring.get(site.iss, "es-1"), es1)
    clock.now += 599
    assert _same(ring.get(site.iss, "es-1"), es1)
    assert site.hits[WELL_KNOWN_PATH] == 1
    clock.now += 2
    assert _same(ring.get(site.iss, "es-1"), es1)
    assert site.hits[WELL_KNOWN_PATH] == 2


def test_k5_default_lifetime_when_no_cache_headers(site: Site, es1: Key) -> None:
    clock = Clock()
    _publish(site, es1, max_age=None)
    ring = site.keyring(clock=clock)
    ring.get(site.iss, "es-1")
    clock.now += 299
    ring.get(site.iss, "es-1")
    assert site.hits[WELL_KNOWN_PATH] == 1
    clock.now += 2
    ring.get(site.iss, "es-1")
    assert site.hits[WELL_KNOWN_PATH] == 2


def test_k5_unknown_kid_refetches_at_most_once_per_minute(site: Site, es1: Key, es2: Key) -> None:
    clock = Clock()
    _publish(site, es1, max_age=3600)
    ring = site.keyring(clock=clock)
    assert ring.get(site.iss, "es-2") is None  # first fetch; es-2 not there yet
    assert site.hits[WELL_KNOWN_PATH] == 1
    _publish(site, es1, es2, max_age=3600)
    clock.now += 30
    for _ in range(10):
        assert ring.get(site.iss, "es-2") is None
    assert site.hits[WELL_KNOWN_PATH] == 1
    clock.now += 31
    assert _same(ring.get(site.iss, "es-2"), es2)
    assert ring.get(site.iss, "nope") is None
    assert site.hits[WELL_KNOWN_PATH] == 2


def test_k5_key_rotation_seen_after_expiry(site: Site, es1: Key, es2: Key) -> None:
    clock = Clock()
    _publish(site, es1, max_age=120)
    ring = site.keyring(clock=clock)
    assert _same(ring.get(site.iss, "es-1"), es1)
    _publish(site, es2, max_age=120)
    clock.now += 60
    assert _same(ring.get(site.iss, "es-1"), es1)  # still fresh: the old set holds
    clock.now += 61
    assert ring.get(site.iss, "es-1") is None  # removed key: key_unavailable (K4)
    assert _same(ring.get(site.iss, "es-2"), es2)
    assert site.hits[WELL_KNOWN_PATH] == 2


def test_k5_failed_refresh_keeps_unexpired_keys(site: Site, es1: Key) -> None:
    clock = Clock()
    _publish(site, es1, max_age=3600)
    ring = site.keyring(clock=clock)
    assert _same(ring.get(site.iss, "es-1"), es1)
    site.routes[WELL_KNOWN_PATH] = Reply(b"oops", status=500)
    clock.now += 61
    assert ring.get(site.iss, "es-9") is None
    assert site.hits[WELL_KNOWN_PATH] == 2
    assert _same(ring.get(site.iss, "es-1"), es1)


def test_k5_expired_keys_are_not_used_when_refresh_fails(site: Site, es1: Key) -> None:
    clock = Clock()
    _publish(site, es1, max_age=60)
    ring = site.keyring(clock=clock)
    assert _same(ring.get(site.iss, "es-1"), es1)
    site.routes[WELL_KNOWN_PATH] = Reply(b"oops", status=503)
    clock.now += 61
    assert ring.get(site.iss, "es-1") is None  # fail closed, no stale keys


def test_k5_concurrent_lookups_of_one_issuer_fetch_once(site: Site, es1: Key) -> None:
    site.routes[WELL_KNOWN_PATH] = Reply(_jwks(es1), delay=0.3)
    ring = site.keyring()
    results: list[Key | None] = []
    threads = [threading.Thread(target=lambda: results.append(ring.get(site.iss, "es-1"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 8
    assert all(_same(r, es1) for r in results)
    assert site.hits[WELL_KNOWN_PATH] == 1


def test_k5_busy_issuer_never_blocks_past_the_timeout(site: Site) -> None:
    ring = site.keyring(timeout=0.2)
    ring.get(site.iss, "es-1")
    state = ring._trusted[site.iss]
    state.lock.acquire()
    try:
        started = time.monotonic()
        assert ring.get(site.iss, "es-1") is None
        assert time.monotonic() - started < 1.0
    finally:
        state.lock.release()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 300),
        ({"cache-control": "public, max-age=600"}, 600),
        ({"cache-control": 'max-age="900"'}, 900),
        ({"cache-control": "max-age=600", "age": "100"}, 500),
        ({"cache-control": "max-age=5"}, 60),
        ({"cache-control": "max-age=99999999"}, 86400),
        ({"cache-control": "max-age=soon"}, 300),
        ({"cache-control": "no-cache"}, 60),
        ({"cache-control": "no-store, max-age=600"}, 60),
        ({"cache-control": "max-age=600", "expires": "Thu, 01 Jan 1970 00:00:00 GMT"}, 600),
        ({"expires": "Wed, 21 Oct 2026 08:00:00 GMT", "date": "Wed, 21 Oct 2026 07:50:00 GMT"}, 600),
        ({"expires": "Wed, 21 Oct 2026 08:00:00 GMT"}, 1200),
        ({"expires": "0"}, 60),
        ({"expires": "Wed, 21 Oct 2026 08:00:00 GMT", "date": "garbage"}, 1200),
    ],
)
def test_k5_cache_lifetime_from_http_headers(headers: dict[str, str], expected: float) -> None:
    now = 1_792_568_400.0  # Wed, 21 Oct 2026 07:40:00 GMT
    assert cache_lifetime(headers, default=300, floor=60, ceiling=86400, now=now) == expected


# -- transport policy --------------------------------------------------------------


@pytest.mark.parametrize(
    "issuers",
    [
        ["http://issuer.example"],
        {"agent://x": "http://issuer.example/keys.json"},
        ["agent://planner"],
        {"agent://x": "https://user:pw@issuer.example/keys.json"},
        {"agent://x": "https://issuer.example:99999/keys.json"},
        {"agent://x": "https://issuer_example/keys.json"},
        {"agent://x": "https://issuer.example/some keys.json"},
    ],
)
def test_k5_http_and_odd_urls_are_refused_at_configuration(issuers: Any) -> None:
    with pytest.raises(ValueError):
        DiscoveringKeyring(issuers=issuers)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": 60},
        {"min_ttl": 600, "default_ttl": 300},
        {"max_bytes": 0},
        {"refresh_interval": -1},
    ],
)
def test_k5_limits_are_validated(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        DiscoveringKeyring(**kwargs)


def test_k5_ssl_context_must_verify() -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with pytest.raises(ValueError, match="verify"):
        DiscoveringKeyring(ssl_context=context)


def test_k5_loopback_refused_without_the_opt_in(site: Site, es1: Key) -> None:
    _publish(site, es1)
    for iss, url in ((site.iss, None), ("agent://ip", f"https://127.0.0.1:{site.port}{WELL_KNOWN_PATH}")):
        ring = site.keyring(issuers={iss: url}, allow_private_addresses=False)
        assert ring.get(iss, "es-1") is None
    assert site.hits[WELL_KNOWN_PATH] == 0


def test_k5_every_resolved_address_must_be_public(
    site: Site, es1: Key, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _publish(site, es1)
    monkeypatch.setattr(socket, "getaddrinfo", _addrinfo("93.184.216.34", "10.0.0.7"))
    ring = site.keyring(issuers=["https://issuer.test"], allow_private_addresses=False)
    with caplog.at_level(logging.WARNING, logger="mcp_attest.discovery"):
        assert ring.get("https://issuer.test", "es-1") is None
    assert "10.0.0.7" in caplog.text
    assert "93.184.216.34" not in caplog.text.split("non-public")[1]


def test_k5_connects_to_the_checked_address_and_verifies_the_host_name(
    site: Site, es1: Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One resolution per fetch (a rebinding second answer is never asked for), TLS for the name."""
    _publish(site, es1)
    calls: list[str] = []
    fake = _addrinfo("127.0.0.1")

    def resolve_once(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        calls.append(host)
        if len(calls) > 1:
            raise AssertionError("resolved twice")
        return fake(host, port)  # type: ignore[no-any-return]

    monkeypatch.setattr(socket, "getaddrinfo", resolve_once)
    iss = f"https://issuer.test:{site.port}"
    assert _same(site.keyring(issuers=[iss]).get(iss, "es-1"), es1)
    assert calls == ["issuer.test"]


def test_k5_certificate_must_match_and_chain(site: Site, es1: Key, monkeypatch: pytest.MonkeyPatch) -> None:
    _publish(site, es1)
    monkeypatch.setattr(socket, "getaddrinfo", _addrinfo("127.0.0.1"))
    wrong = f"https://wrong.test:{site.port}"
    assert site.keyring(issuers=[wrong]).get(wrong, "es-1") is None
    untrusted = site.keyring(ssl_context=ssl.create_default_context())
    assert untrusted.get(site.iss, "es-1") is None
    assert site.hits[WELL_KNOWN_PATH] == 0


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
        "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "ff02::1",
        "::ffff:127.0.0.1", "2002:7f00:1::", "64:ff9b::a00:1", "2001:0:4136:e378:8000:63bf:f5ff:fffe",
    ],
)  # fmt: skip
def test_k5_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "2606:2800:220:1::1", "2002:5db8:d822::", "64:ff9b::5db8:d822"]
)
def test_k5_public_addresses_are_allowed(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


def test_k5_redirects_are_refused(site: Site, es1: Key) -> None:
    _publish(site, es1, path="/moved.json")
    site.routes[WELL_KNOWN_PATH] = Reply(status=302, headers={"Location": f"{site.iss}/moved.json"})
    assert site.keyring().get(site.iss, "es-1") is None
    assert site.hits["/moved.json"] == 0


def test_k5_404_is_key_unavailable(site: Site) -> None:
    assert site.keyring().get(site.iss, "es-1") is None
    assert site.hits[WELL_KNOWN_PATH] == 1


def test_k5_oversize_response_is_refused(site: Site, es1: Key) -> None:
    body = orjson.dumps({"keys": [es1.public_jwk()], "padding": "x" * 4000})
    site.routes[WELL_KNOWN_PATH] = Reply(body)
    assert site.keyring(max_bytes=2048).get(site.iss, "es-1") is None
    assert _same(site.keyring(max_bytes=8192).get(site.iss, "es-1"), es1)
    site.routes[WELL_KNOWN_PATH] = Reply(orjson.dumps({"keys": [es1.public_jwk()], "padding": "x" * 40000}))
    assert site.keyring(max_bytes=2048).get(site.iss, "es-1") is None  # beyond the header allowance too


def test_k5_slow_response_times_out(site: Site, es1: Key) -> None:
    site.routes[WELL_KNOWN_PATH] = Reply(_jwks(es1), delay=2.0)
    started = time.monotonic()
    assert site.keyring(timeout=0.4).get(site.iss, "es-1") is None
    assert time.monotonic() - started < 1.5


def test_k5_dripping_response_is_bounded_by_the_total_timeout(site: Site, es1: Key) -> None:
    site.routes[WELL_KNOWN_PATH] = Reply(_jwks(es1), drip=0.05)
    started = time.monotonic()
    assert site.keyring(timeout=0.4).get(site.iss, "es-1") is None
    assert time.monotonic() - started < 1.5


def test_k5_nothing_listening_is_key_unavailable(es1: Key) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    iss = f"https://localhost:{port}"
    ring = DiscoveringKeyring(issuers=[iss], allow_private_addresses=True)
    assert ring.get(iss, "es-1") is None


def test_k5_dns_failure_and_dns_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    iss = "https://issuer.test"

    def fail(*_: Any, **__: Any) -> Any:
        raise socket.gaierror("no such host")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    assert DiscoveringKeyring(issuers=[iss]).get(iss, "k") is None
    monkeypatch.setattr(socket, "getaddrinfo", lambda *_, **__: [])
    assert DiscoveringKeyring(issuers=[iss]).get(iss, "k") is None

    def hang(*_: Any, **__: Any) -> Any:
        time.sleep(1.0)
        return []

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    started = time.monotonic()
    assert DiscoveringKeyring(issuers=[iss], timeout=0.2).get(iss, "k") is None
    assert time.monotonic() - started < 0.8


# -- what a key set may hold ---------------------------------------------------------


def _weak_rsa_jwk() -> dict[str, Any]:
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_numbers()

    def b64(n: int) -> str:
        return b64url_encode(n.to_bytes((n.bit_length() + 7) // 8, "big"))

    return {"kty": "RSA", "alg": "RS256", "kid": "rs-weak", "n": b64(numbers.n), "e": b64(numbers.e)}


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(_weak_rsa_jwk(), id="rsa-1024"),
        pytest.param({"kty": "oct", "alg": "HS256", "kid": "hs", "k": b64url_encode(b"s" * 32)}, id="hs256"),
        pytest.param({"kty": "EC", "alg": "ES256", "kid": "x", "crv": "P-384"}, id="p384"),
        pytest.param({"kty": "RSA", "alg": "RSA-OAEP", "kid": "enc"}, id="other-alg"),
        pytest.param("not a jwk", id="not-an-object"),
        pytest.param("duplicate", id="duplicate-kid"),
        pytest.param("private", id="private-member"),
    ],
)
def test_k5_a_key_set_with_a_refused_key_is_refused_as_a_whole(
    site: Site, es1: Key, extra: Any, caplog: pytest.LogCaptureFixture
) -> None:
    if extra == "duplicate":
        extra = es1.public_jwk()
    elif extra == "private":
        extra = {**generate_key("ES256", "es-p").private_jwk()}
    site.routes[WELL_KNOWN_PATH] = Reply(orjson.dumps({"keys": [es1.public_jwk(), extra]}))
    with caplog.at_level(logging.WARNING, logger="mcp_attest.discovery"):
        assert site.keyring().get(site.iss, "es-1") is None
    assert "refused key set" in caplog.text


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"keys": {}}', b"{}"])
def test_k5_a_document_that_is_not_a_jwks_is_refused(site: Site, body: bytes) -> None:
    site.routes[WELL_KNOWN_PATH] = Reply(body)
    assert site.keyring().get(site.iss, "es-1") is None


def test_k5_a_refused_refresh_drops_the_cached_keys(site: Site, es1: Key) -> None:
    clock = Clock()
    _publish(site, es1, max_age=3600)
    ring = site.keyring(clock=clock)
    assert _same(ring.get(site.iss, "es-1"), es1)
    site.routes[WELL_KNOWN_PATH] = Reply(orjson.dumps({"keys": [es1.public_jwk(), _weak_rsa_jwk()]}))
    clock.now += 61
    assert ring.get(site.iss, "es-2") is None
    assert ring.get(site.iss, "es-1") is None


def test_k5_empty_key_set_is_valid_and_knows_nothing(site: Site) -> None:
    site.routes[WELL_KNOWN_PATH] = Reply(b'{"keys": []}')
    assert site.keyring().get(site.iss, "es-1") is None
    assert site.hits[WELL_KNOWN_PATH] == 1


# -- HTTP parsing on bytes already read ----------------------------------------------


def _ring_reading(monkeypatch: pytest.MonkeyPatch, raw: bytes) -> DiscoveringKeyring:
    monkeypatch.setattr(DiscoveringKeyring, "_exchange", lambda self, target, deadline: raw)
    return DiscoveringKeyring(issuers=["https://issuer.test"])


def test_k5_chunked_response_is_read(monkeypatch: pytest.MonkeyPatch, es1: Key) -> None:
    body = _jwks(es1)
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n\r\n"
    )
    assert _same(_ring_reading(monkeypatch, raw).get("https://issuer.test", "es-1"), es1)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_k5_malformed_http_is_key_unavailable(monkeypatch: pytest.MonkeyPatch, raw: bytes) -> None:
    assert _ring_reading(monkeypatch, raw).get("https://issuer.test", "es-1") is None


def test_k5_unexpected_error_never_escapes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*_: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(DiscoveringKeyring, "_download", boom)
    with caplog.at_level(logging.ERROR, logger="mcp_attest.discovery"):
        assert DiscoveringKeyring(issuers=["https://issuer.test"]).get("https://issuer.test", "k") is None
    assert "unexpected error" in caplog.text


# -- which issuers are discovered ----------------------------------------------------


def test_k5_unlisted_issuers_are_not_discovered_by_default(site: Site, es1: Key) -> None:
    _publish(site, es1)
    ring = site.keyring(issuers=[])
    assert ring.get(site.iss, "es-1") is None
    assert site.hits[WELL_KNOWN_PATH] == 0


def test_k5_any_https_issuer_is_an_explicit_opt_in(site: Site, es1: Key) -> None:
    _publish(site, es1)
    ring = site.keyring(issuers=[], any_https_issuer=True, max_issuers=1)
    assert ring.get(f"http://localhost:{site.port}", "es-1") is None  # HTTP refused
    assert ring.get("agent://planner", "es-1") is None
    assert ring.get("https://user@localhost", "es-1") is None
    assert site.hits[WELL_KNOWN_PATH] == 0
    assert _same(ring.get(site.iss, "es-1"), es1)
    assert _same(ring.get(site.iss, "es-1"), es1)
    assert site.hits[WELL_KNOWN_PATH] == 1
    other = f"https://127.0.0.1:{site.port}"
    assert _same(ring.get(other, "es-1"), es1)  # evicts the first issuer (max_issuers=1)
    assert _same(ring.get(site.iss, "es-1"), es1)
    assert site.hits[WELL_KNOWN_PATH] == 3
