"""``convoy alerts``: the baseline alerts of a store, by tenant, open or all."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from convoy.stores import NewAlert, SQLiteStore
from tests.clikit import (
    cli,
    one_line_error,
    workdir,  # noqa: F401  (autouse fixture)
)

T0 = 1_800_000_000.0


def seed_alerts() -> None:
    async def write() -> None:
        store = SQLiteStore(Path("convoy.db"))
        await store.open()
        try:
            for tenant, metric in (("default", "latency"), ("acme", "tokens"),
                                   ("default", "error_rate")):
                aid = await store.alert_open(NewAlert(
                    tenant=tenant, scope="agent", subject="triage", metric=metric, value=3.0,
                    mean=0.5, deviation=0.05, threshold=0.65, opened=T0), [])
                if metric == "latency":
                    await store.alert_clear(aid, T0 + 60, 0.52, [])
        finally:
            await store.aclose()

    asyncio.run(write())


def test_alerts_lists_the_tenants_alerts_newest_first() -> None:
    seed_alerts()
    res = cli("alerts")
    assert res.code == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if "triage" in ln]
    assert len(lines) == 2 and "error_rate" in lines[0] and "latency" in lines[1]
    assert "open" in lines[0] and "cleared" in lines[1] and "0.65 (0.5 ± 0.05)" in lines[1]
    assert "tokens" not in res.stdout  # acme's
    res = cli("alerts", "--open")
    assert "error_rate" in res.stdout and "latency" not in res.stdout
    data = json.loads(cli("alerts", "--all-tenants", "--json").stdout)
    assert [(a["tenant"], a["metric"], a["status"]) for a in data] == [
        ("default", "error_rate", "open"), ("acme", "tokens", "open"),
        ("default", "latency", "cleared")]
    assert data[2]["cleared_value"] == 0.52
    assert json.loads(cli("alerts", "--tenant", "acme", "--json").stdout)[0]["value"] == 3.0


def test_alerts_says_when_there_are_none_and_rejects_a_missing_store() -> None:
    seed_alerts()
    res = cli("alerts", "--tenant", "globex")
    assert res.code == 0 and "no alerts of tenant 'globex'" in res.stdout
    one_line_error(cli("alerts", "--db", "nope.db"), 2, "nope.db")
