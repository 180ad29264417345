"""The gateway's safe defaults (PROFILE A3: strict argument binding unless the operator opts out)."""

from __future__ import annotations

from pathlib import Path

from mcp_attest import InMemoryReplayStore, Keyring, generate_key
from mcp_attest.gateway._policy import build_guard
from mcp_attest.gateway.config import load_config


def _config(tmp_path: Path, verify_table: str) -> Path:
    keys = tmp_path / "verify.json"
    Keyring().with_key("agent://planner", generate_key("ES256", "k1")).save(keys, private=False)
    config = tmp_path / "gateway.toml"
    config.write_text(
        'mode = "verify"\n[listen]\nhttp = "127.0.0.1:8787"\n'
        f'[verify]\nkeys = "verify.json"\n{verify_table}\n'
        '[[upstream]]\nname = "u"\nurl = "http://127.0.0.1:9/mcp"\nserver_name = "u"\nserver_id = "1"\n'
    )
    return config


def test_a3_gateway_binds_arguments_strictly_by_default(tmp_path: Path) -> None:
    config = load_config(str(_config(tmp_path, "")))
    guard = build_guard(config, config.upstreams[0], Keyring.load(config.verify.keys), InMemoryReplayStore())
    assert (config.verify.args_binding, guard.verifier.policy.args_binding) == ("strict", "strict")


def test_a3_gateway_spec_binding_is_an_explicit_opt_in(tmp_path: Path) -> None:
    config = load_config(str(_config(tmp_path, 'args_binding = "spec"')))
    assert config.verify.args_binding == "spec"
