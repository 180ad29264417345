"""Server fingerprints: how a plan names the server an entry is meant for (V5).

The draft leaves the fingerprint's derivation open; both sides only need to
agree by configuration. The documented default hashes a server's name and
an operator-chosen id, length-prefixed; a TLS public key can be named
instead when it is known.
"""

from __future__ import annotations

import hashlib
import struct

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

__all__ = ["server_fingerprint", "tls_key_fingerprint"]

_U32 = struct.Struct(">I")


def server_fingerprint(name: str, server_id: str = "") -> str:
    """``sha256:<hex>`` of the length-prefixed UTF-8 name and id."""
    name_b, id_b = name.encode("utf-8"), server_id.encode("utf-8")
    digest = hashlib.sha256(_U32.pack(len(name_b)) + name_b + _U32.pack(len(id_b)) + id_b)
    return "sha256:" + digest.hexdigest()


def tls_key_fingerprint(public_key: PublicKeyTypes) -> str:
    """``sha256:<hex>`` of the DER SubjectPublicKeyInfo (the form pinning tools use)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()
