"""The SQLite store's alerts: baseline alerts and their queued webhook deliveries.

Every write runs in a transaction of its own (off the journal's group commit), so an alert
and its queued deliveries land together or not at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from convoy.stores._alert_rows import (
    ALERT_COLS,
    CLEAR,
    CLOSE,
    DELIVERY_COLS,
    DROP,
    FIRED_KEYS,
    FIRED_URLS,
    IN_ORDER,
    INSERT_ALERT,
    OPEN_OF_SERIES,
    QUEUE,
    REDELIVER,
    REDELIVER_TENANT,
    STATUS_COLS,
    UNDELIVERED_URLS,
    adopted,
    alert_row,
    cleared_rows,
    delivery,
    delivery_row,
    new_alert_params,
    queued,
    result,
    series_params,
)
from convoy.stores._protocol import (
    AlertDelivery,
    AlertRow,
    DeliveryRow,
    FiredAlert,
    NewAlert,
)
from convoy.stores._rows import LeftOut, readable

T = TypeVar("T")


class SQLiteAlerts:
    """The alert methods of :class:`~convoy.stores.SQLiteStore`."""

    if TYPE_CHECKING:
        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    async def alert_open(self, alert: NewAlert, webhooks: Sequence[str]) -> FiredAlert:
        def write(conn: sqlite3.Connection) -> FiredAlert:
            # (the write transaction holds the file: the open alert found is still open)
            row = conn.execute(INSERT_ALERT.format(p="?"), new_alert_params(alert)).fetchone()
            if row is None:
                (found,) = conn.execute(OPEN_OF_SERIES.format(p="?"), series_params(alert)
                                        ).fetchone()
                fired = conn.execute(FIRED_KEYS.format(p="?"), (found,)).fetchall()
                conn.executemany(QUEUE.format(p="?"), adopted(int(found), webhooks, fired,
                                                              alert.opened))
                return FiredAlert(id=int(found), opened=False)
            conn.executemany(QUEUE.format(p="?"), queued(int(row[0]), "fired", webhooks,
                                                         alert.opened))
            return FiredAlert(id=int(row[0]), opened=True)

        return await self._write(write)

    async def alert_clear(self, alert_id: int, at: float, value: float,
                          webhooks: Sequence[str]) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            if conn.execute(CLEAR.format(p="?"), (at, value, alert_id)).rowcount == 0:
                return False
            fired = conn.execute(FIRED_KEYS.format(p="?"), (alert_id,)).fetchall()
            conn.executemany(QUEUE.format(p="?"), cleared_rows(alert_id, webhooks, fired, at))
            return True

        return await self._write(write)

    async def alert_close(self, alert_id: int, at: float, *,
                          tenant: str | None = None) -> bool:
        sql = CLOSE.format(p="?", tenant="" if tenant is None else " AND tenant=?")
        params = (at, alert_id) if tenant is None else (at, alert_id, tenant)

        def write(conn: sqlite3.Connection) -> bool:
            if conn.execute(sql, params).rowcount == 0:
                return False
            urls = [r[0] for r in conn.execute(FIRED_URLS.format(p="?"), (alert_id,))]
            conn.executemany(QUEUE.format(p="?"), queued(alert_id, "cleared", urls, at))
            return True

        return await self._write(write)

    async def list_alerts(self, *, tenant: str | None = None, open_only: bool = False,
                          limit: int = 100,
                          left_out: list[LeftOut] | None = None) -> list[AlertRow]:
        where, params = _where(tenant, open_only)
        rows = self._read(f"SELECT {ALERT_COLS} FROM alerts{where} ORDER BY id DESC LIMIT ?",
                          (*params, limit))
        return readable(rows, alert_row, left_out)

    async def due_deliveries(self, now: float, *, urls: Sequence[str], limit: int = 50,
                             lease_s: float = 60.0) -> list[AlertDelivery]:
        if not urls:
            return []
        sql = claim_sql(len(urls))

        def claim(conn: sqlite3.Connection) -> list[Any]:
            rows = conn.execute(sql, (now, *urls, limit)).fetchall()
            conn.executemany("UPDATE alert_outbox SET next_at=? WHERE id=?",
                             [(now + lease_s, r[0]) for r in rows])
            return rows

        return [delivery(r, now + lease_s) for r in await self._write(claim)]

    async def delivery_result(self, delivery_id: int, *, attempts: int,
                              delivered: float | None = None, next_at: float | None = None,
                              error: str | None = None,
                              claimed_until: float | None = None) -> bool:
        sql, params = result("?", claimed_until,
                             (attempts, delivered, next_at, error, delivery_id))

        def write(conn: sqlite3.Connection) -> bool:
            return conn.execute(sql, params).rowcount > 0

        return await self._write(write)

    async def alert_deliveries(self, alert_ids: Sequence[int], *,
                               left_out: list[LeftOut] | None = None) -> list[DeliveryRow]:
        rows: list[Any] = []
        for i in range(0, len(alert_ids), 500):  # (SQLite caps a statement's parameters)
            chunk = tuple(alert_ids[i:i + 500])
            rows += self._read(f"SELECT {STATUS_COLS} FROM alert_outbox WHERE alert_id IN "
                               f"({','.join('?' * len(chunk))})", chunk)
        # (id is the rowid: always a whole number)
        return readable(sorted(rows, key=lambda r: int(r[0])), delivery_row, left_out)

    async def redeliver(self, now: float, *, tenant: str | None = None) -> int:
        return await self._tenant_write(REDELIVER, now, tenant)

    async def undelivered_webhooks(self, *, tenant: str | None = None) -> list[str]:
        sql = UNDELIVERED_URLS.format(tenant="" if tenant is None else
                                      REDELIVER_TENANT.format(p="?"))
        return [r[0] for r in self._read(sql, () if tenant is None else (tenant,))]

    async def drop_deliveries(self, url: str, *, tenant: str | None = None) -> int:
        return await self._tenant_write(DROP, url, tenant)

    async def _tenant_write(self, template: str, first: Any, tenant: str | None) -> int:
        """The rows ``template`` (its ``{p}`` marks, ``{tenant}`` the tenant's condition)
        changes, given ``first`` and, for one tenant's rows, the tenant."""
        sql = template.format(p="?", tenant="" if tenant is None else
                              REDELIVER_TENANT.format(p="?"))

        def write(conn: sqlite3.Connection) -> int:
            return conn.execute(sql, (first,) if tenant is None else (first, tenant)).rowcount

        return await self._write(write)


def claim_sql(urls: int) -> str:
    """The query that picks the deliveries a claim takes (due at ``?``, for ``urls``
    webhook URLs, at most ``?`` of them), in order."""
    return (f"SELECT {DELIVERY_COLS} FROM alert_outbox o JOIN alerts a ON a.id=o.alert_id "
            "WHERE o.delivered IS NULL AND o.next_at IS NOT NULL AND o.next_at<=? "
            f"AND o.url IN ({','.join('?' * urls)}) AND {IN_ORDER.format(o='o')} "
            "ORDER BY o.next_at, o.id LIMIT ?")


def _where(tenant: str | None, open_only: bool, mark: str = "?") -> tuple[str, tuple[Any, ...]]:
    conds: list[str] = []
    params: list[Any] = []
    if tenant is not None:
        conds.append(f"tenant={mark}")
        params.append(tenant)
    if open_only:
        conds.append("status='open'")
    return (" WHERE " + " AND ".join(conds) if conds else ""), tuple(params)
