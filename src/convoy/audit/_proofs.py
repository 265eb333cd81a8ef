"""Inclusion and consistency proofs of RFC 9162 (sections 2.1.3 and 2.1.4): built from the
leaf hashes of a log, checked with nothing but hashes (what a third party runs).

A proof is a list of 32-byte hashes, in the order RFC 9162 gives; the verifiers raise
:class:`~convoy.AuditProofError` with the reason when a proof does not hold.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence

from convoy._errors import AuditProofError
from convoy.audit._merkle import HASH_SIZE, node_hash, range_root, split_point

#: The root of the leaves ``[lo, hi)`` of a tree: what proofs are built from.
Subtree = Callable[[int, int], bytes]


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """``PATH(index, D[0:size])``: the audit path of leaf ``index`` in the tree of the first
    ``size`` leaf hashes."""
    if not 0 <= index < size <= len(leaves):
        raise AuditProofError(f"no leaf {index} in a tree of size {size}")
    return inclusion_path(lambda lo, hi: range_root(leaves, lo, hi), index, size)


def inclusion_path(subtree: Subtree, index: int, size: int) -> list[bytes]:
    """:func:`inclusion_proof` from a function giving subtree roots."""
    if not 0 <= index < size:
        raise AuditProofError(f"no leaf {index} in a tree of size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:  # walk down, collecting the sibling subtree of each level
        k = split_point(hi - lo)
        if index < lo + k:
            path.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree(lo, lo + k))
            lo = lo + k
    path.reverse()  # RFC order: from the leaf up
    return path


def consistency_proof(leaves: Sequence[bytes], size1: int, size2: int) -> list[bytes]:
    """``PROOF(size1, D[0:size2])``: proves the tree of ``size1`` leaves is a prefix of the
    tree of ``size2`` leaves (empty when the sizes are equal)."""
    if size2 > len(leaves):
        raise AuditProofError(f"no consistency proof from size {size1} to size {size2}")
    return consistency_path(lambda lo, hi: range_root(leaves, lo, hi), size1, size2)


def consistency_path(subtree: Subtree, size1: int, size2: int) -> list[bytes]:
    """:func:`consistency_proof` from a function giving subtree roots."""
    if not 0 < size1 <= size2:
        raise AuditProofError(f"no consistency proof from size {size1} to size {size2}")
    if size1 == size2:
        return []
    path: list[bytes] = []
    lo, hi, m, whole = 0, size2, size1, True
    while m != hi - lo:  # SUBPROOF(m, D[lo:hi], whole), unrolled
        k = split_point(hi - lo)
        if m <= k:
            path.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree(lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        path.append(subtree(lo, hi))
    path.reverse()
    return path


def _check_hashes(proof: Sequence[bytes]) -> None:
    for i, h in enumerate(proof):
        if len(h) != HASH_SIZE:
            raise AuditProofError(f"proof hash {i} has {len(h)} bytes, not {HASH_SIZE}")


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from ``leaf`` at ``index`` (RFC 9162 2.1.3.2)."""
    if not 0 <= index < size:
        raise AuditProofError(f"leaf index {index} is outside a tree of size {size}")
    if len(leaf) != HASH_SIZE:
        raise AuditProofError(f"leaf hash has {len(leaf)} bytes, not {HASH_SIZE}")
    _check_hashes(proof)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise AuditProofError("proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise AuditProofError("proof is shorter than the tree is deep")
    return r


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes],
                     root: bytes) -> None:
    """Check that ``leaf`` is at ``index`` in the tree of ``size`` leaves with ``root``."""
    if not hmac.compare_digest(root_from_inclusion(leaf, index, size, proof), root):
        raise AuditProofError(f"inclusion proof of leaf {index} does not lead to the root "
                              f"of the tree of size {size}")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes,
                       root2: bytes) -> None:
    """Check that the tree of ``size1`` leaves with ``root1`` is a prefix of the tree of
    ``size2`` leaves with ``root2`` (RFC 9162 2.1.4.2). A proof from the empty tree proves
    nothing and is refused."""
    if size1 <= 0 or size1 > size2:
        raise AuditProofError(f"no consistency proof from size {size1} to size {size2}")
    if size1 == size2:
        if proof:
            raise AuditProofError("trees of equal size need an empty consistency proof")
        if not hmac.compare_digest(root1, root2):
            raise AuditProofError(f"two different roots for the tree of size {size1}")
        return
    if not proof:
        raise AuditProofError("empty consistency proof between trees of different sizes")
    _check_hashes(proof)
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # the old tree is a perfect subtree: its root starts
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise AuditProofError("consistency proof is longer than needed")
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
    if sn != 0:
        raise AuditProofError("consistency proof is shorter than needed")
    if not hmac.compare_digest(fr, root1):
        raise AuditProofError(f"consistency proof does not lead to the root of size {size1}")
    if not hmac.compare_digest(sr, root2):
        raise AuditProofError(f"consistency proof does not lead to the root of size {size2}")
