"""The SQLite store's audit log: appends ride the group commit (see :mod:`._audit_sql`)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from convoy.audit._merkle import entry_leaf
from convoy.stores import _audit_sql as q
from convoy.stores._protocol import AuditRow


def _appender(tenant: str, bodies: Sequence[bytes]) -> Callable[[sqlite3.Connection], None]:
    """What appends ``bodies`` inside a batch's write transaction: take the indexes, then
    store each entry with its leaf hash. Run again if the batch is retried: it only touches
    the connection."""
    n = len(bodies)

    def append(conn: sqlite3.Connection) -> None:
        conn.execute(q.SQLITE_HEAD, (tenant, n))
        base = int(conn.execute(q.SIZE, (tenant,)).fetchone()[0]) - n
        if n == 1:
            body = bodies[0]
            conn.execute(q.SQLITE_ENTRY, (tenant, base, body, entry_leaf(tenant, base, body)))
        else:
            conn.executemany(q.SQLITE_ENTRY, [(tenant, base + i, b, entry_leaf(tenant, base + i, b))
                                              for i, b in enumerate(bodies)])

    return append


def _row(r: Sequence[Any]) -> AuditRow:
    return AuditRow(index=int(r[0]), body=bytes(r[1]), leaf=bytes(r[2]))


class SQLiteAudit:
    """The ``audit_*`` methods of :class:`~convoy.stores.SQLiteStore`."""

    if TYPE_CHECKING:
        def _batched(self, call: Callable[[sqlite3.Connection], None], *,
                     wait: bool = True) -> asyncio.Future[None]: ...

        def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

        async def _write(self, fn: Any) -> Any: ...

    def audit_append(self, tenant: str, bodies: Sequence[bytes], *,
                     wait: bool = True) -> asyncio.Future[None]:
        return self._batched(_appender(tenant, bodies), wait=wait)

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
