"""The SQLite store's audit log: appends ride the group commit (see :mod:`._audit_sql`)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from convoy.audit._merkle import entry_leaf
from convoy.stores import _audit_sql as q
from convoy.stores._protocol import AuditRow


def _write(conn: sqlite3.Connection, appends: Sequence[tuple[str, Sequence[bytes]]]) -> None:
    """Append every ``(tenant, bodies)`` in order, in the caller's write transaction: per
    tenant, the head takes the indexes (its new size is read back: ``RETURNING`` costs
    SQLite about 15 µs more), then one ``executemany`` stores the entries with their leaf
    hashes."""
    tenants: dict[str, list[bytes]] = {}
    for tenant, bodies in appends:
        tenants.setdefault(tenant, []).extend(bodies)
    for tenant, all_bodies in tenants.items():
        n = len(all_bodies)
        conn.execute(q.SQLITE_HEAD, (tenant, n))
        base = int(conn.execute(q.SIZE, (tenant,)).fetchone()[0]) - n
        conn.executemany(q.SQLITE_ENTRY, [(tenant, base + i, b, entry_leaf(tenant, base + i, b))
                                          for i, b in enumerate(all_bodies)])


def _row(r: Sequence[Any]) -> AuditRow:
    return AuditRow(index=int(r[0]), body=bytes(r[1]), leaf=bytes(r[2]))


class SQLiteAudit:
    """The ``audit_*`` methods of :class:`~convoy.stores.SQLiteStore`."""

    if TYPE_CHECKING:
        _audit_queue: list[tuple[str, Sequence[bytes]]]
        _audit_fut: asyncio.Future[None] | None

        def _batched(self, call: Callable[[sqlite3.Connection], None], *,
                     wait: bool = True) -> asyncio.Future[None]: ...

        def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

        async def _write(self, fn: Any) -> Any: ...

    def audit_append(self, tenant: str, bodies: Sequence[bytes], *,
                     wait: bool = True) -> asyncio.Future[None]:
        if wait:
            return self._batched(lambda conn: _write(conn, [(tenant, bodies)]))
        # Appends that join the next batch share one write of it: they queue, and the
        # first one since the last write submits the write that takes the whole queue (or
        # since a batch that failed before its write took the queue: the next takes it).
        self._audit_queue.append((tenant, bodies))
        fut = self._audit_fut
        if fut is None or fut.done():
            fut = self._audit_fut = self._batched(self._queued_writer(), wait=False)
        return fut

    def _queued_writer(self) -> Callable[[sqlite3.Connection], None]:
        taken: list[tuple[str, Sequence[bytes]]] | None = None

        def write(conn: sqlite3.Connection) -> None:
            nonlocal taken
            if taken is None:  # the first run (a retried batch writes the same again)
                # Forget this write before taking the queue: an append queued meanwhile
                # (the commit thread runs this) is taken here, or submits the next write.
                self._audit_fut = None
                taken, self._audit_queue = self._audit_queue, []
            _write(conn, taken)

        return write

    async def audit_size(self, tenant: str) -> int:
        rows = self._read(q.SIZE, (tenant,))
        return int(rows[0][0]) if rows else 0

    async def audit_tenants(self) -> list[str]:
        return [r[0] for r in self._read(q.TENANTS)]

    async def audit_entries(self, tenant: str, start: int, limit: int) -> list[AuditRow]:
        return [_row(r) for r in self._read(q.ENTRIES, (tenant, start, limit))]

    async def audit_entry(self, tenant: str, index: int) -> AuditRow | None:
        rows = self._read(q.ENTRY, (tenant, index))
        return _row(rows[0]) if rows else None

    async def audit_leaves(self, tenant: str, size: int) -> list[bytes]:
        return [bytes(r[0]) for r in self._read(q.LEAVES, (tenant, size))]

    async def audit_put_checkpoint(self, tenant: str, size: int, body: str) -> None:
        def put(conn: sqlite3.Connection) -> None:
            conn.execute(q.PUT_CHECKPOINT, (tenant, size, body))

        await self._write(put)

    async def audit_checkpoints(self, tenant: str) -> list[str]:
        return [r[0] for r in self._read(q.CHECKPOINTS, (tenant,))]
