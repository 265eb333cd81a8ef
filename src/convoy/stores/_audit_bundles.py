"""Audit entries stored as bundle rows (see :mod:`._audit_sql`), for both stores: reading
a bundle back as entries, and the reads that span bundles."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from itertools import accumulate
from typing import Any

from convoy.audit._merkle import HASH_SIZE
from convoy.stores import _audit_sql as q
from convoy.stores._protocol import AuditRow

#: Bundles read per query while collecting entries.
_PAGE = 64

Read = Callable[[str, Sequence[Any]], Awaitable[list[Any]]]


def bundle_rows(r: Sequence[Any]) -> list[AuditRow]:
    """The entries of one bundle row ``(idx, n, bodies, sizes, leaves)``, by index.

    A bundle that does not hold together (sizes that do not parse, do not count ``n``
    entries or do not add up to its bodies, leaves that are not ``n`` hashes: it was
    tampered with) reads as one entry at its first index with no body and no leaf hash,
    which no leaf hash matches: verification names that index."""
    idx, n, bodies, sizes, leaves = int(r[0]), int(r[1]), bytes(r[2]), str(r[3]), bytes(r[4])
    if n == 1 and len(leaves) == HASH_SIZE and sizes == str(len(bodies)):  # one entry
        return [AuditRow(index=idx, body=bodies, leaf=leaves)]
    try:
        lengths = list(map(int, sizes.split(",")))
    except ValueError:
        lengths = []
    ends = list(accumulate(lengths))
    if (n < 1 or len(ends) != n or len(leaves) != n * HASH_SIZE or ends[-1] != len(bodies)
            or min(lengths) < 0):
        return [AuditRow(index=idx, body=b"", leaf=b"")]
    return [AuditRow(index=i, body=bodies[start:end], leaf=leaves[at:at + HASH_SIZE])
            for i, start, end, at in zip(range(idx, idx + n), [0, *ends], ends,
                                         range(0, n * HASH_SIZE, HASH_SIZE), strict=False)]


def sizes_text(bodies: Sequence[bytes]) -> str:
    """The ``sizes`` column of a bundle of ``bodies``."""
    return ",".join([str(len(b)) for b in bodies])


async def entries(read: Read, tenant: str, start: int, limit: int) -> list[AuditRow]:
    """Up to ``limit`` entries of ``tenant`` from index ``start`` on, by index (reading the
    bundles from the one that holds ``start``, a page at a time)."""
    out: list[AuditRow] = []
    if limit <= 0:
        return out
    page = await read(q.BUNDLES_FROM, (tenant, tenant, start, start, _PAGE))
    while page:
        for r in page:
            for row in bundle_rows(r):
                if row.index >= start:
                    out.append(row)
                    if len(out) == limit:
                        return out
        if len(page) < _PAGE:
            break
        page = await read(q.BUNDLES_AFTER, (tenant, int(page[-1][0]), _PAGE))
    return out


async def entry(read: Read, tenant: str, index: int) -> AuditRow | None:
    """Entry ``index`` of ``tenant``, or ``None``."""
    found = await read(q.BUNDLE_AT, (tenant, index))
    for row in bundle_rows(found[0]) if found else ():
        if row.index == index:
            return row
    return None


async def leaves(read: Read, tenant: str, size: int) -> list[bytes]:
    """The stored leaf hashes of ``tenant``'s entries below index ``size``, by index."""
    parts = [bytes(r[2])[:(size - int(r[0])) * HASH_SIZE]
             for r in await read(q.LEAVES, (tenant, size))]
    # A bundle whose leaves were cut short (tampered with) is padded, so the leaves after
    # it stay in place.
    blob = b"".join([p if len(p) % HASH_SIZE == 0 else
                     p.ljust(len(p) + HASH_SIZE - len(p) % HASH_SIZE, b"\0") for p in parts])
    return [blob[i:i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)]


async def tenants(read: Read) -> list[str]:
    """Every tenant with an audit log row, by name (one index seek per tenant)."""
    out: list[str] = []
    while True:
        r = await (read(q.NEXT_TENANT, (out[-1],)) if out else read(q.FIRST_TENANT, ()))
        if not r:
            return out
        out.append(str(r[0][0]))
