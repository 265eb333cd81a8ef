"""SQLite keeps a session's audit cursor in its row (store schema 9): a cursor an engine
of the earlier release left in kv after the migration is the one a seal moves from."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import convoy
from convoy.audit import AuditEvent, AuditInterceptor
from convoy.stores import AUDIT_CURSORS

from .conftest import audit_sealed


def _flow() -> convoy.Workflow[str, str]:
    sim = convoy.SimModel({"*": {"text": "ok"}})
    agent = convoy.Agent(name="a0", model=sim)

    @convoy.workflow(name="review.cursor")
    async def flow(ctx: convoy.Context, text: str) -> str:
        await ctx.run(agent, text)
        return await ctx.wait_for("go", str)

    return flow


async def test_a_cursor_an_older_engine_left_in_kv_after_the_migration_is_read(
        tmp_path: Path) -> None:
    """An engine of the previous release still running on the file when a new engine
    migrated it (a rolling upgrade) seals its runs with the kv cursor, as it always did:
    the session's row has no cursor, kv has it. The new engine that resumes the session
    seals each of its records once (review of stop 58: it sealed the first run's again)."""
    db = tmp_path / "s.db"
    flow = _flow()
    async with convoy.Engine(db, workflows=[flow], interceptors=[AuditInterceptor()]) as eng:
        assert (await eng.run(flow, "t", session_id="s1")).status == "waiting"
        await audit_sealed(eng)
        cursor = await eng.store.audit_cursor("s1")
    with sqlite3.connect(db) as c:  # what the old engine's seal of that run leaves
        c.execute("UPDATE sessions SET audit_cursor=NULL WHERE id='s1'")
        c.execute("INSERT INTO kv(namespace,key,value) VALUES(?,?,?)",
                  (AUDIT_CURSORS, "s1", cursor))
    c.close()
    async with convoy.Engine(db, workflows=[flow], interceptors=[AuditInterceptor()]) as eng:
        await eng.signal("s1", "go", "now")
        [res] = await eng.resume()
        assert res.ok
        await audit_sealed(eng)
        events = [AuditEvent.decode(r.body)
                  for r in await eng.store.audit_entries("default", 0, 100)]
    keys = Counter(e.step_key for e in events if e.session_id == "s1")
    assert set(keys.values()) == {1}, keys
