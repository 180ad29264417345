"""Audit chains under real concurrency and crashes, against the real servers.

8 processes x 1,000 appends per chain, and a writer killed with SIGKILL in
the middle of a burst (the replay stores' races are in tests/replay/).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from _servers import start_workers
from mcp_attest.stores import open_audit_log

PROCESSES = 8
APPENDS = 1000

pytestmark = pytest.mark.slow


def _append_race(url: str, method: str = "append") -> None:
    """Eight writers on one chain: no fork, no gap, no duplicate, and it verifies."""
    workers = start_workers([[method, url, str(APPENDS), str(n)] for n in range(PROCESSES)])
    acked = []
    for w in workers:
        lines = list(w.lines())
        assert w.process.wait(60) == 0
        assert lines[-1] == "done"
        acked.extend(lines[:-1])
    total = PROCESSES * APPENDS
    assert len(set(acked)) == total
    with open_audit_log(url, create=False) as log:
        report = log.verify()
        assert report.accepted, report.broken
        assert report.records == total and report.head_seq == total
        assert not [w for w in report.warnings if "queued" in w]
        records = list(log.records())
        assert [r.seq for r in records] == list(range(1, total + 1)), "seqs have gaps or duplicates"
        assert sorted(r.facts["attestationId"] for r in records) == sorted(acked)


def test_audit_sqlite_8_writers_1000_appends_one_chain(tmp_path: Path) -> None:
    _append_race(f"sqlite://{tmp_path / 'audit.db'}")


@pytest.mark.parametrize("method", ["append", "submit"])
def test_audit_postgres_8_writers_1000_appends_one_chain(pg_log_url: str, method: str) -> None:
    """``submit`` queues each record and the writers' sequencers seal them: still one gapless chain."""
    _append_race(pg_log_url, method)


def _crash_mid_burst(url: str, method: str = "append") -> None:
    """SIGKILL a writer mid-burst: every record it acknowledged is stored and the chain verifies."""
    [victim, bystander] = start_workers([[method, url, "100000", "0"], [method, url, "300", "1"]])
    acked = []
    for line in victim.lines():
        acked.append(line)
        if len(acked) == 300:
            os.kill(victim.process.pid, signal.SIGKILL)
            break
    acked.extend(victim.lines())  # whatever was already in the pipe
    victim.process.wait(30)
    bystander_lines = list(bystander.lines())
    assert bystander.process.wait(60) == 0 and bystander_lines[-1] == "done"
    acked.extend(bystander_lines[:-1])
    with open_audit_log(url) as log:  # a new writer continues the same chain (and sequences what was queued)
        report = log.verify()
        assert report.accepted, report.broken
        records = list(log.records())
        assert set(acked) <= {r.facts["attestationId"] for r in records}
        assert [r.seq for r in records] == list(range(1, report.head_seq + 1))


def test_audit_sqlite_kill_9_writer_mid_burst(tmp_path: Path) -> None:
    _crash_mid_burst(f"sqlite://{tmp_path / 'audit.db'}")


@pytest.mark.parametrize("method", ["append", "submit"])
def test_audit_postgres_kill_9_writer_mid_burst(pg_log_url: str, method: str) -> None:
    """A killed ``submit`` writer leaves acknowledged records queued: the next writer to open seals them."""
    _crash_mid_burst(pg_log_url, method)
