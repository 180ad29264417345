"""RFC 9162 Merkle trees over audit records: roots, inclusion and consistency proofs.

A hash chain proves order, but a third party checking one record against
it must replay every record before it. The Merkle tree of RFC 9162
(section 2.1: leaf hash ``SHA-256(0x00 || leaf)``, interior node
``SHA-256(0x01 || left || right)``, split at the largest power of two
below the size) gives each record an O(log n) inclusion proof against a
signed tree head, and two heads an O(log n) proof that the later one only
appended to the earlier one. The leaf is a record's JCS bytes (its body
without ``hash``), so a proof starts from the record exactly as exported.

``MerkleTree`` keeps every complete level (about 2n hashes), which is what
the CLI needs to answer proofs for any size up to n; ``Frontier`` keeps
only the O(log n) perfect subtree roots, which is all a writer signing
tree heads or a verifier scanning the log needs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "Frontier",
    "MerkleTree",
    "leaf_hash",
    "node_hash",
    "root_from_consistency",
    "root_from_inclusion",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash: the 0x00 prefix keeps a leaf from posing as a node."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two strictly below ``size`` (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


class MerkleTree:
    """A tree over leaf hashes, answering roots and proofs for any prefix size."""

    def __init__(self, leaves: Iterable[bytes]) -> None:
        levels = [list(leaves)]
        while len(levels[-1]) > 1:
            below = levels[-1]
            levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
        self._levels = levels

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def _range(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end): a stored node when the range is an aligned power of two."""
        width = end - start
        height = width.bit_length() - 1
        if width == 1 << height and start % width == 0:
            return self._levels[height][start >> height]
        k = _split(width)
        return node_hash(self._range(start, start + k), self._range(start + k, end))

    def _check(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} is outside 0..{self.size}")

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all of them by default)."""
        size = self.size if size is None else size
        self._check(size)
        return EMPTY_ROOT if size == 0 else self._range(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]), leaf-side first (RFC 9162 section 2.1.3.1)."""
        size = self.size if size is None else size
        self._check(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} is outside a tree of {size}")
        path: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            k = _split(end - start)
            if index < start + k:
                path.append(self._range(start + k, end))
                end = start + k
            else:
                path.append(self._range(start, start + k))
                start += k
        path.reverse()
        return path

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        """PROOF(old, D[new]) (RFC 9162 section 2.1.4.1); empty when old is 0 or equals new."""
        new = self.size if new is None else new
        self._check(new)
        if not 0 <= old <= new:
            raise ValueError(f"old size {old} is outside 0..{new}")
        if old in (0, new):
            return []
        path: list[bytes] = []
        start, end, whole = 0, new, True
        while old - start != end - start:
            k = _split(end - start)
            if old - start <= k:
                path.append(self._range(start + k, end))
                end = start + k
            else:
                path.append(self._range(start, start + k))
                start += k
                whole = False
        if not whole:
            path.append(self._range(start, end))
        path.reverse()
        return path


class Frontier:
    """The roots of the perfect subtrees of a growing tree: O(log n) state.

    Appending is a binary-counter carry; the root folds the subtree roots
    from the right, which is the RFC's split read bottom-up.
    """

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[tuple[int, bytes]] = []  # (height, hash), largest first

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash."""
        height, node = 0, leaf
        while self._peaks and self._peaks[-1][0] == height:
            node = node_hash(self._peaks.pop()[1], node)
            height += 1
        self._peaks.append((height, node))
        self.size += 1

    def root(self) -> bytes:
        """MTH of every leaf appended so far."""
        if not self._peaks:
            return EMPTY_ROOT
        acc = self._peaks[-1][1]
        for _, peak in reversed(self._peaks[:-1]):
            acc = node_hash(peak, acc)
        return acc


def root_from_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes | None:
    """The root an inclusion proof implies (RFC 9162 section 2.1.3.2), or None if malformed."""
    if not 0 <= index < size:
        return None
    fn, sn, acc = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            acc = node_hash(sibling, acc)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            acc = node_hash(acc, sibling)
        fn >>= 1
        sn >>= 1
    return acc if sn == 0 else None


def root_from_consistency(old: int, new: int, old_root: bytes, path: Sequence[bytes]) -> bytes | None:
    """The new root a consistency proof implies, given the old root (RFC 9162 section 2.1.4.2).

    None when the proof is malformed or does not reproduce ``old_root``.
    """
    if not 0 < old <= new:
        return None
    if old == new:
        return old_root if not path else None
    items = list(path)
    if old & (old - 1) == 0:  # a power of two: the old root is the first node
        items.insert(0, old_root)
    if not items:
        return None
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = items[0]
    for c in items[1:]:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != old_root:
        return None
    return sr
