"""Tamper-evident audit log: RFC 9162 Merkle tree, proofs, signed checkpoints."""

from convoy.audit._merkle import (
    EMPTY_ROOT,
    Frontier,
    entry_leaf,
    leaf_hash,
    node_hash,
    tree_root,
)
from convoy.audit._proofs import (
    consistency_proof,
    inclusion_proof,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "EMPTY_ROOT",
    "Frontier",
    "consistency_proof",
    "entry_leaf",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion",
    "tree_root",
    "verify_consistency",
    "verify_inclusion",
]
