"""The SQLite store's shared state: versioned keys, compare-and-set, history and watches.

Every write runs in a transaction of its own (``BEGIN IMMEDIATE``, off the journal's group
commit): the version check and the write happen under SQLite's one write lock, so a
compare-and-set is atomic across every connection and process on the file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from convoy.stores._protocol import StateEntry, StateWrite, StateWriteResult
from convoy.stores._rows import LeftOut, readable
from convoy.stores._sqlite_audit import _write as audit_write
from convoy.stores._sqlite_sql import _send_signal
from convoy.stores._state_rows import STATE_COLS, state_entry

T = TypeVar("T")

_COLS = STATE_COLS
_WHERE_KEY = "tenant=? AND namespace=? AND key=?"
_CURRENT = f"SELECT {_COLS} FROM state WHERE {_WHERE_KEY}"
_BY_WRITER = (f"SELECT {_COLS} FROM state_history WHERE session_id=? AND step_key=? AND "
              f"{_WHERE_KEY}")
# The highest version of the tenant's keys a purge deleted whole (none: no row).
_FLOOR = "SELECT version FROM state_floor WHERE tenant=?"
_PUT_CURRENT = f"INSERT OR REPLACE INTO state({_COLS}) VALUES(?,?,?,?,?,?,?,?,?)"
_PUT_HISTORY = f"INSERT INTO state_history({_COLS}) VALUES(?,?,?,?,?,?,?,?,?)"
_FIRE = (f"DELETE FROM state_watch WHERE {_WHERE_KEY} AND after_version<? "
         "RETURNING session_id, name")
_WATCH = (
    "INSERT INTO state_watch(tenant,namespace,key,session_id,name,after_version) "
    "SELECT ?,?,?,?,?,? WHERE EXISTS (SELECT 1 FROM sessions WHERE id=? AND tenant=?) "
    "ON CONFLICT(tenant,namespace,key,session_id,name) DO UPDATE SET "
    "after_version=excluded.after_version")



def _params(e: StateEntry) -> tuple[Any, ...]:
    return (e.tenant, e.namespace, e.key, e.version, e.value, e.session_id, e.agent,
            e.step_key, e.at)


class SQLiteState:
    """The ``state_*`` methods of :class:`~convoy.stores.SQLiteStore`."""

    clock: Callable[[], float]

    if TYPE_CHECKING:
        _audit_heads: dict[str, int]

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    async def state_get(self, tenant: str, namespace: str, key: str) -> StateEntry | None:
        rows = self._read(_CURRENT, (tenant, namespace, key))
        return state_entry(rows[0]) if rows else None

    async def state_put(self, write: StateWrite) -> StateWriteResult:
        w = write
        where = (w.tenant, w.namespace, w.key)
        now = self.clock()

        def put(conn: sqlite3.Connection) -> StateWriteResult:
            if w.session_id is not None and w.step_key is not None:
                row = conn.execute(_BY_WRITER, (w.session_id, w.step_key, *where)).fetchone()
                if row is not None:  # this writer's write landed before: not again
                    return StateWriteResult(written=True, entry=state_entry(row))
            row = conn.execute(_CURRENT, where).fetchone()
            current = int(row[3]) if row is not None else 0
            if current != (w.expected_version or 0):
                return StateWriteResult(written=False,
                                        entry=state_entry(row) if row is not None else None)
            if row is None:  # a new key: past every version a purge deleted whole
                floor = conn.execute(_FLOOR, (w.tenant,)).fetchone()
                current = int(floor[0]) if floor is not None else 0
            entry = StateEntry(tenant=w.tenant, namespace=w.namespace, key=w.key,
                               version=current + 1, value=w.value, session_id=w.session_id,
                               agent=w.agent, step_key=w.step_key, at=now)
            params = _params(entry)
            conn.execute(_PUT_CURRENT, params)
            conn.execute(_PUT_HISTORY, params)
            if w.audit:  # the entries ride this transaction: both land, or neither
                audit_write(conn, [(w.tenant, w.audit, None)], self._audit_heads)
            fired = conn.execute(_FIRE, (*where, entry.version)).fetchall()
            if fired:
                payload = json.dumps({"namespace": w.namespace, "key": w.key,
                                      "version": entry.version})
                for session_id, name in fired:
                    _send_signal(conn, session_id, name, payload, now)
            return StateWriteResult(written=True, entry=entry, woken=len(fired))

        return await self._write(put)

    async def state_history(self, tenant: str, namespace: str, key: str, *,
                            limit: int | None = None,
                            left_out: list[LeftOut] | None = None) -> list[StateEntry]:
        sql = f"SELECT {_COLS} FROM state_history WHERE {_WHERE_KEY} ORDER BY version DESC"
        params: tuple[Any, ...] = (tenant, namespace, key)
        if limit is not None:
            sql, params = sql + " LIMIT ?", (*params, max(0, limit))
        return readable(reversed(self._read(sql, params)), state_entry, left_out)

    async def state_list(self, tenant: str, namespace: str, *,
                         left_out: list[LeftOut] | None = None) -> list[StateEntry]:
        rows = self._read(f"SELECT {_COLS} FROM state WHERE tenant=? AND namespace=? "
                          "ORDER BY key", (tenant, namespace))
        return readable(rows, state_entry, left_out)

    async def state_namespaces(self, tenant: str) -> dict[str, int]:
        return dict(self._read("SELECT namespace, COUNT(*) FROM state WHERE tenant=? "
                               "GROUP BY namespace ORDER BY namespace", (tenant,)))

    async def state_watch(self, tenant: str, namespace: str, key: str, *, session_id: str,
                          name: str, after_version: int) -> bool:
        def watch(conn: sqlite3.Connection) -> bool:
            row = conn.execute(_CURRENT, (tenant, namespace, key)).fetchone()
            if (int(row[3]) if row is not None else 0) > after_version:
                return True
            conn.execute(_WATCH, (tenant, namespace, key, session_id, name, after_version,
                                  session_id, tenant))
            return False

        return await self._write(watch)


__all__ = ["SQLiteState"]
