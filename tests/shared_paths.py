"""What tests take from the shared spec: where it and the v0 vectors live, and its fixed values.

The workspace's ``../shared`` is the source of truth; the repository keeps
byte-identical copies (``docs/spec/``, ``conformance/sep-2787-v0/``) so a
clone checked out anywhere still runs every test. ``test_shared_copies``
fails when a copy drifts from ``../shared``.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SPEC_COPY = REPO / "docs" / "spec"
V0_COPY = REPO / "conformance" / "sep-2787-v0"


def profile_md() -> Path:
    """PROFILE.md: the workspace's when present, else the repository copy."""
    shared = SHARED / "spec" / "PROFILE.md"
    return shared if shared.is_file() else SPEC_COPY / "PROFILE.md"


def v0_vectors() -> Path:
    """The published v0 bundle: the workspace's when present, else the repository copy."""
    shared = SHARED / "vectors" / "sep-2787-v0"
    return shared if shared.is_dir() else V0_COPY


REASONS = frozenset(
    {
        "attestation_required",
        "signature_invalid",
        "key_unavailable",
        "expired",
        "server_mismatch",
        "tool_mismatch",
        "nonce_replay",
        "args_commitment_mismatch",
    }
)
"""The draft's eight reasons, written out here rather than read from ``Reason``
so that a test compares the implementation against the spec, not itself."""
