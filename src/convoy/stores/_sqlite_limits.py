"""The SQLite store's limits shared by engines: reservations against counted limits
(budgets), token buckets (rate limits) and the response cache.

A limit's row (``meters``) keeps what was used and what live reservations hold; each
reservation's holds are rows of their own (``holds``), so they can be settled, renewed with
their engine's leases, and dropped with a dead engine. A hold that lapsed is cleared (and
the held amount counted again from the live holds) when it would refuse a reservation:
until then it only makes the limit look fuller than it is.

A reservation or a take reads, decides and writes in one transaction that rides the group
commit (a batch runs under SQLite's one write lock, so the decision is atomic across every
connection and process on the file) and is committed before the caller hears the answer.
Settling a reservation, giving tokens back and caching an answer need no answer: they join
the next batch.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from convoy.stores._protocol import Hold, Level, Reservation, Spend

T = TypeVar("T")

_METER = "SELECT used, held FROM meters WHERE scope=? AND unit=?"
# Check and hold in one statement: the row comes back only if the limit had room.
_TRY = ("UPDATE meters SET held=held+? WHERE scope=? AND unit=? AND used+held<? "
        "RETURNING used, held-?")
_COUNT = ("INSERT INTO meters(scope, unit, used, held) VALUES(?,?,?,0) ON CONFLICT(scope, unit)"
          " DO NOTHING")
_LAPSED = "DELETE FROM holds WHERE scope=? AND unit=? AND until<=?"
_LIVE = "SELECT COALESCE(SUM(amount), 0) FROM holds WHERE scope=? AND unit=?"
_SET_HELD = "UPDATE meters SET held=? WHERE scope=? AND unit=?"
_HOLD = "INSERT INTO holds(id, scope, unit, amount, owner, until) VALUES(?,?,?,?,?,?)"
_ADD = "UPDATE meters SET used=used+?, held=held+? WHERE scope=? AND unit=?"
_RELEASE = "DELETE FROM holds WHERE id=? RETURNING scope, unit, amount"
_HELD_BY = "SELECT amount FROM holds WHERE id=? AND scope=? AND unit=?"
_RELEASE_PART = "UPDATE holds SET amount=amount-? WHERE id=? AND scope=? AND unit=?"
_LEVELS = ("SELECT m.unit, m.used, COALESCE((SELECT SUM(h.amount) FROM holds h WHERE "
           "h.scope=m.scope AND h.unit=m.unit AND h.until>?), 0) FROM meters m WHERE m.scope=?")
_BUCKET = "SELECT tokens, at FROM buckets WHERE name=?"
_SET_BUCKET = ("INSERT INTO buckets(name, tokens, at) VALUES(?,?,?) ON CONFLICT(name) DO "
               "UPDATE SET tokens=excluded.tokens, at=excluded.at")
_CACHE_GET = "SELECT value FROM cache WHERE tenant=? AND key=? AND expires>?"
_CACHE_PUT = ("INSERT INTO cache(tenant, key, value, expires) VALUES(?,?,?,?) ON CONFLICT("
              "tenant, key) DO UPDATE SET value=excluded.value, expires=excluded.expires")
_CACHE_EXPIRED = "DELETE FROM cache WHERE expires<=?"
#: Every this many cache writes, expired entries are deleted (in the same transaction).
_CACHE_SWEEP_EVERY = 256


def _recount(execute: Callable[..., sqlite3.Cursor], h: Hold,
             now: float) -> tuple[float, float]:
    """A limit refused: clear the holds on it that lapsed (their engines died) and count
    the live ones again. Returns (used, held)."""
    execute(_COUNT, (h.scope, h.unit, h.start))  # a limit never counted yet
    execute(_LAPSED, (h.scope, h.unit, now))
    live = float(execute(_LIVE, (h.scope, h.unit)).fetchone()[0])
    execute(_SET_HELD, (live, h.scope, h.unit))
    return float(execute(_METER, (h.scope, h.unit)).fetchone()[0]), live


def _refilled(row: Sequence[Any] | None, now: float, rate: float,
              capacity: float) -> float:
    """A bucket's balance now (a bucket never seen is full)."""
    if row is None:
        return capacity
    tokens, at = float(row[0]), float(row[1])
    return min(capacity, tokens + max(0.0, now - at) * rate)


class SQLiteLimits:
    """The shared-limit methods of :class:`~convoy.stores.SQLiteStore`."""

    clock: Callable[[], float]

    if TYPE_CHECKING:
        def _batched(self, call: Callable[[sqlite3.Connection], T], *,
                     wait: bool = True) -> asyncio.Future[T]: ...

        def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    _cache_puts = 0

    async def reserve(self, id: str, owner: str, holds: Sequence[Hold], *,
                      lease_s: float) -> Reservation:
        now = self.clock()
        until = now + lease_s

        def reserve(conn: sqlite3.Connection) -> Reservation:
            execute = conn.execute
            levels: list[tuple[float, float]] = []
            for h in holds:  # the usual case: every limit has room, one statement each
                row = execute(_TRY, (h.amount, h.scope, h.unit, h.limit, h.amount)).fetchone()
                if row is None and execute(_METER, (h.scope, h.unit)).fetchone() is None:
                    execute(_COUNT, (h.scope, h.unit, h.start))  # a limit never counted
                    row = execute(_TRY, (h.amount, h.scope, h.unit, h.limit,
                                         h.amount)).fetchone()
                if row is None:
                    break
                levels.append((float(row[0]), float(row[1])))
            granted = len(levels) == len(holds)
            if not granted:
                for h in holds[:len(levels)]:  # all or nothing: give back what was held
                    execute(_ADD, (0.0, -h.amount, h.scope, h.unit))
                levels = [_recount(execute, h, now) for h in holds]
                granted = all(u + held < h.limit
                              for (u, held), h in zip(levels, holds, strict=True))
                if granted:  # only holds that had lapsed were in the way
                    for h in holds:
                        execute(_ADD, (0.0, h.amount, h.scope, h.unit))
            if granted:
                for h in holds:
                    execute(_HOLD, (id, h.scope, h.unit, h.amount, owner, until))
            return Reservation(granted=granted, levels=tuple(
                Level(scope=h.scope, unit=h.unit, used=u, held=held)
                for (u, held), h in zip(levels, holds, strict=True)))

        return await self._batched(reserve)

    def settle(self, id: str, spent: Sequence[Spend], *,
               release: Sequence[Spend] | None = None) -> asyncio.Future[None]:
        def settle(conn: sqlite3.Connection) -> None:
            execute = conn.execute
            moves: dict[tuple[str, str], list[float]] = {}  # (scope, unit) -> used+, held-
            if release is None:
                for scope, unit, amount in execute(_RELEASE, (id,)).fetchall():
                    moves.setdefault((scope, unit), [0.0, 0.0])[1] += amount
            for r in release or ():
                row = execute(_HELD_BY, (id, r.scope, r.unit)).fetchone()
                if row is not None:  # not lapsed
                    part = min(r.amount, float(row[0]))
                    execute(_RELEASE_PART, (part, id, r.scope, r.unit))
                    moves.setdefault((r.scope, r.unit), [0.0, 0.0])[1] += part
            for s in spent:
                moves.setdefault((s.scope, s.unit), [0.0, 0.0])[0] += s.amount
            for (scope, unit), (used, released) in moves.items():
                execute(_ADD, (used, -released, scope, unit))

        return self._batched(settle, wait=False)

    async def levels(self, scope: str) -> dict[str, Level]:
        return {unit: Level(scope=scope, unit=unit, used=used, held=held)
                for unit, used, held in self._read(_LEVELS, (self.clock(), scope))}

    async def take(self, bucket: str, amount: float, *, rate: float, capacity: float,
                   max_wait: float | None = None) -> tuple[bool, float]:
        now = self.clock()

        def take(conn: sqlite3.Connection) -> tuple[bool, float]:
            row = conn.execute(_BUCKET, (bucket,)).fetchone()
            tokens = _refilled(row, now, rate, capacity)
            wait = max(0.0, (min(amount, capacity) - tokens) / rate)
            if max_wait is not None and wait > max_wait:
                return False, wait
            at = now if row is None else max(now, float(row[1]))
            conn.execute(_SET_BUCKET, (bucket, tokens - amount, at))
            return True, wait

        return await self._batched(take)

    def give(self, bucket: str, amount: float, *, rate: float,
             capacity: float) -> asyncio.Future[None]:
        now = self.clock()

        def give(conn: sqlite3.Connection) -> None:
            row = conn.execute(_BUCKET, (bucket,)).fetchone()
            tokens = min(capacity, _refilled(row, now, rate, capacity) + amount)
            at = now if row is None else max(now, float(row[1]))
            conn.execute(_SET_BUCKET, (bucket, tokens, at))

        return self._batched(give, wait=False)

    async def cache_get(self, tenant: str, key: str) -> str | None:
        rows = self._read(_CACHE_GET, (tenant, key, self.clock()))
        return str(rows[0][0]) if rows else None

    def cache_put(self, tenant: str, key: str, value: str, *,
                  ttl: float) -> asyncio.Future[None]:
        now = self.clock()
        self._cache_puts += 1
        sweep = self._cache_puts % _CACHE_SWEEP_EVERY == 0

        def put(conn: sqlite3.Connection) -> None:
            if sweep:
                conn.execute(_CACHE_EXPIRED, (now,))
            conn.execute(_CACHE_PUT, (tenant, key, value, now + ttl))

        return self._batched(put, wait=False)
