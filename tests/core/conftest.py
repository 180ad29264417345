"""Fixtures for the core suite: keys for all three algorithms, a fixed clock, issuers, verifiers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from _core_helpers import ALGS, ISS, KID, NOW, SERVER, SUB, Clock
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mcp_attest import (
    ES256Key,
    HS256Key,
    InMemoryReplayStore,
    Issuer,
    Key,
    Keyring,
    ReplayStore,
    RS256Key,
    Verifier,
    VerifierPolicy,
)


@pytest.fixture(scope="session")
def keys() -> dict[str, Key]:
    """One private key per algorithm (RSA 2048 to keep generation fast)."""
    ec_private = ec.generate_private_key(ec.SECP256R1())
    rsa_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "HS256": HS256Key(KID["HS256"], bytes(range(0x40, 0x60))),
        "ES256": ES256Key(KID["ES256"], ec_private.public_key(), ec_private),
        "RS256": RS256Key(KID["RS256"], rsa_private.public_key(), rsa_private),
    }


@pytest.fixture(scope="session")
def signing_ring(keys: dict[str, Key]) -> Keyring:
    return Keyring({ISS[a]: {KID[a]: keys[a]} for a in ALGS})


@pytest.fixture(scope="session")
def verify_ring(signing_ring: Keyring) -> Keyring:
    """The verify-only ring, through the K3 file format (public members only)."""
    return Keyring.from_dict(signing_ring.to_dict(private=False))


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture(params=ALGS)
def alg(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def issuer(signing_ring: Keyring, clock: Clock, alg: str) -> Issuer:
    return Issuer(signing_ring, iss=ISS[alg], sub=SUB, clock=clock)


@pytest.fixture
def hs_issuer(signing_ring: Keyring, clock: Clock) -> Issuer:
    return Issuer(signing_ring, iss=ISS["HS256"], sub=SUB, clock=clock)


MakeVerifier = Callable[..., Verifier]


@pytest.fixture
def make_verifier(verify_ring: Keyring, clock: Clock) -> MakeVerifier:
    def make(
        *,
        keyring: Keyring | None = None,
        store: ReplayStore | None = None,
        server: str = SERVER,
        resolvers: dict[str, Any] | None = None,
        **policy: Any,
    ) -> Verifier:
        return Verifier(
            verify_ring if keyring is None else keyring,
            server,
            replay_store=InMemoryReplayStore() if store is None else store,
            policy=VerifierPolicy(**policy),
            clock=clock,
            resolvers=resolvers,
        )

    return make


@pytest.fixture
def verifier(make_verifier: MakeVerifier) -> Verifier:
    return make_verifier()
