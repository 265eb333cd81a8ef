"""The SQLite store's audit log: appends ride the group commit (see :mod:`._audit_sql`)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any, TypeVar

from convoy._errors import AuditError
from convoy.audit._merkle import entry_leaves
from convoy.stores import _audit_sql as q
from convoy.stores._audit_sql import checked_blob, checked_index, checked_row, checked_size
from convoy.stores._protocol import AUDIT_CURSORS, AuditRow, AuditSeal

_T = TypeVar("_T")

#: Entries to append: ``(tenant, bodies, fence)`` (see :meth:`Store.audit_append`).
Append = tuple[str, Sequence[bytes], "tuple[str, str] | None"]


def _write(conn: sqlite3.Connection, appends: Sequence[Append],
           heads: dict[str, int]) -> None:
    """Append every ``(tenant, bodies, fence)`` in order, in the caller's write transaction
    (those whose fence's engine no longer owns its session: not at all): per tenant, the
    head takes the indexes, then a few statements of many rows each store the entries with
    their leaf hashes (:func:`~convoy.audit.entry_leaf`,
    :func:`~convoy.audit._merkle.entry_leaves`).

    ``heads`` caches each tenant's size as this store last wrote it: the head is moved
    with a compare-and-set from it (one statement), and only when another writer moved it
    meanwhile (or a batch that wrote it was rolled back) is it moved and read back."""
    execute = conn.cursor().execute  # (one cursor for every statement: ``conn.execute``
    # makes a cursor each time, and registers a weak reference to it)
    runs: Sequence[tuple[str, Sequence[bytes]]]
    if len(appends) == 1 and appends[0][2] is None:
        runs = [appends[0][:2]]
    else:  # one run of entries per tenant, in order
        tenants: dict[str, list[bytes]] = {}
        for tenant, bodies, fence in appends:
            if fence is None or execute(q.SQLITE_OWNED, fence).fetchone() is not None:
                tenants.setdefault(tenant, []).extend(bodies)
        runs = list(tenants.items())
    for tenant, all_bodies in runs:
        n = len(all_bodies)
        base = heads.get(tenant)
        if base is None or execute(q.SQLITE_MOVE_HEAD, (base + n, tenant, base)).rowcount != 1:
            execute(q.SQLITE_HEAD, (tenant, n))
            base = int(execute(q.SIZE, (tenant,)).fetchone()[0]) - n
        heads[tenant] = base + n
        # ``bytearray``, not ``bytes``: the sqlite3 module binds it as a blob at once,
        # where it first looks for an adapter of ``bytes`` (failing attribute lookups).
        # (Iterators of C functions: no Python code per entry.)
        params: list[Any] = list(chain.from_iterable(zip(
            map(bytearray, all_bodies),
            map(bytearray, entry_leaves(tenant, base, all_bodies)), strict=True)))
        done = 0
        for rows, sql in q.SQLITE_ENTRY_ROWS.items():  # (many rows a statement)
            while n - done >= rows:
                execute(sql, [tenant, base + done, *params[2 * done:2 * (done + rows)]])
                done += rows


def _move_kv(execute: Callable[..., sqlite3.Cursor], s: AuditSeal) -> int:
    """Move ``s``'s value kept in ``kv`` (a compare-and-set); the rows it changed."""
    if s.before is None:
        return execute(q.CURSOR_NEW, (s.namespace, s.session_id, s.after)).rowcount
    return execute(q.CURSOR_MOVE, (s.after, s.namespace, s.session_id, s.before)).rowcount


class SQLiteAudit:
    """The ``audit_*`` methods of :class:`~convoy.stores.SQLiteStore`."""

    if TYPE_CHECKING:
        _audit_queue: list[Append]
        _audit_heads: dict[str, int]
        _audit_fut: asyncio.Future[None] | None

        def _batched(self, call: Callable[[sqlite3.Connection], _T], *,
                     wait: bool = True) -> asyncio.Future[_T]: ...

        def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

        async def _write(self, fn: Any) -> Any: ...

        async def kv_get(self, namespace: str, key: str) -> str | None: ...

    def audit_append(self, tenant: str, bodies: Sequence[bytes], *, wait: bool = True,
                     fence: tuple[str, str] | None = None) -> asyncio.Future[None]:
        if wait:
            return self._batched(lambda conn: _write(conn, [(tenant, bodies, fence)],
                                                     self._audit_heads))
        # Appends that join the next batch share one write of it: they queue, and the
        # first one since the last write submits the write that takes the whole queue (or
        # since a batch that failed before its write took the queue: the next takes it).
        self._audit_queue.append((tenant, bodies, fence))
        fut = self._audit_fut
        if fut is None or fut.done():
            fut = self._audit_fut = self._batched(self._queued_writer(), wait=False)
        return fut

    def audit_seal(self, seals: Sequence[AuditSeal]) -> asyncio.Future[list[bool]]:
        items = list(seals)

        def seal(conn: sqlite3.Connection) -> list[bool]:
            execute = conn.cursor().execute  # (one cursor: see ``_write``)
            moved: list[bool] = []
            appends: list[Append] = []
            for s in items:
                if s.namespace != AUDIT_CURSORS:
                    n = _move_kv(execute, s)
                else:  # (in the session's row; in kv, a session whose row is gone)
                    n = execute(q.SQLITE_CURSOR_MOVE, (s.after, s.session_id,
                                                       s.before)).rowcount
                    if n == 0 and execute(q.SQLITE_CURSOR, (s.session_id,)).fetchone() is None:
                        n = _move_kv(execute, s)
                moved.append(n == 1)
                if n == 1 and s.bodies:
                    appends.append((s.tenant, s.bodies, None))
            if appends:
                _write(conn, appends, self._audit_heads)
            return moved

        return self._batched(seal)

    def _queued_writer(self) -> Callable[[sqlite3.Connection], None]:
        taken: list[Append] | None = None

        def write(conn: sqlite3.Connection) -> None:
            nonlocal taken
            if taken is None:  # the first run (a retried batch writes the same again)
                # Forget this write before taking the queue: an append queued meanwhile
                # (the commit thread runs this) is taken here, or submits the next write.
                self._audit_fut = None
                taken, self._audit_queue = self._audit_queue, []
            _write(conn, taken, self._audit_heads)

        return write

    async def audit_cursor(self, session_id: str) -> str | None:
        rows = self._read(q.SQLITE_CURSOR, (session_id,))
        if not rows:  # (a session whose row is gone: see :meth:`audit_seal`)
            return await self.kv_get(AUDIT_CURSORS, session_id)
        return None if rows[0][0] is None else str(rows[0][0])

    async def audit_size(self, tenant: str) -> int:
        rows = self._read(q.SIZE, (tenant,))
        if not rows:
            return 0
        return checked_size(tenant, rows[0][0])

    async def audit_tenants(self) -> list[str]:
        tenants = [r[0] for r in self._read(q.TENANTS)]
        for t in tenants:
            if not isinstance(t, str):
                raise AuditError(f"an audit log's tenant was changed to {t!r}, which is not "
                                 "text")
        return tenants

    async def audit_entries(self, tenant: str, start: int, limit: int) -> list[AuditRow]:
        return [checked_row(tenant, r)
                for r in self._read(q.SQLITE_ENTRIES, (tenant, start, limit))]

    async def audit_entry(self, tenant: str, index: int) -> AuditRow | None:
        rows = self._read(q.SQLITE_ENTRY_AT, (tenant, index))
        return checked_row(tenant, rows[0]) if rows else None

    async def audit_leaves(self, tenant: str, size: int) -> list[bytes]:
        return [checked_blob(tenant, checked_index(tenant, r[0]), "leaf hash", r[1])
                for r in self._read(q.SQLITE_LEAVES, (tenant, size))]

    async def audit_put_checkpoint(self, tenant: str, size: int, body: str) -> bool:
        def put(conn: sqlite3.Connection) -> bool:
            return bool(conn.execute(q.PUT_CHECKPOINT, (tenant, size, body)).rowcount == 1)

        return bool(await self._write(put))

    async def audit_checkpoints(self, tenant: str) -> list[tuple[int, str]]:
        return [(r[0], r[1]) for r in self._read(q.CHECKPOINTS, (tenant,))]
