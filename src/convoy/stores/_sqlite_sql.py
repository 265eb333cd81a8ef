"""The SQLite store's SQL: the schema, its migrations, statements and row converters.

Kept apart from :mod:`convoy.stores._sqlite` (the group commit and the protocol methods) so
each stays readable; nothing outside ``convoy.stores`` imports either.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from convoy._errors import NoStoreError, StoreError
from convoy.stores._addons import FOREIGN_READ
from convoy.stores._audit_sql import AUDIT_SCHEMA_VERSION
from convoy.stores._audit_sql import SQLITE_MIGRATION as SQLITE_AUDIT_MIGRATION
from convoy.stores._protocol import (
    AUDIT_CURSORS,
    DAMAGED,
    SEALED_PREFIX,
    SEALED_SINCE,
    STATUSES,
    UNFINISHED,
    SessionRow,
    StepRecord,
    sealed_outer_labels,
)
from convoy.stores._rows import RowCheck, damaged, row_name, shown

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

# Version 1 -> 2: leases, active time, waits, headers, lineage; journal columns for input
# fingerprints and spend; signals; interceptor state.
_MIGRATE_2 = """
ALTER TABLE sessions ADD COLUMN owner TEXT;
ALTER TABLE sessions ADD COLUMN lease_until REAL;
ALTER TABLE sessions ADD COLUMN active_s REAL NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN seg_mark REAL;
ALTER TABLE sessions ADD COLUMN wake_at REAL;
ALTER TABLE sessions ADD COLUMN wait_name TEXT;
ALTER TABLE sessions ADD COLUMN headers TEXT NOT NULL DEFAULT '{}';
ALTER TABLE sessions ADD COLUMN parent TEXT;
ALTER TABLE journal ADD COLUMN input_hash TEXT;
ALTER TABLE journal ADD COLUMN agent TEXT;
ALTER TABLE journal ADD COLUMN input_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE journal ADD COLUMN output_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE journal ADD COLUMN cost REAL NOT NULL DEFAULT 0;
ALTER TABLE journal ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
UPDATE journal SET
  input_tokens = COALESCE(json_extract(result, '$.in'), 0),
  output_tokens = COALESCE(json_extract(result, '$.out'), 0),
  cost = COALESCE(json_extract(result, '$.cost'), 0),
  agent = target
  WHERE kind = 'model' AND status = 'completed';

CREATE TABLE IF NOT EXISTS signals(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  session_id TEXT NOT NULL,
  name TEXT NOT NULL,
  payload TEXT NOT NULL,
  at REAL NOT NULL,
  consumed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS signals_open ON signals(session_id, name, consumed, seq);
CREATE TABLE IF NOT EXISTS kv(
  namespace TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY(namespace, key)
) WITHOUT ROWID;
"""

# Version 2 -> 3: versioned shared state (the current version of each key, every version
# with its writer, and watches that signal a waiting session when a key changes).
_MIGRATE_3 = """
CREATE TABLE IF NOT EXISTS state(
  tenant TEXT NOT NULL,
  namespace TEXT NOT NULL,
  key TEXT NOT NULL,
  version INTEGER NOT NULL,
  value TEXT NOT NULL,
  session_id TEXT,
  agent TEXT,
  step_key TEXT,
  at REAL NOT NULL,
  PRIMARY KEY(tenant, namespace, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state_history(
  tenant TEXT NOT NULL,
  namespace TEXT NOT NULL,
  key TEXT NOT NULL,
  version INTEGER NOT NULL,
  value TEXT NOT NULL,
  session_id TEXT,
  agent TEXT,
  step_key TEXT,
  at REAL NOT NULL,
  PRIMARY KEY(tenant, namespace, key, version)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS state_writer ON state_history(session_id, step_key)
  WHERE session_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS state_watch(
  tenant TEXT NOT NULL,
  namespace TEXT NOT NULL,
  key TEXT NOT NULL,
  session_id TEXT NOT NULL,
  name TEXT NOT NULL,
  after_version INTEGER NOT NULL,
  PRIMARY KEY(tenant, namespace, key, session_id, name)
) WITHOUT ROWID;
"""

# Version 3 -> 4: a tenant's sessions by status (counts, unfinished and claims scoped to a
# tenant read the index instead of every session).
_MIGRATE_4 = "CREATE INDEX IF NOT EXISTS sessions_tenant_status ON sessions(tenant, status)"

# Limits shared by engines: counts and reservations (budgets), token buckets (rate limits)
# and the response cache (version 4 -> 5).
_MIGRATE_SHARED_LIMITS = """
CREATE TABLE IF NOT EXISTS meters(
  scope TEXT NOT NULL,
  unit TEXT NOT NULL,
  used REAL NOT NULL,
  held REAL NOT NULL DEFAULT 0,
  PRIMARY KEY(scope, unit)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS holds(
  id TEXT NOT NULL,
  scope TEXT NOT NULL,
  unit TEXT NOT NULL,
  amount REAL NOT NULL,
  owner TEXT NOT NULL,
  until REAL NOT NULL,
  PRIMARY KEY(id, scope, unit)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS buckets(
  name TEXT PRIMARY KEY,
  tokens REAL NOT NULL,
  at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cache(
  tenant TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  expires REAL NOT NULL,
  PRIMARY KEY(tenant, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cache_expiry ON cache(expires);
"""


# Version 5 -> 6: ``kv`` as a rowid table. WITHOUT ROWID suits small rows only: a value past
# ~1 kB (a session's spans, a few kB) went to overflow pages of the key's B-tree, and
# storing it cost several times as much.
_MIGRATE_KV_ROWID = """
CREATE TABLE kv_rows(
  namespace TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY(namespace, key)
);
INSERT INTO kv_rows(namespace, key, value) SELECT namespace, key, value FROM kv;
DROP TABLE kv;
ALTER TABLE kv_rows RENAME TO kv
"""


# Version 7 -> 8: a tenant's sessions by creation, not by status. An index on status is
# rewritten whenever a session's status changes (at least twice per session); one on
# (tenant, created) is written once, when the session is created, and serves listings in
# order. Status queries scoped to a tenant read the status index and filter.
_MIGRATE_8 = """
DROP INDEX IF EXISTS sessions_tenant_status;
CREATE INDEX IF NOT EXISTS sessions_tenant ON sessions(tenant, created, id)
"""


# Version 8 -> 9: a session's audit cursor in its own row, not in ``kv``. A seal moves the
# cursors of the sessions that just ended: their rows sit together at the end of the
# table, written by those runs a moment before, where a ``kv`` row each went to a random
# place of an index that grew by one row a session, for good (the store's reads and writes
# per seal, and the pages its checkpoints copy, grew with it).
_MIGRATE_9 = f"""
ALTER TABLE sessions ADD COLUMN audit_cursor TEXT;
UPDATE sessions SET audit_cursor=(SELECT value FROM kv WHERE namespace='{AUDIT_CURSORS}'
  AND key=sessions.id) WHERE id IN (SELECT key FROM kv WHERE namespace='{AUDIT_CURSORS}');
DELETE FROM kv WHERE namespace='{AUDIT_CURSORS}' AND key IN (SELECT id FROM sessions)
"""


#: Schema migrations, in order: (the version a step brings the schema to, its script).
_MIGRATIONS = ((2, _MIGRATE_2), (3, _MIGRATE_3), (4, _MIGRATE_4), (5, _MIGRATE_SHARED_LIMITS),
               (6, _MIGRATE_KV_ROWID),
               (AUDIT_SCHEMA_VERSION, SQLITE_AUDIT_MIGRATION), (8, _MIGRATE_8),
               (9, _MIGRATE_9))

_SESSION_COLS = ("id,workflow,version,tenant,status,input,output,error,created,started,"
                 "finished,steps,input_tokens,output_tokens,cost,owner,lease_until,active_s,"
                 "wake_at,wait_name,headers,parent,subject")


def session_listing(cond: str, order: str, journal_steps: bool, *, mark: str = "?",
                    greatest: str = "MAX") -> str:
    """The query of a page of sessions (``cond``: its ``WHERE``, ``order``: its ``ORDER
    BY``; a limit and an offset its last parameters). With ``journal_steps``
    (:attr:`SessionFilter.journal_steps`) an unfinished session's ``steps`` is at least
    the records its journal holds, and its tokens and cost at least what its journaled
    steps spent (a run writes them when it ends): counted on the journal's key, for the
    page's rows only
    (the page is taken first: a sort or an offset would count every row it passes).
    ``mark``: the driver's parameter placeholder, ``greatest``: the SQL function of the
    larger of two values (PostgreSQL's are ``%s`` and ``GREATEST``)."""
    page = f"SELECT {_SESSION_COLS} FROM sessions{cond}{order} LIMIT {mark} OFFSET {mark}"
    if not journal_steps:
        return page
    unfinished = ",".join(f"'{s}'" for s in UNFINISHED)

    def at_least(col: str, of_journal: str) -> str:
        return (f"CASE WHEN status IN ({unfinished}) THEN {greatest}({col}, (SELECT "
                f"{of_journal} FROM journal j WHERE j.session_id=sessions.id)) ELSE {col} END")

    cols = _SESSION_COLS.replace(
        ",steps,input_tokens,output_tokens,cost,",
        f",{at_least('steps', 'COUNT(*)')},"
        f"{at_least('input_tokens', 'CAST(COALESCE(SUM(j.input_tokens), 0) AS BIGINT)')},"
        f"{at_least('output_tokens', 'CAST(COALESCE(SUM(j.output_tokens), 0) AS BIGINT)')},"
        f"{at_least('cost', 'COALESCE(SUM(j.cost), 0)')},")
    return f"SELECT {cols} FROM ({page}) sessions{order}"


_JOURNAL_COLS = "key,kind,target,status,result,input_hash,agent,input_tokens,output_tokens," \
                "cost,at,config,began"

_APPEND = (
    "INSERT INTO journal(session_id,key,kind,target,status,result,input_hash,agent,"
    "input_tokens,output_tokens,cost,at,seq,config,began) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT(session_id,key) DO UPDATE SET status=excluded.status, result=excluded.result,"
    " input_hash=excluded.input_hash, input_tokens=excluded.input_tokens, "
    "output_tokens=excluded.output_tokens, cost=excluded.cost, at=excluded.at, "
    "config=excluded.config, began=excluded.began")
# Fenced: the row lands only while ``owner`` owns the session.
_APPEND_FENCED = (
    "INSERT INTO journal(session_id,key,kind,target,status,result,input_hash,agent,"
    "input_tokens,output_tokens,cost,at,seq,config,began) SELECT ?,?,?,?,?,?,?,?,?,?,?,?,?,?,? "
    "WHERE EXISTS (SELECT 1 FROM sessions WHERE id=? AND owner=?) "
    "ON CONFLICT(session_id,key) DO UPDATE SET status=excluded.status, result=excluded.result,"
    " input_hash=excluded.input_hash, input_tokens=excluded.input_tokens, "
    "output_tokens=excluded.output_tokens, cost=excluded.cost, at=excluded.at, "
    "config=excluded.config, began=excluded.began")
# Stored only for a session that exists (of the tenant, when one is given: `` AND tenant=?``).
_SIGNAL = ("INSERT INTO signals(session_id,name,payload,at) SELECT ?,?,?,? WHERE EXISTS "
           "(SELECT 1 FROM sessions WHERE id=?{tenant})")
# The beginnings of a session's sealed journal records (a result starting SEALED_PREFIX:
# enough of it for the label of its outermost layer).
_SEALED_RECORDS = ("SELECT DISTINCT substr(result, 1, 240) FROM journal WHERE session_id=? "
                   "AND substr(result, 1, ?)=?")
# (``wait_name``: one name, or several joined by WAIT_NAMES_SEP, char(31).)
_WAKE = ("UPDATE sessions SET status='pending', wake_at=NULL, wait_name=NULL WHERE id=? AND "
         "status='waiting' AND instr(char(31) || wait_name || char(31), "
         "char(31) || ? || char(31)) > 0")
# Whether a signal already sent (its ``name``) is one a wait's ``wait_name`` (the parameter,
# as ``_WAKE`` reads it) waits for, or a cancel request (the second parameter).
AWAITED_OR_CANCEL = ("(instr(char(31) || ? || char(31), char(31) || name || char(31)) > 0 "
                     "OR name=?)")
# The sessions ``owner`` runs that have an unconsumed signal of a name (cancel requests).
_OWNED_SIGNALLED = (
    "SELECT id FROM sessions WHERE status='running' AND owner=? AND EXISTS (SELECT 1 FROM "
    "signals WHERE signals.session_id=sessions.id AND signals.name=? AND consumed=0) "
    "ORDER BY id")
_CONSUME = "UPDATE signals SET consumed=1 WHERE seq=? AND session_id=?"
_INSERT_SESSION = (
    "INSERT OR IGNORE INTO sessions(id,workflow,version,tenant,status,input,created,started,"
    "owner,lease_until,seg_mark,headers,parent,subject) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
_ACCRUE = "active_s = active_s + MAX(0, ? - COALESCE(seg_mark, ?))"
_FINISH = (
    "UPDATE sessions SET status=?, output=?, error=?, finished=?, steps=?, input_tokens=?, "
    "output_tokens=?, cost=?, headers=COALESCE(?, headers), owner=NULL, lease_until=NULL, "
    f"wake_at=NULL, wait_name=NULL, seg_mark=NULL, {_ACCRUE} WHERE id=? AND owner IS ?")
# The same, also fenced on the session's tenant (a session of another tenant is refused).
_FINISH_TENANT = f"{_FINISH} AND tenant=?"
# A claimed session whose row does not read back, escalated (``claimed_rows``): only its
# status, error and end; the damaged value is left for a person to repair.
_ESCALATE_UNREADABLE = (
    "UPDATE sessions SET status='escalated', error=?, finished=?, owner=NULL, "
    "lease_until=NULL, wake_at=NULL, wait_name=NULL, seg_mark=NULL WHERE id=? AND owner=?")
_RUNNABLE = (
    "(status='pending' OR (status='running' AND (owner IS NULL OR owner=? OR lease_until<?))"
    " OR (status='waiting' AND wake_at IS NOT NULL AND wake_at<=?))")
# claim_runnable: not the caller's own running sessions (it is running them).
_RUNNABLE_OTHERS = (
    "(status='pending' OR (status='running' AND (owner IS NULL OR (owner<>? AND "
    "lease_until<?))) OR (status='waiting' AND wake_at IS NOT NULL AND wake_at<=?))")
_CLAIM_SET = ("SET owner=?, lease_until=?, status='running', started=COALESCE(started, ?), "
              "seg_mark=?, wake_at=NULL, wait_name=NULL")


def _send_signal(conn: sqlite3.Connection, session_id: str, name: str, payload: str,
                 now: float, tenant: str | None = None,
                 sealed_labels: Collection[str] | None = None) -> int:
    """Store a signal and wake its session if it waits for it (in the caller's
    transaction); the signal's seq, or 0 (nothing stored) if there is no such session (of
    ``tenant``), or SEALED_SINCE (nothing stored) if a sealed journal record of the
    session names a key not in ``sealed_labels`` (see Store.send_signal)."""
    cond, tparams = _tenant_cond(tenant)
    if sealed_labels is not None and not sealed_outer_labels(r[0] for r in conn.execute(
            _SEALED_RECORDS, (session_id, len(SEALED_PREFIX), SEALED_PREFIX))
    ).issubset(sealed_labels):
        exists = conn.execute(f"SELECT 1 FROM sessions WHERE id=?{cond}",
                              (session_id, *tparams)).fetchone()
        return SEALED_SINCE if exists else 0
    cur = conn.execute(_SIGNAL.format(tenant=cond),
                       (session_id, name, payload, now, session_id, *tparams))
    if cur.rowcount == 0:
        return 0
    conn.execute(_WAKE, (session_id, name))
    return int(cur.lastrowid or 0)


def _append_params(session_id: str, r: StepRecord, now: float, seq: int) -> tuple[Any, ...]:
    return (session_id, r.key, r.kind, r.target, r.status, r.result, r.input_hash, r.agent,
            r.input_tokens, r.output_tokens, r.cost, r.at or now, seq, r.config, r.began or None)


def _tenant_cond(tenant: str | None, mark: str = "?") -> tuple[str, tuple[str, ...]]:
    """`` AND tenant=?`` for a statement on ``sessions``, or nothing (no tenant given).
    ``mark``: the driver's parameter placeholder (PostgreSQL's is ``%s``)."""
    return ("", ()) if tenant is None else (f" AND tenant={mark}", (tenant,))


def _in_tenant(table: str, tenant: str | None, mark: str = "?") -> tuple[str, tuple[str, ...]]:
    """For a statement on ``table`` (rows with a ``session_id``): only rows of a session
    of ``tenant``, or nothing (no tenant given)."""
    if tenant is None:
        return "", ()
    return (f" AND EXISTS (SELECT 1 FROM sessions s WHERE s.id={table}.session_id AND "
            f"s.tenant={mark})", (tenant,))


def _columns(cols: str, *names: str) -> tuple[tuple[int, str], ...]:
    at = cols.split(",")
    return tuple((at.index(n), n) for n in names)


#: The columns of a session row and of a journal row by what they must hold when read.
_SESSION_CHECKS = RowCheck(
    _columns(_SESSION_COLS, "created", "started", "finished", "cost", "lease_until",
             "active_s", "wake_at"),
    _columns(_SESSION_COLS, "steps", "input_tokens", "output_tokens"),
    _columns(_SESSION_COLS, "id", "workflow", "version", "tenant", "status", "input",
             "output", "error", "owner", "wait_name", "headers", "parent", "subject"))
_JOURNAL_CHECKS = RowCheck(
    _columns(_JOURNAL_COLS, "cost", "at", "began"), _columns(_JOURNAL_COLS, "input_tokens",
                                                    "output_tokens"),
    _columns(_JOURNAL_COLS, "key", "kind", "target", "status", "result", "input_hash",
             "agent", "config"))


def _session(r: Sequence[Any]) -> SessionRow:
    _SESSION_CHECKS(r, lambda: f"session {row_name(r[0])}")
    if r[4] not in _STATUSES:  # (edited: Convoy writes no other)
        raise damaged(f"session {row_name(r[0])}", f"its stored status {shown(r[4])} is "
                      f"not a session status ({', '.join(STATUSES)})")
    return SessionRow(id=r[0], workflow=r[1], version=r[2], tenant=r[3], status=r[4],
                      input=r[5], output=r[6], error=r[7], created=r[8], started=r[9],
                      finished=r[10], steps=r[11], input_tokens=r[12], output_tokens=r[13],
                      cost=r[14], owner=r[15], lease_until=r[16], active_s=r[17] or 0.0,
                      wake_at=r[18], wait_name=r[19], headers=r[20] or "{}", parent=r[21],
                      subject=r[22])


_STATUSES = frozenset(STATUSES)


def by_status(rows: Iterable[Sequence[Any]]) -> dict[tuple[str, ...], int]:
    """Sessions by ``(*lead, status)`` from ``(*lead, status, count)`` rows (``lead``: a
    tenant, or nothing); one whose stored status is none Convoy writes counts as
    :data:`DAMAGED`, as listings leave it out."""
    counts: dict[tuple[str, ...], int] = {}
    for *lead, status, n in rows:
        key = (*lead, status if status in _STATUSES else DAMAGED)
        counts[key] = counts.get(key, 0) + int(n)
    return counts


def _record(r: Sequence[Any], session_id: str) -> StepRecord:
    _JOURNAL_CHECKS(r, lambda: f"session {row_name(session_id)} step {row_name(r[0])}")
    return StepRecord(key=r[0], kind=r[1], target=r[2], status=r[3], result=r[4],
                      input_hash=r[5], agent=r[6], input_tokens=r[7], output_tokens=r[8],
                      cost=r[9], at=r[10], config=r[11], began=r[12] or 0.0)


def _is_busy(e: sqlite3.OperationalError) -> bool:
    msg = str(e).lower()
    return "locked" in msg or "busy" in msg


def _foreign_tables(conn: sqlite3.Connection) -> list[str]:
    """The tables (and views) of a database that holds no Convoy store: another
    application's; none in an empty one."""
    return [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY name")]


def _foreign_mark(conn: sqlite3.Connection) -> str | None:
    """The pragma that marks a database without tables as another application's (its
    ``user_version`` or ``application_id`` set: Convoy sets neither), ``None`` if none."""
    for pragma in ("user_version", "application_id"):
        if conn.execute(f"PRAGMA {pragma}").fetchone()[0]:
            return pragma
    return None


def _foreign(path: Path, tables: list[str], mark: str | None = None, *,
             read_only: bool = False) -> NoStoreError:
    """Why the database at ``path``, which holds ``tables`` (or none, but the pragma
    ``mark`` set) but no Convoy store, is refused: as a store to create, or (``read_only``)
    to read."""
    names = ", ".join(repr(t) for t in tables[:3])  # (repr: escaped, on one line)
    more = f" and {len(tables) - 3:,} more" if len(tables) > 3 else ""
    what = f"it has tables of its own: {names}{more}" if tables else \
        f"it has no tables, but PRAGMA {mark} says another application made it"
    return NoStoreError(
        f"{str(path)!r} is a SQLite database that holds no Convoy store ({what}): "
        + (FOREIGN_READ if read_only else "Convoy does not add its tables to another "
           "application's database; pass a new file (or an existing Convoy store) as the "
           "store"))



def _store_error(e: sqlite3.Error, path: Path, what: str) -> StoreError:
    """One clear line for a SQLite failure: what happened to which file, and what to do."""
    msg = str(e).lower()
    where = str(path)
    if isinstance(e, sqlite3.OperationalError) and _is_busy(e) and what != "write":
        # (a read waits only on a lock that keeps readers out: another process's
        # exclusive locking mode, a schema change, a restore)
        return StoreError(f"the store {where!r} stayed locked by another process past the "
                          f"busy timeout: nothing was {'read' if what == 'read' else 'opened'}"
                          "; try again once that process is done with it", transient=True)
    if isinstance(e, sqlite3.OperationalError) and _is_busy(e):
        return StoreError(f"the store {where!r} stayed locked by another process past the "
                          "busy timeout (--busy-timeout): this write was not made; try again "
                          "(if it was a session's step, the session is left unfinished: "
                          "resume it later)",
                          transient=True)
    if "readonly" in msg or "read-only" in msg:
        return StoreError(f"the store {where!r} is read-only; give this process write "
                          "access to the file and its directory")
    if "disk is full" in msg or "disk full" in msg:
        return StoreError(f"the disk holding the store {where!r} is full; free space and "
                          "resume", transient=True)
    if "unable to open" in msg:
        return StoreError(f"cannot open the store {where!r}: check that its directory "
                          "exists and is writable")
    if isinstance(e, sqlite3.DatabaseError) and ("not a database" in msg or "malformed" in msg):
        if "not a database" in msg:
            return NoStoreError(f"{where!r} is not a usable Convoy store: {e}: check the "
                                "path: it must name a SQLite file a Convoy engine wrote, "
                                "or be a postgresql:// URL")
        return StoreError(f"{where!r} is not a usable Convoy store: {e}: the file is "
                          "damaged; restore it from a backup")
    return StoreError(f"the store {where!r} failed to {what}: {e}")
