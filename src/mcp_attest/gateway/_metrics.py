"""Prometheus text exposition without a client library.

A handful of metric families does not justify a dependency; the text format is small
and stable, and keeping it here means the gateway extra needs nothing the
``mcp`` extra does not already bring.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections import Counter
from collections.abc import Iterable

__all__ = ["Metrics"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}" if inner else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Counters and one latency histogram, safe to bump from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[tuple[str, str]] = Counter()
        self.verdicts: Counter[tuple[str, str]] = Counter()
        self.errors: Counter[str] = Counter()
        self._hist = [0] * (len(_BUCKETS) + 1)
        self._hist_sum = 0.0
        self._hist_count = 0
        self.upstream_restarts: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self.checkpoint_key: str | None = None  # thumbprint of the audit checkpoint key

    def call(self, upstream: str, outcome: str) -> None:
        """A ``tools/call`` the gateway handled: forwarded, rejected or failed."""
        with self._lock:
            self.calls[(upstream, outcome)] += 1

    def verdict(self, upstream: str, reason: str) -> None:
        """``reason`` is ``accepted`` or one of the profile's eight values."""
        with self._lock:
            self.verdicts[(upstream, reason)] += 1

    def error(self, kind: str) -> None:
        """A protocol fault on either side (bad input, upstream timeout, ...)."""
        with self._lock:
            self.errors[kind] += 1

    def refusal(self, limit: str) -> None:
        """A client refused because it reached a limit (sessions, connections, header size ...)."""
        with self._lock:
            self.refusals[limit] += 1

    def restart(self, upstream: str) -> None:
        with self._lock:
            self.upstream_restarts[upstream] += 1

    def observe(self, seconds: float) -> None:
        """Latency of one ``tools/call`` through the gateway, decision to response."""
        with self._lock:
            self._hist[bisect.bisect_left(_BUCKETS, seconds)] += 1
            self._hist_sum += seconds
            self._hist_count += 1

    def render(self) -> str:
        """The text exposition format, version 0.0.4."""
        with self._lock:
            out = _family(
                "mcp_attest_gateway_calls_total",
                "counter",
                "tools/call requests by upstream and outcome.",
                ((_labels(upstream=u, outcome=o), n) for (u, o), n in sorted(self.calls.items())),
            )
            out += _family(
                "mcp_attest_gateway_verdicts_total",
                "counter",
                "Verification verdicts by upstream and reason.",
                ((_labels(upstream=u, reason=r), n) for (u, r), n in sorted(self.verdicts.items())),
            )
            out += _family(
                "mcp_attest_gateway_errors_total",
                "counter",
                "Protocol faults by kind.",
                ((_labels(kind=k), n) for k, n in sorted(self.errors.items())),
            )
            out += _family(
                "mcp_attest_gateway_refusals_total",
                "counter",
                "Clients refused at a limit, by limit.",
                ((_labels(limit=k), n) for k, n in sorted(self.refusals.items())),
            )
            out += _family(
                "mcp_attest_gateway_upstream_restarts_total",
                "counter",
                "Restarts of stdio upstream processes.",
                ((_labels(upstream=u), n) for u, n in sorted(self.upstream_restarts.items())),
            )
            bounds = [*(repr(b) for b in _BUCKETS), "+Inf"]
            cumulative = list(itertools.accumulate(self._hist))
            out += _family(
                "mcp_attest_gateway_call_seconds",
                "histogram",
                "Latency of tools/call through the gateway.",
                [
                    *((f"_bucket{_labels(le=le)}", n) for le, n in zip(bounds, cumulative, strict=True)),
                    ("_sum", self._hist_sum),
                    ("_count", self._hist_count),
                ],
            )
            if self.checkpoint_key is not None:
                out += _family(
                    "mcp_attest_gateway_audit_checkpoint_key_info",
                    "gauge",
                    "The key signing audit checkpoints (RFC 7638 thumbprint).",
                    [(_labels(thumbprint=self.checkpoint_key), 1)],
                )
        return "\n".join(out) + "\n"


def _family(name: str, kind: str, text: str, samples: Iterable[tuple[str, object]]) -> list[str]:
    """One metric family: HELP and TYPE, then a line per sample (name suffix and labels, value)."""
    return [
        f"# HELP {name} {text}",
        f"# TYPE {name} {kind}",
        *(f"{name}{tail} {value}" for tail, value in samples),
    ]
