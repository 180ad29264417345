"""Carrying envelopes: ``params._meta.attestation`` and the ``X-MCP-Attestation`` header (V11)."""

from __future__ import annotations

from mcp_attest.canonical import MAX_ENVELOPE_BYTES
from mcp_attest.envelope import Envelope, b64url_decode, b64url_encode
from mcp_attest.errors import Error

__all__ = [
    "CAPABILITY",
    "HEADER_NAME",
    "MAX_HEADER_CHARS",
    "META_KEY",
    "HeaderError",
    "decode_header",
    "encode_header",
]

HEADER_NAME = "X-MCP-Attestation"
CAPABILITY = "attestation/tool-call"
META_KEY = "attestation"
MAX_HEADER_CHARS = MAX_ENVELOPE_BYTES


class HeaderError(Error, ValueError):
    """A header value that is not base64url of at most 64 KiB."""


def encode_header(envelope: Envelope) -> str:
    """``base64url(JCS(envelope))``, no padding."""
    return b64url_encode(envelope.to_json())


def decode_header(value: str) -> bytes:
    """The envelope bytes a header carries; the caller parses them strictly."""
    if len(value) > MAX_HEADER_CHARS:
        raise HeaderError(f"header value is longer than {MAX_HEADER_CHARS} characters")
    try:
        return b64url_decode(value.strip())
    except ValueError:
        raise HeaderError("header value is not unpadded base64url") from None
