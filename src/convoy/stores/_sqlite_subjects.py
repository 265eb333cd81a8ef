"""The SQLite store's data subjects: subject keys, purges and compaction.

A purge runs in one transaction with ``secure_delete`` on (SQLite overwrites what it
deletes with zeros); :meth:`SQLiteSubjects.compact` then copies the WAL into the database,
rebuilds the file (``VACUUM``: no free page keeps an old row) and truncates the WAL to
zero bytes, so no deleted row is left in any file the store wrote.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from convoy._errors import StoreError
from convoy.stores._protocol import (
    COMPACTION_OWED,
    SUBJECT_REFS,
    TOMBSTONE_S,
    Erasure,
    SessionRow,
    StateEntry,
)
from convoy.stores._sqlite_audit import _write as audit_write
from convoy.stores._sqlite_sql import _SESSION_COLS, _is_busy, _session, _store_error
from convoy.stores._sqlite_wal import _Checkpointer
from convoy.stores._state_rows import STATE_COLS as _STATE_COLS
from convoy.stores._state_rows import state_entry as _entry
from convoy.stores._subjects_sql import (
    SQLITE_EXPIRE,
    SQLITE_EXPIRING,
    SQLITE_TOMBSTONES,
    SubjectSQL,
    chunks,
    erasure,
    expired,
    not_compacted,
    refuse_held,
    sweep_due,
    with_named,
)

T = TypeVar("T")
_SQL = SubjectSQL("?")


class SQLiteSubjects:
    """The ``subject_*``, ``kv_setdefault`` (the master key's check), ``purge``,
    ``erasures`` and ``compact`` methods of :class:`~convoy.stores.SQLiteStore`."""

    clock: Callable[[], float]
    path: Path
    _checkpointer: _Checkpointer | None
    _audit_heads: dict[str, int]
    _swept: float | None = None  # when a purge last looked for tombstones to delete

    if TYPE_CHECKING:
        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

        async def _drain(self) -> None: ...

        @property
        def conn(self) -> sqlite3.Connection: ...

    async def subject_key_get(self, tenant: str, subject: str) -> str | None:
        rows = self._read(_SQL.key_get, (tenant, subject))
        return str(rows[0][0]) if rows else None

    async def subject_key_put(self, tenant: str, subject: str, wrapped: str) -> str:
        now = self.clock()

        def put(conn: sqlite3.Connection) -> str:
            conn.execute(_SQL.key_put, (tenant, subject, wrapped, now))
            return str(conn.execute(_SQL.key_get, (tenant, subject)).fetchone()[0])

        return await self._write(put)

    async def subject_key_oldest(self) -> tuple[str, str, str] | None:
        rows = self._read(_SQL.key_oldest)
        return (str(rows[0][0]), str(rows[0][1]), str(rows[0][2])) if rows else None

    async def kv_setdefault(self, namespace: str, key: str, value: str) -> str:
        def put(conn: sqlite3.Connection) -> str:
            conn.execute(_SQL.kv_new, (namespace, key, value))
            return str(conn.execute(_SQL.kv_get, (namespace, key)).fetchone()[0])

        return await self._write(put)

    async def subject_sessions(self, tenant: str, subject: str) -> list[SessionRow]:
        rows = self._read(f"SELECT {_SESSION_COLS} FROM sessions WHERE tenant=? AND "
                          "subject=? ORDER BY created, id", (tenant, subject))
        return [_session(r) for r in rows]

    async def state_written_by(self, tenant: str,
                               session_ids: Sequence[str]) -> list[StateEntry]:
        out: list[StateEntry] = []
        for chunk in chunks(session_ids):
            out += [_entry(r) for r in self._read(
                f"SELECT {_STATE_COLS} FROM state_history WHERE tenant=? AND session_id IN "
                f"({_SQL.ids(len(chunk))}) ORDER BY at, namespace, key, version",
                (tenant, *chunk))]
        return out

    async def state_created(self, tenant: str,
                            session_ids: Sequence[str]) -> list[tuple[str, str]]:
        return sorted({(str(ns), str(key)) for chunk in chunks(session_ids)
                       for ns, key in self._read(_SQL.created(len(chunk)), (tenant, *chunk))})

    async def finished_before(self, cutoff: float, *, tenant: str | None = None,
                              limit: int = 1000) -> list[str]:
        cond, params = ("", ()) if tenant is None else (" AND tenant=?", (tenant,))
        return [r[0] for r in self._read(
            f"{_SQL.finished_before}{cond} ORDER BY finished, id LIMIT ?",
            (cutoff, *params, limit))]

    async def purge(self, tenant: str, session_ids: Sequence[str], *,
                    reason: Literal["erasure", "retention"], subject: str | None = None,
                    subject_ref: str | None = None,
                    finished_before: float | None = None,
                    audit: Callable[[Erasure], bytes] | None = None) -> Erasure:
        now = self.clock()
        sweep = sweep_due(self._swept, now)

        def purge(conn: sqlite3.Connection) -> Erasure:
            sessions = versions = floor = 0
            ids = session_ids if subject is None else with_named(  # (and any made since)
                session_ids, conn.execute(_SQL.named, (tenant, subject)).fetchall())
            if finished_before is not None:  # (not one reopened since it was listed)
                ids = [r[0] for chunk in chunks(ids) for r in conn.execute(
                    _SQL.still_finished(len(chunk)), (tenant, *chunk, finished_before))]
            for chunk in chunks(ids):
                refuse_held(conn.execute(_SQL.held(len(chunk)), (tenant, *chunk)).fetchall(),
                            now, reason)
            if sweep:  # (before this purge keeps its own: each is kept until a later one)
                cutoff = now - TOMBSTONE_S
                conn.executemany(SQLITE_EXPIRE, [
                    (key,) for key, value in conn.execute(SQLITE_EXPIRING,
                                                          (cutoff,)).fetchall()
                    if isinstance(value, str) and expired(value, cutoff)])
            for chunk in chunks(ids):
                plain, history, current, drop = _SQL.purge_chunk(tenant, chunk)
                conn.execute(SQLITE_TOMBSTONES.format(_SQL.ids(len(chunk))), (tenant, *chunk))
                for text, params in plain:
                    conn.execute(text, params)
                whole = created = conn.execute(_SQL.created(len(chunk)),
                                               (tenant, *chunk)).fetchall()
                orphans: list[Any] = []
                if reason == "retention":  # (its own keys go whole; a shared key it created
                    orphans = created  # keeps the others' versions, and has no creator)
                    whole = conn.execute(_SQL.created(len(chunk), own=True),
                                         (tenant, *chunk)).fetchall()
                for ns, key in whole:
                    versions += conn.execute(_SQL.key_versions, (tenant, ns, key)).rowcount
                    gone = conn.execute(_SQL.key_current, (tenant, ns, key)).fetchone()
                    floor = max(floor, int(gone[0]) if gone else 0)
                    conn.execute(*_SQL.rewatch(tenant, ns, key))
                versions += conn.execute(history, (tenant, *chunk)).rowcount
                for row in conn.execute(current, (tenant, *chunk)).fetchall():
                    if not conn.execute(*_SQL.fall_back_to(row)).rowcount:
                        floor = max(floor, int(row[3]))  # (none remains: it went whole)
                        conn.execute(*_SQL.unorphaned(*row[:3]))
                    conn.execute(*_SQL.rewatch(*row[:3]))
                for ns, key in orphans:  # (any version left)
                    conn.execute(*_SQL.orphaned(tenant, ns, key))
                sessions += conn.execute(drop, (tenant, *chunk)).rowcount
            if floor:
                conn.execute(*_SQL.floor(tenant, floor))
            destroyed = subject is not None and \
                conn.execute(_SQL.key_delete, (tenant, subject)).rowcount > 0
            if subject is not None:
                conn.execute(_SQL.refs_delete, (SUBJECT_REFS + tenant, subject))
            event = Erasure(tenant=tenant, reason=reason, subject_ref=subject_ref,
                            sessions=sessions, state_versions=versions, key=destroyed, at=now)
            cur = conn.execute(_SQL.record, (tenant, reason, subject_ref, sessions, versions,
                                             int(destroyed), now))
            event = replace(event, seq=int(cur.lastrowid or 0))
            conn.execute(_SQL.owe, (*COMPACTION_OWED, str(event.seq)))
            if audit is not None:  # (its entry, in the same transaction)
                audit_write(conn, [(tenant, [audit(event)], None)], self._audit_heads)
            return event

        await self._drain()
        self.conn.execute("PRAGMA secure_delete=ON")
        try:
            event = await self._write(purge)
        finally:
            self.conn.execute("PRAGMA secure_delete=OFF")
        if sweep:
            self._swept = now
        return event

    async def erasures(self, *, tenant: str | None = None) -> list[Erasure]:
        cond, params = ("", ()) if tenant is None else (" WHERE tenant=?", (tenant,))
        return [erasure(r) for r in self._read(f"{_SQL.erasures}{cond} ORDER BY seq", params)]

    async def compact(self) -> None:
        await self._drain()
        checkpointer = self._checkpointer
        paused: AbstractContextManager[object] = \
            checkpointer.lock if checkpointer is not None else nullcontext()
        with paused:
            self._compact()  # (the store's own checkpoints wait: not another's busy)

    def _compact(self) -> None:
        conn = self.conn
        try:
            conn.execute("PRAGMA secure_delete=ON")
            # (what is owed as it begins: a purge that commits meanwhile stays owed)
            owed = next(iter(conn.execute(_SQL.kv_get, COMPACTION_OWED).fetchall()), None)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("VACUUM")
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if owed is not None and not (busy and busy[0]):  # (compacted: owed no more,
                conn.execute(_SQL.owed_paid, (*COMPACTION_OWED, owed[0]))  # checkpointed)
                busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as e:
            if isinstance(e, sqlite3.OperationalError) and _is_busy(e):
                raise _busy(self.path) from None
            raise _store_error(e, self.path, "compact") from None
        finally:
            conn.execute("PRAGMA secure_delete=OFF")
        if busy and busy[0]:
            raise _busy(self.path)


def _busy(path: Path) -> StoreError:
    return not_compacted(repr(str(path)), str(path))


__all__ = ["SQLiteSubjects"]
