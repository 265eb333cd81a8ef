"""The PostgreSQL store's data subjects: subject keys, purges and compaction.

A purge deletes in one transaction, taking each shared-state key's advisory lock before it
touches the key (as writers do). PostgreSQL keeps deleted rows as dead tuples until a
``VACUUM``: :meth:`PostgresSubjects.compact` runs ``VACUUM FULL`` on the tables a purge
touches, which rewrites them into new files (the old ones are unlinked), then refreshes the
planner statistics of those tables and rewrites ``pg_statistic``, where ``ANALYZE`` copies
column values (:mod:`convoy.stores._postgres_stats`). What the server's WAL segments and
backups still hold is the cluster operator's to manage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from psycopg import AsyncConnection

from convoy._errors import StoreError
from convoy.stores._audit_sql import PG_APPEND as AUDIT_APPEND
from convoy.stores._postgres_stats import refresh_statistics
from convoy.stores._protocol import (
    COMPACTION_OWED,
    SUBJECT_REFS,
    TOMBSTONE_S,
    Erasure,
    SessionRow,
    StateEntry,
)
from convoy.stores._sqlite_sql import _SESSION_COLS, _session
from convoy.stores._state_rows import STATE_COLS as _STATE_COLS
from convoy.stores._state_rows import state_entry as _entry
from convoy.stores._subjects_sql import (
    PURGED_TABLES,
    SubjectSQL,
    chunks,
    erasure,
    not_compacted,
    pg_expire,
    refuse_held,
    sweep_due,
    with_named,
)

T = TypeVar("T")
Conn = AsyncConnection[Any]
_SQL = SubjectSQL("%s")


class PostgresSubjects:
    """The ``subject_*``, ``kv_setdefault`` (the master key's check), ``purge``,
    ``erasures`` and ``compact`` methods of :class:`~convoy.stores.PostgresStore`."""

    clock: Callable[[], float]
    _swept: float | None = None  # when a purge last looked for tombstones to delete

    if TYPE_CHECKING:
        url: str
        schema: str

        async def _write(self, fn: Callable[[Conn], Awaitable[T]]) -> T: ...

        async def _read(self, text: str, params: Sequence[Any] = ()) -> list[Any]: ...

        async def _drain(self) -> None: ...

        async def _on_pool(self, fn: Callable[[Conn], Awaitable[T]], what: str, *,
                           atomic: bool, again: bool) -> T: ...

        def _key_lock(self, tenant: str, namespace: str, key: str) -> int: ...

    def _subject_lock(self, tenant: str, subject: str) -> int:
        """The advisory lock of a data subject: an erasure's purge takes it, a creation of
        the subject's sessions takes it shared (64 bits of a hash of the schema, the
        tenant and the subject)."""
        name = "\0".join(("convoy-subject", self.schema, tenant, subject))
        return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big",
                              signed=True)

    async def subject_key_get(self, tenant: str, subject: str) -> str | None:
        rows = await self._read(_SQL.key_get, (tenant, subject))
        return str(rows[0][0]) if rows else None

    async def subject_key_put(self, tenant: str, subject: str, wrapped: str) -> str:
        now = self.clock()

        async def put(conn: Conn) -> str:
            await conn.execute(_SQL.key_put, (tenant, subject, wrapped, now))
            cur = await conn.execute(_SQL.key_get, (tenant, subject))
            row = await cur.fetchone()
            assert row is not None
            return str(row[0])

        return await self._write(put)

    async def subject_key_oldest(self) -> tuple[str, str, str] | None:
        rows = await self._read(_SQL.key_oldest)
        return (str(rows[0][0]), str(rows[0][1]), str(rows[0][2])) if rows else None

    async def kv_setdefault(self, namespace: str, key: str, value: str) -> str:
        async def put(conn: Conn) -> str:
            await conn.execute(_SQL.kv_new, (namespace, key, value))
            cur = await conn.execute(_SQL.kv_get, (namespace, key))
            row = await cur.fetchone()
            assert row is not None
            return str(row[0])

        return await self._write(put)

    async def subject_sessions(self, tenant: str, subject: str) -> list[SessionRow]:
        rows = await self._read(f"SELECT {_SESSION_COLS} FROM sessions WHERE tenant=%s AND "
                                "subject=%s ORDER BY created, id", (tenant, subject))
        return [_session(r) for r in rows]

    async def state_written_by(self, tenant: str,
                               session_ids: Sequence[str]) -> list[StateEntry]:
        out: list[StateEntry] = []
        for chunk in chunks(session_ids):
            out += [_entry(r) for r in await self._read(
                f"SELECT {_STATE_COLS} FROM state_history WHERE tenant=%s AND session_id IN "
                f"({_SQL.ids(len(chunk))}) ORDER BY at, namespace, key, version",
                (tenant, *chunk))]
        return out

    async def state_created(self, tenant: str,
                            session_ids: Sequence[str]) -> list[tuple[str, str]]:
        return sorted({(str(ns), str(key)) for chunk in chunks(session_ids)
                       for ns, key in await self._read(_SQL.created(len(chunk)),
                                                       (tenant, *chunk))})

    async def finished_before(self, cutoff: float, *, tenant: str | None = None,
                              limit: int = 1000) -> list[str]:
        cond, params = ("", ()) if tenant is None else (" AND tenant=%s", (tenant,))
        return [r[0] for r in await self._read(
            f"{_SQL.finished_before}{cond} ORDER BY finished, id LIMIT %s",
            (cutoff, *params, limit))]

    async def purge(self, tenant: str, session_ids: Sequence[str], *,
                    reason: Literal["erasure", "retention"], subject: str | None = None,
                    subject_ref: str | None = None,
                    finished_before: float | None = None,
                    audit: Callable[[Erasure], bytes] | None = None) -> Erasure:
        now = self.clock()
        sweep = sweep_due(self._swept, now)

        async def purge(conn: Conn) -> Erasure:
            sessions = versions = floor = 0
            ids = session_ids
            if subject is not None:
                # The subject's lock first (a creation of the subject's sessions takes it
                # shared: it commits before this reads the sessions below, or finds the
                # key gone; the key's row alone is no lock when there is none, as for a
                # second erasure, and a key made meanwhile would be destroyed under a
                # session made with it), then the key, then the sessions that name the
                # subject now, any made since listed too.
                await conn.execute("SELECT pg_advisory_xact_lock(%s)",
                                   (self._subject_lock(tenant, subject),))
                await conn.execute(_SQL.key_get + " FOR UPDATE", (tenant, subject))
                cur = await conn.execute(_SQL.named, (tenant, subject))
                ids = with_named(session_ids, await cur.fetchall())
            if finished_before is not None:  # (not one reopened since it was listed)
                still: list[str] = []
                for chunk in chunks(ids):  # (locked: a reopen waits for the purge)
                    cur = await conn.execute(_SQL.still_finished(len(chunk), lock=" FOR UPDATE"),
                                             (tenant, *chunk, finished_before))
                    still += [r[0] for r in await cur.fetchall()]
                ids = still
            for chunk in chunks(ids):  # locked: a claim waits for the purge
                cur = await conn.execute(_SQL.held(len(chunk), lock=" FOR UPDATE"),
                                         (tenant, *chunk))
                refuse_held(await cur.fetchall(), now, reason)
            if sweep:  # (before this purge keeps its own: each is kept until a later one)
                await conn.execute(*pg_expire(now - TOMBSTONE_S))
            for chunk in chunks(ids):
                plain, history, current, drop = _SQL.purge_chunk(tenant, chunk)
                cur = await conn.execute(
                    f"SELECT DISTINCT namespace, key FROM state_history WHERE tenant=%s AND "
                    f"session_id IN ({_SQL.ids(len(chunk))}) ORDER BY 1, 2", (tenant, *chunk))
                for ns, key in await cur.fetchall():  # in one order: no deadlock
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)",
                                       (self._key_lock(tenant, ns, key),))
                for text, params in plain:
                    await conn.execute(text, params)
                whole = created = await (await conn.execute(_SQL.created(len(chunk)),
                                                            (tenant, *chunk))).fetchall()
                orphans: list[Any] = []
                if reason == "retention":  # (its own keys go whole; a shared key it created
                    orphans = created  # keeps the others' versions, and has no creator)
                    whole = await (await conn.execute(_SQL.created(len(chunk), own=True),
                                                      (tenant, *chunk))).fetchall()
                for ns, key in whole:
                    versions += (await conn.execute(_SQL.key_versions,
                                                    (tenant, ns, key))).rowcount
                    gone = await (await conn.execute(_SQL.key_current,
                                                     (tenant, ns, key))).fetchone()
                    floor = max(floor, int(gone[0]) if gone else 0)
                    await conn.execute(*_SQL.rewatch(tenant, ns, key))
                versions += (await conn.execute(history, (tenant, *chunk))).rowcount
                cur = await conn.execute(current, (tenant, *chunk))
                for row in await cur.fetchall():
                    if not (await conn.execute(*_SQL.fall_back_to(row))).rowcount:
                        floor = max(floor, int(row[3]))  # (none remains: it went whole)
                        await conn.execute(*_SQL.unorphaned(*row[:3]))
                    await conn.execute(*_SQL.rewatch(*row[:3]))
                for ns, key in orphans:  # (any version left)
                    await conn.execute(*_SQL.orphaned(tenant, ns, key))
                sessions += (await conn.execute(drop, (tenant, *chunk))).rowcount
            if floor:
                await conn.execute(*_SQL.floor(tenant, floor))
            destroyed = subject is not None and \
                (await conn.execute(_SQL.key_delete, (tenant, subject))).rowcount > 0
            if subject is not None:
                await conn.execute(_SQL.refs_delete, (SUBJECT_REFS + tenant, subject))
            cur = await conn.execute(_SQL.record + " RETURNING seq",
                                     (tenant, reason, subject_ref, sessions, versions,
                                      int(destroyed), now))
            row = await cur.fetchone()
            event = Erasure(tenant=tenant, reason=reason, subject_ref=subject_ref,
                            sessions=sessions, state_versions=versions, key=destroyed, at=now,
                            seq=int(row[0]) if row else 0)
            if audit is not None:  # (its entry, in the same transaction)
                await conn.execute(AUDIT_APPEND, (tenant, 1, 1, [audit(event)]))
            await conn.execute(_SQL.owe, (*COMPACTION_OWED, str(event.seq)))
            return event

        event = await self._write(purge)
        if sweep:
            self._swept = now
        return event

    async def erasures(self, *, tenant: str | None = None) -> list[Erasure]:
        cond, params = ("", ()) if tenant is None else (" WHERE tenant=%s", (tenant,))
        return [erasure(r) for r in await self._read(f"{_SQL.erasures}{cond} ORDER BY seq",
                                                     params)]

    async def compact(self) -> None:
        async def vacuum(conn: Conn) -> None:
            # (what is owed as it begins: a purge that commits meanwhile stays owed)
            owed = await (await conn.execute(_SQL.kv_get, COMPACTION_OWED)).fetchone()
            await conn.execute(f"VACUUM FULL {', '.join(PURGED_TABLES)}")
            await refresh_statistics(conn, self.schema, PURGED_TABLES)
            if owed is not None:  # (compacted: owed no more)
                await conn.execute(_SQL.owed_paid, (*COMPACTION_OWED, owed[0]))

        await self._drain()
        try:
            await self._on_pool(vacuum, "compact", atomic=False, again=True)
        except StoreError as e:
            if e.transient:  # a lock another transaction holds (lock_timeout)
                raise not_compacted(self.url, self.url) from None
            raise


__all__ = ["PostgresSubjects"]
