"""The repository's copies of the shared spec and v0 vectors equal ``../shared`` byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared_paths import SHARED, SPEC_COPY, V0_COPY


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("shared", "copy"),
    [(SHARED / "spec", SPEC_COPY), (SHARED / "vectors" / "sep-2787-v0", V0_COPY)],
    ids=["spec", "v0-vectors"],
)
def test_repository_copy_matches_workspace_shared(shared: Path, copy: Path) -> None:
    if not shared.is_dir():
        pytest.skip(f"{shared} is not in this checkout's workspace; the repository copy is used")
    mine = {k: v for k, v in _files(copy).items() if k != "README.md" or copy != SPEC_COPY}
    assert mine == _files(shared), f"{copy} drifted from {shared}: copy the shared files again"


def test_repository_copies_exist() -> None:
    assert (SPEC_COPY / "PROFILE.md").is_file() and (SPEC_COPY / "CLI.md").is_file()
    assert (V0_COPY / "MANIFEST.json").is_file()
    assert os.listdir(V0_COPY / "normative" / "positive")
