"""The Merkle tree against a reference written from RFC 9162's definitions, nothing shared.

The reference below is the RFC's recursive text turned into Python as
literally as possible (MTH, PATH, PROOF/SUBPROOF over lists of leaf data),
with its own hashing. The code under test builds levels bottom-up,
answers proofs from them, and verifies with the RFC's iterative
algorithms; agreeing with the literal reading on every size that matters
(1, 2, 3, 7, 8, 1,000 and 1,000,001 leaves) is the test.
"""

from __future__ import annotations

import hashlib
import time

import pytest

from mcp_attest.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    MerkleTree,
    leaf_hash,
    root_from_consistency,
    root_from_inclusion,
)


def _ref_sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    """RFC 9162 2.1.1 MTH over leaf *data*."""
    n = len(d)
    if n == 0:
        return _ref_sha(b"")
    if n == 1:
        return _ref_sha(b"\x00" + d[0])
    k = _k(n)
    return _ref_sha(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(m, D[n])."""
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """RFC 9162 2.1.4.1 SUBPROOF(m, D[n], b)."""
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def _data(n: int) -> list[bytes]:
    return [f"leaf {i}".encode() for i in range(n)]


SIZES = [1, 2, 3, 7, 8, 1000]


@pytest.mark.parametrize("size", SIZES)
def test_merkle_root_and_every_inclusion_proof_match_the_rfc_reference(size: int) -> None:
    data = _data(size)
    tree = MerkleTree(leaf_hash(x) for x in data)
    root = ref_mth(data)
    assert tree.root() == root
    indexes = range(size) if size <= 8 else [0, 1, 511, 512, 998, 999]
    for m in indexes:
        path = tree.inclusion_proof(m)
        assert path == ref_path(m, data)
        assert root_from_inclusion(m, size, leaf_hash(data[m]), path) == root


@pytest.mark.parametrize("size", SIZES)
def test_merkle_proof_for_a_changed_record_fails(size: int) -> None:
    data = _data(size)
    tree = MerkleTree(leaf_hash(x) for x in data)
    m = size // 2
    path = tree.inclusion_proof(m)
    assert root_from_inclusion(m, size, leaf_hash(data[m] + b"!"), path) != tree.root()
    if size > 1:
        assert root_from_inclusion((m + 1) % size, size, leaf_hash(data[m]), path) != tree.root()
        assert root_from_inclusion(m, size, leaf_hash(data[m]), path[:-1]) != tree.root()


@pytest.mark.parametrize("size", SIZES)
def test_merkle_consistency_proofs_match_the_rfc_reference(size: int) -> None:
    data = _data(size)
    tree = MerkleTree(leaf_hash(x) for x in data)
    olds = range(1, size + 1) if size <= 8 else [1, 2, 3, 500, 512, 513, 999, 1000]
    for old in olds:
        proof = tree.consistency_proof(old)
        assert proof == ref_subproof(old, data, True)
        assert root_from_consistency(old, size, ref_mth(data[:old]), proof) == tree.root()
        if old < size:
            assert root_from_consistency(old, size, ref_mth([*data[:old], b"x"]), proof) != tree.root()


def test_merkle_consistency_fails_for_a_rewritten_prefix() -> None:
    data = _data(7)
    forged = [*data[:2], b"forged", *data[3:]]
    tree = MerkleTree(leaf_hash(x) for x in forged)
    proof = tree.consistency_proof(4)
    assert root_from_consistency(4, 7, ref_mth(data[:4]), proof) != tree.root()


@pytest.mark.timing
def test_merkle_inclusion_in_a_1000001_leaf_tree_is_fast_and_matches_the_reference() -> None:
    size = 1_000_001
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(size)]
    started = time.perf_counter()
    tree = MerkleTree(leaves)
    root = tree.root()
    proofs = {m: tree.inclusion_proof(m) for m in (0, 524_287, 524_288, 999_999, 1_000_000)}
    elapsed = time.perf_counter() - started
    # The reference takes leaf hashes here (hashing a million leaf data
    # twice would only slow the test); the split is the RFC's.
    assert root == _ref_root_over_hashes(leaves)
    for m, path in proofs.items():
        assert root_from_inclusion(m, size, leaves[m], path) == root
        assert root_from_inclusion(m, size, hashlib.sha256(b"other").digest(), path) != root
    assert all(len(path) <= 20 for path in proofs.values())  # O(log n): 2^20 > 1,000,001
    assert elapsed < 10, f"building a 1,000,001-leaf tree and 5 proofs took {elapsed:.1f}s"


def _ref_root_over_hashes(hashes: list[bytes]) -> bytes:
    """MTH with leaf hashes given: the RFC's recursion from the leaf-hash level up."""
    if len(hashes) == 1:
        return hashes[0]
    k = _k(len(hashes))
    return _ref_sha(b"\x01" + _ref_root_over_hashes(hashes[:k]) + _ref_root_over_hashes(hashes[k:]))


def test_merkle_frontier_roots_equal_the_full_tree_at_every_size() -> None:
    data = _data(70)
    frontier = Frontier()
    assert frontier.root() == EMPTY_ROOT == ref_mth([])
    for n, x in enumerate(data, 1):
        frontier.append(leaf_hash(x))
        assert frontier.size == n
        assert frontier.root() == ref_mth(data[:n])


def test_merkle_bad_sizes_and_malformed_proofs_are_refused() -> None:
    tree = MerkleTree(leaf_hash(x) for x in _data(5))
    with pytest.raises(ValueError, match="outside"):
        tree.root(6)
    with pytest.raises(ValueError, match="leaf index"):
        tree.inclusion_proof(5)
    with pytest.raises(ValueError, match="old size"):
        tree.consistency_proof(6, 5)
    assert tree.consistency_proof(0) == [] == tree.consistency_proof(5)
    assert tree.root(0) == EMPTY_ROOT
    leaf = leaf_hash(b"leaf 0")
    assert root_from_inclusion(5, 5, leaf, []) is None
    assert root_from_inclusion(0, 1, leaf, [leaf]) is None  # a path longer than the tree is tall
    assert root_from_consistency(0, 5, EMPTY_ROOT, []) is None
    assert root_from_consistency(5, 5, tree.root(), []) == tree.root()
    assert root_from_consistency(5, 5, tree.root(), [leaf]) is None
    assert root_from_consistency(3, 5, tree.root(3), []) is None
    assert root_from_consistency(3, 5, tree.root(3), [leaf] * 9) is None
