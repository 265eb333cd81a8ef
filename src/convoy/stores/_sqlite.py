"""The store seam and its SQLite implementation (WAL, group commit).

Group commit: every journal append from every session joins one pending batch. The batch is
committed as soon as the loop is free (a lone session never waits for a window); whatever
arrives meanwhile joins the next batch. A session continues only after its record is
committed. With ``durability="process"`` (``synchronous=NORMAL``) a committed record
survives a crash of the process (SIGKILL); ``durability="power"`` (``synchronous=FULL``)
also survives power loss, and commits on a dedicated thread so fsync never blocks the loop.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from convoy._errors import JournalError, UserError

SCHEMA_VERSION = 1
Durability = Literal["process", "power"]
Status = Literal["pending", "running", "completed", "failed", "escalated", "budget_exhausted",
                 "loop_detected", "limit_exceeded", "cancelled"]
UNFINISHED = ("pending", "running")
_WAL_LIMIT = 64 * 1024 * 1024  # the WAL is rewound (and truncated to this) past this size

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions(
  id TEXT PRIMARY KEY,
  workflow TEXT NOT NULL,
  version TEXT NOT NULL,
  tenant TEXT NOT NULL,
  status TEXT NOT NULL,
  input TEXT NOT NULL,
  output TEXT,
  error TEXT,
  created REAL NOT NULL,
  started REAL,
  finished REAL,
  steps INTEGER NOT NULL DEFAULT 0,
  input_tokens INTEGER NOT NULL DEFAULT 0,
  output_tokens INTEGER NOT NULL DEFAULT 0,
  cost REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_status ON sessions(status);
CREATE TABLE IF NOT EXISTS journal(
  session_id TEXT NOT NULL,
  key TEXT NOT NULL,
  kind TEXT NOT NULL,
  target TEXT NOT NULL,
  status TEXT NOT NULL,
  result TEXT,
  at REAL NOT NULL,
  PRIMARY KEY(session_id, key)
) WITHOUT ROWID;
"""

_UPSERT_STEP = (
    "INSERT INTO journal(session_id,key,kind,target,status,result,at) VALUES(?,?,?,?,?,?,?) "
    "ON CONFLICT(session_id,key) DO UPDATE SET status=excluded.status, "
    "result=excluded.result, at=excluded.at")
_INSERT_SESSION = (
    "INSERT OR IGNORE INTO sessions(id,workflow,version,tenant,status,input,created) "
    "VALUES(?,?,?,?,?,?,?)")
_START_SESSION = "UPDATE sessions SET status='running', started=COALESCE(started, ?) WHERE id=?"
_FINISH_SESSION = (
    "UPDATE sessions SET status=?, output=?, error=?, finished=?, steps=?, input_tokens=?, "
    "output_tokens=?, cost=? WHERE id=?")


@dataclass(slots=True, frozen=True)
class StepRecord:
    """One journal row. ``status`` is ``started``, ``completed`` or ``failed``."""

    key: str
    kind: str
    target: str
    status: str
    result: str | None


@dataclass(slots=True, frozen=True)
class SessionRow:
    id: str
    workflow: str
    version: str
    tenant: str
    status: str
    input: str
    output: str | None
    error: str | None
    created: float
    started: float | None
    finished: float | None
    steps: int
    input_tokens: int
    output_tokens: int
    cost: float

    @property
    def error_record(self) -> dict[str, Any] | None:
        return json.loads(self.error) if self.error else None


class SQLiteStore:
    """Sessions and journal in one SQLite file (``":memory:"`` is refused: not durable)."""

    def __init__(self, path: str | Path, *, durability: Durability = "process",
                 wal_limit_bytes: int = _WAL_LIMIT) -> None:
        if str(path) == ":memory:":
            raise UserError("the store must be a file: ':memory:' would lose every session "
                            "on a crash; pass a path such as 'convoy.db'")
        if durability not in ("process", "power"):
            raise UserError(f"durability must be 'process' or 'power', got {durability!r}")
        self.path = Path(path)
        self.durability: Durability = durability
        self.wal_limit_bytes = wal_limit_bytes
        self._wal_path = Path(f"{self.path}-wal")
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[str, tuple[Any, ...], asyncio.Future[None] | None]] = []
        self._scheduled = False
        self._tick_busy = False
        self._executor: ThreadPoolExecutor | None = None
        self._checkpointer: _Checkpointer | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.commits = 0
        self.records = 0

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> None:
        if self._conn is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            sync = "FULL" if self.durability == "power" else "NORMAL"
            conn.execute(f"PRAGMA synchronous={sync}")
            conn.execute("PRAGMA busy_timeout=10000")
            # Checkpoints (copying the WAL into the database, with fsyncs) run on a thread
            # of their own instead of inside whichever commit crosses the threshold.
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.execute(f"PRAGMA journal_size_limit={int(self.wal_limit_bytes)}")
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise JournalError(
                    f"{self.path} has store schema version {row[0]}, this Convoy reads version "
                    f"{SCHEMA_VERSION}; use the Convoy release that wrote it")
        except sqlite3.DatabaseError as e:
            conn.close()
            raise UserError(f"{self.path} is not a usable Convoy store: {e}") from e
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        if self.durability == "power":
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="convoy-commit")
        self._checkpointer = _Checkpointer(self.path)

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
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise UserError("the store is not open; use 'async with Engine(...)' or "
                            "call engine.open()")
        return self._conn

    # -- group commit --------------------------------------------------------------------

    def _submit(self, sql: str, params: tuple[Any, ...], wait: bool) -> asyncio.Future[None] | None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] | None = loop.create_future() if wait else None
        self._pending.append((sql, params, fut))
        if wait and not self._scheduled and not self._tick_busy and self._executor is None:
            # The first record of a loop iteration commits at once, in the caller: a lone
            # session never waits for the loop. Records that arrive later in the same
            # iteration join one batch committed at its end.
            self._tick_busy = True
            loop.call_soon(self._end_tick)
            self._flush_inline()
            return fut
        if not self._scheduled:
            self._scheduled = True
            if self._executor is None:
                loop.call_soon(self._flush_inline)
            else:
                self._flusher = loop.create_task(self._flush_threaded())
        return fut

    def _end_tick(self) -> None:
        self._tick_busy = False

    def _write_batch(self, batch: Sequence[tuple[str, tuple[Any, ...], Any]]) -> None:
        conn = self.conn
        if len(batch) == 1:  # autocommit: one statement is one transaction
            sql, params, _ = batch[0]
            conn.execute(sql, params)
        else:
            conn.execute("BEGIN")
            try:
                for sql, params, _ in batch:
                    conn.execute(sql, params)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        self.commits += 1
        self.records += len(batch)
        if self.commits % 128 == 0:
            self._after_commit(conn)

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

    @staticmethod
    def _settle(batch: Sequence[tuple[str, tuple[Any, ...], asyncio.Future[None] | None]],
                error: BaseException | None) -> None:
        for _, _, fut in batch:
            if fut is not None and not fut.done():
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(JournalError(f"journal commit failed: {error}"))

    def _flush_inline(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            self._write_batch(batch)
        except Exception as e:
            self._settle(batch, e)
            return
        self._settle(batch, None)

    async def _flush_threaded(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await loop.run_in_executor(self._executor, self._write_batch, batch)
                except Exception as e:
                    self._settle(batch, e)
                else:
                    self._settle(batch, None)
        finally:
            self._scheduled = False
            self._flusher = None

    # -- writes --------------------------------------------------------------------------

    def append_step(self, session_id: str, key: str, kind: str, target: str, status: str,
                    result: str | None) -> asyncio.Future[None]:
        fut = self._submit(_UPSERT_STEP, (session_id, key, kind, target, status, result,
                                          time.time()), True)
        assert fut is not None
        return fut

    def create_session(self, session_id: str, workflow: str, version: str, tenant: str,
                       input_json: str, *, wait: bool) -> asyncio.Future[None] | None:
        return self._submit(_INSERT_SESSION, (session_id, workflow, version, tenant, "pending",
                                              input_json, time.time()), wait)

    def mark_running(self, session_id: str) -> None:
        self._submit(_START_SESSION, (time.time(), session_id), False)

    def finish_session(self, session_id: str, status: str, output: str | None,
                       error: dict[str, Any] | None, steps: int, input_tokens: int,
                       output_tokens: int, cost: float) -> asyncio.Future[None]:
        fut = self._submit(_FINISH_SESSION, (
            status, output, json.dumps(error) if error else None, time.time(), steps,
            input_tokens, output_tokens, cost, session_id), True)
        assert fut is not None
        return fut

    def create_sessions_now(self, rows: Sequence[tuple[str, str, str, str, str]]) -> int:
        """Insert many pending sessions in one transaction (synchronous; for batch runs).

        Returns how many were new (existing ids are kept as they are).
        """
        conn = self.conn
        now = time.time()
        before = conn.total_changes
        conn.execute("BEGIN")
        try:
            conn.executemany(_INSERT_SESSION, [(sid, wf, ver, ten, "pending", inp, now)
                                               for sid, wf, ver, ten, inp in rows])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return conn.total_changes - before

    # -- reads ---------------------------------------------------------------------------

    def load_journal(self, session_id: str) -> dict[str, StepRecord]:
        rows = self.conn.execute(
            "SELECT key,kind,target,status,result FROM journal WHERE session_id=?",
            (session_id,)).fetchall()
        return {r[0]: StepRecord(*r) for r in rows}

    def journal(self, session_id: str) -> list[tuple[str, str, str, str, str | None, float]]:
        """Every step of a session in the order it was recorded."""
        return self.conn.execute(
            "SELECT key,kind,target,status,result,at FROM journal WHERE session_id=? "
            "ORDER BY at, key", (session_id,)).fetchall()

    def get_session(self, session_id: str) -> SessionRow | None:
        row = self.conn.execute("SELECT * FROM sessions WHERE id=?", (session_id,)).fetchone()
        return SessionRow(*row) if row else None

    def get_sessions(self, ids: Sequence[str]) -> dict[str, SessionRow]:
        """Rows of the given sessions that exist, by id."""
        out: dict[str, SessionRow] = {}
        for i in range(0, len(ids), 500):
            chunk = list(ids[i:i + 500])
            marks = ",".join("?" * len(chunk))
            for r in self.conn.execute(f"SELECT * FROM sessions WHERE id IN ({marks})", chunk):
                out[r[0]] = SessionRow(*r)
        return out

    def list_sessions(self, *, status: str | None = None, workflow: str | None = None,
                      limit: int = 50, offset: int = 0) -> list[SessionRow]:
        where, params = [], []
        if status:
            where.append("status=?")
            params.append(status)
        if workflow:
            where.append("workflow=?")
            params.append(workflow)
        sql = "SELECT * FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC, id LIMIT ? OFFSET ?"
        rows = self.conn.execute(sql, (*params, limit, offset)).fetchall()
        return [SessionRow(*r) for r in rows]

    def unfinished(self) -> list[SessionRow]:
        rows = self.conn.execute(
            "SELECT * FROM sessions WHERE status IN ('pending','running') ORDER BY created, id"
        ).fetchall()
        return [SessionRow(*r) for r in rows]

    def tenant_spend(self, tenant: str, since: float) -> tuple[int, float]:
        """Tokens and USD a tenant's sessions created since ``since`` have spent: finished
        sessions from their totals, unfinished ones from their journaled model steps."""
        done = self.conn.execute(
            "SELECT COALESCE(SUM(input_tokens + output_tokens), 0), COALESCE(SUM(cost), 0) "
            "FROM sessions WHERE tenant=? AND created>=? AND status NOT IN ('pending','running')",
            (tenant, since)).fetchone()
        live = self.conn.execute(
            "SELECT COALESCE(SUM(json_extract(j.result, '$.in') + json_extract(j.result, '$.out'))"
            ", 0), COALESCE(SUM(json_extract(j.result, '$.cost')), 0) FROM journal j JOIN "
            "sessions s ON s.id = j.session_id WHERE s.tenant=? AND s.created>=? AND s.status "
            "IN ('pending','running') AND j.kind='model' AND j.status='completed'",
            (tenant, since)).fetchone()
        return int(done[0]) + int(live[0]), float(done[1]) + float(live[1])

    def counts(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT status, COUNT(*) FROM sessions GROUP BY status"))


class _Checkpointer:
    """Copies the WAL back into the database from a thread, a few times a second.

    A PASSIVE checkpoint never waits, so it cannot stall a commit; the writer itself rewinds
    the WAL once it passes the limit (see ``SQLiteStore._after_commit``), which is then
    cheap because this thread has already copied almost all of it.
    """

    def __init__(self, path: Path, interval: float = 0.25) -> None:
        self._path = path
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="convoy-checkpoint",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=1000")
            while not self._stop.wait(self._interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.OperationalError:
                    continue  # busy: the next round catches up
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
