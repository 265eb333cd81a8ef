"""The PostgreSQL store: a connection pool, group commit, leases, fenced writes.

For several engine processes (on one machine or many) sharing one database. Needs the
``postgres`` extra (``pip install 'convoy[postgres]'``: psycopg 3 and psycopg_pool).

Group commit, as on SQLite: every journal append, finish, header update, session creation
and interceptor-state write of every session joins one pending batch; one writer commits
the batch in one transaction (its statements pipelined: one round trip), and whatever
arrives while a commit is in flight joins the next batch. A lone session's write commits at
once. A session continues only after its record is committed; PostgreSQL's defaults
(``synchronous_commit=on``, ``fsync=on``) make a commit survive a crash of the server and a
power loss, not only of the engine process.

Claims, renewals, shared-state writes (:mod:`convoy.stores._postgres_state`) and other
transactional writes run on the pool after every write submitted before them. Leases
are times of the stores' clocks (``clock``): engines on different machines need
synchronised clocks (NTP), within ``lease_margin``.

Tenants: a method given ``tenant=`` acts only on that tenant's sessions (see the
protocol). Signals: a sender locks the session's row before it looks at it, and ``park``
locks it before it looks for a signal, so a signal racing a park always wakes the session.

Everything lives in one PostgreSQL schema (``convoy`` unless the URL says
``?schema=NAME``), created on first open with the tables of the current schema version;
later versions migrate it in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import PipelineStatus, TransactionStatus
from psycopg_pool import AsyncConnectionPool

from convoy._command import command
from convoy._errors import JournalError, NoStoreError, StoreError, UserError
from convoy._text import plural
from convoy.durability._signals import LeaseLost
from convoy.stores import _postgres_sql as sql
from convoy.stores._addons import (
    ADDONS,
    FOREIGN_SCHEMA_READ,
    addon_statements,
    check_readable,
    missing_addons,
    stand_ins,
)
from convoy.stores._audit_sql import PG_APPEND as AUDIT_APPEND
from convoy.stores._postgres_alerts import PostgresAlerts
from convoy.stores._postgres_audit import PostgresAudit
from convoy.stores._postgres_conn import (
    Conn,
    Statements,
    count,
    locked_then,
    matches_nothing,
    pipelined,
    split_url,
)
from convoy.stores._postgres_limits import PostgresLimits
from convoy.stores._postgres_state import PostgresState
from convoy.stores._postgres_subjects import PostgresSubjects
from convoy.stores._protocol import (
    CANCEL_SIGNAL,
    SEALED_PREFIX,
    SEALED_SINCE,
    NewSession,
    SessionFilter,
    SessionOutcome,
    SessionRow,
    Signal,
    StepRecord,
    StoreSummary,
    sealed_outer_labels,
)
from convoy.stores._rows import (
    SUMMARY,
    LeftOut,
    claimed_rows,
    conditions,
    meta_version,
    next_seq,
    outcome_counts,
    readable,
    session_order,
    session_page,
)
from convoy.stores._sqlite_sql import (
    _JOURNAL_COLS,
    _SESSION_COLS,
    _append_params,
    _record,
    _session,
    by_status,
    session_listing,
)
from convoy.stores._subjects_sql import SubjectSQL, keys_held
from convoy.stores._url import check_busy_timeout, redacted

T = TypeVar("T")
_SUBJECT_SQL = SubjectSQL("%s")
_RETRIES = 5  # deadlocks and serialization failures: the transaction simply runs again


class _Op:
    """One write of a batch: ``sql`` with ``params``, or a journal append (``guard``: the
    session id and owner whose lease decides the fenced form at commit time; ``consume``:
    the signal the append consumes). ``fenced`` ops are refused when no row changed."""

    __slots__ = ("consume", "fenced", "fut", "guard", "on_commit", "once", "params", "quiet",
                 "sql")

    def __init__(self, sql: str | None, params: Any, *,
                 fenced: str | None = None, guard: tuple[str, str] | None = None,
                 consume: int | None = None,
                 on_commit: Callable[[int | None], None] | None = None,
                 once: bool = False) -> None:
        self.sql = sql
        self.params = params
        self.once = once  # not run again after a lost connection (it adds to a count)
        self.fenced = fenced
        self.guard = guard
        self.consume = consume
        self.on_commit = on_commit  # the row count once committed, None if the batch failed
        self.fut: asyncio.Future[None] | None = None
        self.quiet = False  # nobody need await it: its error is its batch's, seen there


class PostgresStore(PostgresLimits, PostgresState, PostgresAlerts, PostgresAudit,
                    PostgresSubjects):
    """Everything in one schema of a PostgreSQL database.

    Args:
        url: ``postgresql://user:password@host:port/dbname`` (any libpq URL), optionally with
            ``?schema=NAME`` (default ``convoy``).
        busy_timeout: seconds a write may wait for a lock held by another engine or for a
            free connection before it fails (transient :class:`~convoy.StoreError`).
        pool_min: connections the pool keeps open (besides the group commit's own).
        pool_max: connections the pool may open at most.
        lease_margin: seconds of doubt about a lease near its expiry: closer than this, a
            journal append share-locks the session row to check that it still owns it.
        clock: the wall clock (seconds since the epoch) for leases, timers and record times.
        read_only: open a store at this schema version for reading only: nothing is
            created, migrated or written (every connection's transactions are read-only,
            ``default_transaction_read_only``); the add-ons it lacks get temporary
            stand-ins on each connection (see :mod:`convoy.stores._addons`).
    """

    def __init__(self, url: str, *, busy_timeout: float = 10.0, pool_min: int = 1,
                 pool_max: int = 10, lease_margin: float = 5.0,
                 clock: Callable[[], float] = time.time, read_only: bool = False) -> None:
        if not url.lower().startswith(("postgresql://", "postgres://")):
            raise UserError(f"not a PostgreSQL URL: {redacted(url)!r}; use "
                            "'postgresql://user:password@host:port/dbname'")
        if pool_min < 1 or pool_max < pool_min:
            raise UserError(f"need 1 <= pool_min <= pool_max, got {pool_min} and {pool_max}")
        self._conninfo, self.schema, self.url = split_url(url)
        if "application_name" not in conninfo_to_dict(self._conninfo):  # pg_stat_activity
            self._conninfo = make_conninfo(self._conninfo, application_name="convoy")
        self.busy_timeout = check_busy_timeout(busy_timeout)
        self.pool_min = pool_min
        self.pool_max = pool_max
        self.lease_margin = lease_margin
        self.clock = clock
        self.read_only = read_only
        self._missing: tuple[str, ...] = ()  # add-ons a read-only store stands in for
        self._stand_ins: list[str] = []
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._writer: Conn | None = None  # the group commit's connection
        self._opening: asyncio.Task[None] | None = None
        self._pending: list[_Op] = []
        self._flusher: asyncio.Task[None] | None = None
        self._last: asyncio.Future[None] | None = None
        # Leases this store object granted, confirmed by a committed claim or renewal (or a
        # creation, until its batch says otherwise): session id -> (owner, expiry).
        self._leases: dict[str, tuple[str, float]] = {}
        #: Each tenant's state floor as this store last saw it (see ``state_put``).
        self._state_floors: dict[str, int] = {}
        self._seq = 0
        self.commits = 0
        self.records = 0

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r})"

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        if self._opening is None or self._opening.done():  # callers at once share one open
            self._opening = asyncio.get_running_loop().create_task(self._open())
        await asyncio.shield(self._opening)

    async def _open(self) -> None:
        # A read-only store has no group commit: its writer would only be refused.
        writer = None if self.read_only else await self._connect()
        try:
            if writer is None:
                await self._check_readable()
            else:
                await self._migrate(writer)
                await self._configure(writer)
        except psycopg.Error as e:
            if writer is not None:
                await writer.close()
            raise sql.store_error(e, self.url, "open") from None
        except BaseException:
            if writer is not None:
                await writer.close()
            raise
        # Reads and transactional writes. The pool's first connections are open before
        # open() returns: a pool worker cancelled while it connects (the event loop ending
        # with the store still open) swallows the cancellation and waits forever, and so
        # would asyncio.run's end.
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self._conninfo, min_size=self.pool_min, max_size=self.pool_max,
            kwargs={"autocommit": True}, configure=self._configure, open=False,
            timeout=self.busy_timeout, name=f"convoy:{self.schema}")
        try:
            await pool.open(wait=True, timeout=self.busy_timeout)
        except BaseException as e:
            await pool.close()
            if writer is not None:
                await writer.close()
            if isinstance(e, psycopg_pool.PoolTimeout):
                raise StoreError(f"the store {self.url} could not open "
                                 f"{plural(self.pool_min, 'pooled connection')} within "
                                 f"{self.busy_timeout:g}s",
                                 transient=True) from None
            raise
        self._writer, self._pool = writer, pool

    async def _connect(self) -> Conn:
        """A new connection (the group commit's own), or one clear error line."""
        try:
            return await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=max(1, int(self.busy_timeout)))
        except psycopg.Error as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise StoreError(f"cannot connect to the PostgreSQL store {self.url}: {first}",
                             transient=self._pool is not None) from None

    async def _configure(self, conn: Conn) -> None:
        await conn.execute(f'SET search_path TO "{self.schema}"; '
                           f"SET lock_timeout = {int(self.busy_timeout * 1000)}")
        if self.read_only:
            for stmt in self._stand_ins:  # temporary: this connection's own
                await conn.execute(stmt)
            await conn.execute("SET default_transaction_read_only = on")

    async def _check_readable(self) -> None:
        """Refuse (one line) a schema this read-only store cannot read, and prepare the
        stand-ins for the add-ons it lacks, tried once here: a connection that may not
        create temporary views (a standby server) says so now, not in the pool."""
        conn = await self._connect()
        try:
            version = await self._schema_version(conn)
            self._check_not_newer(version)
            if version is None:
                await self._refuse_foreign(conn)
            check_readable(version, sql.PG_SCHEMA_VERSION, self.url)
            cur = await conn.execute(
                f'SELECT key, value FROM "{self.schema}".meta WHERE key LIKE %s', ("addon:%",))
            missing = missing_addons(dict(await cur.fetchall()), self.url)
            self._missing = tuple(a.name for a in missing)
            self._stand_ins = stand_ins(missing, postgres=True, schema=f'"{self.schema}"')
            try:
                await self._configure(conn)
            except psycopg.Error as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise StoreError(
                    f"the store {self.url} lacks the add-ons {', '.join(self._missing)} and "
                    f"this connection cannot stand in for them ({first}): run "
                    f"{command('db migrate', db=self.url)}") from None
        finally:
            await conn.close()

    async def _refuse_foreign(self, conn: Conn) -> None:
        """Refuse a schema that holds no Convoy store but tables (views, sequences,
        composite types) of its own: another application's (``?schema=public`` of its
        database). Convoy's tables are never added to it; an empty schema becomes the
        store."""
        cur = await conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c', 'S') "
            "ORDER BY c.relname", (self.schema,))
        tables = [r[0] for r in await cur.fetchall()]
        if tables:
            names = ", ".join(repr(t) for t in tables[:3])  # (repr: escaped, on one line)
            more = f" and {len(tables) - 3:,} more" if len(tables) > 3 else ""
            raise NoStoreError(
                f"schema {self.schema!r} of {self.url} holds no Convoy store (it has tables "
                f"of its own: {names}{more}): " + (FOREIGN_SCHEMA_READ if self.read_only else
                "Convoy does not add its tables to another application's schema; name a "
                "new schema (?schema=NAME, default 'convoy') or an existing Convoy store"))

    async def _schema_version(self, conn: Conn) -> int | None:
        """The store schema version the schema holds; ``None`` when it holds no Convoy
        store (no ``meta`` table, or another application's: without Convoy's columns)."""
        cur = await conn.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass(%s) AND "
            "attname IN ('key', 'value') AND NOT attisdropped", (f'"{self.schema}".meta',))
        row = await cur.fetchone()
        if row is None or row[0] != 2:
            return None
        cur = await conn.execute(
            f'SELECT value FROM "{self.schema}".meta WHERE key=\'schema_version\'')
        row = await cur.fetchone()
        return meta_version("schema_version", row[0]) if row else None

    async def schema_version(self) -> int | None:
        conn = await self._connect()
        try:
            return await self._schema_version(conn)
        except psycopg.Error as e:
            raise sql.store_error(e, self.url, "read") from None
        finally:
            await conn.close()

    async def summary(self) -> StoreSummary:
        journal, keys, tasks, tenants = (await self._read(SUMMARY))[0]
        return StoreSummary(schema_version=sql.PG_SCHEMA_VERSION, sessions=await self.counts(),
                            journal_entries=int(journal), state_keys=int(keys),
                            human_tasks=int(tasks),
                            tenants=int(tenants), addons_missing=self._missing)

    def _check_not_newer(self, version: int | None) -> None:
        if version is not None and version > sql.PG_SCHEMA_VERSION:
            raise JournalError(
                f"the store {self.url} (schema {self.schema!r}) has store schema version "
                f"{version}, newer than the version {sql.PG_SCHEMA_VERSION} this Convoy reads; "
                "upgrade Convoy to use it")

    async def _migrate(self, conn: Conn) -> None:
        """Create or upgrade the schema, one engine at a time (an advisory lock). A store
        already at this version is only read, so a read-only role can still inspect it."""
        version = await self._schema_version(conn)
        self._check_not_newer(version)
        if version == sql.PG_SCHEMA_VERSION and await self._addons_done(conn):
            return
        key = int.from_bytes(hashlib.blake2b(f"convoy:{self.schema}".encode(),
                                             digest_size=8).digest(), "big", signed=True)
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
            cur = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname=%s",
                                     (self.schema,))
            if await cur.fetchone() is None:
                try:
                    await conn.execute(f'CREATE SCHEMA "{self.schema}"')
                except psycopg.errors.InsufficientPrivilege as e:  # (not CREATE on the db)
                    raise sql.schema_refused(e, self.url, conn.info.user, conn.info.dbname,
                                             self.schema) from None
            elif await self._schema_version(conn) is None:
                await self._refuse_foreign(conn)
            await conn.execute(f'SET LOCAL search_path TO "{self.schema}"')
            await conn.execute(sql.META)
            version = await self._schema_version(conn)  # another engine may have migrated
            self._check_not_newer(version)
            for target, statements in sql.MIGRATIONS:
                if target > (version or 0):
                    await conn.execute(statements)
            await conn.execute(
                "INSERT INTO meta(key, value) VALUES('schema_version', %s) ON CONFLICT(key) "
                "DO UPDATE SET value=excluded.value", (str(sql.PG_SCHEMA_VERSION),))
            cur = await conn.execute("SELECT key, value FROM meta WHERE key LIKE %s",
                                     ("addon:%",))
            done = {k: meta_version(k, v) for k, v in await cur.fetchall()}
            for addon in ADDONS:
                if done.get(addon.meta_key, 0) < addon.version:
                    for stmt in addon_statements(addon.postgres, self.clock()):
                        await conn.execute(stmt)
                    await conn.execute(
                        "INSERT INTO meta(key, value) VALUES(%s, %s) ON CONFLICT(key) "
                        "DO UPDATE SET value=excluded.value", (addon.meta_key, str(addon.version)))

    async def _addons_done(self, conn: Conn) -> bool:
        """Whether every add-on is at its version (see :mod:`convoy.stores._addons`)."""
        cur = await conn.execute(
            f'SELECT key, value FROM "{self.schema}".meta WHERE key LIKE %s', ("addon:%",))
        done = {k: meta_version(k, v) for k, v in await cur.fetchall()}
        return all(done.get(a.meta_key, 0) >= a.version for a in ADDONS)

    async def aclose(self) -> None:
        while self._pending or self._flusher is not None:
            if self._flusher is None:
                self._start_flusher()
            assert self._flusher is not None
            await asyncio.shield(self._flusher)
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await writer.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    @property
    def pool(self) -> AsyncConnectionPool[Conn]:
        """The open pool; raises :class:`~convoy.UserError` if the store is not open."""
        if self._pool is None:
            raise UserError("the store is not open; use 'async with Engine(...)' or "
                            "'await engine.open()'")
        return self._pool

    # -- group commit --------------------------------------------------------------------

    def _submit(self, op: _Op, *, wait: bool = True) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        op.fut = fut
        op.quiet = not wait
        self._pending.append(op)
        self._last = fut
        if self._flusher is None:
            self._start_flusher()
        return fut

    def _submit_all(self, ops: Sequence[_Op], *, wait: bool = True) -> asyncio.Future[None]:
        """Submit ``ops`` together (they join the same batch: one transaction); the future
        of the last, which a failed batch fails as it fails the others. Those before it
        are submitted as nobody awaits them (their error retrieved: asyncio would print
        each one's traceback when it is dropped)."""
        fut: asyncio.Future[None] | None = None
        for i, op in enumerate(ops):
            fut = self._submit(op, wait=wait and i == len(ops) - 1)
        if fut is None:  # nothing to write
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(None)
        return fut

    def _submit_once(self, statements: Sequence[tuple[str, Any]], *,
                     wait: bool) -> asyncio.Future[None]:
        """Submit ``statements`` to the group commit as one unit (they join the same batch:
        one transaction), not run again after a lost connection; the future of the last."""
        return self._submit_all([_Op(text, params, once=True) for text, params in statements],
                                wait=wait)

    def _start_flusher(self) -> None:
        self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        """Commit batches until nothing is pending: what arrives during a commit is the
        next batch."""
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._commit(batch)
        finally:
            self._flusher = None

    def _statement(self, op: _Op, safe: float) -> sql.Stmt:
        """One op as it runs at commit time (the form of an append depends on its lease)."""
        if op.sql is not None:
            return sql.Stmt(op.sql, op.params, audit=op.sql is AUDIT_APPEND)
        params = op.params
        check = None
        if op.guard is not None:
            held = self._leases.get(op.guard[0])
            check = "owned" if held is not None and held[0] == op.guard[1] and \
                held[1] > safe else "locked"
            params = (*params, *op.guard)
        if op.consume is not None:
            return sql.Stmt(sql.APPEND[(check, True)], (*params, op.consume, params[0]), True)
        row = None if check == "locked" else \
            (*op.params, None if op.guard is None else op.guard[1])
        return sql.Stmt(sql.APPEND[(check, False)], params, row=row)

    async def _commit(self, batch: list[_Op]) -> None:
        attempt, reconnected = 0, False
        while True:
            try:
                counts = await self._run_batch(await self._writer_conn(), batch)
            except psycopg.Error as e:
                lost = self._writer is not None and self._writer.broken
                if lost:
                    self._writer = None  # the next batch reconnects
                if sql.is_retryable(e) and attempt < _RETRIES:
                    attempt += 1
                    continue
                # The connection was lost (a server restart, a failover): committed or not,
                # the batch may simply run again if none of its writes is fenced by a row
                # count (appends, creations and state writes land the same way twice).
                if lost and not reconnected and \
                        all(op.fenced is None and not op.once for op in batch):
                    reconnected = True
                    continue
                self._settle(batch, None, sql.store_error(e, self.url, "write"))
            except (StoreError, UserError) as e:
                self._settle(batch, None, e)
            except Exception as e:  # (a value no statement takes: its batch fails, nobody
                self._settle(batch, None, e)  # waits for ever, as on SQLite)
            else:
                self.commits += 1
                self.records += len(batch)
                self._settle(batch, counts, None)
            return

    async def _writer_conn(self) -> Conn:
        if self._pool is None:
            self.pool  # noqa: B018  (raises: the store is not open)
        if self._writer is not None and (self._writer.broken or
                                         self._writer.pgconn.pipeline_status != PipelineStatus.OFF):
            # Left mid-pipeline (a connection lost as a batch ran can leave it so, not
            # marked broken): no statement runs on it any more. A new one.
            with contextlib.suppress(Exception):
                await self._writer.close()
            self._writer = None
        if self._writer is None:
            writer = await self._connect()
            try:
                await self._configure(writer)
            except BaseException:
                await writer.close()
                raise
            self._writer = writer
        elif self._writer.info.transaction_status != TransactionStatus.IDLE:
            await self._writer.execute("ROLLBACK")  # a batch cancelled mid-flight
        return self._writer

    async def _run_batch(self, conn: Conn, batch: Sequence[_Op]) -> list[int]:
        safe = self.clock() + self.lease_margin
        plan = sql.plan_batch([self._statement(op, safe) for op in batch])
        if len(plan) == 1 and plan[0].keys is None:  # commits on its own: one round trip
            cur = await conn.execute(plan[0].text, plan[0].params)
            return [await count(cur, plan[0].counted)] * plan[0].ops
        curs = await pipelined(conn, [(unit.text, unit.params) for unit in plan])
        counts: list[int] = []
        for cur, unit in zip(curs, plan, strict=True):
            if unit.keys is None:
                counts += [await count(cur, unit.counted)] * unit.ops
            else:
                landed = {(sid, key) for sid, key in await cur.fetchall()}
                counts += [int(k in landed) for k in unit.keys]
        return counts

    def _settle(self, batch: Sequence[_Op], counts: Sequence[int] | None,
                error: BaseException | None) -> None:
        for i, op in enumerate(batch):
            n = counts[i] if counts is not None else None
            if op.on_commit is not None:
                op.on_commit(n)
            fut = op.fut
            if fut is None or fut.done():
                continue
            if error is not None:
                fut.set_exception(error)
                if op.quiet:
                    fut.exception()  # retrieved: a dropped future logs nothing
            elif n == 0 and (op.fenced is not None or op.guard is not None):
                sid = op.fenced or (op.guard[0] if op.guard else "?")
                fut.set_exception(LeaseLost(
                    f"session {sid!r} is owned by another engine now; this engine's "
                    "lease expired and the write was refused"))
                if op.quiet:
                    fut.exception()
            else:
                fut.set_result(None)

    async def _drain(self) -> None:
        """Wait until every write submitted so far is committed (or failed)."""
        last = self._last
        if last is not None and not last.done():
            await asyncio.wait([last])

    async def _exec(self, text: str, params: Sequence[Any], *,
                    again: bool = False) -> tuple[int, list[Any]]:
        """Run one statement (it commits on its own) after every pending write: its row
        count and the rows it returned. ``again``: the statement changes nothing the second
        time, so it runs again on a new connection if its connection was lost."""

        async def run(conn: Conn) -> tuple[int, list[Any]]:
            cur = await conn.execute(text, params)
            return cur.rowcount, (await cur.fetchall() if cur.description else [])

        if matches_nothing(params):  # every such statement picks its rows by equality
            return 0, []
        await self._drain()
        return await self._on_pool(run, "write", atomic=False, again=again)

    async def _locked_then(self, statements: Statements, *, again: bool) -> list[list[Any]]:
        """Run ``statements`` as :func:`~convoy.stores._postgres_conn.locked_then` does
        (locks first, one write last, one round trip), after every pending write: the rows
        each returned. ``again``: they change nothing the second time (see :meth:`_exec`).
        """

        async def run(conn: Conn) -> list[list[Any]]:
            curs = await locked_then(conn, statements)
            return [await cur.fetchall() if cur.description else [] for cur in curs]

        await self._drain()
        return await self._on_pool(run, "write", atomic=False, again=again)

    async def _write(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn`` in a transaction of its own after every pending write."""
        await self._drain()
        return await self._on_pool(fn, "write", atomic=True, again=False)

    async def _read(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
        async def read(conn: Conn) -> list[Any]:
            cur = await conn.execute(text, params)
            return await cur.fetchall()

        if matches_nothing(params):  # every read compares its text parameters for equality
            return []
        return await self._on_pool(read, "read", atomic=False, again=True)

    async def _on_pool(self, fn: Callable[[Conn], Awaitable[T]], what: str, *, atomic: bool,
                       again: bool) -> T:
        """Run ``fn`` on a pooled connection: again after a deadlock (the server rolled it
        back), and once more after a lost connection if ``again`` allows it."""
        attempt, reconnected = 0, False
        while True:
            conn: Conn | None = None
            try:
                async with self.pool.connection() as conn:
                    if not atomic:
                        return await fn(conn)
                    async with conn.transaction():
                        return await fn(conn)
            except psycopg.Error as e:
                if sql.is_retryable(e) and attempt < _RETRIES:
                    attempt += 1
                    continue
                if conn is not None and conn.broken:
                    await self.pool.check()  # replace every other dead idle connection
                    if again and not reconnected:
                        reconnected = True
                        continue
                raise sql.store_error(e, self.url, what) from None

    # -- sessions --------------------------------------------------------------------------

    def _session_params(self, s: NewSession, owner: str | None, lease_s: float,
                        now: float) -> tuple[Any, ...]:
        headers = json.dumps(dict(s.headers)) if s.headers else "{}"
        if owner is None:
            return (s.id, s.workflow, s.version, s.tenant, "pending", s.input, now, None, None,
                    None, None, headers, s.parent, s.subject)
        return (s.id, s.workflow, s.version, s.tenant, "running", s.input, now, now, owner,
                now + lease_s, now, headers, s.parent, s.subject)

    def create_session(self, session: NewSession, *, owner: str | None,
                       lease_s: float) -> asyncio.Future[None]:
        now = self.clock()
        on_commit = None
        if owner is not None:
            # The lease counts from now: appends of the same batch need no lock for it.
            lease = self._leases[session.id] = (owner, now + lease_s)

            def on_commit(n: int | None, sid: str = session.id) -> None:
                if not n and self._leases.get(sid) is lease:
                    del self._leases[sid]  # not created (failed, or the id existed)

        return self._submit(_Op(sql.INSERT_SESSION,
                                self._session_params(session, owner, lease_s, now),
                                on_commit=on_commit), wait=False)

    async def create_sessions(self, sessions: Sequence[NewSession], *,
                              owner: str | None = None, lease_s: float = 0.0) -> int:
        if not sessions:
            return 0
        now = self.clock()
        rows = [self._session_params(s, owner, lease_s, now) for s in sessions]

        async def insert(conn: Conn) -> list[str]:
            held: dict[tuple[str, str | None], str | None] = {}
            keyed = sorted({(s.tenant, s.subject) for s in sessions
                            if s.subject_key is not None and s.subject is not None})
            for tenant, subject in keyed:  # (the subject's lock shared, in one order, and
                # the key read FOR SHARE: an erasure's purge waits, see purge)
                await conn.execute("SELECT pg_advisory_xact_lock_shared(%s)",
                                   (self._subject_lock(tenant, subject),))
                found = await (await conn.execute(
                    _SUBJECT_SQL.key_get + " FOR SHARE", (tenant, subject))).fetchone()
                held[(tenant, subject)] = None if found is None else str(found[0])
            keys_held(sessions, lambda t, subject: held.get((t, subject)))
            cur = conn.cursor()
            await cur.executemany(sql.INSERT_SESSION + " RETURNING id", rows,
                                  returning=True)
            new: list[str] = []
            while True:
                new += [r[0] for r in await cur.fetchall()]
                if not cur.nextset():
                    return new

        new = await self._write(insert)
        if owner is not None:
            for sid in new:
                self._leases[sid] = (owner, now + lease_s)
        return len(new)

    async def claim(self, session_id: str, owner: str, lease_s: float, *,
                    tenant: str | None = None, waiting: bool = False) -> SessionRow | None:
        now = self.clock()
        cond, tparams = sql.tenant_cond(tenant)
        runnable = f"({sql.RUNNABLE} OR status='waiting')" if waiting else sql.RUNNABLE
        _, rows = await self._exec(
            f"UPDATE sessions {sql.CLAIM_SET} WHERE id=%s AND {runnable}{cond} "
            f"RETURNING {_SESSION_COLS}",
            (owner, now + lease_s, now, now, session_id, owner, now, now, *tparams),
            again=True)
        if not rows:
            return None
        self._leases[session_id] = (owner, now + lease_s)
        return _session(rows[0])

    async def claim_runnable(self, owner: str, lease_s: float, *,
                             workflows: Mapping[str, str], limit: int,
                             tenant: str | None = None) -> list[SessionRow]:
        if not workflows or limit < 1:
            return []
        now = self.clock()
        which = " OR ".join("(workflow=%s AND version=%s)" for _ in workflows)
        wf_params = [x for item in workflows.items() for x in item]
        cond, tparams = sql.tenant_cond(tenant)
        # SKIP LOCKED: engines polling at once each take other sessions, none waits.
        _, rows = await self._exec(
            f"UPDATE sessions {sql.CLAIM_SET} WHERE id IN (SELECT id FROM sessions WHERE "
            f"status IN ('pending','running','waiting') AND ({which}) AND "
            f"{sql.RUNNABLE_OTHERS}{cond} ORDER BY created, id LIMIT %s FOR UPDATE SKIP "
            f"LOCKED) RETURNING {_SESSION_COLS}",
            (owner, now + lease_s, now, now, *wf_params, owner, now, now, *tparams, limit))
        unreadable: list[tuple[str, str]] = []
        claimed = claimed_rows(rows, _session, lambda r: str(r[0]), unreadable)
        for r in claimed:
            self._leases[r.id] = (owner, now + lease_s)
        for sid, error in unreadable:  # (fenced on this claim: a later owner's is kept)
            await self._exec(sql.ESCALATE_UNREADABLE, (error, now, sid, owner), again=True)
        return sorted(claimed, key=lambda r: (r.created, r.id))

    async def renew(self, owner: str, lease_s: float) -> int:
        now = self.clock()
        _, ids = await self._exec(
            f"WITH h AS (UPDATE holds SET until=%s WHERE owner=%s AND until>%s) "
            f"UPDATE sessions SET lease_until=%s, {sql.ACCRUE}, seg_mark=%s WHERE id IN "
            f"({sql.OWNED_ROWS}) RETURNING id",
            (now + lease_s, owner, now, now + lease_s, now, now, now, owner), again=True)
        for (sid,) in ids:
            self._leases[sid] = (owner, now + lease_s)
        return len(ids)

    async def release(self, session_id: str, owner: str,
                      outcome: SessionOutcome | None = None) -> None:
        self._leases.pop(session_id, None)
        now = self.clock()
        counts, params = outcome_counts(outcome, mark="%s")
        await self._exec(
            f"UPDATE sessions SET status='pending', owner=NULL, lease_until=NULL, {counts}"
            f"{sql.ACCRUE}, seg_mark=NULL WHERE id=%s AND owner=%s AND status='running'",
            (*params, now, now, session_id, owner), again=True)

    async def expire_owner(self, owner: str) -> int:
        # Its reservations' holds go with it (what they held is free again).
        n, _ = await self._exec(
            "WITH gone AS (DELETE FROM holds WHERE owner=%s RETURNING scope, unit, amount), "
            "freed AS (UPDATE meters m SET held = m.held - g.amount FROM (SELECT scope, unit, "
            "SUM(amount) AS amount FROM gone GROUP BY scope, unit) g WHERE m.scope = g.scope "
            f"AND m.unit = g.unit) UPDATE sessions SET lease_until=0 WHERE id IN "
            f"({sql.OWNED_ROWS})", (owner, owner), again=True)
        return n

    async def park(self, session_id: str, owner: str, outcome: SessionOutcome, *,
                   wake_at: float | None, wait_name: str | None) -> None:
        self._leases.pop(session_id, None)
        now = self.clock()
        headers = json.dumps(dict(outcome.headers)) if outcome.headers is not None else None
        # The session's row is locked before the statement that looks for a signal starts
        # (its snapshot): a signal sent meanwhile either committed before it, and is seen,
        # or waits for the park to commit, and then wakes the session it finds waiting.
        owned, _ = await self._locked_then([(sql.LOCK_OWNED, (session_id, owner)), (
            sql.PARK, (session_id, wait_name, CANCEL_SIGNAL, wake_at, wait_name,
                       outcome.steps, outcome.input_tokens, outcome.output_tokens,
                       outcome.cost, headers, now, now, session_id, owner))], again=False)
        if not owned:
            raise LeaseLost(f"session {session_id!r} is owned by another engine now; it was "
                            "not parked")

    def finish(self, session_id: str, owner: str | None, outcome: SessionOutcome, *,
               tenant: str | None = None) -> asyncio.Future[None]:
        now = self.clock()
        self._leases.pop(session_id, None)
        error = json.dumps(outcome.error) if outcome.error else None
        headers = json.dumps(dict(outcome.headers)) if outcome.headers is not None else None
        cond, tparams = sql.tenant_cond(tenant)
        if matches_nothing((session_id, owner, tenant)):  # refused, not a failed batch
            return self._submit(_Op("SELECT 1 WHERE false", (), fenced=session_id))
        return self._submit(_Op(sql.FINISH + cond, (
            outcome.status, outcome.output, error, now, outcome.steps, outcome.input_tokens,
            outcome.output_tokens, outcome.cost, headers, now, now, session_id, owner,
            *tparams), fenced=session_id))

    async def reopen(self, session_id: str, *, drop_step: str | None = None,
                     journal: StepRecord | None = None, tenant: str | None = None) -> bool:
        if matches_nothing((session_id, tenant)):
            return False
        now = self.clock()
        cond, tparams = sql.tenant_cond(tenant)

        async def reopen(conn: Conn) -> bool:
            cur = await conn.execute(
                "UPDATE sessions SET status='pending', output=NULL, error=NULL, finished=NULL,"
                f" owner=NULL, lease_until=NULL WHERE id=%s{cond}", (session_id, *tparams))
            if cur.rowcount == 0:
                return False
            if drop_step is not None:
                await conn.execute("DELETE FROM journal WHERE session_id=%s AND key=%s",
                                   (session_id, drop_step))
            if journal is not None:
                await conn.execute(sql.APPEND[(None, False)], _append_params(
                    session_id, journal, now, self._next_seq(now)))
            return True

        return await self._write(reopen)

    def update_headers(self, session_id: str, owner: str,
                       headers: Mapping[str, str]) -> asyncio.Future[None]:
        return self._submit(_Op("UPDATE sessions SET headers=%s WHERE id=%s AND owner=%s",
                                (json.dumps(dict(headers)), session_id, owner),
                                fenced=session_id), wait=False)

    async def set_version(self, session_id: str, version: str, *,
                          tenant: str | None = None) -> None:
        cond, tparams = sql.tenant_cond(tenant)
        await self._exec(f"UPDATE sessions SET version=%s WHERE id=%s{cond}",
                         (version, session_id, *tparams), again=True)

    async def get_session(self, session_id: str, *,
                          tenant: str | None = None) -> SessionRow | None:
        cond, tparams = sql.tenant_cond(tenant)
        rows = await self._read(f"SELECT {_SESSION_COLS} FROM sessions WHERE id=%s{cond}",
                                (session_id, *tparams))
        return _session(rows[0]) if rows else None

    async def get_sessions(self, ids: Sequence[str], *, tenant: str | None = None,
                           left_out: list[LeftOut] | None = None) -> dict[str, SessionRow]:
        ids = [i for i in ids if "\x00" not in i]  # none can exist (see matches_nothing)
        if not ids:
            return {}
        cond, tparams = sql.tenant_cond(tenant)
        rows = await self._read(f"SELECT {_SESSION_COLS} FROM sessions WHERE id = ANY(%s)"
                                f"{cond}", (list(ids), *tparams))
        return {row.id: row for row in readable(rows, _session, left_out)}

    async def list_sessions(self, where: SessionFilter, *,
                            left_out: list[LeftOut] | None = None) -> list[SessionRow]:
        cond, params = session_page(where, mark="%s")
        rows = await self._read(session_listing(cond, session_order(where),
                                                where.journal_steps, mark="%s",
                                                greatest="GREATEST"),
                                (*params, where.limit, where.offset))
        return readable(rows, _session, left_out)

    async def unfinished(self, *, tenant: str | None = None,
                         left_out: list[LeftOut] | None = None) -> list[SessionRow]:
        cond = " AND tenant=%s" if tenant is not None else ""
        rows = await self._read(f"SELECT {_SESSION_COLS} FROM sessions WHERE status IN "
                                f"('pending','running','waiting'){cond} ORDER BY created, id",
                                (tenant,) if tenant is not None else ())
        return readable(rows, _session, left_out)

    async def counts(self, *, tenant: str | None = None) -> dict[str, int]:
        cond, params = conditions(None, None, tenant, mark="%s")
        rows = await self._read(f"SELECT status, COUNT(*) FROM sessions{cond} GROUP BY status",
                                params)
        return {status: n for (status,), n in by_status(rows).items()}

    async def tenant_counts(self) -> dict[tuple[str, str], int]:
        """Sessions by tenant and status (for ``convoy metrics serve --all-tenants``; not
        part of the :class:`~convoy.stores.Store` protocol)."""
        rows = await self._read(
            "SELECT tenant, status, COUNT(*) FROM sessions GROUP BY tenant, status", ())
        return {(tenant, status): n for (tenant, status), n in by_status(rows).items()}

    async def workflow_names(self, *, tenant: str | None = None) -> list[str]:
        """The names of the workflows that have sessions (of ``tenant``) in this store,
        sorted (for "did you mean" messages; not part of the
        :class:`~convoy.stores.Store` protocol)."""
        cond, params = conditions(None, None, tenant, mark="%s")
        return [r[0] for r in await self._read(
            f"SELECT DISTINCT workflow FROM sessions{cond} ORDER BY 1", params)]

    async def next_wake(self, *, tenant: str | None = None) -> float | None:
        cond, tparams = sql.tenant_cond(tenant)
        rows = await self._read(
            f"SELECT MIN(wake_at) FROM sessions WHERE status='waiting'{cond}", tparams)
        return rows[0][0] if rows and rows[0][0] is not None else None

    # -- the journal -------------------------------------------------------------------------

    def _next_seq(self, now: float) -> int:
        self._seq = seq = next_seq(self._seq, now)
        return seq

    def append(self, session_id: str, owner: str | None, record: StepRecord, *,
               consume_signal: int | None = None) -> asyncio.Future[None]:
        now = self.clock()
        return self._submit(_Op(
            None, _append_params(session_id, record, now, self._next_seq(now)),
            guard=None if owner is None else (session_id, owner), consume=consume_signal))

    async def load_journal(self, session_id: str, *,
                           tenant: str | None = None) -> dict[str, StepRecord]:
        cond, tparams = sql.in_tenant("journal", tenant)
        rows = await self._read(f"SELECT {_JOURNAL_COLS} FROM journal WHERE session_id=%s"
                                f"{cond}", (session_id, *tparams))
        return {r[0]: _record(r, session_id) for r in rows}

    async def journal(self, session_id: str, *, tenant: str | None = None,
                      left_out: list[LeftOut] | None = None) -> list[StepRecord]:
        cond, tparams = sql.in_tenant("journal", tenant)
        rows = await self._read(f"SELECT {_JOURNAL_COLS} FROM journal WHERE session_id=%s"
                                f"{cond} ORDER BY seq, at, key", (session_id, *tparams))
        return readable(rows, lambda r: _record(r, session_id), left_out)

    # -- signals ------------------------------------------------------------------------------

    async def send_signal(self, session_id: str, name: str, payload: str, *,
                          tenant: str | None = None,
                          sealed_labels: Collection[str] | None = None) -> int:
        if matches_nothing((session_id, tenant)):
            return 0
        now = self.clock()
        cond, tparams = sql.tenant_cond(tenant)
        # The session's row is locked first (see park), by a statement of its own: the
        # next one's snapshot sees a park that committed meanwhile.
        lock = (f"SELECT id FROM sessions WHERE id=%s{cond} FOR UPDATE", (session_id, *tparams))
        insert = (sql.SIGNAL.format(tenant=cond),
                  (session_id, name, payload, now, session_id, *tparams, name))
        if sealed_labels is None:
            _, rows = await self._locked_then([lock, insert], again=False)
            return int(rows[0][0]) if rows else 0
        labels = frozenset(sealed_labels)

        async def checked(conn: Conn) -> int:
            if await (await conn.execute(*lock)).fetchone() is None:
                return 0
            sealed = await (await conn.execute(sql.SEALED_RECORDS, (
                session_id, len(SEALED_PREFIX), SEALED_PREFIX))).fetchall()
            if not sealed_outer_labels(r[0] for r in sealed) <= labels:
                return SEALED_SINCE
            row = await (await conn.execute(*insert)).fetchone()
            return int(row[0]) if row else 0

        return await self._write(checked)

    async def next_signal(self, session_id: str, name: str, *,
                          tenant: str | None = None) -> Signal | None:
        cond, tparams = sql.in_tenant("signals", tenant)
        rows = await self._read("SELECT seq,session_id,name,payload,at FROM signals WHERE "
                                f"session_id=%s AND name=%s AND consumed=0{cond} ORDER BY seq "
                                "LIMIT 1", (session_id, name, *tparams))
        if not rows:
            return None
        seq, sid, nm, payload, at = rows[0]
        return Signal(seq=seq, session_id=sid, name=nm, payload=payload, at=at)

    async def next_signals(self, session_ids: Sequence[str], name: str, *,
                           tenant: str | None = None) -> dict[str, Signal]:
        ids = [i for i in session_ids if "\x00" not in i]  # none can exist (matches_nothing)
        if not ids:
            return {}
        cond, tparams = sql.in_tenant("signals", tenant)
        rows = await self._read("SELECT DISTINCT ON (session_id) seq,session_id,name,payload,at "
                                f"FROM signals WHERE session_id = ANY(%s) AND name=%s AND "
                                f"consumed=0{cond} ORDER BY session_id, seq",
                                (ids, name, *tparams))
        return {sid: Signal(seq=seq, session_id=sid, name=nm, payload=payload, at=at)
                for seq, sid, nm, payload, at in rows}

    async def owned_signalled(self, owner: str, name: str) -> list[str]:
        return [r[0] for r in await self._read(sql.OWNED_SIGNALLED, (owner, name))]

    # -- state of interceptors ----------------------------------------------------------------

    async def kv_get(self, namespace: str, key: str) -> str | None:
        rows = await self._read("SELECT value FROM kv WHERE namespace=%s AND key=%s",
                                (namespace, key))
        return str(rows[0][0]) if rows else None

    async def kv_all(self, namespace: str) -> dict[str, str]:
        return dict(await self._read("SELECT key, value FROM kv WHERE namespace=%s",
                                     (namespace,)))

    def kv_put(self, namespace: str, key: str, value: str | None) -> asyncio.Future[None]:
        if value is None:
            return self._submit(_Op(sql.KV_DELETE, (namespace, key)))
        return self._submit(_Op(sql.KV_PUT, (namespace, key, value)))

    def kv_put_many(self, items: Sequence[tuple[str, str, str]], *,
                    wait: bool = True) -> asyncio.Future[None]:
        # One batch of the group commit: what is submitted in one go commits together.
        return self._submit_all([_Op(sql.KV_PUT, item) for item in items], wait=wait)

    # -- spend --------------------------------------------------------------------------------

    async def tenant_spend(self, tenant: str, since: float, until: float, *,
                           agent: str | None = None) -> tuple[int, float]:
        if agent is None:
            rows = await self._read(sql.TENANT_SPEND, (tenant, since, until))
        else:
            rows = await self._read(sql.TENANT_SPEND + " AND COALESCE(j.agent, j.target)=%s",
                                    (tenant, since, until, agent))
        return int(rows[0][0]), float(rows[0][1])

    async def session_spend(self, session_id: str, *,
                            tenant: str | None = None) -> dict[str, tuple[int, float]]:
        cond, tparams = sql.in_tenant("journal", tenant)
        rows = await self._read(sql.SESSION_SPEND.format(tenant=cond), (session_id, *tparams))
        return {r[0]: (int(r[1]), float(r[2])) for r in rows}


__all__ = ["PostgresStore"]
