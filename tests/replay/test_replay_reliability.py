"""Replay stores under real concurrency: 8 processes x 2,000 claims of the same keys (R3)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from _servers import start_workers

PROCESSES = 8
CLAIMS = 2000

pytestmark = pytest.mark.slow


def _claim_race(url: str) -> None:
    """R3: every key claimed by all eight processes has exactly one winner."""
    workers = start_workers([["claim", url, str(CLAIMS), str(seed)] for seed in range(PROCESSES)])
    results = [json.loads(next(w.lines())) for w in workers]
    for w in workers:
        assert w.process.wait(60) == 0
    assert sum(r["errors"] for r in results) == 0
    wins = Counter(i for r in results for i in r["won"])
    assert len(wins) == CLAIMS, "some key was never claimed"
    assert set(wins.values()) == {1}, "some key was claimed twice"


def test_r3_redis_8_processes_2000_claims_one_winner_per_key(redis_url: str, redis_prefix: str) -> None:
    _claim_race(f"{redis_url}?prefix={redis_prefix}")


def test_r3_sqlite_8_processes_2000_claims_one_winner_per_key(tmp_path: Path) -> None:
    # A fresh file: the eight processes also race to create it and switch it to WAL
    # (regression: some used to fail their first claim with "database is locked").
    _claim_race(f"sqlite://{tmp_path / 'replay.db'}")
