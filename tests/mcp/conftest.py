"""Shared keys, signers and live servers for the MCP integration tests."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import StdioServerParameters
from mcp_test_servers import FINGERPRINT, asgi_app, build

from mcp_attest import Issuer, Keyring, generate_key, server_fingerprint
from mcp_attest.demo import serve_in_thread
from mcp_attest.mcp import AttestationGuard

HERE = Path(__file__).parent
ISS = "agent://tests"


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


@dataclass(frozen=True)
class Case:
    """One tools/call and the reason the guard must give (None = accepted)."""

    label: str
    tool: str
    arguments: dict[str, Any]
    attestation: Any
    expected: str | None


def reason_cases(issuer: Issuer, signing_ring: Keyring, tag: str) -> list[Case]:
    """One call per PROFILE reason, plus the accepted calls they need.

    ``tag`` makes the marker names unique so cases from different
    parametrizations never see each other's files.
    """

    def sign(arguments: dict[str, Any], *, tool: str = "mark", who: Issuer = issuer, **kw: Any) -> Any:
        options = {"server_fingerprint": FINGERPRINT, "intent": "test", "commit": "both", **kw}
        return who.sign(tool=tool, arguments=arguments, **options).to_wire()

    def args(name: str) -> dict[str, Any]:
        return {"name": f"{tag}-{name}"}

    replayed = sign(args("replay"))
    tampered = sign(args("original"))
    projected = sign(args("projected"), commit="projection")
    forged = dict(sign(args("forged")))
    forged["signature"] = "0" * 64
    stale = Issuer(signing_ring, iss=ISS, sub="user:alice", clock=lambda: time.time() - 7200)
    rogue = Issuer(Keyring().with_key(ISS, generate_key("HS256", "rogue")), iss=ISS, sub="user:mallory")
    return [
        Case("valid", "mark", args("valid"), sign(args("valid")), None),
        Case("first use", "mark", args("replay"), replayed, None),
        Case("replay", "mark", args("replay"), replayed, "nonce_replay"),
        Case("tampered args", "mark", args("tampered"), tampered, "args_commitment_mismatch"),
        # only a projection of other arguments: redacted, refused by the default strict binding (A3)
        Case("redacted args", "mark", args("redacted"), projected, "args_commitment_mismatch"),
        Case("forged signature", "mark", args("forged"), forged, "signature_invalid"),
        Case(
            "other server",
            "mark",
            args("other"),
            sign(args("other"), server_fingerprint=server_fingerprint("billing", "prod")),
            "server_mismatch",
        ),
        Case(
            "wrong tool", "mark", args("wrong-tool"), sign(args("wrong-tool"), tool="echo"), "tool_mismatch"
        ),
        Case("expired", "mark", args("expired"), sign(args("expired"), who=stale, exp_seconds=60), "expired"),
        Case("unknown key", "mark", args("rogue"), sign(args("rogue"), who=rogue), "key_unavailable"),
        Case("absent", "mark", args("absent"), None, "attestation_required"),
    ]


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


def stdio_params(framework: str, keys: Path, marks: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=[str(HERE / "mcp_test_servers.py"), framework, str(keys), str(marks)],
    )
