"""Merkle tree hashing of RFC 6962 / RFC 9162 (section 2.1): leaves, nodes and roots.

``leaf = SHA-256(0x00 || data)``, ``node = SHA-256(0x01 || left || right)``, the root of an
empty tree is ``SHA-256("")``, and a tree of ``n > 1`` leaves splits at the largest power of
two below ``n``.

Written here rather than taken from PyPI: the one maintained Python Merkle library,
``pymerkle``, serialises proofs in its own format (a path with per-step direction bits and a
subset of the first tree) and keeps the tree in its own storage backends, so it can neither
check a plain RFC 9162 audit path such as the transparency-dev test vectors nor build a
proof from leaf hashes persisted through Convoy's store; ``sigstore`` only verifies
inclusion, in a private module. The algorithms are short and are checked against every
vector of the transparency-dev/merkle test suite (``tests/data/merkle``).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from itertools import repeat

HASH_SIZE = 32
_SHA256 = hashlib.sha256()


def sha256(data: bytes) -> hashlib._Hash:
    """``hashlib.sha256(data)``, from a copy of a prebuilt object: ``hashlib.sha256()``
    looks the algorithm up in OpenSSL on every call (Python 3.11), a copy does not, and a
    model step is hashed five times when audited."""
    h = _SHA256.copy()
    h.update(data)
    return h


#: The root hash of the empty tree: ``SHA-256("")``.
EMPTY_ROOT = sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one log entry."""
    return sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n >= 2``): where a tree splits."""
    return 1 << ((n - 1).bit_length() - 1)


def range_root(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    """The Merkle tree hash of the leaf hashes ``leaves[lo:hi]``."""
    n = hi - lo
    if n == 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0:  # a perfect subtree: hash level by level, no recursion
        level = list(leaves[lo:hi])
        while len(level) > 1:
            level = [sha256(b"\x01" + level[i] + level[i + 1]).digest()
                     for i in range(0, len(level), 2)]
        return level[0]
    k = split_point(n)
    return node_hash(range_root(leaves, lo, lo + k), range_root(leaves, lo + k, hi))


def tree_root(leaves: Sequence[bytes]) -> bytes:
    """The root hash of the tree whose leaf hashes are ``leaves``, in order."""
    return range_root(leaves, 0, len(leaves))


class Frontier:
    """The right edge of a growing tree (one perfect subtree per set bit of its size): appends
    cost O(1) amortised and the root of the tree so far is one fold of O(log n) hashes."""

    __slots__ = ("_stack", "size")

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[bytes] = []  # perfect subtree roots, largest (leftmost) first

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash at the end."""
        h = leaf
        n = self.size
        stack = self._stack
        while n & 1:  # merge equal-sized subtrees, as a binary counter carries
            h = sha256(b"\x01" + stack.pop() + h).digest()
            n >>= 1
        stack.append(h)
        self.size += 1

    def copy(self) -> Frontier:
        """Another frontier of the same leaves, which grows apart from this one."""
        other = Frontier()
        other.size, other._stack = self.size, list(self._stack)
        return other

    def root(self) -> bytes:
        """The root hash of the tree of every leaf appended so far."""
        if not self._stack:
            return EMPTY_ROOT
        h = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            h = node_hash(left, h)
        return h


def entry_leaf(tenant: str, index: int, body: bytes) -> bytes:
    """The leaf hash of entry ``index`` of ``tenant``'s log: it commits to the entry's place
    and log as well as its body, so a moved or transplanted entry no longer matches.
    ``SHA-256(0x00 || index (8 bytes, big-endian) || len(tenant) (4 bytes) || tenant ||
    body)``."""
    t = tenant.encode()
    return sha256(b"\x00" + index.to_bytes(8, "big") + len(t).to_bytes(4, "big") + t
                   + body).digest()


def entry_leaves(tenant: str, first: int, bodies: Sequence[bytes]) -> list[bytes]:
    """``[entry_leaf(tenant, first + i, body) for i, body in enumerate(bodies)]``, the
    tenant's part of each leaf prefix encoded once: what an append of many entries
    hashes. (Iterators of C functions, no Python code per entry: a step's entry is hashed
    here, on every append.)"""
    t = tenant.encode()
    after = len(t).to_bytes(4, "big") + t
    return list(map(_DIGEST, map(hashlib.sha256, map(b"".join, zip(
        map(_LEAF_PREFIX, range(first, first + len(bodies))), repeat(after), bodies)))))


#: ``0x00 || index (8 bytes, big-endian)``.
_LEAF_PREFIX = struct.Struct(">xQ").pack
_DIGEST = type(_SHA256).digest
