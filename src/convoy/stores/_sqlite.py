"""The SQLite store (the zero-setup default): WAL, group commit, leases, fenced writes.

Group commit: every write from every session joins one pending batch. The first awaited
write of a loop iteration commits at once, in the caller (a lone session never waits for a
window), with the unawaited writes queued before it (audit entries, spans); writes that
arrive later in the same iteration join one batch committed at its end, and whatever
arrives while a commit is retried joins the next. A session continues only after
its record is committed. ``durability="process"`` (``synchronous=NORMAL``) survives a crash
of the process; ``"power"`` (``synchronous=FULL``) also survives power loss and commits on a
dedicated thread so fsync never blocks the loop.

The event loop never waits on a lock: the connection has no busy timeout, and a write that
finds the database locked (another process is committing) is retried with backoff from the
loop, up to ``busy_timeout`` seconds; past that its callers get a transient
:class:`~convoy.StoreError` and their sessions stay unfinished for a later resume.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

from convoy._command import word
from convoy._errors import ConvoyError, JournalError, StoreError, UserError
from convoy._files import home_expanded
from convoy.durability._signals import LeaseLost
from convoy.stores._addons import (
    apply_sqlite_addons,
    check_readable,
    missing_addons,
    stand_ins,
)
from convoy.stores._protocol import (
    CANCEL_SIGNAL,
    SCHEMA_VERSION,
    NewSession,
    SessionFilter,
    SessionOutcome,
    SessionRow,
    Signal,
    StepRecord,
    StoreSummary,
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
from convoy.stores._sqlite_alerts import SQLiteAlerts
from convoy.stores._sqlite_audit import Append, SQLiteAudit
from convoy.stores._sqlite_limits import SQLiteLimits
from convoy.stores._sqlite_ro import connect_read_only
from convoy.stores._sqlite_sql import (
    _ACCRUE,
    _APPEND,
    _APPEND_FENCED,
    _CLAIM_SET,
    _CONSUME,
    _ESCALATE_UNREADABLE,
    _FINISH,
    _FINISH_TENANT,
    _INSERT_SESSION,
    _JOURNAL_COLS,
    _MIGRATIONS,
    _OWNED_SIGNALLED,
    _RUNNABLE,
    _RUNNABLE_OTHERS,
    _SCHEMA,
    _SESSION_COLS,
    AWAITED_OR_CANCEL,
    _append_params,
    _foreign,
    _foreign_mark,
    _foreign_tables,
    _in_tenant,
    _is_busy,
    _record,
    _send_signal,
    _session,
    _store_error,
    _tenant_cond,
    by_status,
    session_listing,
)
from convoy.stores._sqlite_state import SQLiteState
from convoy.stores._sqlite_subjects import SQLiteSubjects
from convoy.stores._sqlite_wal import _Checkpointer
from convoy.stores._subjects_sql import SubjectSQL, keys_held
from convoy.stores._url import check_busy_timeout

Durability = Literal["process", "power"]
# How opening waits before trying a lock again (a test takes its place: see _switch_to_wal).
_pause = time.sleep

T = TypeVar("T")
_WAL_LIMIT = 64 * 1024 * 1024  # the WAL is rewound (and truncated to this) past this size

# The position of ``headers`` in a creation's parameters (``_INSERT_SESSION``).
_HEADERS_AT = 11


def _ready_queue(loop: asyncio.AbstractEventLoop) -> Sized | None:
    """The callbacks ready to run on ``loop``: asyncio's loop keeps them in ``_ready``.
    ``None`` for a loop without one (uvloop's): it is taken as always busy, so its writes
    of an iteration after the first join the next batch."""
    ready = getattr(loop, "_ready", None)
    return ready if isinstance(ready, Sized) else None


_SUBJECT_SQL = SubjectSQL("?")


class _Op:
    """One write of a batch: ``sql`` with ``params`` (and ``more`` statements after it) run
    in the batch's transaction. ``fenced`` ops check the first statement's row count (zero:
    the session is owned by another).

    ``guard`` (session id, owner) marks a journal append: while the writer's lease is known
    to hold, the plain statement runs; past it, the fenced form, which lands only if the
    writer still owns the session.

    ``lease`` (session id, owner, expiry) marks a session creation that claims the session:
    if its row is written, the lease is recorded in the store's lease map.

    ``call`` (instead of ``sql``) runs inside the batch's transaction and its return value
    resolves the future: a read-decide-write that must be atomic (a reservation against a
    shared limit) still rides the group commit. It is run again if the batch is retried,
    so it may only touch the connection."""

    __slots__ = ("call", "fenced", "fut", "guard", "lease", "more", "params", "quiet",
                 "result", "sql")

    fut: asyncio.Future[Any]  # set by ``_submit``
    quiet: bool  # nobody need await it: its error is its batch's, seen there

    # Positional: built once per journal write.
    def __init__(self, sql: str, params: tuple[Any, ...],
                 more: list[tuple[str, tuple[Any, ...]]] | None = None,
                 fenced: str | None = None, guard: tuple[str, str] | None = None,
                 lease: tuple[str, str, float] | None = None,
                 call: Callable[[sqlite3.Connection], Any] | None = None) -> None:
        self.sql = sql
        self.params = params
        self.more = more
        self.fenced = fenced  # session id, for the error message
        self.guard = guard
        self.lease = lease
        self.call = call
        self.result: Any = None


_KV_PUT = ("INSERT INTO kv(namespace,key,value) VALUES(?,?,?) ON CONFLICT(namespace,key) DO "
           "UPDATE SET value=excluded.value")

class SQLiteStore(SQLiteLimits, SQLiteState, SQLiteAlerts, SQLiteAudit, SQLiteSubjects):
    """Everything in one SQLite file (``":memory:"`` is refused: it would not be durable).

    Args:
        path: the database file (created if missing; its directory must exist: a missing
            one is refused as the store opens, never created).
        durability: ``"process"`` or ``"power"`` (see the module docstring).
        busy_timeout: seconds a write may keep finding the database locked by another
            process before it fails (transient :class:`~convoy.StoreError`).
        clock: the wall clock (seconds since the epoch) for leases, timers and record times.
        read_only: open the file read-only (SQLite's ``mode=ro``): nothing is created,
            migrated or written; a store at an older schema version is refused (see
            :meth:`open_sync`). Where the store cannot be written (read-only media), one
            whose write-ahead log holds nothing is read as an immutable file, and one
            whose log holds commits only with its ``-shm`` file beside it (see
            :mod:`convoy.stores._sqlite_ro`).
    """

    def __init__(self, path: str | Path, *, durability: Durability = "process",
                 busy_timeout: float = 10.0, wal_limit_bytes: int = _WAL_LIMIT,
                 clock: Callable[[], float] = time.time, read_only: bool = False) -> None:
        if str(path) == ":memory:":
            raise UserError("the store must be a file: ':memory:' would lose every session "
                            "on a crash; pass a path such as 'convoy.db'")
        if durability not in ("process", "power"):
            raise UserError(f"durability must be 'process' or 'power', got {durability!r}")
        self.path = home_expanded(Path(path))
        self.url = f"sqlite:///{self.path}"
        self.durability: Durability = durability
        self.busy_timeout = check_busy_timeout(busy_timeout)
        self.wal_limit_bytes = wal_limit_bytes
        self.clock = clock
        self.read_only = read_only
        self._missing: tuple[str, ...] = ()  # add-ons a read-only store stands in for
        self._wal_path = Path(f"{self.path}-wal")
        self._conn: sqlite3.Connection | None = None
        self._pending: list[_Op] = []
        self._scheduled = False
        self._soon = False  # a _flush_soon callback is waiting in the loop
        self._tick_busy = False
        self._executor: ThreadPoolExecutor | None = None
        self._checkpointer: _Checkpointer | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: Sized | None = None  # the loop's ready callbacks (see _ready_queue)
        # Leases this store object granted, confirmed by a committed claim or renewal:
        # session id -> (owner, expiry). Another engine can claim a session only after its
        # lease expired, so until then a journal append needs no ownership check.
        self._leases: dict[str, tuple[str, float]] = {}
        self.lease_margin = 1.0  # seconds of doubt about a lease near its expiry
        self._seq = 0
        self.commits = 0
        self.records = 0
        self._audit_queue: list[Append] = []  # see SQLiteAudit
        self._audit_fut: asyncio.Future[None] | None = None
        self._audit_heads: dict[str, int] = {}  # see SQLiteAudit

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        self.open_sync()

    def open_sync(self) -> None:
        """Open (and create or migrate) the database. Blocking; :meth:`open` wraps it.

        A ``read_only`` store only opens an existing store at this schema version (else a
        :class:`~convoy.StoreError` saying to run ``convoy db migrate``) and applies no
        add-on: the features of the add-ons it lacks read as empty (see
        :mod:`convoy.stores._addons`)."""
        if self._conn is not None:
            return
        self._check_directory()
        if self.read_only:
            self._conn = self._open_read_only()
            return
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            self._check_writable()
            raise StoreError(f"cannot open the store {str(self.path)!r}: {e}") from None
        with self._opening(conn):
            # Opening may wait for a lock (up to busy_timeout); the hot path never does.
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            self._refuse_foreign(conn)  # before anything is written to the file
            self._switch_to_wal(conn)
            sync = "FULL" if self.durability == "power" else "NORMAL"
            conn.execute(f"PRAGMA synchronous={sync}")
            # Checkpoints (copying the WAL into the database, with fsyncs) run on a thread
            # of their own instead of inside whichever commit crosses the threshold.
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.execute(f"PRAGMA journal_size_limit={int(self.wal_limit_bytes)}")
            self._migrate(conn)
            conn.execute("PRAGMA busy_timeout=0")
        self._conn = conn
        if self.durability == "power":
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="convoy-commit")
        self._checkpointer = _Checkpointer(self.path)

    def _switch_to_wal(self, conn: sqlite3.Connection) -> None:
        """Put the file in WAL mode, waiting up to ``busy_timeout`` for a lock. SQLite does
        not wait here: switching a new file upgrades a read lock to a write lock, and it
        never makes such an upgrade wait (two connections could deadlock), so it says
        "locked" at once whatever the busy timeout. Two processes creating one store at
        the same moment meet it; the loser retries until the winner is done."""
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.0005
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or time.monotonic() >= deadline:
                    raise
            _pause(delay)
            delay = min(delay * 2, 0.05)

    def _check_directory(self) -> None:
        """Refuse a store whose directory does not exist (or is a file), in one line: SQLite
        would say only "unable to open database file", and creating the directory would
        turn a mistyped path into a new, empty store somewhere unexpected."""
        parent = self.path.parent
        try:
            if stat.S_ISDIR(os.stat(parent).st_mode):
                return
            why = "is a file, not a directory: pick a path in a directory"
        except (FileNotFoundError, NotADirectoryError):
            why = (f"does not exist: create it (mkdir -p {word(str(parent))}) or pick a path "
                   "in a directory that exists")
        except OSError:
            return  # (not allowed to look: opening the file says what is wrong)
        raise UserError(f"the directory {str(parent)!r} of the store {str(self.path)!r} "
                        f"{why}")

    def _check_writable(self) -> None:
        """A new store in a directory this process may not write (its permissions, a
        read-only mount) is refused in one line that says so: SQLite says only "unable to
        open database file"."""
        parent = self.path.parent
        if not self.path.exists() and not os.access(parent, os.W_OK):
            raise UserError(f"the directory {str(parent)!r} of the new store "
                            f"{str(self.path)!r} is not writable (its permissions, or a "
                            "read-only file system): give this process write access to it, "
                            "or pick a path in a directory it can write")

    @contextmanager
    def _opening(self, conn: sqlite3.Connection) -> Iterator[None]:
        """Set a new connection up: on any error it is closed (a database error becomes
        one clear :class:`~convoy.StoreError`)."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            conn.close()
            raise _store_error(e, self.path, "open") from None
        except BaseException:
            conn.close()
            raise

    def _open_read_only(self) -> sqlite3.Connection:
        """A ``mode=ro`` connection (SQLite refuses every write on it) to a store at this
        schema version, with stand-ins for the add-ons it lacks."""
        if not self.path.exists():
            check_readable(None, SCHEMA_VERSION, str(self.path))
        conn = self._connect_ro()
        with self._opening(conn):
            version = self._version_of(conn)
            if version is not None and version > SCHEMA_VERSION:
                raise self._newer(version)
            self._refuse_foreign(conn)
            check_readable(version, SCHEMA_VERSION, str(self.path))
            missing = missing_addons(
                dict(conn.execute("SELECT key, value FROM meta WHERE key LIKE 'addon:%'")),
                str(self.path))
            for stmt in stand_ins(missing, postgres=False, schema="main"):
                conn.execute(stmt)  # temporary: this connection's own, in memory
            conn.execute("PRAGMA busy_timeout=0")
        self._missing = tuple(a.name for a in missing)
        return conn

    def _connect_ro(self) -> sqlite3.Connection:
        # (where the store cannot be written too: a backup on read-only media)
        return connect_read_only(self.path, self.busy_timeout)

    @staticmethod
    def _version_of(conn: sqlite3.Connection) -> int | None:
        """The schema version ``conn``'s database holds (``None``: no Convoy store)."""
        try:
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e) or "no such column" in str(e):
                # A SQLite file, but not a Convoy store (yet), or another application's
                # table named meta.
                return None
            raise
        return meta_version("schema_version", row[0]) if row else 1

    def _refuse_foreign(self, conn: sqlite3.Connection) -> None:
        """Refuse a database that holds no Convoy store but tables of its own (another
        application's file): Convoy's tables are never added to it. An empty database
        (a new or empty file) passes: it becomes the store. The version and the tables are
        read in one read transaction: another process creating the store commits its
        tables and its version together, so it is never seen half-way (tables, no
        version) as another application's. The tables are read first: that read fixes the
        transaction's snapshot, which a version read of a database without ``meta`` would
        not (a statement that fails to prepare reads nothing)."""
        conn.execute("BEGIN")
        try:
            tables = _foreign_tables(conn)
            if self._version_of(conn) is None:
                mark = None if tables else _foreign_mark(conn)
                if tables or mark:
                    raise _foreign(self.path, tables, mark, read_only=self.read_only)
        finally:
            conn.execute("COMMIT")

    def _newer(self, version: int) -> JournalError:
        return JournalError(
            f"{self.path} has store schema version {version}, newer than the version "
            f"{SCHEMA_VERSION} this Convoy reads; upgrade Convoy to use it")

    async def schema_version(self) -> int | None:
        if not self.path.exists():
            return None
        conn = self._connect_ro()  # read-only: nothing is created or migrated
        try:
            return self._version_of(conn)
        except sqlite3.DatabaseError as e:
            raise _store_error(e, self.path, "read") from None
        finally:
            conn.close()

    async def summary(self) -> StoreSummary:
        journal, keys, tasks, tenants = self._read(SUMMARY)[0]
        return StoreSummary(schema_version=SCHEMA_VERSION, sessions=await self.counts(),
                            journal_entries=int(journal), state_keys=int(keys),
                            human_tasks=int(tasks),
                            tenants=int(tenants), addons_missing=self._missing)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Create or upgrade the schema, then its add-ons. A store already at this version
        with every add-on is only read, so a read-only file can still be inspected."""
        self._migrate_core(conn)
        apply_sqlite_addons(conn, self.clock())

    def _migrate_core(self, conn: sqlite3.Connection) -> None:
        try:
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.OperationalError:
            row = None  # no schema yet
        if row is not None and meta_version("schema_version", row[0]) == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = meta_version("schema_version", row[0]) if row else 1
            if row is None:
                conn.execute("INSERT INTO meta VALUES('schema_version', '1')")
            if version > SCHEMA_VERSION:
                raise self._newer(version)
            for target, script in _MIGRATIONS:
                if version < target:
                    for stmt in script.split(";"):
                        if stmt.strip():
                            conn.execute(stmt)
            conn.execute("UPDATE meta SET value=? WHERE key='schema_version'",
                         (str(SCHEMA_VERSION),))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # (SQLite rolled back itself: a full disk, for one)
                conn.execute("ROLLBACK")
            raise

    async def aclose(self) -> None:
        while self._pending or self._scheduled or self._flusher is not None:
            if self._flusher is not None:
                await self._flusher
            elif self._pending:
                self._flush_inline()
            else:
                await asyncio.sleep(0)
        self.close()

    def close(self) -> None:
        """Release everything at once (pending writes are dropped: use :meth:`aclose`)."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._loop = None
        self._ready = None
        self._soon = self._tick_busy = False  # callbacks of that loop will never run

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection; raises :class:`~convoy.UserError` if the store is not open."""
        if self._conn is None:
            raise UserError("the store is not open; use 'async with Engine(...)' or "
                            "'await engine.open()'")
        return self._conn

    # -- group commit --------------------------------------------------------------------

    def _submit(self, op: _Op, *, wait: bool = True) -> asyncio.Future[Any]:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
            self._ready = _ready_queue(loop)
        fut: asyncio.Future[Any] = loop.create_future()
        op.fut = fut
        op.quiet = not wait
        self._pending.append(op)
        if wait and self._flusher is None and self._executor is None:
            if not self._tick_busy:
                # The first awaited write of a loop iteration commits at once, in the
                # caller, with the writes nobody awaits that were queued before it (an
                # audit entry, a span): they would otherwise cost a commit, or a loop
                # iteration, of their own.
                self._tick_busy = True
                loop.call_soon(self._end_tick)
                self._flush_inline()
                return fut
            ready = self._ready
            if ready is not None and len(ready) <= 1 + self._soon:
                # Another write of this iteration, but nothing else is ready to run (only
                # the end of the tick, and the end-of-batch callback if one waits): no
                # other write could join a batch, so waiting for one would only cost a
                # loop iteration (a session running alone commits every step here).
                self._flush_inline()
                return fut
        if not self._scheduled:
            self._scheduled = True
            if self._executor is None:
                if not self._soon:  # one end-of-batch callback waiting at a time
                    self._soon = True
                    loop.call_soon(self._flush_soon)
            else:
                self._flusher = loop.create_task(self._flush_async())
        return fut

    def _end_tick(self) -> None:
        self._tick_busy = False

    def _flush_soon(self) -> None:
        """The end of a loop iteration's batch (scheduled by :meth:`_submit`). Nothing to
        do if a write retried meanwhile (the retrying task has the pending writes)."""
        self._soon = False
        if self._flusher is None:
            self._scheduled = False
            self._flush_inline()

    def _batched(self, call: Callable[[sqlite3.Connection], T], *,
                 wait: bool = True) -> asyncio.Future[T]:
        """Run ``call`` in the transaction of the next group-commit batch; the future resolves
        to what it returned once the batch is committed. ``wait=False``: nobody needs to
        wait for it, so it does not commit on its own but joins the next batch."""
        return self._submit(_Op("", (), call=call), wait=wait)

    def _write_batch(self, batch: Sequence[_Op]) -> list[bool | BaseException] | None:
        """Commit a batch in one transaction; which fenced ops found their session owned
        by someone else (``True``: those wrote nothing) and which call ops failed alone
        (what they raised), or ``None`` if none did. Raises ``sqlite3.Error`` with nothing
        written."""
        conn = self.conn
        execute = conn.execute
        refused: list[bool | BaseException] | None = None
        if len(batch) == 1:  # the common case: one statement, autocommitted
            op = batch[0]
            if op.guard is None and op.more is None and op.call is None:
                if op.fenced is None and op.lease is None:
                    execute(op.sql, op.params)
                else:
                    n = execute(op.sql, op.params).rowcount
                    if op.lease is not None and n:
                        sid, owner, until = op.lease
                        self._leases[sid] = (owner, until)
                    if op.fenced is not None and n == 0:
                        refused = [True]
                self.commits += 1
                self.records += 1
                if self.commits % 128 == 0:
                    self._after_commit(conn)
                return refused
        single = len(batch) == 1 and batch[0].more is None and batch[0].call is None
        safe = -1.0
        leases = self._leases
        if not single:
            execute("BEGIN IMMEDIATE")
        try:
            for i, op in enumerate(batch):
                if op.call is not None:
                    if len(batch) == 1:
                        op.result = op.call(conn)
                        continue
                    # A call that fails on its own (an audit append a log whose count was
                    # lowered by hand refuses, a constraint) fails alone: the other writes
                    # of its batch (other sessions', other tenants') are committed. (Its
                    # error rides ``refused``: no cost to an op of a batch that is fine.)
                    execute("SAVEPOINT convoy_call")
                    try:
                        op.result = op.call(conn)
                    except (sqlite3.IntegrityError, ConvoyError) as e:
                        execute("ROLLBACK TO convoy_call")
                        execute("RELEASE convoy_call")
                        if refused is None:
                            refused = [False] * len(batch)
                        refused[i] = e
                        continue
                    execute("RELEASE convoy_call")
                    continue
                sql, params = op.sql, op.params
                check = op.fenced is not None
                guard = op.guard
                if guard is not None:
                    if safe < 0:
                        safe = self.clock() + self.lease_margin
                    held = leases.get(guard[0])
                    if held is None or held[0] != guard[1] or held[1] <= safe:
                        # The lease may be gone: the fenced form lands only for the owner.
                        sql, params = _APPEND_FENCED, (*params, guard[0], guard[1])
                        check = True
                lease = op.lease
                if check or lease is not None:
                    n = execute(sql, params).rowcount
                    if lease is not None and n:
                        leases[lease[0]] = (lease[1], lease[2])
                    if check and n == 0:
                        if refused is None:
                            refused = [False] * len(batch)
                        refused[i] = True
                        continue
                else:
                    execute(sql, params)
                if op.more is not None:
                    for sql, params in op.more:
                        execute(sql, params)
            if not single:
                execute("COMMIT")
        except BaseException:
            if not single and conn.in_transaction:
                execute("ROLLBACK")
            raise
        self.commits += 1
        self.records += len(batch)
        if self.commits % 128 == 0:
            self._after_commit(conn)
        return refused

    def _forget_failed_leases(self, batch: Sequence[_Op]) -> None:
        """A batch that did not commit created no session: forget leases its creations
        recorded (they are recorded as the row is written, inside the transaction)."""
        for op in batch:
            if op.lease is not None:
                self._leases.pop(op.lease[0], None)

    def _after_commit(self, conn: sqlite3.Connection) -> None:
        """Rewind the WAL once it passes the limit. Under commits that never pause, the
        background PASSIVE checkpoints never catch the WAL's tail, and a WAL that is never
        copied whole never starts over: it would grow with every byte written. Only the
        writer can pick the moment between its own commits, so it does this itself."""
        try:
            if self._wal_path.stat().st_size > self.wal_limit_bytes:
                conn.execute("PRAGMA wal_checkpoint(RESTART)")
        except (OSError, sqlite3.OperationalError):
            pass  # no WAL yet, or busy: try again later

    def _settle(self, batch: Sequence[_Op], refused: Sequence[bool | BaseException] | None,
                error: BaseException | None) -> None:
        if error is not None:
            self._forget_failed_leases(batch)
        for i, op in enumerate(batch):
            fut = op.fut
            if fut.done():
                continue
            if error is not None:
                fut.set_exception(error)
                if op.quiet:
                    fut.exception()  # retrieved: a dropped future logs nothing
            elif refused is not None and refused[i]:
                e = refused[i]
                if isinstance(e, BaseException):  # (a call op that failed alone)
                    fut.set_exception(_store_error(e, self.path, "write")
                                      if isinstance(e, sqlite3.Error) else e)
                else:
                    sid = op.fenced or (op.guard[0] if op.guard else "?")
                    fut.set_exception(LeaseLost(
                        f"session {sid!r} is owned by another engine now; this engine's "
                        "lease expired and the write was refused"))
                if op.quiet:
                    fut.exception()
            else:
                fut.set_result(op.result)

    def _flush_inline(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            refused = self._write_batch(batch)
        except sqlite3.OperationalError as e:
            if _is_busy(e):  # locked by another process: retry from the loop, never block
                self._pending[:0] = batch
                self._scheduled = True
                assert self._loop is not None
                self._flusher = self._loop.create_task(self._flush_async())
                return
            self._settle(batch, None, _store_error(e, self.path, "write"))
            return
        except sqlite3.Error as e:
            self._settle(batch, None, _store_error(e, self.path, "write"))
            return
        except Exception as e:  # a call op that failed: its batch fails, nobody hangs
            self._settle(batch, None, e)
            return
        self._settle(batch, refused, None)

    async def _flush_async(self) -> None:
        """Commit pending batches off the fast path: on the commit thread (``"power"``),
        or from the loop with backoff while another process holds the lock."""
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                deadline = time.monotonic() + self.busy_timeout
                delay = 0.0005
                while True:
                    try:
                        if self._executor is not None:
                            refused = await loop.run_in_executor(
                                self._executor, self._write_batch, batch)
                        else:
                            refused = self._write_batch(batch)
                    except sqlite3.OperationalError as e:
                        if _is_busy(e) and time.monotonic() < deadline:
                            await asyncio.sleep(delay)
                            delay = min(delay * 2, 0.05)
                            continue
                        self._settle(batch, None, _store_error(e, self.path, "write"))
                    except sqlite3.Error as e:
                        self._settle(batch, None, _store_error(e, self.path, "write"))
                    except Exception as e:  # a call op that failed: its batch fails
                        self._settle(batch, None, e)
                    else:
                        self._settle(batch, refused, None)
                    break
        finally:
            self._scheduled = False
            self._flusher = None

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a transaction of its own, after every pending batch, retrying from
        the loop while the database is locked by another process."""
        await self._drain()
        conn = self.conn
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.0005
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                if _is_busy(e) and time.monotonic() < deadline:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.05)
                    continue
                raise _store_error(e, self.path, "write") from None
            except sqlite3.Error as e:
                raise _store_error(e, self.path, "write") from None
            try:
                out = fn(conn)
                conn.execute("COMMIT")
                return out
            except sqlite3.Error as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise _store_error(e, self.path, "write") from None
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    async def _drain(self) -> None:
        """Wait until every write submitted so far is committed (or failed)."""
        while self._pending or self._flusher is not None:
            if self._flusher is not None:
                await asyncio.shield(self._flusher)
            else:
                self._flush_inline()

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise _store_error(e, self.path, "read") from None

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
        return self._submit(_Op(_INSERT_SESSION,
                                self._session_params(session, owner, lease_s, now),
                                lease=None if owner is None else (session.id, owner,
                                                                  now + lease_s)), wait=False)

    async def create_sessions(self, sessions: Sequence[NewSession], *,
                              owner: str | None = None, lease_s: float = 0.0) -> int:
        if not sessions:
            return 0
        now = self.clock()
        rows = [self._session_params(s, owner, lease_s, now) for s in sessions]

        def insert(conn: sqlite3.Connection) -> int:
            keys_held(sessions, lambda t, subject: next(
                (r[0] for r in conn.execute(_SUBJECT_SQL.key_get, (t, subject))), None))
            if owner is None:
                before = conn.total_changes
                conn.executemany(_INSERT_SESSION, rows)
                return conn.total_changes - before
            new = 0
            for row in rows:
                if conn.execute(_INSERT_SESSION, row).rowcount:
                    self._leases[row[0]] = (owner, now + lease_s)
                    new += 1
            return new

        return await self._write(insert)

    async def claim(self, session_id: str, owner: str, lease_s: float, *,
                    tenant: str | None = None, waiting: bool = False) -> SessionRow | None:
        now = self.clock()
        cond, tparams = _tenant_cond(tenant)
        runnable = f"({_RUNNABLE} OR status='waiting')" if waiting else _RUNNABLE

        def claim(conn: sqlite3.Connection) -> SessionRow | None:
            row = conn.execute(
                f"UPDATE sessions {_CLAIM_SET} WHERE id=? AND {runnable}{cond} "
                f"RETURNING {_SESSION_COLS}",
                (owner, now + lease_s, now, now, session_id, owner, now, now, *tparams)
            ).fetchone()
            if not row:
                return None
            self._leases[session_id] = (owner, now + lease_s)
            return _session(row)

        return await self._write(claim)

    async def claim_runnable(self, owner: str, lease_s: float, *,
                             workflows: Mapping[str, str], limit: int,
                             tenant: str | None = None) -> list[SessionRow]:
        if not workflows or limit < 1:
            return []
        now = self.clock()
        which = " OR ".join("(workflow=? AND version=?)" for _ in workflows)
        wf_params = [x for item in workflows.items() for x in item]
        cond, tparams = _tenant_cond(tenant)

        def claim(conn: sqlite3.Connection) -> list[SessionRow]:
            rows = conn.execute(
                f"UPDATE sessions {_CLAIM_SET} WHERE id IN (SELECT id FROM sessions WHERE "
                f"status IN ('pending','running','waiting') AND ({which}) AND {_RUNNABLE_OTHERS}"
                f"{cond} ORDER BY created, id LIMIT ?) RETURNING {_SESSION_COLS}",
                (owner, now + lease_s, now, now, *wf_params, owner, now, now, *tparams, limit)
            ).fetchall()
            unreadable: list[tuple[str, str]] = []
            claimed = claimed_rows(rows, _session, lambda r: str(r[0]), unreadable)
            for sid, error in unreadable:
                conn.execute(_ESCALATE_UNREADABLE, (error, now, sid, owner))
            for r in claimed:
                self._leases[r.id] = (owner, now + lease_s)
            return sorted(claimed, key=lambda r: (r.created, r.id))

        return await self._write(claim)

    async def renew(self, owner: str, lease_s: float) -> int:
        now = self.clock()

        def renew(conn: sqlite3.Connection) -> int:
            ids = conn.execute(
                f"UPDATE sessions SET lease_until=?, {_ACCRUE}, seg_mark=? WHERE owner=? AND "
                "status='running' RETURNING id", (now + lease_s, now, now, now, owner)
            ).fetchall()
            conn.execute("UPDATE holds SET until=? WHERE owner=? AND until>?",
                         (now + lease_s, owner, now))
            for (sid,) in ids:
                self._leases[sid] = (owner, now + lease_s)
            return len(ids)

        return await self._write(renew)

    async def release(self, session_id: str, owner: str,
                      outcome: SessionOutcome | None = None) -> None:
        self._leases.pop(session_id, None)
        now = self.clock()
        counts, params = outcome_counts(outcome)
        await self._write(lambda conn: conn.execute(
            f"UPDATE sessions SET status='pending', owner=NULL, lease_until=NULL, {counts}"
            f"{_ACCRUE}, seg_mark=NULL WHERE id=? AND owner=? AND status='running'",
            (*params, now, now, session_id, owner)))

    async def expire_owner(self, owner: str) -> int:
        def expire(conn: sqlite3.Connection) -> int:
            for scope, unit, amount in conn.execute(
                    "DELETE FROM holds WHERE owner=? RETURNING scope, unit, amount",
                    (owner,)).fetchall():
                conn.execute("UPDATE meters SET held=held-? WHERE scope=? AND unit=?",
                             (amount, scope, unit))
            return int(conn.execute(
                "UPDATE sessions SET lease_until=0 WHERE owner=? AND status='running'",
                (owner,)).rowcount)

        return await self._write(expire)

    async def park(self, session_id: str, owner: str, outcome: SessionOutcome, *,
                   wake_at: float | None, wait_name: str | None) -> None:
        self._leases.pop(session_id, None)
        now = self.clock()
        headers = json.dumps(dict(outcome.headers)) if outcome.headers is not None else None

        def park(conn: sqlite3.Connection) -> None:
            # Runnable at once if the awaited signal or a cancel request came first (a
            # NULL ``wait_name`` matches no signal: only the request counts then).
            n = conn.execute(
                "UPDATE sessions SET status=CASE WHEN EXISTS (SELECT 1 FROM signals WHERE "
                f"session_id=? AND {AWAITED_OR_CANCEL} AND consumed=0) THEN 'pending' ELSE "
                "'waiting' END, owner=NULL, lease_until=NULL, wake_at=?, wait_name=?, steps=?,"
                " input_tokens=?, output_tokens=?, cost=?, headers=COALESCE(?, headers), "
                f"{_ACCRUE}, seg_mark=NULL WHERE id=? AND owner=?",
                (session_id, wait_name, CANCEL_SIGNAL, wake_at, wait_name, outcome.steps,
                 outcome.input_tokens, outcome.output_tokens, outcome.cost, headers, now, now,
                 session_id, owner)).rowcount
            if n == 0:
                raise LeaseLost(f"session {session_id!r} is owned by another engine now; "
                                "it was not parked")

        await self._write(park)

    def finish(self, session_id: str, owner: str | None, outcome: SessionOutcome, *,
               tenant: str | None = None) -> asyncio.Future[None]:
        now = self.clock()
        self._leases.pop(session_id, None)
        error = json.dumps(outcome.error) if outcome.error else None
        headers = json.dumps(dict(outcome.headers)) if outcome.headers is not None else None
        params = (outcome.status, outcome.output, error, now, outcome.steps,
                  outcome.input_tokens, outcome.output_tokens, outcome.cost, headers, now, now,
                  session_id, owner)
        if tenant is not None:
            return self._submit(_Op(_FINISH_TENANT, (*params, tenant), fenced=session_id))
        return self._submit(_Op(_FINISH, params, None, session_id))

    async def reopen(self, session_id: str, *, drop_step: str | None = None,
                     journal: StepRecord | None = None, tenant: str | None = None) -> bool:
        now = self.clock()
        cond, tparams = _tenant_cond(tenant)

        def reopen(conn: sqlite3.Connection) -> bool:
            n = conn.execute(
                "UPDATE sessions SET status='pending', output=NULL, error=NULL, finished=NULL,"
                f" owner=NULL, lease_until=NULL WHERE id=?{cond}", (session_id, *tparams)
            ).rowcount
            if n == 0:
                return False
            if drop_step is not None:
                conn.execute("DELETE FROM journal WHERE session_id=? AND key=?",
                             (session_id, drop_step))
            if journal is not None:
                conn.execute(_APPEND, _append_params(session_id, journal, now,
                                                     self._next_seq(now)))
            return True

        return await self._write(reopen)

    def update_headers(self, session_id: str, owner: str,
                       headers: Mapping[str, str]) -> asyncio.Future[None]:
        # Like a creation, it never commits on its own: the next batch carries it.
        text = json.dumps(dict(headers))
        for op in reversed(self._pending):
            lease = op.lease
            if lease is not None and lease[0] == session_id and op.sql is _INSERT_SESSION:
                # Its creation is not written yet: the row is written with these headers
                # (a statement less; the session's first run sets its trace header).
                if lease[1] != owner:
                    break
                op.params = (*op.params[:_HEADERS_AT], text, *op.params[_HEADERS_AT + 1:])
                return op.fut
        return self._submit(_Op("UPDATE sessions SET headers=? WHERE id=? AND owner=?",
                                (text, session_id, owner), fenced=session_id), wait=False)

    async def set_version(self, session_id: str, version: str, *,
                          tenant: str | None = None) -> None:
        cond, tparams = _tenant_cond(tenant)
        await self._write(lambda conn: conn.execute(
            f"UPDATE sessions SET version=? WHERE id=?{cond}", (version, session_id, *tparams)))

    async def get_session(self, session_id: str, *,
                          tenant: str | None = None) -> SessionRow | None:
        cond, tparams = _tenant_cond(tenant)
        rows = self._read(f"SELECT {_SESSION_COLS} FROM sessions WHERE id=?{cond}",
                          (session_id, *tparams))
        return _session(rows[0]) if rows else None

    async def get_sessions(self, ids: Sequence[str], *, tenant: str | None = None,
                           left_out: list[LeftOut] | None = None) -> dict[str, SessionRow]:
        out: dict[str, SessionRow] = {}
        cond, tparams = _tenant_cond(tenant)
        for i in range(0, len(ids), 500):
            chunk = list(ids[i:i + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._read(f"SELECT {_SESSION_COLS} FROM sessions WHERE id IN ({marks})"
                              f"{cond}", (*chunk, *tparams))
            out.update((row.id, row) for row in readable(rows, _session, left_out))
        return out

    async def list_sessions(self, where: SessionFilter, *,
                            left_out: list[LeftOut] | None = None) -> list[SessionRow]:
        cond, params = session_page(where)
        rows = self._read(session_listing(cond, session_order(where), where.journal_steps),
                          (*params, where.limit, where.offset))
        return readable(rows, _session, left_out)

    async def unfinished(self, *, tenant: str | None = None,
                         left_out: list[LeftOut] | None = None) -> list[SessionRow]:
        cond = " AND tenant=?" if tenant is not None else ""
        rows = self._read(f"SELECT {_SESSION_COLS} FROM sessions WHERE status IN "
                          f"('pending','running','waiting'){cond} ORDER BY created, id",
                          (tenant,) if tenant is not None else ())
        return readable(rows, _session, left_out)

    async def counts(self, *, tenant: str | None = None) -> dict[str, int]:
        cond, params = conditions(None, None, tenant)
        rows = self._read(f"SELECT status, COUNT(*) FROM sessions{cond} GROUP BY status",
                          params)
        return {status: n for (status,), n in by_status(rows).items()}

    async def tenant_counts(self) -> dict[tuple[str, str], int]:
        """Sessions by tenant and status (for ``convoy metrics serve --all-tenants``; not
        part of the :class:`~convoy.stores.Store` protocol)."""
        rows = self._read(
            "SELECT tenant, status, COUNT(*) FROM sessions GROUP BY tenant, status", ())
        return {(tenant, status): n for (tenant, status), n in by_status(rows).items()}

    async def workflow_names(self, *, tenant: str | None = None) -> list[str]:
        """The names of the workflows that have sessions (of ``tenant``) in this store,
        sorted (for "did you mean" messages; not part of the
        :class:`~convoy.stores.Store` protocol)."""
        cond, params = conditions(None, None, tenant)
        return [r[0] for r in self._read(
            f"SELECT DISTINCT workflow FROM sessions{cond} ORDER BY 1", params)]

    async def next_wake(self, *, tenant: str | None = None) -> float | None:
        cond, tparams = _tenant_cond(tenant)
        rows = self._read(f"SELECT MIN(wake_at) FROM sessions WHERE status='waiting'{cond}",
                          tparams)
        return rows[0][0] if rows and rows[0][0] is not None else None

    # -- the journal -------------------------------------------------------------------------

    def _next_seq(self, now: float) -> int:
        self._seq = seq = next_seq(self._seq, now)
        return seq

    def append(self, session_id: str, owner: str | None, record: StepRecord, *,
               consume_signal: int | None = None) -> asyncio.Future[None]:
        now = self.clock()
        # Write order (``_next_seq`` and ``_append_params``, inlined: once per step).
        seq = self._seq + 1
        t = int(now * 1e6)
        self._seq = seq = t if t > seq else seq
        r = record
        params = (session_id, r.key, r.kind, r.target, r.status, r.result, r.input_hash,
                  r.agent, r.input_tokens, r.output_tokens, r.cost, r.at or now, seq, r.config,
                  r.began or None)
        more = None if consume_signal is None else [(_CONSUME, (consume_signal, session_id))]
        guard = None
        if owner is not None:
            held = self._leases.get(session_id)
            # A write runs at most two busy timeouts after it is queued (a batch retried
            # while another process holds the lock, then the next one): a lease that outlives
            # that cannot have been taken over by then, so the write needs no check.
            if held is None or held[0] != owner or \
                    held[1] <= now + self.lease_margin + 2 * self.busy_timeout:
                guard = (session_id, owner)
        return self._submit(_Op(_APPEND, params, more, None, guard))

    async def load_journal(self, session_id: str, *,
                           tenant: str | None = None) -> dict[str, StepRecord]:
        cond, tparams = _in_tenant("journal", tenant)
        rows = self._read(f"SELECT {_JOURNAL_COLS} FROM journal WHERE session_id=?{cond}",
                          (session_id, *tparams))
        return {r[0]: _record(r, session_id) for r in rows}

    async def journal(self, session_id: str, *, tenant: str | None = None,
                      left_out: list[LeftOut] | None = None) -> list[StepRecord]:
        cond, tparams = _in_tenant("journal", tenant)
        rows = self._read(f"SELECT {_JOURNAL_COLS} FROM journal WHERE session_id=?{cond} "
                          "ORDER BY seq, at, key", (session_id, *tparams))
        return readable(rows, lambda r: _record(r, session_id), left_out)

    # -- signals ------------------------------------------------------------------------------

    async def send_signal(self, session_id: str, name: str, payload: str, *,
                          tenant: str | None = None,
                          sealed_labels: Collection[str] | None = None) -> int:
        now = self.clock()
        return await self._write(lambda conn: _send_signal(conn, session_id, name, payload,
                                                           now, tenant, sealed_labels))

    async def next_signal(self, session_id: str, name: str, *,
                          tenant: str | None = None) -> Signal | None:
        cond, tparams = _in_tenant("signals", tenant)
        rows = self._read("SELECT seq,session_id,name,payload,at FROM signals WHERE "
                          f"session_id=? AND name=? AND consumed=0{cond} ORDER BY seq LIMIT 1",
                          (session_id, name, *tparams))
        if not rows:
            return None
        seq, sid, nm, payload, at = rows[0]
        return Signal(seq=seq, session_id=sid, name=nm, payload=payload, at=at)

    async def next_signals(self, session_ids: Sequence[str], name: str, *,
                           tenant: str | None = None) -> dict[str, Signal]:
        cond, tparams = _in_tenant("signals", tenant)
        out: dict[str, Signal] = {}
        for i in range(0, len(session_ids), 500):
            chunk = list(session_ids[i:i + 500])
            marks = ",".join("?" * len(chunk))
            # SQLite takes the bare columns of a MIN() group from the row holding the MIN.
            rows = self._read("SELECT MIN(seq),session_id,name,payload,at FROM signals WHERE "
                              f"session_id IN ({marks}) AND name=? AND consumed=0{cond} "
                              "GROUP BY session_id", (*chunk, name, *tparams))
            out.update((sid, Signal(seq=seq, session_id=sid, name=nm, payload=payload, at=at))
                       for seq, sid, nm, payload, at in rows)
        return out

    async def owned_signalled(self, owner: str, name: str) -> list[str]:
        # The running sessions by their status index (as ``renew`` finds them), each
        # looked up in the signals' (session_id, name, consumed) index.
        return [r[0] for r in self._read(_OWNED_SIGNALLED, (owner, name))]

    # -- state of interceptors ----------------------------------------------------------------

    async def kv_get(self, namespace: str, key: str) -> str | None:
        rows = self._read("SELECT value FROM kv WHERE namespace=? AND key=?", (namespace, key))
        return str(rows[0][0]) if rows else None

    async def kv_all(self, namespace: str) -> dict[str, str]:
        return dict(self._read("SELECT key, value FROM kv WHERE namespace=?", (namespace,)))

    def kv_put(self, namespace: str, key: str, value: str | None) -> asyncio.Future[None]:
        stmt: tuple[str, tuple[Any, ...]]
        if value is None:
            stmt = ("DELETE FROM kv WHERE namespace=? AND key=?", (namespace, key))
        else:
            stmt = (_KV_PUT, (namespace, key, value))
        return self._submit(_Op(*stmt))

    def kv_put_many(self, items: Sequence[tuple[str, str, str]], *,
                    wait: bool = True) -> asyncio.Future[None]:
        rows = list(items)

        def put(conn: sqlite3.Connection) -> None:
            conn.executemany(_KV_PUT, rows)

        return self._batched(put, wait=wait)

    # -- spend --------------------------------------------------------------------------------

    async def tenant_spend(self, tenant: str, since: float, until: float, *,
                           agent: str | None = None) -> tuple[int, float]:
        by_agent = "" if agent is None else " AND COALESCE(j.agent, j.target)=?"
        rows = self._read(
            "SELECT COALESCE(SUM(j.input_tokens + j.output_tokens), 0), COALESCE(SUM(j.cost), 0)"
            " FROM journal j JOIN sessions s ON s.id = j.session_id WHERE s.tenant=? AND "
            f"j.kind='model' AND j.status='completed' AND j.at>=? AND j.at<?{by_agent}",
            (tenant, since, until) if agent is None else (tenant, since, until, agent))
        return int(rows[0][0]), float(rows[0][1])

    async def session_spend(self, session_id: str, *,
                            tenant: str | None = None) -> dict[str, tuple[int, float]]:
        cond, tparams = _in_tenant("journal", tenant)
        rows = self._read(
            "SELECT COALESCE(agent, target), SUM(input_tokens + output_tokens), SUM(cost) FROM "
            f"journal WHERE session_id=? AND kind='model' AND status='completed'{cond} "
            "GROUP BY 1", (session_id, *tparams))
        return {r[0]: (int(r[1]), float(r[2])) for r in rows}


__all__ = ["Durability", "SQLiteStore"]
