"""The PostgreSQL store's audit log: an append is one statement of the group commit that
takes the next indexes (the head row stays locked until the batch commits, so engines
appending to one tenant's log take turns) and stores every entry with its leaf hash."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from convoy.stores import _audit_sql as q
from convoy.stores._audit_sql import checked_blob, checked_index, checked_row, checked_size
from convoy.stores._protocol import AUDIT_CURSORS, AuditRow, AuditSeal

if TYPE_CHECKING:
    from convoy.stores._postgres import _Op

_SIZE = q.pg(q.SIZE)
_TENANTS = q.pg(q.TENANTS)
_ENTRIES = q.pg(q.ENTRIES)
_ENTRY = q.pg(q.ENTRY)
_LEAVES = q.pg(q.LEAVES)
_CHECKPOINTS = q.pg(q.CHECKPOINTS)
_PUT_CHECKPOINT = q.pg(q.PUT_CHECKPOINT)
_SEAL_FIRST = q.pg_seal(True)
_SEAL_MOVE = q.pg_seal(False)
_CURSOR_NEW = q.pg(q.CURSOR_NEW)
_CURSOR_MOVE = q.pg(q.CURSOR_MOVE)


class PostgresAudit:
    """The ``audit_*`` methods of :class:`~convoy.stores.PostgresStore`."""

    if TYPE_CHECKING:
        def _submit(self, op: _Op, *, wait: bool = True) -> asyncio.Future[None]: ...

        def _submit_all(self, ops: Sequence[_Op], *, wait: bool = True
                        ) -> asyncio.Future[None]: ...

        async def _read(self, text: str, params: Sequence[Any] = ()) -> list[Any]: ...

        async def _exec(self, text: str, params: Sequence[Any], *,
                        again: bool = False) -> tuple[int, list[Any]]: ...

        async def kv_get(self, namespace: str, key: str) -> str | None: ...

    def audit_append(self, tenant: str, bodies: Sequence[bytes], *, wait: bool = True,
                     fence: tuple[str, str] | None = None) -> asyncio.Future[None]:
        from convoy.stores._postgres import _Op

        n = len(bodies)
        if fence is not None:
            return self._submit(_Op(q.PG_APPEND_FENCED, (tenant, n, *fence, n, list(bodies))),
                                wait=wait)
        return self._submit(_Op(q.PG_APPEND, (tenant, n, n, list(bodies))), wait=wait)

    def audit_seal(self, seals: Sequence[AuditSeal]) -> asyncio.Future[list[bool]]:
        from convoy.stores._postgres import _Op

        done: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        items = list(seals)
        if not items:
            done.set_result([])
            return done
        counts: list[int | None] = [None] * len(items)
        ops: list[_Op] = []
        for i, s in enumerate(items):
            cas = (s.namespace, s.session_id, s.after) if s.before is None else \
                (s.after, s.namespace, s.session_id, s.before)
            if s.bodies:
                text = _SEAL_FIRST if s.before is None else _SEAL_MOVE
                n = len(s.bodies)
                params: tuple[Any, ...] = (*cas, s.tenant, n, n, list(s.bodies))
            else:
                text = _CURSOR_NEW if s.before is None else _CURSOR_MOVE
                params = cas

            def counted(n: int | None, i: int = i) -> None:
                counts[i] = n

            ops.append(_Op(text, params, on_commit=counted))
        # All of them join one batch (submitted together): one transaction.
        last = self._submit_all(ops)

        def settle(fut: asyncio.Future[None]) -> None:
            if done.done():
                return
            error = None if fut.cancelled() else fut.exception()
            if fut.cancelled():
                done.cancel()
            elif error is not None:
                done.set_exception(error)
            else:
                done.set_result([n == 1 for n in counts])

        last.add_done_callback(settle)
        return done

    async def audit_cursor(self, session_id: str) -> str | None:
        return await self.kv_get(AUDIT_CURSORS, session_id)

    async def audit_size(self, tenant: str) -> int:
        rows = await self._read(_SIZE, (tenant,))
        return checked_size(tenant, rows[0][0]) if rows else 0

    async def audit_tenants(self) -> list[str]:
        return [r[0] for r in await self._read(_TENANTS)]

    async def audit_entries(self, tenant: str, start: int, limit: int) -> list[AuditRow]:
        return [checked_row(tenant, r)
                for r in await self._read(_ENTRIES, (tenant, start, limit))]

    async def audit_entry(self, tenant: str, index: int) -> AuditRow | None:
        rows = await self._read(_ENTRY, (tenant, index))
        return checked_row(tenant, rows[0]) if rows else None

    async def audit_leaves(self, tenant: str, size: int) -> list[bytes]:
        return [checked_blob(tenant, checked_index(tenant, r[0]), "leaf hash", r[1])
                for r in await self._read(_LEAVES, (tenant, size))]

    async def audit_put_checkpoint(self, tenant: str, size: int, body: str) -> bool:
        n, _ = await self._exec(_PUT_CHECKPOINT, (tenant, size, body), again=True)
        return n == 1

    async def audit_checkpoints(self, tenant: str) -> list[tuple[int, str]]:
        return [(r[0], r[1]) for r in await self._read(_CHECKPOINTS, (tenant,))]
