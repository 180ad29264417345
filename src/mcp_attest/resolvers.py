"""Fetching ``argsRef`` content (PROFILE A2) for schemes an operator enables.

A resolver maps a URI to the bytes it names, or raises. Only ``data:`` is
on by default: it needs no I/O. Others must be configured explicitly,
because fetching is where a verifier can be turned into a scanner.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlsplit

from mcp_attest.errors import Error

__all__ = ["MAX_REF_BYTES", "FileResolver", "Resolver", "ResolverError", "resolve_data_uri"]

MAX_REF_BYTES = 1024 * 1024

Resolver = Callable[[str], bytes]


class ResolverError(Error, ValueError):
    """A reference that cannot be fetched under the configured limits."""


def resolve_data_uri(uri: str) -> bytes:
    """RFC 2397 ``data:[<mediatype>][;base64],<data>``."""
    if len(uri) > 2 * MAX_REF_BYTES:
        raise ResolverError("data: URI is too large")
    head, sep, payload = uri.partition(",")
    if not sep or not head.lower().startswith("data:"):
        raise ResolverError("not a data: URI")
    if head.lower().endswith(";base64"):
        try:
            content = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ResolverError("data: URI payload is not base64") from None
    else:
        content = unquote_to_bytes(payload)
    if len(content) > MAX_REF_BYTES:
        raise ResolverError("referenced content is too large")
    return content


class FileResolver:
    """``file:`` URIs confined to one directory tree (no traversal, no symlink escape)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = Path(root).resolve()

    def __call__(self, uri: str) -> bytes:
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise ResolverError("not a local file: URI")
        path = Path(unquote_to_bytes(parts.path).decode("utf-8", "strict")).resolve()
        if not path.is_relative_to(self._root):
            raise ResolverError("file: URI outside the allowed root")
        with path.open("rb") as fh:
            content = fh.read(MAX_REF_BYTES + 1)
        if len(content) > MAX_REF_BYTES:
            raise ResolverError("referenced content is too large")
        return content
