"""Inclusion and consistency proofs as self-contained JSON documents.

``audit prove`` and ``audit consistency`` need the database; the documents
they print do not. ``check_proof`` checks one with nothing but the
document, a signed tree head (the one inside, or the auditor's own copy
from a witness) and the checkpoint key's public half, so a third party
can confirm "this decision is in the log the operator signed" or "the
log only grew between these two heads" without reading anyone's database.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mcp_attest.audit.backend import RecordQuery
from mcp_attest.audit.checkpoint import Checkpoint
from mcp_attest.audit.log import AuditLog
from mcp_attest.audit.merkle import MerkleTree, leaf_hash, root_from_consistency, root_from_inclusion
from mcp_attest.audit.record import AuditError, record_hash
from mcp_attest.canonical import CanonicalizationError, canonicalize
from mcp_attest.keys import KeySource

__all__ = ["CONSISTENCY_TYPE", "INCLUSION_TYPE", "check_proof", "consistency_proof", "inclusion_proof"]

_HEX64 = re.compile(r"[0-9a-f]{64}")
INCLUSION_TYPE = "mcp-attest/inclusion-proof"
CONSISTENCY_TYPE = "mcp-attest/consistency-proof"


def _heads(log: AuditLog) -> dict[int, Checkpoint]:
    """Readable tree heads of this chain by seq (the log's own and its witness's)."""
    heads: dict[int, Checkpoint] = {}
    for seq, body in log.stored_checkpoints():
        try:
            cp = Checkpoint.parse(body)
        except ValueError:
            continue
        if cp.seq == seq and cp.chain_id == log.backend.chain_id and cp.root is not None:
            heads.setdefault(seq, cp)
    return heads


def _head(log: AuditLog, size: int) -> Checkpoint:
    found = _heads(log).get(size)
    if found is None:
        raise AuditError(f"no signed tree head at size {size} in {log.location}")
    return found


def _tree(log: AuditLog, head: Checkpoint) -> MerkleTree:
    """The tree over records 1..head.seq, refused unless it still matches the signed head."""
    leaves = [leaf_hash(row.body) for row in log.rows(RecordQuery(limit=head.seq))]
    tree = MerkleTree(leaves)
    if tree.size != head.seq or tree.root().hex() != head.root:
        raise AuditError(
            f"the records of {log.location} no longer match the signed tree head at seq {head.seq}: "
            "run audit verify"
        )
    return tree


def inclusion_proof(log: AuditLog, seq: int, tree_size: int | None = None) -> dict[str, Any]:
    """Record ``seq`` with its path to a signed tree head (the first at or after it by default)."""
    if tree_size is None:
        sizes = sorted(size for size in _heads(log) if size >= seq)
        if not sizes:
            raise AuditError(f"no signed tree head covers record {seq} yet (it is after the last checkpoint)")
        tree_size = sizes[0]
    if not 1 <= seq <= tree_size:
        raise AuditError(f"record {seq} is not in a tree of size {tree_size}")
    head = _head(log, tree_size)
    tree = _tree(log, head)
    record = next(log.records(RecordQuery(after_seq=seq - 1, limit=1)))
    return {
        "type": INCLUSION_TYPE,
        "leafIndex": seq - 1,
        "treeSize": tree_size,
        "path": [node.hex() for node in tree.inclusion_proof(seq - 1, tree_size)],
        "record": record.to_dict(),
        "treeHead": dict(head.body),
    }


def consistency_proof(log: AuditLog, old: int, new: int) -> dict[str, Any]:
    """Proof that the signed head at ``new`` extends the one at ``old``."""
    if not 1 <= old <= new:
        raise AuditError(f"need 1 <= OLD <= NEW, got {old} and {new}")
    old_head, new_head = _head(log, old), _head(log, new)
    tree = _tree(log, new_head)
    return {
        "type": CONSISTENCY_TYPE,
        "path": [node.hex() for node in tree.consistency_proof(old, new)],
        "oldHead": dict(old_head.body),
        "newHead": dict(new_head.body),
    }


def check_proof(proof: Any, keys: KeySource, *, tree_head: Mapping[str, Any] | None = None) -> str | None:
    """Why ``proof`` does not hold, or None; ``tree_head`` replaces the (new) head it carries."""
    if not isinstance(proof, dict):
        return "not a proof document"
    try:
        path = [bytes.fromhex(node) for node in proof.get("path", ())]
    except (TypeError, ValueError):
        return "proof path is not a list of hex hashes"
    if proof.get("type") == INCLUSION_TYPE:
        return _check_inclusion(proof, path, keys, tree_head)
    if proof.get("type") == CONSISTENCY_TYPE:
        return _check_consistency(proof, path, keys, tree_head)
    return "not a proof document (unknown type)"


def _signed_head(body: Any, keys: KeySource, name: str) -> Checkpoint | str:
    try:
        head = Checkpoint.parse(canonicalize(body))
    except (ValueError, CanonicalizationError) as exc:
        return f"{name} is not a signed tree head: {exc}"
    if head.root is None or not _HEX64.fullmatch(head.root):
        return f"{name} carries no Merkle root"
    problem = head.signature_problem(keys)
    return head if problem is None else f"{name}: {problem}"


def _check_inclusion(
    proof: dict[str, Any], path: list[bytes], keys: KeySource, tree_head: Mapping[str, Any] | None
) -> str | None:
    head = _signed_head(tree_head or proof.get("treeHead"), keys, "tree head")
    if isinstance(head, str):
        return head
    record, index, size = proof.get("record"), proof.get("leafIndex"), proof.get("treeSize")
    if not isinstance(record, dict) or type(index) is not int or size != head.seq:
        return "proof lacks its record, leaf index or the tree head's size"
    body = {k: v for k, v in record.items() if k != "hash"}
    try:
        data = canonicalize(body)
    except CanonicalizationError:
        return "record cannot be canonicalized"
    if record_hash(data) != record.get("hash"):
        return "record's hash does not match its content (the record was changed)"
    if body.get("seq") != index + 1 or body.get("chainId") != head.chain_id:
        return f"record is not leaf {index} of the tree head's chain"
    root = root_from_inclusion(index, size, leaf_hash(data), path)
    if root is None or root.hex() != head.root:
        return "the record is not in the signed tree (the proof does not lead to its root)"
    return None


def _check_consistency(
    proof: dict[str, Any], path: list[bytes], keys: KeySource, tree_head: Mapping[str, Any] | None
) -> str | None:
    old = _signed_head(proof.get("oldHead"), keys, "old tree head")
    new = _signed_head(tree_head or proof.get("newHead"), keys, "new tree head")
    for head in (old, new):
        if isinstance(head, str):
            return head
    assert isinstance(old, Checkpoint) and isinstance(new, Checkpoint)
    assert old.root is not None and new.root is not None
    if old.chain_id != new.chain_id:
        return "the two tree heads belong to different chains"
    root = root_from_consistency(old.seq, new.seq, bytes.fromhex(old.root), path)
    if root is None or root.hex() != new.root:
        return f"the tree of size {new.seq} does not extend the tree of size {old.seq}"
    return None
