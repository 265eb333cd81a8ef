"""The PostgreSQL store's shared state: versioned keys, compare-and-set, history and watches.

Every write of a key runs in a transaction of its own (off the journal's group commit): two
statements sent in one pipeline (one round trip, one implicit transaction). The first takes
a transaction-level advisory lock on the key (``pg_advisory_xact_lock``), the second does
the work: writers and watchers of one key run one after the other, and the second
statement (READ COMMITTED: a snapshot of its own, taken once the lock is held) sees
everything the one before committed.

Why a lock rather than SERIALIZABLE: with many writers on one key, SERIALIZABLE would roll
back and retry whole transactions (and may fail transactions on other keys whose index
pages they share), while the lock makes them wait their turn, and a stale write is then a
plain compare-and-set conflict the caller handles. The compare-and-set itself does not rely
on the lock: the upsert lands only ``WHERE state.version = expected`` (the row lock of
``ON CONFLICT DO UPDATE`` re-checks it on the newest version). The lock is what makes the
writer check (a writer that wrote before gets its version back) and the watches exact: a
watch of a key that does not exist yet has no row to lock.

A write that fires watches signals their sessions in the same statement, and updates each
of their rows whatever its status (waking it if it waits for the signal): the update waits
for a park in flight and then sees the session parked, while ``park`` locks its session's
row before it looks for a signal. A signal sent while a session is being parked is never
missed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from convoy._errors import StoreError
from convoy.stores._audit_sql import pg_append
from convoy.stores._postgres_conn import Statements
from convoy.stores._protocol import StateEntry, StateWrite, StateWriteResult
from convoy.stores._rows import LeftOut, readable
from convoy.stores._state_rows import STATE_COLS, state_entry

_COLS = STATE_COLS
_WHERE_KEY = "tenant=%(tenant)s AND namespace=%(ns)s AND key=%(key)s"
_LOCK_KEY = "SELECT pg_advisory_xact_lock(%(lock)s)"
# Whether a fired watch wakes its session (``s``) at once.
# (``wait_name``: one name, or several joined by WAIT_NAMES_SEP, chr(31).)
_WAKES = "s.status='waiting' AND f.name = ANY(string_to_array(s.wait_name, chr(31)))"
# One compare-and-set: lands only if this writer did not write the key before (``prior``)
# and the key is at the expected version; keeps the version in the history, fires the
# key's watches, signals their sessions and wakes those that wait for the signal; a new
# key only past its tenant's floor (``state_floor``: the highest version a purge deleted
# whole). Returns the new version, else this writer's earlier version, else the current
# one, else (a new key, none of those) the floor that ``version`` is not past.
_PUT = f"""
WITH prior AS (
  SELECT {_COLS} FROM state_history
  WHERE session_id=%(session)s AND step_key=%(step)s AND {_WHERE_KEY} LIMIT 1
), cur AS (
  SELECT {_COLS} FROM state WHERE {_WHERE_KEY}
), floor AS (
  SELECT version FROM state_floor WHERE tenant=%(tenant)s AND version >= %(version)s
), new AS (
  INSERT INTO state({_COLS})
  SELECT %(tenant)s, %(ns)s, %(key)s, %(version)s, %(value)s, %(session)s, %(agent)s,
         %(step)s, %(at)s
  WHERE NOT EXISTS (SELECT 1 FROM prior)
    AND COALESCE((SELECT version FROM cur), 0) = %(expected)s
    AND (%(expected)s > 0 OR NOT EXISTS (SELECT 1 FROM floor))
  ON CONFLICT (tenant, namespace, key) DO UPDATE SET version=excluded.version,
    value=excluded.value, session_id=excluded.session_id, agent=excluded.agent,
    step_key=excluded.step_key, at=excluded.at
  WHERE state.version = %(expected)s
  RETURNING {_COLS}
), hist AS (
  INSERT INTO state_history({_COLS}) SELECT {_COLS} FROM new
), fired AS (
  DELETE FROM state_watch WHERE {_WHERE_KEY} AND after_version<%(version)s
    AND EXISTS (SELECT 1 FROM new)
  RETURNING session_id, name
), sig AS (
  INSERT INTO signals(session_id,name,payload,at)
  SELECT f.session_id, f.name, %(payload)s, %(at)s FROM fired f
  WHERE EXISTS (SELECT 1 FROM sessions s WHERE s.id=f.session_id)
), woke AS (
  UPDATE sessions s SET status=CASE WHEN {_WAKES} THEN 'pending' ELSE s.status END,
    wake_at=CASE WHEN {_WAKES} THEN NULL ELSE s.wake_at END,
    wait_name=CASE WHEN {_WAKES} THEN NULL ELSE s.wait_name END
  FROM fired f WHERE s.id=f.session_id
)
SELECT 0, {_COLS}, (SELECT count(*) FROM fired) FROM new
UNION ALL SELECT 1, {_COLS}, 0 FROM prior
UNION ALL SELECT 2, {_COLS}, 0 FROM cur
UNION ALL SELECT 3, NULL, NULL, NULL, version, NULL, NULL, NULL, NULL, NULL, 0 FROM floor
  WHERE %(expected)s = 0 AND NOT EXISTS (SELECT 1 FROM prior)
"""
#: Tries of a new key's write whose tenant's floor rose each time since it was read, and
#: the tenants whose floors a store keeps (more: it forgets them, and reads them again).
_FLOOR_TRIES, _MAX_FLOORS = 8, 10_000
# The audit entries of a write, appended only if this transaction wrote the key's new
# version (``xmin``: the row version it made), as ``PG_APPEND`` appends.
_AUDIT_IF_WRITTEN = pg_append(
    "%(tenant)s", "%(n)s", "%(bodies)s", only_if="EXISTS (SELECT 1 FROM won)",
    before=f"won AS (SELECT 1 FROM state WHERE {_WHERE_KEY} AND version=%(version)s "
           "AND xmin = pg_current_xact_id()::xid), ")
# A watch, registered only if the key is not past ``after`` yet and the session is one of
# the tenant's; returns the key's current version.
_WATCH = f"""
WITH cur AS (
  SELECT version FROM state WHERE {_WHERE_KEY}
), ins AS (
  INSERT INTO state_watch(tenant,namespace,key,session_id,name,after_version)
  SELECT %(tenant)s, %(ns)s, %(key)s, %(session)s, %(name)s, %(after)s
  WHERE COALESCE((SELECT version FROM cur), 0) <= %(after)s
    AND EXISTS (SELECT 1 FROM sessions WHERE id=%(session)s AND tenant=%(tenant)s)
  ON CONFLICT (tenant,namespace,key,session_id,name) DO UPDATE SET
    after_version=excluded.after_version
)
SELECT COALESCE((SELECT version FROM cur), 0)
"""
_CURRENT = f"SELECT {_COLS} FROM state WHERE tenant=%s AND namespace=%s AND key=%s"


class PostgresState:
    """The ``state_*`` methods of :class:`~convoy.stores.PostgresStore`."""

    clock: Callable[[], float]
    schema: str
    _state_floors: dict[str, int]

    if TYPE_CHECKING:
        async def _locked_then(self, statements: Statements, *,
                               again: bool) -> list[list[Any]]: ...

        async def _read(self, text: str, params: Sequence[Any] = ()) -> list[Any]: ...

    def _key_lock(self, tenant: str, namespace: str, key: str) -> int:
        """The advisory lock of one key: 64 bits of a hash of the schema and the key (two
        keys sharing one would only wait for each other)."""
        name = "\0".join(("convoy-state", self.schema, tenant, namespace, key))
        return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big",
                              signed=True)

    async def state_get(self, tenant: str, namespace: str, key: str) -> StateEntry | None:
        rows = await self._read(_CURRENT, (tenant, namespace, key))
        return state_entry(rows[0]) if rows else None

    async def state_put(self, write: StateWrite) -> StateWriteResult:
        w = write
        expected = w.expected_version or 0
        floors = self._state_floors
        # A write that names its writer lands once however often it runs: after a lost
        # connection it may simply run again.
        again = w.session_id is not None and w.step_key is not None
        for _ in range(_FLOOR_TRIES):
            # A new key starts past the tenant's floor (the highest version a purge deleted
            # whole), as this store last saw it; the write checks it under the key's lock,
            # and one that finds it higher says so (3) and is made again past it.
            version = expected + 1 if expected else floors.get(w.tenant, 0) + 1
            params = {
                "tenant": w.tenant, "ns": w.namespace, "key": w.key, "value": w.value,
                "session": w.session_id, "agent": w.agent, "step": w.step_key,
                "expected": expected, "version": version, "at": self.clock(),
                "lock": self._key_lock(w.tenant, w.namespace, w.key),
                "payload": json.dumps({"namespace": w.namespace, "key": w.key,
                                       "version": version})}
            statements: list[tuple[str, Any]] = [(_LOCK_KEY, params), (_PUT, params)]
            if w.audit:  # the entries ride this transaction, appended only if it landed
                statements.append((_AUDIT_IF_WRITTEN, {
                    **params, "n": len(w.audit), "bodies": list(w.audit)}))
            results = await self._locked_then(statements, again=again)
            rows = results[1]
            # One row each: the new version (0), this writer's earlier one (1), the
            # current (2), the tenant's floor past the new key's version tried (3).
            row = min(rows, key=lambda r: int(r[0]), default=None)
            if row is None:  # a conflict on a key that does not exist
                return StateWriteResult(written=False, entry=None)
            kind = int(row[0])
            if kind == 3:
                if len(floors) >= _MAX_FLOORS:
                    floors.clear()
                floors[w.tenant] = int(row[4])
                continue
            entry = state_entry(row[1:])
            if kind == 0:
                return StateWriteResult(written=True, entry=entry, woken=int(row[-1]))
            return StateWriteResult(written=kind == 1, entry=entry)
        raise StoreError(f"a new shared-state key was not written: purges raised its "
                         f"tenant's version floor as it was written, {_FLOOR_TRIES} times "
                         "in a row; write it again", transient=True)

    async def state_history(self, tenant: str, namespace: str, key: str, *,
                            limit: int | None = None,
                            left_out: list[LeftOut] | None = None) -> list[StateEntry]:
        text = (f"SELECT {_COLS} FROM state_history WHERE tenant=%s AND namespace=%s AND "
                "key=%s ORDER BY version DESC")
        params: tuple[Any, ...] = (tenant, namespace, key)
        if limit is not None:
            text, params = text + " LIMIT %s", (*params, max(0, limit))
        return readable(reversed(await self._read(text, params)), state_entry, left_out)

    async def state_list(self, tenant: str, namespace: str, *,
                         left_out: list[LeftOut] | None = None) -> list[StateEntry]:
        rows = await self._read(f"SELECT {_COLS} FROM state WHERE tenant=%s AND "
                                "namespace=%s ORDER BY key", (tenant, namespace))
        return readable(rows, state_entry, left_out)

    async def state_namespaces(self, tenant: str) -> dict[str, int]:
        rows = await self._read("SELECT namespace, COUNT(*) FROM state WHERE tenant=%s "
                                "GROUP BY namespace ORDER BY namespace", (tenant,))
        return {ns: int(n) for ns, n in rows}

    async def state_watch(self, tenant: str, namespace: str, key: str, *, session_id: str,
                          name: str, after_version: int) -> bool:
        params = {"tenant": tenant, "ns": namespace, "key": key, "session": session_id,
                  "name": name, "after": after_version,
                  "lock": self._key_lock(tenant, namespace, key)}
        *_, rows = await self._locked_then([(_LOCK_KEY, params), (_WATCH, params)],
                                           again=True)
        return int(rows[0][0]) > after_version


__all__ = ["PostgresState"]
