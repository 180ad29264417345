"""Shared keys, signers and live servers for the MCP integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from _mcp_helpers import ISS, Case, reason_cases
from mcp_test_servers import FINGERPRINT, asgi_app, build

from mcp_attest import Issuer, Keyring, generate_key
from mcp_attest._demo import serve_in_thread
from mcp_attest.mcp import AttestationGuard


@pytest.fixture(scope="session")
def signing_ring() -> Keyring:
    return Keyring().with_key(ISS, generate_key("HS256", "k1"))


@pytest.fixture(scope="session")
def keys_file(signing_ring: Keyring, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "verify.json"
    signing_ring.save(path, private=False)
    return path


@pytest.fixture(scope="session")
def issuer(signing_ring: Keyring) -> Issuer:
    return Issuer(signing_ring, iss=ISS, sub="user:alice")


@pytest.fixture
def cases(issuer: Issuer, signing_ring: Keyring, request: pytest.FixtureRequest) -> list[Case]:
    return reason_cases(issuer, signing_ring, tag=request.node.name.replace("[", "-").replace("]", ""))


@pytest.fixture
def make_guard(signing_ring: Keyring) -> Callable[..., AttestationGuard]:
    def make(**options: Any) -> AttestationGuard:
        options.setdefault("server_fingerprint", FINGERPRINT)
        return AttestationGuard.from_keyring(
            Keyring.from_dict(signing_ring.to_dict(private=False)), **options
        )

    return make


@pytest.fixture(scope="module")
def http_servers(
    signing_ring: Keyring, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[str, Path]]]:
    """One guarded Streamable HTTP server per framework: name -> (url, marks dir)."""
    servers: dict[str, tuple[str, Path]] = {}
    with ExitStack() as stack:
        for framework in ("sdk", "fastmcp"):
            marks = tmp_path_factory.mktemp(f"marks-http-{framework}")
            guard = AttestationGuard.from_keyring(
                Keyring.from_dict(signing_ring.to_dict(private=False)), server_fingerprint=FINGERPRINT
            )
            base = stack.enter_context(serve_in_thread(asgi_app(build(framework, guard, marks))))
            servers[framework] = (base + "/mcp", marks)
        yield servers
