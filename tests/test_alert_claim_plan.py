"""The in-order webhook claim looks up an event's earlier pending events of its alert and
webhook by an index of the pending events on ``alert_outbox(alert_id, url, id)``, not by a
scan of the outbox for each due event (one claim took about a second with 5,000 alerts
backing off; see ``bench/alert_claim.py``). A store migrated from before the index gets
it. (The plan is checked, never a time.)"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from convoy.stores import NewAlert, store_from_url
from convoy.stores._postgres_alerts import CLAIM
from convoy.stores._sqlite_alerts import claim_sql
from tests import pg_cluster

URL = "http://127.0.0.1:1/hook"
T0 = 1_800_000_000.0
INDEX = "alert_outbox_order"


async def backing_off(db: str, alerts: int = 200) -> None:
    """A store of ``db`` whose alerts' fired events back off and cleared events wait."""
    store = store_from_url(db, clock=lambda: T0)
    await store.open()
    try:
        for i in range(alerts):
            await store.alert_open(NewAlert(
                tenant="t", scope="agent", subject=f"agent-{i}", metric="latency", value=3.0,
                mean=0.5, deviation=0.05, threshold=0.65, opened=T0), [URL])
        for d in await store.due_deliveries(T0, urls=[URL], limit=alerts):
            await store.delivery_result(d.id, attempts=1, next_at=T0 + 3600, error="HTTP 503")
        for a in await store.list_alerts(limit=alerts):
            await store.alert_clear(a.id, T0, 0.5, [URL])
    finally:
        await store.aclose()


async def test_the_sqlite_claim_finds_earlier_events_by_the_index(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    await backing_off(str(db))
    with sqlite3.connect(db) as conn:  # (the store as it was before the index)
        conn.execute(f"DROP INDEX IF EXISTS {INDEX}")
        conn.execute("DELETE FROM meta WHERE key='addon:alert_outbox_order'")
    conn.close()
    await backing_off(str(db), alerts=1)  # an engine opens it: migrated
    conn = sqlite3.connect(db)
    try:
        conn.execute("ANALYZE")
        plan = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {claim_sql(1)}",
                                           (T0 + 1, URL, 50))]
    finally:
        conn.close()
    assert any(INDEX in line and "SEARCH e" in line for line in plan), plan


async def test_the_postgres_claim_finds_earlier_events_by_the_index() -> None:
    schema = pg_cluster.fresh_schema()
    db = f"{pg_cluster.server_url()}?schema={schema}"
    try:
        await backing_off(db)
        with psycopg.connect(pg_cluster.server_url(), autocommit=True) as conn:
            conn.execute(f'DROP INDEX IF EXISTS "{schema}".{INDEX}')  # type: ignore[arg-type]
            conn.execute(f'DELETE FROM "{schema}".meta '  # type: ignore[arg-type]
                         "WHERE key='addon:alert_outbox_order'")
        await backing_off(db, alerts=1)  # an engine opens it: migrated
        with psycopg.connect(pg_cluster.server_url(), autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')  # type: ignore[arg-type]
            # With statistics, PostgreSQL may hash the pending events once per claim
            # instead (cheap too); before any (a table grown since autovacuum last ran
            # ANALYZE), it looked the earlier events up per due one, scanning the outbox
            # for each: 3 s a claim at 5,000 alerts. That lookup is the plan checked.
            for plan_kind in ("seqscan", "hashjoin", "mergejoin"):
                conn.execute(f"SET enable_{plan_kind} = off")  # type: ignore[arg-type]
            plan = [r[0] for r in conn.execute(f"EXPLAIN {CLAIM}",  # type: ignore[arg-type]
                                               (T0 + 1, [URL], 50, T0 + 61))]
        assert any(INDEX in line for line in plan), "\n".join(plan)
    finally:
        pg_cluster.drop_schema(schema)
