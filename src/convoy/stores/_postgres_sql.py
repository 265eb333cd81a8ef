"""The PostgreSQL store's SQL: versioned migrations, statements and error messages.

Kept apart from :mod:`convoy.stores._postgres` (the group commit and the protocol methods),
as the SQLite store keeps its SQL in :mod:`convoy.stores._sqlite_sql`. Columns and row
shapes are the SQLite store's (the same converters read both); only the dialect differs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from convoy._errors import StoreError
from convoy._text import quoted
from convoy.stores._audit_sql import AUDIT_SCHEMA_VERSION, PG_MIGRATION
from convoy.stores._sqlite_sql import _in_tenant, _tenant_cond

#: Migrations, oldest first: ``(version, statements)``. A database at version ``v`` gets
#: every step above ``v``, in order, in one transaction. PostgreSQL stores begin at
#: version 2, the schema SQLite stores reached in Convoy 0.2 (the same tables and columns),
#: so a version number means the same schema on both stores.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (2, """
CREATE TABLE sessions(
  id TEXT PRIMARY KEY,
  workflow TEXT NOT NULL,
  version TEXT NOT NULL,
  tenant TEXT NOT NULL,
  status TEXT NOT NULL,
  input TEXT NOT NULL,
  output TEXT,
  error TEXT,
  created DOUBLE PRECISION NOT NULL,
  started DOUBLE PRECISION,
  finished DOUBLE PRECISION,
  steps BIGINT NOT NULL DEFAULT 0,
  input_tokens BIGINT NOT NULL DEFAULT 0,
  output_tokens BIGINT NOT NULL DEFAULT 0,
  cost DOUBLE PRECISION NOT NULL DEFAULT 0,
  owner TEXT,
  lease_until DOUBLE PRECISION,
  active_s DOUBLE PRECISION NOT NULL DEFAULT 0,
  seg_mark DOUBLE PRECISION,
  wake_at DOUBLE PRECISION,
  wait_name TEXT,
  headers TEXT NOT NULL DEFAULT '{}',
  parent TEXT
);
CREATE INDEX sessions_status ON sessions(status, created, id);
CREATE INDEX sessions_owner ON sessions(owner) WHERE owner IS NOT NULL;
CREATE INDEX sessions_tenant ON sessions(tenant, created, id);
CREATE TABLE journal(
  session_id TEXT NOT NULL,
  key TEXT NOT NULL,
  kind TEXT NOT NULL,
  target TEXT NOT NULL,
  status TEXT NOT NULL,
  result TEXT,
  input_hash TEXT,
  agent TEXT,
  input_tokens BIGINT NOT NULL DEFAULT 0,
  output_tokens BIGINT NOT NULL DEFAULT 0,
  cost DOUBLE PRECISION NOT NULL DEFAULT 0,
  at DOUBLE PRECISION NOT NULL,
  seq BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY(session_id, key)
);
CREATE TABLE signals(
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  session_id TEXT NOT NULL,
  name TEXT NOT NULL,
  payload TEXT NOT NULL,
  at DOUBLE PRECISION NOT NULL,
  consumed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX signals_open ON signals(session_id, name, seq) WHERE consumed = 0;
CREATE TABLE kv(
  namespace TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY(namespace, key)
);
"""),
    # Versioned shared state: the current version of each key, every version with its
    # writer, and watches that signal a waiting session when a key changes.
    (3, """
CREATE TABLE state(
  tenant TEXT NOT NULL,
  namespace TEXT NOT NULL,
  key TEXT NOT NULL,
  version BIGINT NOT NULL,
  value TEXT NOT NULL,
  session_id TEXT,
  agent TEXT,
  step_key TEXT,
  at DOUBLE PRECISION NOT NULL,
  PRIMARY KEY(tenant, namespace, key)
);
CREATE TABLE state_history(LIKE state, PRIMARY KEY(tenant, namespace, key, version));
CREATE INDEX state_writer ON state_history(session_id, step_key) WHERE session_id IS NOT NULL;
CREATE TABLE state_watch(
  tenant TEXT NOT NULL,
  namespace TEXT NOT NULL,
  key TEXT NOT NULL,
  session_id TEXT NOT NULL,
  name TEXT NOT NULL,
  after_version BIGINT NOT NULL,
  PRIMARY KEY(tenant, namespace, key, session_id, name)
);
"""),
    # A tenant's sessions by status (counts, unfinished and claims scoped to a tenant).
    (4, "CREATE INDEX sessions_tenant_status ON sessions(tenant, status)"),
    # Limits shared by engines: counts and reservations (budgets), token buckets (rate
    # limits) and the response cache (see convoy.stores._postgres_limits).
    (5, """
CREATE TABLE meters(
  scope TEXT NOT NULL,
  unit TEXT NOT NULL,
  used DOUBLE PRECISION NOT NULL,
  held DOUBLE PRECISION NOT NULL DEFAULT 0,
  PRIMARY KEY(scope, unit)
);
CREATE TABLE holds(
  id TEXT NOT NULL,
  scope TEXT NOT NULL,
  unit TEXT NOT NULL,
  amount DOUBLE PRECISION NOT NULL,
  owner TEXT NOT NULL,
  until DOUBLE PRECISION NOT NULL,
  PRIMARY KEY(id, scope, unit)
);
CREATE INDEX holds_limit ON holds(scope, unit);
CREATE INDEX holds_owner ON holds(owner);
CREATE TABLE buckets(
  name TEXT PRIMARY KEY,
  tokens DOUBLE PRECISION NOT NULL,
  at DOUBLE PRECISION NOT NULL
);
CREATE TABLE cache(
  tenant TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  expires DOUBLE PRECISION NOT NULL,
  PRIMARY KEY(tenant, key)
);
CREATE INDEX cache_expiry ON cache(expires);
"""),
    # Nothing to change: SQLite's 6 rebuilt its kv table as a rowid table (big values were
    # slow in a WITHOUT ROWID one); PostgreSQL's is a heap table already.
    (6, "SELECT 1"),
    (AUDIT_SCHEMA_VERSION, PG_MIGRATION),
    # Status changes rewrite every index on status: a tenant's sessions are found through
    # sessions_tenant (tenant, created, id), which a status change leaves alone.
    (8, "DROP INDEX IF EXISTS sessions_tenant_status"),
    # Nothing to change: SQLite's 9 moved sessions' audit cursors into their rows; here
    # they stay in kv (an update writes a new version of the whole row).
    (9, "SELECT 1"),
)

#: The schema version this Convoy writes to PostgreSQL.
PG_SCHEMA_VERSION = MIGRATIONS[-1][0]

META = "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)"

_JOURNAL_INSERT = (
    "INSERT INTO journal(session_id,key,kind,target,status,result,input_hash,agent,"
    "input_tokens,output_tokens,cost,at,seq,config,began) ")
_JOURNAL_UPSERT = (
    " ON CONFLICT(session_id,key) DO UPDATE SET status=excluded.status, "
    "result=excluded.result, input_hash=excluded.input_hash, "
    "input_tokens=excluded.input_tokens, output_tokens=excluded.output_tokens, "
    "cost=excluded.cost, at=excluded.at, config=excluded.config, began=excluded.began")
_VALUES15 = "VALUES(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
_SELECT15 = "SELECT %s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s"


def _append_sql(check: str | None, consume: bool) -> str:
    """One journal append as one statement. ``check``: ``None`` (no owner given), ``"owned"``
    (the row lands only while the writer owns the session; its lease is known to hold, so
    nobody can be taking it over) or ``"locked"`` (the lease may be ending: the session row
    is share-locked, so a takeover either committed before, and the write is refused, or
    waits until this write committed, and then sees it in the journal). With ``consume``
    the signal is marked consumed in the same statement, only if the record landed, and the
    statement returns how many records landed (0 or 1); without, its row count says it."""
    if check is None:
        insert = _JOURNAL_INSERT + _VALUES15 + _JOURNAL_UPSERT
    else:
        lock = " FOR SHARE" if check == "locked" else ""
        insert = (_JOURNAL_INSERT + _SELECT15 + " WHERE EXISTS (SELECT 1 FROM sessions "
                  f"WHERE id=%s AND owner=%s{lock})" + _JOURNAL_UPSERT)
    if not consume:
        return insert
    return (f"WITH ins AS ({insert} RETURNING 1), con AS (UPDATE signals SET consumed=1 "
            "WHERE seq=%s AND session_id=%s AND EXISTS (SELECT 1 FROM ins)) "
            "SELECT count(*) FROM ins")


_COLUMNS = ("session_id text, key text, kind text, target text, status text, result text, "
            "input_hash text, agent text, input_tokens int8, output_tokens int8, cost float8, "
            "at float8, seq int8, config text, began float8, owner text")
#: Many appends in one statement: rows land while their ``owner`` (NULL: anyone) owns the
#: session; returns the (session, key) of every row that landed. For runs of appends whose
#: lease is known to hold, and no key twice (one statement cannot upsert a row twice).
APPEND_MANY = (
    _JOURNAL_INSERT + "SELECT session_id,key,kind,target,status,result,input_hash,agent,"
    "input_tokens,output_tokens,cost,at,seq,config,began FROM unnest(" +
    ",".join(f"%b::{c.split()[1]}[]" for c in _COLUMNS.split(", ")) +
    ") AS v(" + ",".join(c.split()[0] for c in _COLUMNS.split(", ")) + ") WHERE "
    "v.owner IS NULL OR EXISTS (SELECT 1 FROM sessions s WHERE s.id=v.session_id AND "
    "s.owner=v.owner)" + _JOURNAL_UPSERT + " RETURNING session_id, key")
_CASTS = (str, str, str, str, str, str, str, str, int, int, float, float, int, str, float,
          str)


@dataclass(slots=True)
class Stmt:
    """One write of a batch at commit time: ``text`` with ``params``; ``counted``: its count
    comes back as a row (else: the row count). ``row``: an append that may join others in
    one :data:`APPEND_MANY` (its 15 columns and the owner it is fenced on, or ``None``)."""

    text: str
    params: tuple[Any, ...]
    counted: bool = False
    row: tuple[Any, ...] | None = None
    audit: bool = False  # an audit append: ``(tenant, n, n, bodies)``, may join others


@dataclass(slots=True)
class Unit:
    """One statement sent for a batch: one :class:`Stmt`, or several appends merged
    (``keys``: their (session, key), in the batch's order), or ``ops`` audit appends of one
    tenant merged (each op's count is the merged statement's)."""

    text: str
    params: Sequence[Any]
    counted: bool = False
    keys: list[tuple[str, str]] | None = None
    ops: int = 1


def plan_batch(stmts: Sequence[Stmt]) -> list[Unit]:
    """The statements that run a batch, in its order: consecutive appends that may merge go
    out as one (far fewer statements for the server to run under many sessions)."""
    plan: list[Unit] = []
    run: list[Stmt] = []

    def close() -> None:
        if len(run) == 1:
            plan.append(Unit(run[0].text, run[0].params, run[0].counted))
        elif run:
            columns = list(zip(*(r.row for r in run if r.row is not None), strict=True))
            plan.append(Unit(APPEND_MANY, [
                [None if v is None else cast(v) for v in col]
                for cast, col in zip(_CASTS, columns, strict=True)],
                keys=[(r.row[0], r.row[1]) for r in run if r.row is not None]))
        run.clear()

    seen: set[tuple[str, str]] = set()
    audits: list[Stmt] = []

    def close_audits() -> None:
        if audits:
            bodies = [b for a in audits for b in a.params[3]]
            plan.append(Unit(audits[0].text, (audits[0].params[0], len(bodies), len(bodies),
                                              bodies), ops=len(audits)))
            audits.clear()

    for st in stmts:
        if st.audit:  # consecutive appends to one tenant's log: one statement
            close()
            seen.clear()
            if audits and audits[0].params[0] != st.params[0]:
                close_audits()
            audits.append(st)
            continue
        close_audits()
        key = (st.row[0], st.row[1]) if st.row is not None else None
        if key is None or key in seen:
            close()
            seen.clear()
        if key is None:
            plan.append(Unit(st.text, st.params, st.counted))
        else:
            run.append(st)
            seen.add(key)
    close()
    close_audits()
    return plan


#: Every form of an append, by (check, consume).
APPEND = {(check, consume): _append_sql(check, consume)
          for check in (None, "owned", "locked") for consume in (False, True)}

INSERT_SESSION = (
    "INSERT INTO sessions(id,workflow,version,tenant,status,input,created,started,owner,"
    "lease_until,seg_mark,headers,parent,subject) "
    "VALUES(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
    "ON CONFLICT(id) DO NOTHING")
ACCRUE = "active_s = active_s + GREATEST(0, %s - COALESCE(seg_mark, %s))"
FINISH = (
    "UPDATE sessions SET status=%s, output=%s, error=%s, finished=%s, steps=%s, "
    "input_tokens=%s, output_tokens=%s, cost=%s, headers=COALESCE(%s, headers), owner=NULL, "
    f"lease_until=NULL, wake_at=NULL, wait_name=NULL, seg_mark=NULL, {ACCRUE} "
    "WHERE id=%s AND owner IS NOT DISTINCT FROM %s")
# A claimed session whose row does not read back, escalated (``claimed_rows``): only its
# status, error and end; the damaged value is left for a person to repair.
ESCALATE_UNREADABLE = (
    "UPDATE sessions SET status='escalated', error=%s, finished=%s, owner=NULL, "
    "lease_until=NULL, wake_at=NULL, wait_name=NULL, seg_mark=NULL WHERE id=%s AND owner=%s")
RUNNABLE = (
    "(status='pending' OR (status='running' AND (owner IS NULL OR owner=%s OR lease_until<%s))"
    " OR (status='waiting' AND wake_at IS NOT NULL AND wake_at<=%s))")
RUNNABLE_OTHERS = (
    "(status='pending' OR (status='running' AND (owner IS NULL OR (owner<>%s AND "
    "lease_until<%s))) OR (status='waiting' AND wake_at IS NOT NULL AND wake_at<=%s))")
# The running sessions of one owner, locked in id order: two statements updating many rows
# at once (renewals, expirations) lock them in the same order, so they never deadlock.
OWNED_ROWS = "SELECT id FROM sessions WHERE owner=%s AND status='running' ORDER BY id FOR UPDATE"
CLAIM_SET = ("SET owner=%s, lease_until=%s, status='running', started=COALESCE(started, %s), "
             "seg_mark=%s, wake_at=NULL, wait_name=NULL")
# A session's row, locked while ``owner`` owns it (parking, and looking for a signal).
LOCK_OWNED = "SELECT id FROM sessions WHERE id=%s AND owner=%s FOR UPDATE"
# Stored only for a session that exists (of the tenant, when one is given: ``{tenant}`` is
# `` AND tenant=%s``); wakes the session if it waits for the signal (one of the names its
# ``wait_name`` joins by WAIT_NAMES_SEP, chr(31)); returns its seq.
SIGNAL = (
    "WITH sig AS (INSERT INTO signals(session_id,name,payload,at) SELECT %s,%s,%s,%s WHERE "
    "EXISTS (SELECT 1 FROM sessions WHERE id=%s{tenant}) RETURNING seq, session_id), "
    "woke AS (UPDATE sessions SET status='pending', wake_at=NULL, wait_name=NULL WHERE id IN "
    "(SELECT session_id FROM sig) AND status='waiting' AND %s = ANY(string_to_array(wait_name, "
    "chr(31)))) SELECT seq FROM sig")
# The beginnings of a session's sealed journal records (a result starting SEALED_PREFIX:
# enough of it for the label of its outermost layer; Store.send_signal's
# ``sealed_labels``).
SEALED_RECORDS = ("SELECT DISTINCT left(result, 240) FROM journal WHERE session_id=%s AND "
                  "left(result, %s)=%s")
# Runnable at once if an awaited signal (``wait_name``: one name, or several joined by
# WAIT_NAMES_SEP, chr(31)) or a cancel request (the second name) came first; a NULL
# awaited name matches no signal.
PARK = (
    "UPDATE sessions SET status=CASE WHEN EXISTS (SELECT 1 FROM signals WHERE "
    "session_id=%s AND (name = ANY(string_to_array(%s::text, chr(31))) OR name=%s) AND "
    "consumed=0) THEN 'pending' ELSE 'waiting' END, "
    "owner=NULL, "
    "lease_until=NULL, wake_at=%s, wait_name=%s, steps=%s, input_tokens=%s, output_tokens=%s, "
    f"cost=%s, headers=COALESCE(%s, headers), {ACCRUE}, seg_mark=NULL WHERE id=%s AND owner=%s")
# The sessions ``owner`` runs (by its index) with an unconsumed signal of a name.
OWNED_SIGNALLED = (
    "SELECT s.id FROM sessions s WHERE s.owner=%s AND s.status='running' AND EXISTS (SELECT 1 "
    "FROM signals g WHERE g.session_id=s.id AND g.name=%s AND g.consumed=0) ORDER BY s.id")
KV_PUT = ("INSERT INTO kv(namespace,key,value) VALUES(%s,%s,%s) ON CONFLICT(namespace,key) "
          "DO UPDATE SET value=excluded.value")
KV_DELETE = "DELETE FROM kv WHERE namespace=%s AND key=%s"
TENANT_SPEND = (
    "SELECT COALESCE(SUM(j.input_tokens + j.output_tokens), 0), COALESCE(SUM(j.cost), 0) "
    "FROM journal j JOIN sessions s ON s.id = j.session_id WHERE s.tenant=%s AND "
    "j.kind='model' AND j.status='completed' AND j.at>=%s AND j.at<%s")
SESSION_SPEND = (
    "SELECT COALESCE(agent, target), SUM(input_tokens + output_tokens), SUM(cost) FROM "
    "journal WHERE session_id=%s AND kind='model' AND status='completed'{tenant} GROUP BY 1")


def tenant_cond(tenant: str | None) -> tuple[str, tuple[str, ...]]:
    """`` AND tenant=%s`` for a statement on ``sessions``, or nothing (no tenant given)."""
    return _tenant_cond(tenant, "%s")


def in_tenant(table: str, tenant: str | None) -> tuple[str, tuple[str, ...]]:
    """For a statement on ``table`` (rows with a ``session_id``): only rows of a session
    of ``tenant``, or nothing (no tenant given)."""
    return _in_tenant(table, tenant, "%s")


_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def check_schema_name(schema: str) -> str:
    """The schema name, if it is a plain identifier (it is spliced into SQL)."""
    if not _SCHEMA_NAME.fullmatch(schema):
        from convoy._errors import UserError

        raise UserError(f"invalid PostgreSQL schema name {schema!r}: use letters, digits and "
                        "underscores, starting with a letter or underscore")
    return schema


_ROLLED_BACK = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


def is_retryable(e: psycopg.Error) -> bool:
    """A deadlock or serialization failure: the transaction was rolled back whole and may
    simply run again."""
    return isinstance(e, _ROLLED_BACK)


def schema_refused(e: psycopg.Error, where: str, role: str, database: str,
                   schema: str) -> StoreError:
    """The error for a role that may not create the store's schema: what it lacks is
    CREATE on the database (the schema is not there yet to grant privileges on)."""
    msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return StoreError(f"the store {where} refused to open: {msg}; grant the role "
                      f"{quoted(role)} CREATE on database {quoted(database)}, or create the "
                      f"schema {quoted(schema)} owned by it")


#: What a failed write means for a session, when it was one's (a command that runs no
#: session, ``erase`` or ``audit seal``, is simply run again).
_SESSION_LEFT = " (if it was a session's step, the session is left unfinished: resume it then)"


def store_error(e: psycopg.Error, where: str, what: str) -> StoreError:
    """One clear line for a PostgreSQL failure: what happened where, and what to do."""
    msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if isinstance(e, _ROLLED_BACK):
        return StoreError(f"the store {where} kept rolling back a write that conflicted with "
                          f"another engine's ({msg}); try again later{_SESSION_LEFT}",
                          transient=True)
    if isinstance(e, psycopg.errors.LockNotAvailable):
        return StoreError(f"the store {where} kept a row locked by another engine; try again "
                          f"later{_SESSION_LEFT}", transient=True)
    if isinstance(e, psycopg.errors.InsufficientPrivilege):
        return StoreError(f"the store {where} refused to {what}: {msg}; grant this role the "
                          "privileges on the store's schema")
    if isinstance(e, psycopg.errors.DiskFull):
        return StoreError(f"the disk of the PostgreSQL server of {where} is full; free space "
                          "and resume", transient=True)
    if isinstance(e, psycopg.OperationalError):
        return StoreError(f"the store {where} failed to {what}: {msg}; try again once the "
                          "server is reachable" + (_SESSION_LEFT if what == "write" else ""),
                          transient=True)
    return StoreError(f"the store {where} failed to {what}: {msg}")
