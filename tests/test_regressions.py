"""Regression tests: one per bug found, named for what broke."""

from __future__ import annotations

import json
import tracemalloc
from collections import UserDict
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import anyio
import pytest

from mcp_attest import (
    InMemoryReplayStore,
    Issuer,
    Keyring,
    Reason,
    StoreUnavailableError,
    Verifier,
    canonicalize,
    generate_key,
    server_fingerprint,
)
from mcp_attest.algorithms import HS256Key, KeyMaterialError
from mcp_attest.mcp import AttestationGuard


@pytest.mark.parametrize("prefix", [b"{", b" {", b"\n-"])
def test_regression_random_hs256_secret_starting_like_text_is_accepted(prefix: bytes) -> None:
    """Regression: 1 in 256 generated secrets began with '{' and were refused as a JWK."""
    secret = prefix + bytes(range(1, 40))
    assert HS256Key("k", secret).kid == "k"


@pytest.mark.parametrize(
    "text",
    [
        b"-----BEGIN PUBLIC KEY-----\nMFkw" + b"A" * 40,
        b' {"kty":"EC","crv":"P-256","x":"' + b"A" * 43 + b'"}',
    ],
)
def test_regression_hs256_secret_that_is_a_pem_or_jwk_is_still_refused(text: bytes) -> None:
    with pytest.raises(KeyMaterialError, match="looks like a PEM or JWK"):
        HS256Key("k", text)


def test_regression_full_in_memory_store_fails_fast_without_rescanning() -> None:
    """A store full of live keys used to rescan its whole table on every further claim.

    A rescan copies every live entry into a list (hundreds of KB here); a
    fast refusal allocates next to nothing. Peak traced memory tells the
    two apart without patching the store, which the compiled build forbids.
    """
    store = InMemoryReplayStore(max_entries=5000)
    for i in range(5000):
        assert store.claim(i.to_bytes(32, "little"), 1000.0, 0.0)
    with pytest.raises(StoreUnavailableError):
        store.claim(b"\xff" * 32, 1000.0, 0.0)
    tracemalloc.start()
    try:
        for i in range(50):
            with pytest.raises(StoreUnavailableError):
                store.claim((10_000 + i).to_bytes(32, "little"), 1000.0, 1.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000, f"{peak} bytes traced: the full table was rescanned"
    assert store.claim(b"\xfe" * 32, 3000.0, 1001.0)  # the first keys expired: room again


def test_regression_guard_deeply_nested_non_object_attestation_is_a_rejection() -> None:
    """A list nested past Python's recursion limit in _meta.attestation escaped the guard."""
    nested: list[object] = []
    for _ in range(5000):
        nested = [nested]
    guard = AttestationGuard(Verifier(Keyring().with_key("i", generate_key("HS256", "k")), "sha256:x"))
    verdict = anyio.run(guard.check, "t", {}, {"attestation": nested})
    assert (verdict.reason, verdict.detail) == (Reason.SIGNATURE_INVALID, "malformed.not_object")


@pytest.mark.parametrize(
    "arguments",
    [
        MappingProxyType({"path": "/srv/a", "opts": {"n": 1}}),
        UserDict({"path": "/srv/a"}),
        {"path": "/srv/a", "opts": MappingProxyType({"n": 1}), "list": ({"x": 1},)},
    ],
    ids=["mappingproxy", "userdict", "nested-mappingproxy-and-tuple"],
)
def test_mappings_other_than_dict_sign_and_verify_like_dicts(arguments: Mapping[str, Any]) -> None:
    """Was: the issuer signed a top-level MappingProxyType but the verifier called it not
    canonicalizable, and a nested one failed to sign. Any Mapping is a JSON object now."""
    ring = Keyring().with_key("agent://p", generate_key("HS256", "k1"))
    fp = server_fingerprint("files", "prod-1")
    env = Issuer(ring, iss="agent://p", sub="u").sign(
        tool="t", arguments=arguments, server_fingerprint=fp, intent="x"
    )
    verdict = Verifier(ring, fp).verify(env.to_json(), tool="t", arguments=arguments)
    assert (verdict.accepted, verdict.args_binding) == (True, "identity")
    assert canonicalize(arguments) == canonicalize(json.loads(json.dumps(_plain(arguments))))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
