"""What one webhook claim costs when many alerts' events wait on their earlier ones.

    python bench/alert_claim.py [--alerts 5000] [--db PATH_OR_URL] [--runs 5]

Opens ``--alerts`` alerts, each with a ``fired`` event for one webhook that failed and
backs off (due in an hour) and a ``cleared`` event due now, which the in-order rule holds
back until the ``fired`` one goes (every due row is checked against its alert's earlier
pending rows for the same webhook: by the index ``alert_outbox_order``). Then times
``due_deliveries`` (which claims nothing here) ``--runs`` times. Prints one JSON line:
``alerts``, ``median_ms``, ``max_ms``, and the claim's query plan (SQLite's EXPLAIN QUERY
PLAN; PostgreSQL's EXPLAIN).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from convoy.stores import NewAlert, is_postgres_url, store_from_url
from convoy.stores._sqlite_alerts import claim_sql

URL = "http://127.0.0.1:1/hook"
T0 = 1_800_000_000.0


async def main(alerts: int, db: str | None, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        where = db or str(Path(tmp) / "claim.db")
        store: Any = store_from_url(where, clock=lambda: T0)
        await store.open()
        try:
            for i in range(alerts):
                await store.alert_open(NewAlert(
                    tenant="t", scope="agent", subject=f"agent-{i}", metric="latency",
                    value=3.0, mean=0.5, deviation=0.05, threshold=0.65, opened=T0), [URL])
            for d in await store.due_deliveries(T0, urls=[URL], limit=alerts):
                await store.delivery_result(d.id, attempts=1, next_at=T0 + 3600,
                                            error="HTTP 503", claimed_until=d.claimed_until)
            for a in await store.list_alerts(limit=alerts):
                await store.alert_clear(a.id, T0, 0.5, [URL])
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                assert await store.due_deliveries(T0 + 1, urls=[URL]) == []
                times.append((time.perf_counter() - start) * 1000)
        finally:
            await store.aclose()
        plan = query_plan(where)
    return {"alerts": alerts, "median_ms": round(statistics.median(times), 2),
            "max_ms": round(max(times), 2), "plan": plan}


def query_plan(where: str) -> list[str]:
    """The claim's plan: SQLite's EXPLAIN QUERY PLAN, or PostgreSQL's EXPLAIN (as the
    planner sees the tables now, without a fresh ANALYZE)."""
    if not is_postgres_url(where):
        conn = sqlite3.connect(where)
        try:
            return [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {claim_sql(1)}",
                                               (T0 + 1, URL, 50))]
        finally:
            conn.close()
    import psycopg

    from convoy.stores._postgres_alerts import CLAIM

    base, _, schema = where.partition("?schema=")
    with psycopg.connect(base) as conn:
        conn.execute(f'SET search_path TO "{schema or "convoy"}"')  # type: ignore[arg-type]
        return [r[0] for r in conn.execute(f"EXPLAIN {CLAIM}",  # type: ignore[arg-type]
                                           (T0 + 1, [URL], 50, T0 + 61))]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=5000)
    parser.add_argument("--db", default=None, help="a SQLite path or postgresql:// URL "
                        "(default: a temporary SQLite file)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.alerts, args.db, args.runs))))
