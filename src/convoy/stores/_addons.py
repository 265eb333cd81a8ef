"""Schema add-ons: tables and columns a feature adds, each versioned on its own.

The core schema has one version (:data:`~convoy.stores._protocol.SCHEMA_VERSION`). An add-on
is applied once per database and recorded in ``meta`` as ``addon:<name>`` = its version,
independently of that number, so features developed side by side never compete for the
next schema version. Each add-on has the same tables on SQLite and PostgreSQL; only the
dialect differs. A database that has every add-on at its version is only read.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from convoy.stores._subjects_sql import subject_tables


@dataclass(frozen=True, slots=True)
class Addon:
    """One add-on: ``name``, ``version`` and the statements that bring a database from the
    previous version to it (``;``-separated), per dialect."""

    name: str
    version: int
    sqlite: str
    postgres: str

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

#: Every add-on, in the order they are applied.
ADDONS: tuple[Addon, ...] = (
    # The configuration of the agent that took each step (Agent.config_id).
    Addon("agent_config", 1, "ALTER TABLE journal ADD COLUMN config TEXT",
          "ALTER TABLE journal ADD COLUMN IF NOT EXISTS config TEXT"),
    # Baseline alerts and their webhook deliveries (convoy.alerts).
    Addon("alerts", 1, _ALERTS_SQLITE, _ALERTS_POSTGRES),
    # Data subjects: a session's subject, wrapped subject keys, recorded erasures
    # (convoy.privacy).
    Addon("subjects", 1,
          subject_tables(real="REAL", serial="INTEGER PRIMARY KEY AUTOINCREMENT"),
          subject_tables(real="DOUBLE PRECISION",
                         serial="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")),
)


def split_script(script: str) -> list[str]:
    """The statements of a script, in order."""
    return [s for s in (p.strip() for p in script.split(";")) if s]


def _pending(done: dict[str, str]) -> list[Addon]:
    return [a for a in ADDONS if int(done.get(a.meta_key, 0)) < a.version]


def apply_sqlite_addons(conn: sqlite3.Connection) -> None:
    """Apply the add-ons a SQLite store lacks, in one transaction (nothing is written when
    none is missing, so a read-only file can still be inspected)."""
    select = "SELECT key, value FROM meta WHERE key LIKE 'addon:%'"
    if not _pending(dict(conn.execute(select))):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for addon in _pending(dict(conn.execute(select))):  # another process may have
            for stmt in split_script(addon.sqlite):
                conn.execute(stmt)
            conn.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)",
                         (addon.meta_key, str(addon.version)))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
