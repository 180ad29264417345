"""The replay key (PROFILE R1), apart from the store contract so that it can be compiled.

``base`` holds a runtime-checkable Protocol, which mypyc cannot compile;
this function runs on every verification, so it lives here.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Final

__all__ = ["replay_key"]

_U32: Final = struct.Struct(">I")


def replay_key(iss: str, nonce: str, index: int) -> bytes:
    """R1: length-prefixed so that no two (iss, nonce, index) triples collide."""
    iss_b = iss.encode("utf-8")
    nonce_b = nonce.encode("utf-8")
    return hashlib.sha256(
        _U32.pack(len(iss_b)) + iss_b + _U32.pack(len(nonce_b)) + nonce_b + _U32.pack(index)
    ).digest()
