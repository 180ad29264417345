"""Gateway fixtures live in ``gateway_helpers`` (a unique module name, importable by the tests)."""

from pathlib import Path

import pytest
from gateway_helpers import everything_http, hs_keys, http_gateway, node_clients, third_party

__all__ = ["everything_http", "hs_keys", "http_gateway", "node_clients", "third_party"]


@pytest.fixture(autouse=True)
def _state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway started without --state-dir writes under the test's own XDG state home."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
