"""The gateway's log lines: text for people, JSON Lines for collectors.

Every ``tools/call`` decision is one line at INFO on the ``verdict``
logger, so an operator can answer "why was my call refused?" from the log
alone. Tool names come from clients: they are escaped (text) or
JSON-encoded (json) and cut to a bounded length, so a client cannot forge
or flood log lines. Raw arguments and envelopes are never logged.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

__all__ = ["announce", "configure", "log_verdict"]

verdict_logger = logging.getLogger("mcp_attest.gateway.verdict")

_MAX_FIELD = 200
_FIELDS = "fields"


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _MAX_FIELD:
        return value[:_MAX_FIELD] + "..."
    return value


def _text_value(value: Any) -> str:
    """Plain when it is a safe token, else a JSON string (quotes and escapes control characters)."""
    if value is None:
        return "-"
    text = str(value)
    if text and text.isprintable() and not any(c in text for c in ' "=\\'):
        return text
    return orjson.dumps(text).decode()


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(name)s %(levelname)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields: dict[str, Any] | None = getattr(record, _FIELDS, None)
        if fields:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record.created, record.msecs),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, _FIELDS, None) or {})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def _timestamp(created: float, msecs: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(msecs):03d}Z"


def announce(fmt: str, text: str, fields: dict[str, Any]) -> None:
    """A start-up line, whatever the log level: an operator must see what is being served."""
    if fmt == "json":
        now = time.time()
        text = orjson.dumps({"ts": _timestamp(now, now % 1 * 1000), "msg": "start", **fields}).decode()
    print(text, file=sys.stderr, flush=True)


def configure(level: str, fmt: str) -> None:
    """One stderr handler for everything the gateway (and its libraries) logs."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def log_verdict(
    upstream: str,
    tool: Any,
    *,
    decision: str,
    reason: str | None,
    detail: str | None,
    attestation_id: str | None,
) -> None:
    """The one line per ``tools/call`` decision."""
    if not verdict_logger.isEnabledFor(logging.INFO):
        return
    fields = {
        "upstream": upstream,
        "tool": _bounded(tool if isinstance(tool, str) else repr(tool)),
        "decision": decision,
        "reason": reason,
        "detail": _bounded(detail),
        "attestationId": attestation_id,
    }
    verdict_logger.info("verdict", extra={_FIELDS: fields})
