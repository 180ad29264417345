"""JWKS discovery over HTTPS (PROFILE K5), failing closed.

A discovered key is trusted only because the issuer's host served it over
verified TLS, so every way the fetch could be steered elsewhere is closed:
HTTPS only, no redirects, public addresses only (checked after resolution,
and the socket connects to the checked address, so a second DNS answer
cannot swap it), bounded size and time. Any failure is a missing key
(``key_unavailable``), never an exception or a long stall in the verifier.
"""

from __future__ import annotations

import email.utils
import http.client
import io
import ipaddress
import logging
import re
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, cast
from urllib.parse import urlsplit

import orjson

from mcp_attest.algorithms import Key
from mcp_attest.errors import ConfigurationError
from mcp_attest.keys import Keyring, KeyringError, keys_from_jwks

__all__ = ["WELL_KNOWN_PATH", "DiscoveringKeyring"]

logger = logging.getLogger("mcp_attest.discovery")

WELL_KNOWN_PATH = "/.well-known/mcp-attestation-keys.json"
_HEADER_ALLOWANCE = 16 * 1024
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_HOST_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class _FetchError(Exception):
    """No usable answer (network, TLS, HTTP status, size, time): unexpired keys stay."""


class _RefusedError(_FetchError):
    """The issuer served a document we refuse: its keys are dropped, not kept stale."""


@dataclass(frozen=True, slots=True)
class _Target:
    host: str
    port: int
    path: str
    url: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 443 else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """One fetched key set; immutable so readers need no lock."""

    keys: Mapping[str, Key]
    expires: float


_NOTHING = _Snapshot(MappingProxyType({}), float("-inf"))


class _IssuerState:
    """Per-issuer cache; the lock makes concurrent misses fetch once."""

    __slots__ = ("last_attempt", "lock", "snapshot")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.snapshot = _NOTHING
        self.last_attempt: float | None = None


def parse_target(url: str) -> _Target:
    """Split a JWKS URL, refusing anything but a plain ``https://host[:port]/path``.

    Userinfo and odd host spellings are refused because the host is used for
    the socket, SNI and the certificate check alike, and they must agree.
    """
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise ConfigurationError(f"{url!r}: key discovery is HTTPS only")
    try:
        port = parts.port or 443
    except ValueError:
        raise ConfigurationError(f"{url!r}: invalid port") from None
    host = parts.hostname or ""
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(f"{url!r}: user information is not allowed")
    if not (_HOST_NAME.fullmatch(host) or _ip_literal(host)):
        raise ConfigurationError(f"{url!r}: invalid host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if any(not "!" <= c <= "~" for c in path):
        raise ConfigurationError(f"{url!r}: path must be printable ASCII without spaces")
    return _Target(host, port, path, url)


def well_known_url(iss: str) -> str:
    """K5's default location: the issuer host's ``/.well-known`` path, whatever the issuer's own path."""
    parts = urlsplit(iss)
    if parts.scheme != "https" or not parts.netloc:
        raise ConfigurationError(f"issuer {iss!r} is not an https:// URL; configure its JWKS URL")
    return f"https://{parts.netloc}{WELL_KNOWN_PATH}"


def _ip_literal(host: str) -> _IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_public_address(ip: _IPAddress) -> bool:
    """Whether a fetch may go to ``ip``; IPv4 embedded in IPv6 forms is judged as IPv4.

    Without the embedded check ``::ffff:127.0.0.1``, 6to4, Teredo or NAT64
    spellings would reach a private IPv4 host through a "global" IPv6 name.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64:  # DNS64 answers for IPv4-only hosts; ipaddress calls the prefix reserved
            return is_public_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not is_public_address(embedded):
            return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def cache_lifetime(
    headers: Mapping[str, str], *, default: float, floor: float, ceiling: float, now: float
) -> float:
    """Seconds a response stays fresh (RFC 9111 for a private cache), clamped.

    The floor keeps ``no-cache``/``max-age=0`` from turning every verification
    into a fetch; the ceiling keeps a removed key from living for a year.
    ``now`` is wall-clock time, only used when ``Expires`` has no ``Date``.
    """
    directives: dict[str, str] = {}
    for part in headers.get("cache-control", "").split(","):
        name, _, value = part.strip().partition("=")
        directives[name.strip().lower()] = value.strip().strip('"')
    age = _seconds(headers.get("age", "0")) or 0
    lifetime: float = default
    if "no-store" in directives or "no-cache" in directives:
        lifetime = 0
    elif "max-age" in directives:
        max_age = _seconds(directives["max-age"])
        lifetime = default if max_age is None else max_age - age
    elif "expires" in headers:
        expires = _http_date(headers["expires"])
        date = _http_date(headers.get("date", "")) or now
        lifetime = 0 if expires is None else expires - date - age
    return min(max(lifetime, floor), ceiling)


def _seconds(text: str) -> int | None:
    return int(text) if text.isdigit() and text.isascii() else None


def _http_date(text: str) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


class _Buffered:
    """Lets ``http.client`` parse a response we already read under our own limits."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, *_: Any, **__: Any) -> io.BytesIO:
        return io.BytesIO(self._data)


class DiscoveringKeyring:
    """A ``KeySource``: a static ``Keyring`` first, then K5 discovery for trusted issuers.

    Discovery is for the issuers named in ``issuers`` (a list of ``https://``
    issuers, or a mapping from issuer to its JWKS URL, ``None`` meaning the
    well-known URL), because the keyring is the verifier's list of trusted
    issuers: discovering any ``https://`` issuer would let anyone with a
    domain sign accepted envelopes. ``any_https_issuer=True`` opts into that
    open federation (the verdict's ``iss`` then says who signed).

    ``allow_private_addresses`` and ``ssl_context`` exist for tests against
    a local HTTPS server; the context must still verify certificates.
    """

    def __init__(
        self,
        static: Keyring | None = None,
        *,
        issuers: Iterable[str] | Mapping[str, str | None] = (),
        any_https_issuer: bool = False,
        timeout: float = 3.0,
        max_bytes: int = 256 * 1024,
        default_ttl: float = 300.0,
        min_ttl: float = 60.0,
        max_ttl: float = 86400.0,
        refresh_interval: float = 60.0,
        max_issuers: int = 1024,
        clock: Callable[[], float] = time.monotonic,
        allow_private_addresses: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not 0 < timeout <= 30:
            raise ConfigurationError("timeout must be in (0, 30] seconds")
        if not 0 < min_ttl <= default_ttl <= max_ttl:
            raise ConfigurationError("need 0 < min_ttl <= default_ttl <= max_ttl")
        if max_bytes < 1 or max_issuers < 1 or refresh_interval < 0:
            raise ConfigurationError("max_bytes and max_issuers must be positive, refresh_interval >= 0")
        if ssl_context is not None and not (
            ssl_context.check_hostname and ssl_context.verify_mode == ssl.CERT_REQUIRED
        ):
            raise ConfigurationError("ssl_context must verify certificates and host names")
        self._static = static
        self._static_issuers = frozenset(static.issuers()) if static is not None else frozenset()
        mapping = issuers if isinstance(issuers, Mapping) else dict.fromkeys(issuers)
        self._targets = {iss: parse_target(url or well_known_url(iss)) for iss, url in mapping.items()}
        self._trusted = {iss: _IssuerState() for iss in self._targets}
        self._open: OrderedDict[str, _IssuerState] = OrderedDict()
        self._open_lock = threading.Lock()
        self._any_https = any_https_issuer
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._ttl = (default_ttl, min_ttl, max_ttl)
        self._refresh_interval = refresh_interval
        self._max_issuers = max_issuers
        self._clock = clock
        self._allow_private = allow_private_addresses
        self._ssl = ssl_context or ssl.create_default_context()

    def __repr__(self) -> str:
        return f"DiscoveringKeyring(static={self._static!r}, issuers={sorted(self._targets)})"

    # -- KeySource ---------------------------------------------------------

    def get(self, iss: str, kid: str) -> Key | None:
        """K1 selection; ``None`` (``key_unavailable``) for every failure, within ``timeout``."""
        if self._static is not None and iss in self._static_issuers:
            return self._static.get(iss, kid)
        found = self._state(iss)
        if found is None:
            return None
        state, target = found
        key = self._fresh(state, kid)
        if key is not None:
            return key
        if not state.lock.acquire(timeout=self._timeout):
            return None  # another thread is fetching; don't wait past our own budget
        try:
            return self._lookup_locked(iss, kid, state, target)
        finally:
            state.lock.release()

    # -- internals ---------------------------------------------------------

    def _state(self, iss: str) -> tuple[_IssuerState, _Target] | None:
        if iss in self._trusted:
            return self._trusted[iss], self._targets[iss]
        if not self._any_https:
            return None
        try:
            target = parse_target(well_known_url(iss))
        except ValueError:
            return None
        with self._open_lock:
            state = self._open.pop(iss, None) or _IssuerState()
            self._open[iss] = state  # most recently used last
            while len(self._open) > self._max_issuers:
                self._open.popitem(last=False)
        return state, target

    def _fresh(self, state: _IssuerState, kid: str) -> Key | None:
        snapshot = state.snapshot
        return snapshot.keys.get(kid) if self._clock() < snapshot.expires else None

    def _lookup_locked(self, iss: str, kid: str, state: _IssuerState, target: _Target) -> Key | None:
        key = self._fresh(state, kid)
        if key is not None:
            return key  # fetched by the thread we waited for
        now = self._clock()
        if state.last_attempt is not None and now - state.last_attempt < self._refresh_interval:
            return None
        state.last_attempt = now
        try:
            state.snapshot = self._download(iss, target, now)
        except _RefusedError as exc:
            logger.warning("K5: refused key set of issuer %r from %s: %s", iss, target.url, exc)
            state.snapshot = _NOTHING
        except _FetchError as exc:
            logger.warning("K5: cannot fetch keys of issuer %r from %s: %s", iss, target.url, exc)
        except Exception:  # a bug must not escape into the verifier
            logger.exception("K5: unexpected error fetching keys of issuer %r from %s", iss, target.url)
        return self._fresh(state, kid)

    def _download(self, iss: str, target: _Target, now: float) -> _Snapshot:
        deadline = time.monotonic() + self._timeout
        raw = _Buffered(self._exchange(target, deadline))
        response = http.client.HTTPResponse(cast(socket.socket, raw), method="GET")
        try:
            response.begin()
            body = response.read()
        except (http.client.HTTPException, ValueError) as exc:
            raise _FetchError(f"bad HTTP response ({type(exc).__name__})") from None
        if 300 <= response.status < 400:
            raise _FetchError(f"redirect to {response.getheader('Location')!r} refused")
        if response.status != 200:
            raise _FetchError(f"HTTP status {response.status}")
        if len(body) > self._max_bytes:
            raise _FetchError(f"key set larger than {self._max_bytes} bytes")
        keys = _parse_key_set(iss, body)
        headers = {name.lower(): value for name, value in response.getheaders()}
        default, floor, ceiling = self._ttl
        lifetime = cache_lifetime(headers, default=default, floor=floor, ceiling=ceiling, now=time.time())
        logger.info("K5: issuer %r has %d key(s) for %.0f s from %s", iss, len(keys), lifetime, target.url)
        return _Snapshot(MappingProxyType(keys), now + lifetime)

    def _exchange(self, target: _Target, deadline: float) -> bytes:
        """Send one GET and read the raw response, within the deadline and the size limit."""
        limit = self._max_bytes + _HEADER_ALLOWANCE
        request = (
            f"GET {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
            "Accept: application/jwk-set+json, application/json\r\n"
            "User-Agent: mcp-attest\r\nConnection: close\r\n\r\n"
        ).encode("ascii")
        chunks: list[bytes] = []
        size = 0
        try:
            with self._connect(target, deadline) as tls:
                tls.settimeout(_remaining(deadline))
                tls.sendall(request)
                # Each recv gets only what is left of the budget, so a server
                # dripping one byte at a time cannot stretch the total.
                while True:
                    tls.settimeout(_remaining(deadline))
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > limit:
                        raise _FetchError(f"response larger than {limit} bytes")
                    chunks.append(chunk)
        except (OSError, _TimeoutError) as exc:
            raise _FetchError(f"{type(exc).__name__}: {exc}") from None
        return b"".join(chunks)

    def _connect(self, target: _Target, deadline: float) -> ssl.SSLSocket:
        errors: list[str] = []
        for family, sockaddr in self._addresses(target, deadline):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(_remaining(deadline))
                sock.connect(sockaddr)  # the checked address itself: no second lookup
            except OSError as exc:
                sock.close()
                errors.append(f"{sockaddr[0]}: {exc}")
                continue
            try:
                sock.settimeout(_remaining(deadline))
                # SNI and the certificate check use the host name.
                return self._ssl.wrap_socket(sock, server_hostname=target.host)
            except BaseException:
                sock.close()
                raise
        raise _FetchError(f"cannot connect to {target.host}: {'; '.join(errors)}")

    def _addresses(self, target: _Target, deadline: float) -> list[tuple[int, Any]]:
        """Resolve once and refuse the host if any address is not public.

        One private answer among public ones is refused too: a resolver that
        mixes them is either misconfigured or an attacker's rebinding setup.
        """
        infos = _resolve(target.host, target.port, _remaining(deadline))
        addresses = list(dict.fromkeys((family, sockaddr) for family, _, _, _, sockaddr in infos))
        if not self._allow_private:
            blocked = [
                str(sockaddr[0])
                for _, sockaddr in addresses
                if not is_public_address(ipaddress.ip_address(str(sockaddr[0]).split("%")[0]))
            ]
            if blocked:
                raise _FetchError(f"{target.host} resolves to non-public address(es) {', '.join(blocked)}")
        return addresses


class _TimeoutError(Exception):
    """The overall deadline passed between two socket operations."""


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _TimeoutError("time limit reached")
    return left


def _resolve(host: str, port: int, timeout: float) -> list[Any]:
    """``getaddrinfo`` bounded in time: the C resolver has no timeout of its own."""
    result: list[Any] = []
    errors: list[OSError] = []

    def run() -> None:
        try:
            result.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            errors.append(exc)

    worker = threading.Thread(target=run, name=f"mcp-attest-dns-{host}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise _TimeoutError(f"resolving {host} took longer than the time limit")
    if errors or not result:
        raise _FetchError(f"cannot resolve {host}: {errors[0] if errors else 'no address'}")
    return result


def _parse_key_set(iss: str, body: bytes) -> dict[str, Key]:
    """A published JWKS, refused as a whole on any key K2/K3 refuse or any secret in it.

    A key set served to the world must hold public keys only: an HS256
    secret or a private member there means anyone can sign as the issuer.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _RefusedError("not JSON") from None
    jwks = document.get("keys") if isinstance(document, dict) else None
    for index, jwk in enumerate(jwks if isinstance(jwks, list) else []):
        if isinstance(jwk, dict) and (_PRIVATE_MEMBERS & jwk.keys() or jwk.get("kty") == "oct"):
            raise _RefusedError(f"key #{index} is secret (symmetric or private) and must not be published")
    try:
        return keys_from_jwks(iss, document)
    except KeyringError as exc:
        raise _RefusedError(str(exc)) from None
