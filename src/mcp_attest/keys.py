"""Keyrings: issuers to JWKS, kid = secretVersion (PROFILE K1, K3, K4).

One file format serves both sides: with private members it is a signing
keyring, without them a verify-only keyring. A keyring that holds any key
the profile refuses does not load at all (K2): a configuration error named
at start-up beats a per-call surprise.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mcp_attest.algorithms import (
    ALGORITHMS,
    ES256Key,
    HS256Key,
    Key,
    KeyMaterialError,
    RS256Key,
    key_from_jwk,
)
from mcp_attest.errors import ConfigurationError

__all__ = ["KeySource", "Keyring", "KeyringError", "generate_key", "keys_from_jwks"]

_MAX_KEYRING_BYTES = 4 * 1024 * 1024


@runtime_checkable
class KeySource(Protocol):
    """Where a verifier finds keys (K1): a ``Keyring``, or one that also discovers (K5)."""

    def get(self, iss: str, kid: str) -> Key | None:
        """The key for ``(iss, secretVersion)``, or ``None`` (``key_unavailable``)."""
        ...


class KeyringError(ConfigurationError):
    """A keyring that cannot be used; always a configuration error (V12)."""


def generate_key(alg: str, kid: str) -> Key:
    """A fresh key: 32 random bytes, a P-256 key, or a 3072-bit RSA key."""
    if alg == "HS256":
        return HS256Key(kid, secrets.token_bytes(32))
    if alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        return ES256Key(kid, private.public_key(), private)
    if alg == "RS256":
        rsa_private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        return RS256Key(kid, rsa_private.public_key(), rsa_private)
    raise KeyringError(f"unsupported algorithm {alg!r}; choose one of {', '.join(ALGORITHMS)}")


def default_kid(now: float | None = None) -> str:
    """Date-based key id, sortable, so the newest key is obvious in a file."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))


def keys_from_jwks(iss: str, jwks: Any) -> dict[str, Key]:
    """One issuer's RFC 7517 key set, in document order, refused as a whole on any bad key.

    Shared by keyring files (K3) and discovered documents (K5) so that both
    apply the same K2 rules and name the offending key the same way.
    """
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise KeyringError(f"issuer {iss!r}: expected a JWKS object with a 'keys' array")
    keys: dict[str, Key] = {}
    for index, jwk in enumerate(jwks["keys"]):
        try:
            key = key_from_jwk(jwk, label=f"{iss}#{index}")
        except KeyMaterialError as exc:
            raise KeyringError(str(exc)) from None
        if key.kid in keys:
            raise KeyringError(f"issuer {iss!r}: kid {key.kid!r} appears twice")
        keys[key.kid] = key
    return keys


class Keyring:
    """Keys by issuer and kid, in file order (the last listed is the newest)."""

    def __init__(self, issuers: Mapping[str, Mapping[str, Key]] | None = None) -> None:
        self._issuers: dict[str, dict[str, Key]] = {iss: dict(keys) for iss, keys in (issuers or {}).items()}

    # -- loading -----------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Keyring:
        """Read a K3 file; every problem is a ``KeyringError`` naming the file."""
        p = Path(path)
        try:
            with p.open("rb") as fh:
                data = fh.read(_MAX_KEYRING_BYTES + 1)
        except OSError as exc:
            raise KeyringError(f"cannot read keyring {p}: {exc.strerror or exc}") from None
        if len(data) > _MAX_KEYRING_BYTES:
            raise KeyringError(f"keyring {p} is larger than {_MAX_KEYRING_BYTES} bytes")
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise KeyringError(f"keyring {p} is not JSON") from None
        try:
            return cls.from_dict(obj)
        except KeyringError as exc:
            raise KeyringError(f"keyring {p}: {exc}") from None

    @classmethod
    def from_dict(cls, obj: Any) -> Keyring:
        """Build from ``{"issuers": {iss: JWKS}}``, refusing the whole ring on any bad key."""
        if not isinstance(obj, dict) or not isinstance(obj.get("issuers"), dict):
            raise KeyringError('expected {"issuers": {"<iss>": {"keys": [...]}}}')
        ring: dict[str, dict[str, Key]] = {}
        for iss, jwks in obj["issuers"].items():
            if not iss:
                raise KeyringError("issuer name is empty")
            ring[iss] = keys_from_jwks(iss, jwks)
        return cls(ring)

    # -- queries -----------------------------------------------------------

    def get(self, iss: str, kid: str) -> Key | None:
        """K1 selection; ``None`` means ``key_unavailable``."""
        keys = self._issuers.get(iss)
        return None if keys is None else keys.get(kid)

    def signing_key(self, iss: str, kid: str | None = None) -> Key:
        """The key an issuer signs with: the named kid or the newest (K4)."""
        keys = self._issuers.get(iss)
        if not keys:
            raise KeyringError(f"no keys for issuer {iss!r}")
        if kid is None:
            key = list(keys.values())[-1]
        elif kid in keys:
            key = keys[kid]
        else:
            raise KeyringError(f"issuer {iss!r} has no key {kid!r}")
        if not key.can_sign:
            raise KeyringError(f"key {iss}/{key.kid} has no private part; this is a verify-only keyring")
        return key

    def issuers(self) -> Iterator[str]:
        """Issuer names, in file order."""
        return iter(self._issuers)

    def __iter__(self) -> Iterator[tuple[str, Key]]:
        for iss, keys in self._issuers.items():
            for key in keys.values():
                yield iss, key

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._issuers.values())

    def __repr__(self) -> str:
        return f"Keyring({', '.join(f'{i}/{k.kid}:{k.alg}' for i, k in self)})"

    # -- building and saving -----------------------------------------------

    def with_key(self, iss: str, key: Key) -> Keyring:
        """A new keyring with ``key`` appended as the issuer's newest (rotation)."""
        issuers = {i: dict(keys) for i, keys in self._issuers.items()}
        keys = issuers.setdefault(iss, {})
        if key.kid in keys:
            raise KeyringError(f"issuer {iss!r} already has a key {key.kid!r}")
        keys[key.kid] = key
        return Keyring(issuers)

    def without_key(self, iss: str, kid: str) -> Keyring:
        """A new keyring without one key: its envelopes become ``key_unavailable``."""
        issuers = {
            i: {k: v for k, v in keys.items() if (i, k) != (iss, kid)} for i, keys in self._issuers.items()
        }
        return Keyring(issuers)

    def to_dict(self, *, private: bool) -> dict[str, Any]:
        """The K3 document; ``private=False`` gives the verify-only ring."""
        return {
            "issuers": {
                iss: {"keys": [k.private_jwk() if private else k.public_jwk() for k in keys.values()]}
                for iss, keys in self._issuers.items()
            }
        }

    def save(self, path: str | os.PathLike[str], *, private: bool) -> None:
        """Write atomically; a file holding any secret is created 0600.

        HS256 keys are secrets even in a verify-only ring, so the mode
        depends on the content, not on the ``private`` flag alone.
        """
        secret = private or any(isinstance(k, HS256Key) for _, k in self)
        data = orjson.dumps(self.to_dict(private=private), option=orjson.OPT_INDENT_2) + b"\n"
        p = Path(path)
        tmp = p.with_name(f".{p.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, p)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
