"""What the MCP tests share beyond fixtures: the issuer name, the per-reason cases, stdio servers.

A module of its own (not ``conftest``) so test files import it by a name
no other test folder uses.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp import StdioServerParameters
from mcp_test_servers import FINGERPRINT

from mcp_attest import Issuer, Keyring, generate_key, server_fingerprint

HERE = Path(__file__).parent
ISS = "agent://tests"


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


def stdio_params(framework: str, keys: Path, marks: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=[str(HERE / "mcp_test_servers.py"), framework, str(keys), str(marks)],
    )
