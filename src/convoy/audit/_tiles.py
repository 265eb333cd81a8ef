"""Building proofs without reading the whole log: the roots of complete *tiles* (aligned
runs of :data:`TILE` leaves) kept in the store, beside the leaves.

A proof needs the roots of O(log n) subtrees that together cover the whole tree. Each
subtree of at least a tile, aligned, is a fold of tile roots; a smaller one lies inside one
tile and is hashed from that tile's leaves. So a proof reads the tile roots (n / 1,024
hashes) and the leaves of the two or three tiles it cuts, instead of every leaf.

Tile roots are derived data, kept in the store's key-value space
(``convoy.audit.tiles/<tenant>``): nothing verifies *with* them. A tile that was tampered
with makes a proof that does not lead to the signed root; :meth:`AuditLog.prove` checks
every proof before it returns it and rebuilds the tiles from the leaves if one does not.
Tile roots built for a proof are kept only once the proof holds. An entry missing from
the tiles a proof is hashed from (deleted, or moved) raises :class:`Missing`, naming it.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Sequence

from convoy.audit._merkle import EMPTY_ROOT, node_hash, range_root, split_point
from convoy.stores._protocol import Store

#: Leaves per tile (a power of two).
TILE = 1024
_NAMESPACE = "convoy.audit.tiles/"


class Missing(Exception):
    """Entry ``index`` of the log is not stored (deleted, or the entries after it
    renumbered): the tree cannot be hashed from what is stored."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


class _Need(Exception):
    """The leaves of tile ``tile`` are needed to go on."""

    def __init__(self, tile: int) -> None:
        super().__init__(tile)
        self.tile = tile


class Subtrees:
    """Subtree roots of a tenant's tree from tile roots and the leaves of a few tiles."""

    def __init__(self, tiles: list[bytes], leaves: dict[int, list[bytes]]) -> None:
        self.tiles = tiles  # roots of the complete tiles, in order
        self.leaves = leaves  # tile number -> its leaf hashes

    def root(self, lo: int, hi: int) -> bytes:
        """The root of the leaves ``[lo, hi)``; raises :class:`_Need` for a missing tile."""
        n = hi - lo
        if n == 0:
            return EMPTY_ROOT
        if n >= TILE and n & (n - 1) == 0 and lo % TILE == 0 and hi // TILE <= len(self.tiles):
            return range_root(self.tiles, lo // TILE, hi // TILE)
        if lo // TILE == (hi - 1) // TILE:  # inside one tile
            t = lo // TILE
            if t not in self.leaves:
                raise _Need(t)
            return range_root(self.leaves[t], lo - t * TILE, hi - t * TILE)
        k = split_point(n)
        return node_hash(self.root(lo, lo + k), self.root(lo + k, hi))


async def tile_roots(store: Store, tenant: str, size: int, *, rebuild: bool = False,
                     leaves: Sequence[bytes] | None = None) -> list[bytes]:
    """The roots of the complete tiles below ``size``, kept ones read, missing ones built
    from the leaves (``leaves``, if the caller has them) and kept (all rebuilt with
    ``rebuild``); :class:`Missing` if an entry below them is not stored."""
    roots, read = await _tile_roots(store, tenant, size, rebuild=rebuild, leaves=leaves)
    _keep(store, tenant, roots, read)
    return roots


async def _tile_roots(store: Store, tenant: str, size: int, *, rebuild: bool,
                      leaves: Sequence[bytes] | None = None) -> tuple[list[bytes], int]:
    """:func:`tile_roots`, nothing kept: the roots, and how many of them (the first ones)
    were read from the store rather than built."""
    complete = size // TILE
    kept = {} if rebuild else await store.kv_all(_NAMESPACE + tenant)
    roots: list[bytes] = []
    for t in range(complete):
        root = _root(kept.get(str(t)))
        if root is None:  # missing, or damaged: built again from the leaves (a cache)
            break
        roots.append(root)
    read = len(roots)
    if read < complete:
        if leaves is None or len(leaves) < complete * TILE:
            leaves = await store.audit_leaves(tenant, complete * TILE)
            if len(leaves) < complete * TILE:  # (fewer rows below it than indexes)
                raise Missing(await _first_missing(store, tenant, complete * TILE))
        for t in range(read, complete):
            roots.append(range_root(leaves, t * TILE, (t + 1) * TILE))
    return roots, read


def _keep(store: Store, tenant: str, roots: list[bytes], read: int) -> None:
    """Keep the tile roots from ``roots[read]`` on (built from the leaves)."""
    for t in range(read, len(roots)):
        store.kv_put(_NAMESPACE + tenant, str(t), base64.b64encode(roots[t]).decode()
                     ).add_done_callback(_not_kept)


def _not_kept(fut: asyncio.Future[None]) -> None:
    """A tile root that could not be kept (the store locked, read-only) is a cache miss:
    the next proof builds it again. Its error is read here, so none is reported as never
    retrieved."""
    if not fut.cancelled():
        fut.exception()


async def _first_missing(store: Store, tenant: str, size: int) -> int:
    """The first index below ``size`` that has no stored entry (``size`` if none)."""
    n = 0
    while n < size:
        rows = await store.audit_entries(tenant, n, min(size - n, 4096))
        for row in rows:
            if row.index != n:
                return n
            n += 1
        if not rows:
            break
    return n


def _root(text: object) -> bytes | None:
    """A kept tile root (a SHA-256 hash in base64), ``None`` if there is none or what is
    kept is not one (the store was edited or damaged)."""
    if not isinstance(text, str):
        return None
    try:
        root = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    return root if len(root) == 32 else None


async def with_subtrees(store: Store, tenant: str, size: int,
                        build: Callable[[Callable[[int, int], bytes]], list[bytes]], *,
                        check: Callable[[list[bytes]], bool] | None = None,
                        rebuild: bool = False) -> list[bytes] | None:
    """Run ``build`` (a proof builder taking a subtree-root function) over the tenant's
    tree of ``size`` leaves, fetching the tiles it cuts as it asks for them. ``None`` if
    ``check`` does not accept the proof: the tile roots built for it are kept only if it
    does. :class:`Missing` if an entry the proof is hashed from is not stored."""
    roots, read = await _tile_roots(store, tenant, size, rebuild=rebuild)
    sub = Subtrees(roots, {})
    while True:
        try:
            proof = build(sub.root)
            break
        except _Need as need:
            t = need.tile
            first, n = t * TILE, min(TILE, size - t * TILE)
            rows = await store.audit_entries(tenant, first, n)
            for i, row in enumerate(rows):
                if row.index != first + i:  # (rows past a gap would shift the leaves)
                    raise Missing(first + i) from None
            if len(rows) < n:
                raise Missing(first + len(rows)) from None
            sub.leaves[t] = [r.leaf for r in rows]
    if check is not None and not check(proof):
        return None
    _keep(store, tenant, roots, read)
    return proof
