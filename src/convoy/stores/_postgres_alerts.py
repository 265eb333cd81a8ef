"""The PostgreSQL store's alerts: baseline alerts and their queued webhook deliveries.

Each write is one transaction off the journal's group commit. Deliveries are claimed with
``FOR UPDATE SKIP LOCKED``, so engines sharing the database never claim one event at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
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
from convoy.stores._postgres_conn import matches_nothing
from convoy.stores._protocol import (
    AlertDelivery,
    AlertRow,
    DeliveryRow,
    FiredAlert,
    NewAlert,
)
from convoy.stores._rows import LeftOut, readable
from convoy.stores._sqlite_alerts import _where

if TYPE_CHECKING:
    from convoy.stores._postgres_conn import Conn

T = TypeVar("T")

#: A claim: the due deliveries (at ``%s``, for the URLs ``%s``, at most ``%s``), in order,
#: leased until ``%s``.
CLAIM = (
    "WITH due AS (SELECT d.id FROM alert_outbox d WHERE d.delivered IS NULL AND d.next_at IS "
    f"NOT NULL AND d.next_at<=%s AND d.url=ANY(%s) AND {IN_ORDER.format(o='d')} "
    "ORDER BY d.next_at, d.id LIMIT %s FOR UPDATE OF d SKIP LOCKED), "
    "claimed AS (UPDATE alert_outbox o SET next_at=%s FROM due WHERE o.id=due.id "
    "RETURNING o.*) "
    f"SELECT {DELIVERY_COLS} FROM claimed o JOIN alerts a ON a.id=o.alert_id ORDER BY o.id")


class PostgresAlerts:
    """The alert methods of :class:`~convoy.stores.PostgresStore`."""

    if TYPE_CHECKING:
        async def _write(self, fn: Callable[[Conn], Awaitable[T]]) -> T: ...

        async def _read(self, text: str, params: Sequence[Any] = ()) -> list[Any]: ...

    async def alert_open(self, alert: NewAlert, webhooks: Sequence[str]) -> FiredAlert:
        async def write(conn: Conn) -> FiredAlert:
            while True:  # (an insert that waited for another's open alert, then found it
                # cleared before it could read it: the series has none open, try again)
                cur = await conn.execute(INSERT_ALERT.format(p="%s"), new_alert_params(alert))
                row = await cur.fetchone()
                if row is not None:
                    for queue in queued(int(row[0]), "fired", webhooks, alert.opened):
                        await conn.execute(QUEUE.format(p="%s"), queue)
                    return FiredAlert(id=int(row[0]), opened=True)
                # (locked: engines adopting it at once queue its missing events one after
                # the other, each seeing the other's; one cleared meanwhile is not found)
                cur = await conn.execute(OPEN_OF_SERIES.format(p="%s") + " FOR UPDATE",
                                         series_params(alert))
                found = await cur.fetchone()
                if found is not None:
                    cur = await conn.execute(FIRED_KEYS.format(p="%s"), (found[0],))
                    for queue in adopted(int(found[0]), webhooks, await cur.fetchall(),
                                         alert.opened):
                        await conn.execute(QUEUE.format(p="%s"), queue)
                    return FiredAlert(id=int(found[0]), opened=False)

        return await self._write(write)

    async def alert_clear(self, alert_id: int, at: float, value: float,
                          webhooks: Sequence[str]) -> bool:
        async def write(conn: Conn) -> bool:
            cur = await conn.execute(CLEAR.format(p="%s"), (at, value, alert_id))
            if cur.rowcount == 0:
                return False
            cur = await conn.execute(FIRED_KEYS.format(p="%s"), (alert_id,))
            for row in cleared_rows(alert_id, webhooks, await cur.fetchall(), at):
                await conn.execute(QUEUE.format(p="%s"), row)
            return True

        return await self._write(write)

    async def alert_close(self, alert_id: int, at: float, *,
                          tenant: str | None = None) -> bool:
        sql = CLOSE.format(p="%s", tenant="" if tenant is None else " AND tenant=%s")
        params = (at, alert_id) if tenant is None else (at, alert_id, tenant)

        async def write(conn: Conn) -> bool:
            cur = await conn.execute(sql, params)
            if cur.rowcount == 0:
                return False
            cur = await conn.execute(FIRED_URLS.format(p="%s"), (alert_id,))
            urls = [r[0] for r in await cur.fetchall()]
            for row in queued(alert_id, "cleared", urls, at):
                await conn.execute(QUEUE.format(p="%s"), row)
            return True

        return await self._write(write)

    async def list_alerts(self, *, tenant: str | None = None, open_only: bool = False,
                          limit: int = 100,
                          left_out: list[LeftOut] | None = None) -> list[AlertRow]:
        where, params = _where(tenant, open_only, "%s")
        rows = await self._read(f"SELECT {ALERT_COLS} FROM alerts{where} ORDER BY id DESC "
                                "LIMIT %s", (*params, limit))
        return readable(rows, alert_row, left_out)

    async def due_deliveries(self, now: float, *, urls: Sequence[str], limit: int = 50,
                             lease_s: float = 60.0) -> list[AlertDelivery]:
        if not urls:
            return []

        async def claim(conn: Conn) -> list[Any]:
            cur = await conn.execute(CLAIM, (now, list(urls), limit, now + lease_s))
            return await cur.fetchall()

        return [delivery(r, now + lease_s) for r in await self._write(claim)]

    async def delivery_result(self, delivery_id: int, *, attempts: int,
                              delivered: float | None = None, next_at: float | None = None,
                              error: str | None = None,
                              claimed_until: float | None = None) -> bool:
        sql, params = result("%s", claimed_until,
                             (attempts, delivered, next_at, error, delivery_id))

        async def write(conn: Conn) -> bool:
            cur = await conn.execute(sql, params)
            return cur.rowcount > 0

        return await self._write(write)

    async def alert_deliveries(self, alert_ids: Sequence[int], *,
                               left_out: list[LeftOut] | None = None) -> list[DeliveryRow]:
        if not alert_ids:
            return []
        rows = await self._read(f"SELECT {STATUS_COLS} FROM alert_outbox WHERE "
                                "alert_id=ANY(%s) ORDER BY id", (list(alert_ids),))
        return readable(rows, delivery_row, left_out)

    async def redeliver(self, now: float, *, tenant: str | None = None) -> int:
        if tenant is not None and matches_nothing((tenant,)):
            return 0
        sql = REDELIVER.format(p="%s", tenant="" if tenant is None else
                               REDELIVER_TENANT.format(p="%s"))

        async def write(conn: Conn) -> int:
            cur = await conn.execute(sql, (now,) if tenant is None else (now, tenant))
            return cur.rowcount

        return await self._write(write)

    async def undelivered_webhooks(self, *, tenant: str | None = None) -> list[str]:
        if tenant is not None and matches_nothing((tenant,)):
            return []
        sql = UNDELIVERED_URLS.format(tenant="" if tenant is None else
                                      REDELIVER_TENANT.format(p="%s"))
        return [r[0] for r in await self._read(sql, () if tenant is None else (tenant,))]

    async def drop_deliveries(self, url: str, *, tenant: str | None = None) -> int:
        params = (url,) if tenant is None else (url, tenant)
        if matches_nothing(params):
            return 0
        sql = DROP.format(p="%s", tenant="" if tenant is None else
                          REDELIVER_TENANT.format(p="%s"))

        async def write(conn: Conn) -> int:
            cur = await conn.execute(sql, params)
            return cur.rowcount

        return await self._write(write)
