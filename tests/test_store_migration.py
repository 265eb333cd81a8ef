"""A store written by Convoy 0.1 (schema 1) is migrated on open, and what it held stays
usable: finished sessions report, unfinished ones resume, spend is summed from columns."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import convoy
from convoy.stores import SCHEMA_VERSION, SessionFilter, SQLiteStore
from convoy.stores._protocol import AuditSeal

# The schema Convoy 0.1 wrote (the one place a test writes SQL: it plays the old release).
V1 = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sessions(id TEXT PRIMARY KEY, workflow TEXT NOT NULL, version TEXT NOT NULL,
  tenant TEXT NOT NULL, status TEXT NOT NULL, input TEXT NOT NULL, output TEXT, error TEXT,
  created REAL NOT NULL, started REAL, finished REAL, steps INTEGER NOT NULL DEFAULT 0,
  input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
  cost REAL NOT NULL DEFAULT 0);
CREATE INDEX sessions_status ON sessions(status);
CREATE TABLE journal(session_id TEXT NOT NULL, key TEXT NOT NULL, kind TEXT NOT NULL,
  target TEXT NOT NULL, status TEXT NOT NULL, result TEXT, at REAL NOT NULL,
  PRIMARY KEY(session_id, key)) WITHOUT ROWID;
INSERT INTO meta VALUES('schema_version', '1');
"""


def _v1_store(path: Path) -> None:
    with sqlite3.connect(path) as c:
        c.executescript(V1)
        c.execute("INSERT INTO sessions(id,workflow,version,tenant,status,input,created,"
                  "started) VALUES('old','mig','1','acme','running','\"hi\"',100,100)")
        c.execute("INSERT INTO journal VALUES('old','0/0','model','a','completed',?,150)",
                  (json.dumps({"model": "sim:default", "in": 40, "out": 8, "cost": 0.25,
                               "text": '{"label": "x", "confidence": 1}'}),))


def _store_at(path: Path, schema: int) -> Path:
    """What Convoy with store schema ``schema`` left on disk (a session of schema 1's)."""
    from convoy.stores._sqlite_sql import _MIGRATIONS

    _v1_store(path)
    with sqlite3.connect(path) as c:
        for version, script in _MIGRATIONS:
            if version <= schema:
                c.executescript(script + ";")
        c.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(schema),))
    return path


async def test_a_schema_1_store_is_migrated_and_its_sessions_resume(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    _v1_store(db)
    store = SQLiteStore(db)
    await store.open()
    assert await store.tenant_spend("acme", 0, 1000) == (48, 0.25)
    [rec] = await store.journal("old")
    assert (rec.input_tokens, rec.output_tokens, rec.cost, rec.agent) == (40, 8, 0.25, "a")
    await store.aclose()
    with sqlite3.connect(db) as c:
        row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        assert row[0] == str(SCHEMA_VERSION)

    from pydantic import BaseModel

    class Out(BaseModel):
        label: str
        confidence: float

    a = convoy.Agent(name="a", output_type=Out, model="sim:")

    @convoy.workflow(name="mig")
    async def mig(ctx: convoy.Context, text: str) -> Out:
        out: Out = await ctx.run(a, text)
        return out

    sim = convoy.SimModel({"*": {"output": {"label": "new", "confidence": 0}}})
    async with convoy.Engine(db, workflows=[mig], models={"sim:": sim}) as eng:
        [res] = await eng.resume()  # its owner-less 'running' row is claimable
    assert res.ok and res.output == Out(label="x", confidence=1)  # replayed, not re-asked
    assert sim.calls == 0


async def test_a_schema_2_store_gains_shared_state_and_keeps_its_sessions(
        tmp_path: Path) -> None:
    from convoy.stores import StateWrite
    from convoy.stores._sqlite_sql import _MIGRATE_2

    db = tmp_path / "v2.db"
    _v1_store(db)
    with sqlite3.connect(db) as c:  # what Convoy with schema 2 left on disk
        c.executescript(_MIGRATE_2)
        c.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
        c.execute("INSERT INTO kv VALUES('ns', 'k', 'v')")
    store = SQLiteStore(db)
    await store.open()
    try:
        assert (await store.get_session("old")) is not None
        assert await store.kv_get("ns", "k") == "v"
        assert await store.state_get("acme", "customer:1", "credit") is None
        res = await store.state_put(StateWrite(tenant="acme", namespace="customer:1",
                                               key="credit", value="10", expected_version=0))
        assert res.written
    finally:
        await store.aclose()
    with sqlite3.connect(db) as c:
        row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        assert row[0] == str(SCHEMA_VERSION)


async def test_a_schema_3_store_gains_the_index_of_a_tenants_sessions(
        tmp_path: Path) -> None:
    from convoy.stores._sqlite_sql import _MIGRATE_2, _MIGRATE_3

    db = tmp_path / "v3.db"
    _v1_store(db)
    with sqlite3.connect(db) as c:  # what Convoy with schema 3 left on disk
        c.executescript(_MIGRATE_2 + _MIGRATE_3)
        c.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    store = SQLiteStore(db)
    await store.open()
    try:
        assert await store.counts(tenant="acme") == {"running": 1}
    finally:
        await store.aclose()
    with sqlite3.connect(db) as c:
        plan = c.execute("EXPLAIN QUERY PLAN SELECT status, COUNT(*) FROM sessions WHERE "
                         "tenant='acme' GROUP BY status").fetchall()
        assert "sessions_tenant" in str(plan)


async def test_a_schema_7_store_indexes_a_tenants_sessions_by_creation_not_status(
        tmp_path: Path) -> None:
    """Schema 8: (tenant, status) is replaced by (tenant, created, id), which a status
    change does not rewrite; a tenant's listing in order reads it."""
    db = _store_at(tmp_path / "v7.db", 7)
    with sqlite3.connect(db) as c:
        names = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "sessions_tenant_status" in names and "sessions_tenant" not in names
    store = SQLiteStore(db)
    await store.open()
    try:
        assert await store.counts(tenant="acme") == {"running": 1}
        assert [r.id for r in await store.list_sessions(SessionFilter(tenant="acme"))] == ["old"]
    finally:
        await store.aclose()
    with sqlite3.connect(db) as c:
        names = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "sessions_tenant_status" not in names and "sessions_tenant" in names
        plan = c.execute("EXPLAIN QUERY PLAN SELECT id FROM sessions WHERE tenant='acme' "
                         "ORDER BY created, id").fetchall()
        assert "sessions_tenant" in str(plan) and "TEMP B-TREE" not in str(plan)


async def test_a_schema_4_store_gains_the_shared_limits_and_keeps_its_sessions(
        tmp_path: Path) -> None:
    from convoy.stores import Hold
    from convoy.stores._sqlite_sql import _MIGRATE_2, _MIGRATE_3, _MIGRATE_4, _SCHEMA

    db = tmp_path / "v4.db"
    with sqlite3.connect(db) as c:  # what Convoy wrote at schema 4
        c.executescript(_SCHEMA + _MIGRATE_2 + _MIGRATE_3 + _MIGRATE_4 + ";")
        c.execute("INSERT INTO meta VALUES('schema_version', '4')")
        c.execute("INSERT INTO sessions(id,workflow,version,tenant,status,input,created) "
                  "VALUES('s','w','1','t','pending','{}',100)")
    c.close()
    store = SQLiteStore(db)
    await store.open()
    try:
        row = await store.get_session("s")
        assert row is not None and row.status == "pending"
        res = await store.reserve("r", "A", [Hold(scope="s", unit="tokens", amount=1,
                                                  limit=2)], lease_s=30)
        assert res.granted
    finally:
        await store.aclose()
    with sqlite3.connect(db) as c:
        row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        assert row[0] == str(SCHEMA_VERSION)


async def test_a_schema_4_store_keeps_its_kv_values_in_a_rowid_table(tmp_path: Path) -> None:
    """Schema 6 rebuilds ``kv`` as a rowid table: a WITHOUT ROWID table stores a value of a
    few kB (a session's spans) in overflow pages at several times the cost."""
    from convoy.stores._sqlite_sql import _MIGRATE_2, _MIGRATE_3, _MIGRATE_4

    db = tmp_path / "v4.db"
    _v1_store(db)
    with sqlite3.connect(db) as c:  # what Convoy with schema 4 left on disk
        c.executescript(_MIGRATE_2 + _MIGRATE_3 + ";" + _MIGRATE_4)
        c.execute("UPDATE meta SET value='4' WHERE key='schema_version'")
        c.execute("INSERT INTO kv VALUES('trace:old', 'k', ?)", ("x" * 5000,))
    store = SQLiteStore(db)
    await store.open()
    try:
        assert await store.kv_all("trace:old") == {"k": "x" * 5000}
        await store.kv_put("trace:old", "k2", "y")
        assert await store.kv_get("trace:old", "k2") == "y"
    finally:
        await store.aclose()
    with sqlite3.connect(db) as c:
        [sql] = c.execute("SELECT sql FROM sqlite_master WHERE name='kv'").fetchone()
        assert "WITHOUT ROWID" not in sql
        row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        assert row[0] == str(SCHEMA_VERSION)


async def test_a_schema_4_store_gains_the_audit_log_and_keeps_its_sessions(
        tmp_path: Path) -> None:
    from convoy.stores._audit_sql import AUDIT_SCHEMA_VERSION
    from convoy.stores._sqlite_sql import _MIGRATE_2, _MIGRATE_3, _MIGRATE_4

    db = tmp_path / "v4.db"
    _v1_store(db)
    with sqlite3.connect(db) as c:  # what Convoy with schema 4 left on disk
        c.executescript(_MIGRATE_2 + _MIGRATE_3 + ";" + _MIGRATE_4)
        c.execute("UPDATE meta SET value='4' WHERE key='schema_version'")
    store = SQLiteStore(db)
    await store.open()
    try:
        assert await store.counts(tenant="acme") == {"running": 1}
        await store.audit_append("acme", [b"first"])
        assert await store.audit_size("acme") == 1
    finally:
        await store.aclose()
    with sqlite3.connect(db) as c:
        row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        assert int(row[0]) >= AUDIT_SCHEMA_VERSION


async def test_a_schema_8_store_moves_its_audit_cursors_into_their_sessions_rows(
        tmp_path: Path) -> None:
    """Schema 9: a session's audit cursor is kept in its row. Those kept in kv move there
    (so a resumed session seals nothing twice); one of a session whose row is gone stays
    in kv and is still read."""
    from convoy.stores import AUDIT_CURSORS

    db = _store_at(tmp_path / "v8.db", 8)
    with sqlite3.connect(db) as c:
        c.executemany("INSERT INTO kv(namespace,key,value) VALUES(?,?,?)",
                      [(AUDIT_CURSORS, "old", "150.0"), (AUDIT_CURSORS, "gone", "7.5")])
    store = SQLiteStore(db)
    await store.open()
    try:
        assert (await store.audit_cursor("old"), await store.audit_cursor("gone")) == (
            "150.0", "7.5")
        assert await store.kv_all(AUDIT_CURSORS) == {"gone": "7.5"}
        assert await store.audit_seal([AuditSeal(tenant="acme", session_id="old",
                                                 before="150.0", after="160.0",
                                                 bodies=[b"e"])]) == [True]
        assert await store.audit_cursor("old") == "160.0"
    finally:
        await store.aclose()
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT audit_cursor FROM sessions WHERE id='old'").fetchone() == (
            "160.0",)
        assert c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
            str(SCHEMA_VERSION),)
