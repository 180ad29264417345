"""Tool-definition pinning (beyond the draft, opt-in).

An attestation binds a call to a tool *name*; it says nothing about what
the upstream currently means by that name. Pinning records a digest of each
tool definition the first time the gateway sees it (or takes it from the
configuration) and refuses calls once the upstream serves a different
definition under the same name, until an operator re-pins.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from mcp_attest.canonical import CanonicalizationError, canonicalize_arguments

__all__ = ["PinStore", "tool_digest"]

logger = logging.getLogger("mcp_attest.gateway")


def tool_digest(tool: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the JCS form of the definition as the upstream sent it."""
    try:
        data = canonicalize_arguments(dict(tool))
    except CanonicalizationError:
        data = orjson.dumps(tool, option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(data).hexdigest()


class PinStore:
    """First-seen digests per tool, persisted so a restart does not re-trust a changed tool."""

    def __init__(self, path: Path | None, fixed: Mapping[str, str]) -> None:
        self.path = path
        self._fixed = dict(fixed)
        self._lock = threading.Lock()
        self._pins: dict[str, str] = {}
        self._changed: dict[str, str] = {}
        if path is not None and path.exists():
            try:
                loaded = orjson.loads(path.read_bytes())
                self._pins = {str(k): str(v) for k, v in loaded.items()}
            except (OSError, orjson.JSONDecodeError, AttributeError) as exc:
                raise ValueError(f"pin file {path} is unreadable: {exc}") from None

    def pinned(self, name: str) -> str | None:
        return self._fixed.get(name) or self._pins.get(name)

    def observe(self, tools: Any) -> None:
        """Record a ``tools/list`` page: pin new tools, flag changed ones."""
        if not isinstance(tools, list):
            return
        dirty = False
        with self._lock:
            for tool in tools:
                if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                    continue
                name, digest = tool["name"], tool_digest(tool)
                pinned = self.pinned(name)
                if pinned is None:
                    self._pins[name] = digest
                    dirty = True
                elif pinned != digest and name not in self._changed:
                    # Sticky: a later listing of the pinned definition (the same list
                    # naming the tool twice, or another session) does not clear it;
                    # only an operator re-pinning does.
                    logger.warning("tool %r changed upstream: pinned %s, now %s", name, pinned, digest)
                    self._changed[name] = digest
            if dirty:
                self._save()

    def refusal(self, name: str) -> str | None:
        """Why a call to ``name`` must be refused, or None."""
        current = self._changed.get(name)
        if current is None:
            return None
        return f"tool {name!r} definition changed upstream: pinned {self.pinned(name)}, now {current}"

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        tmp.write_bytes(orjson.dumps(self._pins, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        os.replace(tmp, self.path)
