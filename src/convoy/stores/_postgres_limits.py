"""The PostgreSQL store's limits shared by engines: reservations against counted limits
(budgets), token buckets (rate limits) and the response cache.

The tables and their meaning are the SQLite store's (:mod:`convoy.stores._sqlite_limits`):
a limit's row (``meters``) keeps what was used and what live reservations hold, each
reservation's holds are rows of ``holds``, lapsed holds are cleared only when they would
refuse a reservation.

How a decision stays atomic across engines without SERIALIZABLE: a reservation checks and
raises each limit in one upsert (``... DO UPDATE SET held = held + x WHERE used + held <
limit RETURNING``), which row-locks the limit and re-checks the condition on its newest
version if another engine changed it meanwhile; the holds of a reservation are written in
the same transaction. A limit that refused is locked first (``FOR UPDATE``) and only then
counted again from its live holds, by a later statement whose snapshot sees every
transaction that changed the limit before the lock was granted. Limits are taken in one
order (scope, unit), so two reservations over the same limits do not deadlock; a deadlock
with a settlement (which frees holds first) is rolled back by the server and run again.

A take from a bucket is one upsert that refills, checks the wait and takes; settling,
giving tokens back and caching an answer ride the group commit (their statements join one
batch, one transaction) and are not run again after a lost connection: counting a spend
twice would only make a limit look fuller, and the spend is journaled anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from convoy.stores._protocol import Hold, Level, Reservation, Spend

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from convoy.stores._postgres_conn import Conn

T = TypeVar("T")

# Check and hold in one statement: a limit never counted starts at ``start``; the row comes
# back only if the limit had room (a new row always does: checked by the caller).
_TRY = ("INSERT INTO meters(scope, unit, used, held) VALUES(%s, %s, %s, %s) "
        "ON CONFLICT (scope, unit) DO UPDATE SET held = meters.held + excluded.held "
        "WHERE meters.used + meters.held < %s RETURNING used, held - %s")
_LOCK = "SELECT used FROM meters WHERE scope=%s AND unit=%s FOR UPDATE"
# Clear the lapsed holds and count the live ones (this statement's snapshot still sees the
# holds it deletes: they are subtracted).
_RECOUNT = """
WITH gone AS (
  DELETE FROM holds WHERE scope=%(scope)s AND unit=%(unit)s AND until<=%(now)s
  RETURNING amount
)
UPDATE meters SET held =
  (SELECT COALESCE(SUM(amount), 0) FROM holds WHERE scope=%(scope)s AND unit=%(unit)s)
  - (SELECT COALESCE(SUM(amount), 0) FROM gone)
WHERE scope=%(scope)s AND unit=%(unit)s RETURNING used, held
"""
_ADD_HELD = "UPDATE meters SET held = held + %s WHERE scope=%s AND unit=%s"
_HOLD = ("INSERT INTO holds(id, scope, unit, amount, owner, until) SELECT %s, s, u, a, %s, %s "
         "FROM unnest(%s::text[], %s::text[], %s::float8[]) AS t(s, u, a)")
_COUNT = ("INSERT INTO meters(scope, unit, used, held) VALUES(%s, %s, %s, 0) "
          "ON CONFLICT (scope, unit) DO NOTHING")
# Settling: every hold of a reservation released, part of one released, a spend counted.
_RELEASE = """
WITH gone AS (DELETE FROM holds WHERE id=%s RETURNING scope, unit, amount)
UPDATE meters m SET held = m.held - g.amount FROM gone g
WHERE m.scope = g.scope AND m.unit = g.unit
"""
_RELEASE_PART = """
WITH part AS (
  UPDATE holds h SET amount = h.amount - LEAST(%(amount)s, h.amount)
  FROM (SELECT amount FROM holds WHERE id=%(id)s AND scope=%(scope)s AND unit=%(unit)s
        FOR UPDATE) old
  WHERE h.id=%(id)s AND h.scope=%(scope)s AND h.unit=%(unit)s
  RETURNING LEAST(%(amount)s, old.amount) AS released
)
UPDATE meters SET held = held - (SELECT released FROM part)
WHERE scope=%(scope)s AND unit=%(unit)s AND EXISTS (SELECT 1 FROM part)
"""
_SPEND = "UPDATE meters SET used = used + %s WHERE scope=%s AND unit=%s"
_LEVELS = ("SELECT m.unit, m.used, COALESCE((SELECT SUM(h.amount) FROM holds h WHERE "
           "h.scope=m.scope AND h.unit=m.unit AND h.until>%s), 0) FROM meters m "
           "WHERE m.scope=%s")
# A bucket's balance now: refilled by the time since it was last written, up to capacity.
_REFILLED = "LEAST(%(cap)s, b.tokens + GREATEST(0, %(now)s - b.at) * %(rate)s)"
# A take: a new bucket is full (its take never waits); an existing one is refilled and
# taken from only if the wait for the amount is within ``max_wait``. Returns the balance
# after the take.
_TAKE = f"""
INSERT INTO buckets AS b (name, tokens, at) VALUES(%(name)s, %(cap)s - %(amount)s, %(now)s)
ON CONFLICT (name) DO UPDATE SET tokens = {_REFILLED} - %(amount)s,
  at = GREATEST(%(now)s, b.at)
WHERE %(max_wait)s::float8 IS NULL
  OR (LEAST(%(amount)s, %(cap)s) - {_REFILLED}) / %(rate)s <= %(max_wait)s
RETURNING tokens
"""
_BALANCE = "SELECT LEAST(%s, tokens + GREATEST(0, %s - at) * %s) FROM buckets WHERE name=%s"
_GIVE = f"""
INSERT INTO buckets AS b (name, tokens, at)
VALUES(%(name)s, LEAST(%(cap)s, %(cap)s + %(amount)s), %(now)s)
ON CONFLICT (name) DO UPDATE SET tokens = LEAST(%(cap)s, {_REFILLED} + %(amount)s),
  at = GREATEST(%(now)s, b.at)
"""
_CACHE_GET = "SELECT value FROM cache WHERE tenant=%s AND key=%s AND expires>%s"
_CACHE_PUT = ("INSERT INTO cache(tenant, key, value, expires) VALUES(%s, %s, %s, %s) "
              "ON CONFLICT (tenant, key) DO UPDATE SET value=excluded.value, "
              "expires=excluded.expires")
_CACHE_EXPIRED = "DELETE FROM cache WHERE expires<=%s"
#: Every this many cache writes, expired entries are deleted (in the same batch).
_CACHE_SWEEP_EVERY = 256


class PostgresLimits:
    """The shared-limit methods of :class:`~convoy.stores.PostgresStore`."""

    clock: Callable[[], float]

    if TYPE_CHECKING:
        async def _write(self, fn: Callable[[Conn], Awaitable[T]]) -> T: ...

        async def _read(self, text: str, params: Sequence[Any] = ()) -> list[Any]: ...

        async def _exec(self, text: str, params: Any, *,
                        again: bool = False) -> tuple[int, list[Any]]: ...

        def _submit_once(self, statements: Sequence[tuple[str, Any]], *,
                         wait: bool) -> asyncio.Future[None]: ...

    _cache_puts = 0

    async def reserve(self, id: str, owner: str, holds: Sequence[Hold], *,
                      lease_s: float) -> Reservation:
        now = self.clock()
        until = now + lease_s
        # Limits in one order: two reservations over the same ones never deadlock.
        order = sorted(range(len(holds)), key=lambda i: (holds[i].scope, holds[i].unit))

        async def reserve(conn: Conn) -> Reservation:
            levels: list[tuple[float, float] | None] = [None] * len(holds)
            granted = True
            for i in order:
                h = holds[i]
                cur = await conn.execute(_TRY, (h.scope, h.unit, h.start, h.amount, h.limit,
                                                h.amount))
                row = await cur.fetchone()
                if row is None or float(row[0]) + float(row[1]) >= h.limit:
                    granted = False
                    break
                levels[i] = (float(row[0]), float(row[1]))
            if not granted:  # count again, from the live holds, every limit asked for
                for i in order:
                    h = holds[i]
                    await conn.execute(_COUNT, (h.scope, h.unit, h.start))  # never counted
                    await conn.execute(_LOCK, (h.scope, h.unit))
                    cur = await conn.execute(_RECOUNT, {"scope": h.scope, "unit": h.unit,
                                                        "now": now})
                    row = await cur.fetchone()
                    levels[i] = (float(row[0]), float(row[1])) if row else (h.start, 0.0)
                granted = all(lv is not None and lv[0] + lv[1] < h.limit
                              for lv, h in zip(levels, holds, strict=True))
                if granted:  # only holds that had lapsed were in the way
                    for i in order:
                        h = holds[i]
                        await conn.execute(_ADD_HELD, (h.amount, h.scope, h.unit))
            if granted and holds:
                await conn.execute(_HOLD, (id, owner, until, [h.scope for h in holds],
                                           [h.unit for h in holds],
                                           [float(h.amount) for h in holds]))
            return Reservation(granted=granted, levels=tuple(
                Level(scope=h.scope, unit=h.unit, used=lv[0], held=lv[1])
                for lv, h in zip(levels, holds, strict=True) if lv is not None))

        return await self._write(reserve)

    def settle(self, id: str, spent: Sequence[Spend], *,
               release: Sequence[Spend] | None = None) -> asyncio.Future[None]:
        statements: list[tuple[str, Any]] = []
        if release is None:
            statements.append((_RELEASE, (id,)))
        for r in release or ():
            statements.append((_RELEASE_PART, {"id": id, "scope": r.scope, "unit": r.unit,
                                               "amount": r.amount}))
        for s in spent:
            if s.amount:
                statements.append((_SPEND, (s.amount, s.scope, s.unit)))
        return self._submit_once(statements, wait=False)

    async def levels(self, scope: str) -> dict[str, Level]:
        rows = await self._read(_LEVELS, (self.clock(), scope))
        return {unit: Level(scope=scope, unit=unit, used=float(used), held=float(held))
                for unit, used, held in rows}

    async def take(self, bucket: str, amount: float, *, rate: float, capacity: float,
                   max_wait: float | None = None) -> tuple[bool, float]:
        params = {"name": bucket, "amount": amount, "rate": rate, "cap": capacity,
                  "now": self.clock(), "max_wait": max_wait}
        _, rows = await self._exec(_TAKE, params)
        if rows:
            tokens = float(rows[0][0]) + amount  # the balance the take found
            return True, max(0.0, (min(amount, capacity) - tokens) / rate)
        # Refused: the wait it would have needed, as the bucket stands now.
        found = await self._read(_BALANCE, (capacity, params["now"], rate, bucket))
        tokens = float(found[0][0]) if found else capacity
        return False, max(0.0, (min(amount, capacity) - tokens) / rate)

    def give(self, bucket: str, amount: float, *, rate: float,
             capacity: float) -> asyncio.Future[None]:
        params = {"name": bucket, "amount": amount, "rate": rate, "cap": capacity,
                  "now": self.clock()}
        return self._submit_once([(_GIVE, params)], wait=False)

    async def cache_get(self, tenant: str, key: str) -> str | None:
        rows = await self._read(_CACHE_GET, (tenant, key, self.clock()))
        return str(rows[0][0]) if rows else None

    def cache_put(self, tenant: str, key: str, value: str, *,
                  ttl: float) -> asyncio.Future[None]:
        now = self.clock()
        self._cache_puts += 1
        statements: list[tuple[str, Any]] = []
        if self._cache_puts % _CACHE_SWEEP_EVERY == 0:
            statements.append((_CACHE_EXPIRED, (now,)))
        statements.append((_CACHE_PUT, (tenant, key, value, now + ttl)))
        return self._submit_once(statements, wait=False)


__all__ = ["PostgresLimits"]
