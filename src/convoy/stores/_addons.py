"""Schema add-ons: tables and columns a feature adds, each versioned on its own.

The core schema has one version (:data:`~convoy.stores._protocol.SCHEMA_VERSION`). An add-on
is applied once per database and recorded in ``meta`` as ``addon:<name>`` = its version,
independently of that number, so features developed side by side never compete for the
next schema version. Each add-on has the same tables on SQLite and PostgreSQL; only the
dialect differs. A database that has every add-on at its version is only read.

A store opened read-only (``read_only=True``) applies nothing: for each add-on the database
lacks it creates temporary stand-ins on its own connection (:func:`stand_ins`), empty
tables under the add-on's table names and views that give the columns it adds as NULL, so
the reads of that feature find nothing there instead of failing.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass

from convoy._command import command
from convoy._errors import JournalError, NoStoreError
from convoy.stores._postgres_stats import NO_STATISTICS
from convoy.stores._protocol import AUDIT_CURSORS
from convoy.stores._rows import meta_version
from convoy.stores._subjects_sql import subject_tables


@dataclass(frozen=True, slots=True)
class Addon:
    """One add-on: ``name``, ``version`` and the statements that bring a database from the
    previous version to it (``;``-separated), per dialect."""

    name: str
    version: int
    sqlite: str
    postgres: str
    #: The columns it adds to tables of the core schema or of an earlier add-on, as
    #: ``(table, column)`` (a read-only store lacking the add-on reads them as NULL).
    text_columns: tuple[tuple[str, str], ...] = ()

    @property
    def meta_key(self) -> str:
        return f"addon:{self.name}"


_ALERTS_SQLITE = """
CREATE TABLE IF NOT EXISTS alerts(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant TEXT NOT NULL,
  scope TEXT NOT NULL,
  subject TEXT NOT NULL,
  metric TEXT NOT NULL,
  status TEXT NOT NULL,
  value REAL NOT NULL,
  mean REAL NOT NULL,
  deviation REAL NOT NULL,
  threshold REAL NOT NULL,
  opened REAL NOT NULL,
  cleared REAL,
  cleared_value REAL,
  detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS alerts_tenant ON alerts(tenant, status, id);
CREATE TABLE IF NOT EXISTS alert_outbox(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  alert_id INTEGER NOT NULL,
  url TEXT NOT NULL,
  event TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_at REAL,
  delivered REAL,
  last_error TEXT
);
CREATE INDEX IF NOT EXISTS alert_outbox_due ON alert_outbox(next_at)
  WHERE delivered IS NULL AND next_at IS NOT NULL
"""

_ALERTS_POSTGRES = """
CREATE TABLE IF NOT EXISTS alerts(
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant TEXT NOT NULL,
  scope TEXT NOT NULL,
  subject TEXT NOT NULL,
  metric TEXT NOT NULL,
  status TEXT NOT NULL,
  value DOUBLE PRECISION NOT NULL,
  mean DOUBLE PRECISION NOT NULL,
  deviation DOUBLE PRECISION NOT NULL,
  threshold DOUBLE PRECISION NOT NULL,
  opened DOUBLE PRECISION NOT NULL,
  cleared DOUBLE PRECISION,
  cleared_value DOUBLE PRECISION,
  detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS alerts_tenant ON alerts(tenant, status, id);
CREATE TABLE IF NOT EXISTS alert_outbox(
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  alert_id BIGINT NOT NULL,
  url TEXT NOT NULL,
  event TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_at DOUBLE PRECISION,
  delivered DOUBLE PRECISION,
  last_error TEXT
);
CREATE INDEX IF NOT EXISTS alert_outbox_due ON alert_outbox(next_at)
  WHERE delivered IS NULL AND next_at IS NOT NULL
"""

#: An open alert of a series that has an older one open (``{a}``: the alert's table alias).
_DUPLICATE = ("{a}.status='open' AND EXISTS (SELECT 1 FROM alerts k WHERE k.status='open' AND "
              "k.tenant={a}.tenant AND k.scope={a}.scope AND k.subject={a}.subject AND "
              "k.metric={a}.metric AND k.id<{a}.id)")
#: The oldest open alert of the series of the alert ``alerts``: the one kept open.
_KEPT = ("(SELECT MIN(k.id) FROM alerts k WHERE k.status='open' AND k.tenant=alerts.tenant "
         "AND k.scope=alerts.scope AND k.subject=alerts.subject AND k.metric=alerts.metric)")
#: The ``cleared`` event of each duplicate, for each webhook its ``fired`` one was queued
#: for, due at once; its key is its fired event's, for ``cleared`` (as random, as unique).
_DUPLICATES_CLEARED = (
    "INSERT INTO alert_outbox(alert_id,url,event,next_at,idem_key) SELECT DISTINCT "
    "o.alert_id, o.url, 'cleared', a.opened, replace(o.idem_key, '-fired', '-cleared') "
    "FROM alert_outbox o JOIN alerts a ON a.id=o.alert_id WHERE o.event='fired' AND "
    + _DUPLICATE.format(a="a"))
#: Where an add-on's statement has the time it is applied (the store's clock, seconds since
#: the epoch): :func:`addon_statements` writes it there. (A named parameter's form, so one
#: left unreplaced fails instead of being read as something else.)
MIGRATED_AT = ":migrated_at"
_OPEN_ONCE_INDEX = ("CREATE UNIQUE INDEX IF NOT EXISTS alerts_open_series "
                    "ON alerts(tenant, scope, subject, metric) WHERE status='open'")
# One open alert per series. Before an alert was opened atomically, engines sharing a store
# could each open one of a series: the oldest is kept open, the others are closed (cleared
# at the migration's time with no value, ``duplicate_of`` added to a detail that is a JSON
# object) and their cleared events queued, so the unique index can be made.
_OPEN_ONCE_SQLITE = f"""
{_DUPLICATES_CLEARED};
UPDATE alerts SET status='cleared', cleared={MIGRATED_AT}, detail=CASE WHEN json_valid(detail) THEN
  CASE WHEN json_type(detail)='object' THEN json_set(detail, '$.duplicate_of', {_KEPT})
  ELSE detail END ELSE detail END
  WHERE {_DUPLICATE.format(a="alerts")};
{_OPEN_ONCE_INDEX}
"""
# (PostgreSQL 15 has no json_valid: a detail that is not JSON is told by a failed cast,
# caught in an anonymous block, which needs no privilege a temporary function would: a
# hardened database revokes TEMP from PUBLIC.)
_OPEN_ONCE_POSTGRES = f"""
{_DUPLICATES_CLEARED};
DO $$
DECLARE r RECORD; d JSONB;
BEGIN
  FOR r IN SELECT id, detail, {_KEPT} AS kept FROM alerts
           WHERE {_DUPLICATE.format(a="alerts")} LOOP
    BEGIN
      d := r.detail::jsonb;
    EXCEPTION WHEN others THEN
      d := NULL;
    END;
    UPDATE alerts SET status='cleared', cleared={MIGRATED_AT},
      detail=CASE WHEN jsonb_typeof(d)='object' THEN
      (d || jsonb_build_object('duplicate_of', r.kept))::text ELSE detail END
      WHERE id=r.id;
  END LOOP;
END $$;
{_OPEN_ONCE_INDEX}
"""

_OUTBOX_ORDER = ("CREATE INDEX IF NOT EXISTS alert_outbox_order ON alert_outbox(alert_id, url, "
                 "id) WHERE delivered IS NULL AND next_at IS NOT NULL")

_LEGACY_KEYS = ("UPDATE alert_outbox SET idem_key='convoy-alert-' || alert_id || '-' || event "
                "WHERE idem_key IS NULL")

# A session created under the id of one purged before starts with no audit cursor: the one
# its purge kept (a tombstone, see Store.purge) is an earlier session's, whose time may be
# ahead of the new session's records (another engine's clock). A session's row inserted,
# not one found there (``ON CONFLICT DO NOTHING``), clears it. PostgreSQL's function keeps
# the store's schema as its search_path (the inserting connection's may name another
# store's, or none). Add-ons are applied after the core migrations: a later migration
# that rebuilds ``kv`` (create, drop, rename) must drop this trigger first and create it
# again (SQLite checks a trigger's tables as a table is renamed).
_CURSOR_RESET_SQLITE = f"""
CREATE TRIGGER IF NOT EXISTS sessions_audit_cursor_reset AFTER INSERT ON sessions
BEGIN DELETE FROM kv WHERE namespace='{AUDIT_CURSORS}' AND key=NEW.id; END
"""
_CURSOR_RESET_POSTGRES = f"""
CREATE OR REPLACE FUNCTION convoy_audit_cursor_reset() RETURNS trigger LANGUAGE plpgsql
  SET search_path FROM CURRENT AS $$
BEGIN
  DELETE FROM kv WHERE namespace = '{AUDIT_CURSORS}' AND key = NEW.id;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS sessions_audit_cursor_reset ON sessions;
CREATE TRIGGER sessions_audit_cursor_reset AFTER INSERT ON sessions FOR EACH ROW
  EXECUTE FUNCTION convoy_audit_cursor_reset()
"""

#: Every add-on, in the order they are applied.
ADDONS: tuple[Addon, ...] = (
    # The configuration of the agent that took each step (Agent.config_id).
    Addon("agent_config", 1, "ALTER TABLE journal ADD COLUMN config TEXT",
          "ALTER TABLE journal ADD COLUMN IF NOT EXISTS config TEXT",
          text_columns=(("journal", "config"),)),
    # Baseline alerts and their webhook deliveries (convoy.alerts).
    Addon("alerts", 1, _ALERTS_SQLITE, _ALERTS_POSTGRES),
    # Data subjects: a session's subject, wrapped subject keys, recorded erasures
    # (convoy.privacy).
    Addon("subjects", 1,
          subject_tables(real="REAL", serial="INTEGER PRIMARY KEY AUTOINCREMENT"),
          subject_tables(real="DOUBLE PRECISION",
                         serial="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
          text_columns=(("sessions", "subject"),)),
    # When each step began (StepRecord.began): its span is derived from its record.
    Addon("step_began", 1, "ALTER TABLE journal ADD COLUMN began REAL",
          "ALTER TABLE journal ADD COLUMN IF NOT EXISTS began DOUBLE PRECISION",
          text_columns=(("journal", "began"),)),
    # Each webhook event's idempotency key, random (alert ids are the store's own); an
    # event queued before keeps the key its earlier attempts were sent with.
    Addon("alert_keys", 1,
          f"ALTER TABLE alert_outbox ADD COLUMN idem_key TEXT; {_LEGACY_KEYS}",
          f"ALTER TABLE alert_outbox ADD COLUMN IF NOT EXISTS idem_key TEXT; {_LEGACY_KEYS}",
          text_columns=(("alert_outbox", "idem_key"),)),
    # One open alert per series (a unique index), duplicates an older Convoy let in closed.
    Addon("alerts_open_once", 1, _OPEN_ONCE_SQLITE, _OPEN_ONCE_POSTGRES),
    # A webhook claim finds an event's earlier pending events (of its alert, for its URL)
    # by this index (of pending events only, as the claim's condition), not by a scan of
    # the outbox per due event (convoy.stores._alert_rows.IN_ORDER).
    Addon("alert_outbox_order", 1, _OUTBOX_ORDER, _OUTBOX_ORDER),
    # No planner statistics on the columns that hold payloads or a subject's id, which
    # ANALYZE would copy into pg_statistic (convoy.stores._postgres_stats). Nothing to do
    # on SQLite: Convoy never runs its ANALYZE, whose sqlite_stat1 holds counts only.
    Addon("private_statistics", 1, "", NO_STATISTICS),
    # A new session under a purged session's id: no cursor of the earlier one's.
    Addon("audit_cursor_reset", 1, _CURSOR_RESET_SQLITE, _CURSOR_RESET_POSTGRES),
    # The highest version of a shared-state key a purge deleted whole, per tenant: a key
    # created after it starts past it (a write never gives a number twice).
    Addon("state_floor", 1,
          "CREATE TABLE IF NOT EXISTS state_floor(tenant TEXT PRIMARY KEY, "
          "version INTEGER NOT NULL)",
          "CREATE TABLE IF NOT EXISTS state_floor(tenant TEXT PRIMARY KEY, "
          "version BIGINT NOT NULL)"),
    # The shared-state keys whose creating version a retention purge deleted, others'
    # versions left: no session created them (an erasure of the writer of the oldest
    # version left deletes its own versions, not the key), until they are deleted whole.
    Addon("state_orphans", 1,
          "CREATE TABLE IF NOT EXISTS state_orphans(tenant TEXT NOT NULL, namespace TEXT NOT "
          "NULL, key TEXT NOT NULL, PRIMARY KEY(tenant, namespace, key)) WITHOUT ROWID",
          "CREATE TABLE IF NOT EXISTS state_orphans(tenant TEXT NOT NULL, namespace TEXT NOT "
          "NULL, key TEXT NOT NULL, PRIMARY KEY(tenant, namespace, key))"),
)


def split_script(script: str) -> list[str]:
    """The statements of a script, in order (a ``$$``-quoted body, a SQLite trigger's
    body, is kept whole)."""
    statements, current = [], ""
    for i, part in enumerate(_DOLLAR_QUOTED.split(script)):
        if i % 2:  # (a function's body: its semicolons end none of the script's statements)
            current += part
            continue
        first, *rest = part.split(";")
        current += first
        for piece in rest:
            statements.append(current)
            current = piece
    statements.append(current)
    return [s for s in (p.strip() for p in statements) if s]


#: What :func:`split_script` keeps whole: a ``$$``-quoted body (PostgreSQL's), a SQLite
#: trigger's ``BEGIN ... END`` (up to the first ``END``: a trigger whose body holds a
#: ``CASE ... END`` is not one this reads).
_DOLLAR_QUOTED = re.compile(r"(\$\$.*?\$\$|CREATE TRIGGER\b[^;]*?\bBEGIN\b.*?\bEND\b)",
                            re.DOTALL)


def addon_statements(script: str, now: float) -> list[str]:
    """The statements of an add-on's ``script`` (:func:`split_script`), applied at ``now``
    (written where :data:`MIGRATED_AT` stands)."""
    at = repr(float(now))
    return [stmt.replace(MIGRATED_AT, at) for stmt in split_script(script)]


def _pending(done: dict[str, str]) -> list[Addon]:
    return [a for a in ADDONS if meta_version(a.meta_key, done.get(a.meta_key, 0)) < a.version]


#: How a store opened read-only refuses a database that holds no Convoy store but another
#: application's data (a new file, which a writer would take, has nothing to read).
FOREIGN_READ = ("nothing to read there, and it is left as it is; pass the Convoy store to "
                "read (on the command line: --db PATH, or $CONVOY_DB)")
#: :data:`FOREIGN_READ` of a PostgreSQL schema.
FOREIGN_SCHEMA_READ = ("nothing to read there, and it is left as it is; name the schema of "
                       "the Convoy store to read (?schema=NAME, default 'convoy')")


def check_readable(version: int | None, reads: int, where: str) -> None:
    """Refuse to read a database that holds no store (``version`` None) or an older schema
    than the version this Convoy ``reads``, in one line naming ``where`` and how to
    migrate it. (A newer one is refused by the store itself.)"""
    migrate = command("db migrate", db=where)
    if version is None:
        raise NoStoreError(f"no Convoy store at {where}: {migrate} creates one ('convoy "
                         "run' too)")
    if version < reads:
        raise JournalError(f"the store {where} is at store schema {version}; this Convoy "
                           f"reads {reads}: run {migrate} (engines migrate it when they "
                           "open it too)")


def missing_addons(done: Mapping[str, str | int], where: str) -> tuple[Addon, ...]:
    """The add-ons a database lacks, given its ``addon:*`` meta rows. One that it holds at
    an older version of its own cannot be stood in for: a :class:`~convoy.JournalError`
    that says to migrate ``where``."""
    missing = []
    for a in ADDONS:
        have = meta_version(a.meta_key, done.get(a.meta_key, 0))
        if have >= a.version:
            continue
        if have:
            raise JournalError(f"the store {where} has add-on {a.name!r} at version {have}; "
                               f"this Convoy reads version {a.version}: run "
                               f"{command('db migrate', db=where)} (engines migrate it when "
                               "they open it too)")
        missing.append(a)
    return tuple(missing)


_CREATE_TABLE = re.compile(r"^CREATE TABLE (IF NOT EXISTS )?", re.IGNORECASE)


def stand_ins(missing: tuple[Addon, ...], *, postgres: bool, schema: str) -> list[str]:
    """Statements that create, on one connection, temporary stand-ins for the ``missing``
    add-ons: their tables (empty) and views of the core tables they add columns to, with
    those columns NULL (a table stood in for gets them as columns of its own; in
    PostgreSQL's dialect if ``postgres``). ``schema`` names where the
    real tables live (``main`` on SQLite, the quoted store schema on PostgreSQL).
    Both databases look a name up among temporary objects before the real tables."""
    out: list[str] = []
    added: dict[str, list[str]] = {}
    stood_in: set[str] = set()
    for addon in missing:
        for stmt in split_script(addon.postgres if postgres else addon.sqlite):
            if _CREATE_TABLE.match(stmt):
                out.append(_CREATE_TABLE.sub("CREATE TEMPORARY TABLE ", stmt, count=1))
                stood_in.add(_CREATE_TABLE.sub("", stmt, count=1).split("(", 1)[0].strip())
        for table, column in addon.text_columns:
            if table in stood_in:  # a table stood in for already: it gets the column
                out.append(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
            else:
                added.setdefault(table, []).append(column)
    for table, columns in added.items():
        nulls = ", ".join(f"CAST(NULL AS TEXT) AS {c}" for c in columns)
        out.append(f"CREATE TEMPORARY VIEW {table} AS SELECT *, {nulls} FROM {schema}.{table}")
    return out


def apply_sqlite_addons(conn: sqlite3.Connection, now: float) -> None:
    """Apply the add-ons a SQLite store lacks, in one transaction, at ``now`` (the store's
    time; nothing is written when none is missing, so a read-only file can still be
    inspected)."""
    select = "SELECT key, value FROM meta WHERE key LIKE 'addon:%'"
    if not _pending(dict(conn.execute(select))):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for addon in _pending(dict(conn.execute(select))):  # another process may have
            for stmt in addon_statements(addon.sqlite, now):
                conn.execute(stmt)
            conn.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)",
                         (addon.meta_key, str(addon.version)))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # (SQLite rolled back itself: a full disk, for one)
            conn.execute("ROLLBACK")
        raise
