"""What is API and what is not: every module is either a documented concept or ``_``-prefixed.

A new module must be placed on one side on purpose (docs/api.md), and the
top-level ``__all__`` changes only when this test is changed with it.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import mcp_attest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"

TOP_LEVEL = {
    "ALGORITHMS", "CAPABILITY", "HEADER_NAME", "META_KEY", "RECEIPT_CAPABILITY", "ArgsBinding", "ArgsRef",
    "AttestationRejectedError", "CanonicalizationError", "ConfigurationError", "DiscoveringKeyring",
    "ES256Key", "Envelope", "Error", "FileResolver", "HS256Key", "HeaderError", "InMemoryReplayStore",
    "Issuer", "IssuerAsserted", "Key", "KeyMaterialError", "KeySource", "Keyring", "KeyringError",
    "MalformedEnvelopeError", "PlannedCall", "PlannerDeclared", "RS256Key", "Reason", "ReceiptCheck",
    "ReceiptSigner", "ReplayStore", "ResolverError", "SQLiteReplayStore", "StoreUnavailableError",
    "ToolCall", "Verdict", "Verifier", "VerifierPolicy", "__version__", "active_build", "canonicalize",
    "decode_header", "encode_header", "generate_key", "parse_arguments", "resolve_data_uri",
    "result_digest", "server_fingerprint", "tls_key_fingerprint", "verify_receipt",
}  # fmt: skip


def _public_modules() -> set[str]:
    names = {info.name for info in pkgutil.walk_packages(mcp_attest.__path__, "mcp_attest.")}
    return {n for n in names if not any(part.startswith("_") for part in n.split("."))}


def test_top_level_all_is_exactly_what_users_need() -> None:
    assert set(mcp_attest.__all__) == TOP_LEVEL
    for name in mcp_attest.__all__:
        assert getattr(mcp_attest, name) is not None


def test_every_module_is_documented_as_api_or_marked_private() -> None:
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| `mcp_attest")]
    documented = {row.split("`")[1] for row in rows}
    assert _public_modules() | {"mcp_attest"} == documented, (
        "docs/api.md's module table and the package disagree"
    )


def test_every_public_package_exports_what_it_lists() -> None:
    for package in ("mcp_attest.mcp", "mcp_attest.audit", "mcp_attest.replay", "mcp_attest.gateway"):
        module = importlib.import_module(package)
        assert module.__all__ and all(hasattr(module, name) for name in module.__all__), package
