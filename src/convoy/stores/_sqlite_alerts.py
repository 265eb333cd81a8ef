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
    DELIVERY_COLS,
    INSERT_ALERT,
    QUEUE,
    RESULT,
    alert_row,
    delivery,
    new_alert_params,
)
from convoy.stores._protocol import AlertDelivery, AlertRow, NewAlert
from convoy.stores._rows import LeftOut, readable

T = TypeVar("T")


class SQLiteAlerts:
    """The alert methods of :class:`~convoy.stores.SQLiteStore`."""

    if TYPE_CHECKING:
        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    async def alert_open(self, alert: NewAlert, webhooks: Sequence[str]) -> int:
        def write(conn: sqlite3.Connection) -> int:
            alert_id = int(conn.execute(INSERT_ALERT.format(p="?"), new_alert_params(alert)
                                        ).fetchone()[0])
            conn.executemany(QUEUE.format(p="?"), [(alert_id, url, "fired", alert.opened)
                                                   for url in webhooks])
            return alert_id

        return await self._write(write)

    async def alert_clear(self, alert_id: int, at: float, value: float,
                          webhooks: Sequence[str]) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            if conn.execute(CLEAR.format(p="?"), (at, value, alert_id)).rowcount == 0:
                return False
            conn.executemany(QUEUE.format(p="?"), [(alert_id, url, "cleared", at)
                                                   for url in webhooks])
            return True

        return await self._write(write)

    async def list_alerts(self, *, tenant: str | None = None, open_only: bool = False,
                          limit: int = 100,
                          left_out: list[LeftOut] | None = None) -> list[AlertRow]:
        where, params = _where(tenant, open_only)
        rows = self._read(f"SELECT {ALERT_COLS} FROM alerts{where} ORDER BY id DESC LIMIT ?",
                          (*params, limit))
        return readable(rows, alert_row, left_out)

    async def due_deliveries(self, now: float, *, limit: int = 50,
                             lease_s: float = 60.0) -> list[AlertDelivery]:
        def claim(conn: sqlite3.Connection) -> list[Any]:
            rows = conn.execute(
                f"SELECT {DELIVERY_COLS} FROM alert_outbox o JOIN alerts a ON a.id=o.alert_id "
                "WHERE o.delivered IS NULL AND o.next_at IS NOT NULL AND o.next_at<=? "
                "ORDER BY o.next_at, o.id LIMIT ?", (now, limit)).fetchall()
            conn.executemany("UPDATE alert_outbox SET next_at=? WHERE id=?",
                             [(now + lease_s, r[0]) for r in rows])
            return rows

        return [delivery(r) for r in await self._write(claim)]

    async def delivery_result(self, delivery_id: int, *, attempts: int,
                              delivered: float | None = None, next_at: float | None = None,
                              error: str | None = None) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(RESULT.format(p="?"), (attempts, delivered, next_at, error,
                                                delivery_id))

        await self._write(write)


def _where(tenant: str | None, open_only: bool, mark: str = "?") -> tuple[str, tuple[Any, ...]]:
    conds: list[str] = []
    params: list[Any] = []
    if tenant is not None:
        conds.append(f"tenant={mark}")
        params.append(tenant)
    if open_only:
        conds.append("status='open'")
    return (" WHERE " + " AND ".join(conds) if conds else ""), tuple(params)
