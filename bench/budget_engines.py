"""Several engine processes on one store share one tenant's daily budget.

    .venv/bin/python bench/budget_engines.py [--engines 2] [--sessions 1000] [--seed S]
    .venv/bin/python bench/budget_engines.py --db postgresql://USER@HOST/DB

The store is a fresh SQLite file, or with `--db postgresql://...` a fresh schema of that
database for each mode (`?schema=budget_<random>`, left in place for inspection).

Each engine process runs the workload of `bench/budget_stress.py` (sessions of 3 agents
against a seeded fake endpoint with lognormal latency, median 50 ms; tickets of 25-2,000
tokens, answers of 50-1,000, no `max_tokens`, so a call reserves the 4,096-token output
ceiling) for `--sessions` sessions, all at once, billed to one tenant with
`Budgets(tenant_daily=Budget(usd=...))` on one store. The processes start together (each
opens its engine, then all are told to go). Twice, each time on a fresh store:

* `per_process`: `Budgets(..., shared=False)`, a ledger per process: what every engine did
  before the budgets were kept in the store;
* `shared`: `Budgets(...)` (the default), the day's budget counted and reserved in the store.

Each process logs every model call (start, end, cost); the parent merges the logs: when the
settled spend of all processes together first reached the budget, which calls (of any
process) were in flight, and what they cost. The guarantee under test: the overshoot is at
most that cost.

Prints ONE JSON line: per mode, `spent` (the journal's spend for the tenant's day),
`spent_over_budget`, `overshoot`, `in_flight_at_limit` and `in_flight_cost` (all processes),
`within_bound`, `model_calls`, `completed`, `budget_exhausted`, `wall_s`, and
`store_reserves` (round trips the shared mode made).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from budget_stress import TENANT, Endpoint, build, ticket

import convoy
from convoy.cost import Budget, Budgets
from convoy.stores import is_postgres_url, store_from_url


class Log(convoy.Interceptor):
    """Right inside `Budgets`: every admitted call's start, end (wall clock) and cost."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float, float]] = []

    async def model_call(self, input: convoy.ModelCallInput, next: Any) -> convoy.ModelResponse:
        t0 = time.time()
        resp: convoy.ModelResponse = await next(input)
        self.calls.append((t0, time.time(), resp.cost))
        return resp


async def worker(db: str, shared: bool, sessions: int, budget: float, seed: int,
                 index: int, day: float) -> None:
    sim = Endpoint(seed)
    budgets = Budgets(tenant_daily=Budget(usd=budget), clock=lambda: day, shared=shared)
    log = Log()
    wf = build(sim)
    async with convoy.Engine(db, interceptors=[budgets, log],
                             concurrency=max(1000, sessions)) as engine:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        t0 = time.perf_counter()
        results = await engine.run_many(
            wf, [ticket(index * sessions + i, seed) for i in range(sessions)], tenant=TENANT)
        wall = time.perf_counter() - t0
    print(json.dumps({"calls": log.calls, "statuses": Counter(r.status for r in results),
                      "wall_s": wall, "store_reserves": budgets.store_reserves}), flush=True)


async def _create(db: str) -> None:
    store = store_from_url(db)  # created once, before the processes race to create it
    await store.open()
    await store.aclose()


def run_mode(shared: bool, engines: int, sessions: int, budget: float, seed: int,
             url: str | None) -> dict[str, Any]:
    day = time.time()
    with tempfile.TemporaryDirectory(prefix="convoy-engines-") as tmp:
        db = str(Path(tmp) / "budget.db")
        if url is not None:
            db = url + ("&" if "?" in url else "?") + f"schema=budget_{uuid.uuid4().hex[:8]}"
        asyncio.run(_create(db))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(Path(__file__).resolve().parents[1] / "src"),
                        os.environ.get("PYTHONPATH")) if p)}
        procs = [subprocess.Popen(
            [sys.executable, __file__, "--worker", db, "1" if shared else "0",
             str(sessions), repr(budget), str(seed), str(i), repr(day)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
            for i in range(engines)]
        for p in procs:
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise SystemExit("an engine process failed to start")
        for p in procs:  # all at once
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = []
        for p in procs:
            out, _ = p.communicate()
            if p.returncode != 0:
                raise SystemExit(f"an engine process failed ({p.returncode})")
            outs.append(json.loads(out.strip().splitlines()[-1]))
        spent = asyncio.run(_journal_spend(db, day))
    calls = sorted((c for o in outs for c in o["calls"]), key=lambda c: c[1])
    settled, reached_at = 0.0, None
    for _, end, cost in calls:  # the moment the settled spend reached the budget
        settled += cost
        if settled >= budget:
            reached_at = end
            break
    in_flight = [c for c in calls if reached_at is not None and c[0] <= reached_at <= c[1]]
    bound = sum(c[2] for c in in_flight)
    statuses: Counter[str] = Counter()
    for o in outs:
        statuses.update(o["statuses"])
    overshoot = max(0.0, spent - budget)
    return {"spent": round(spent, 6), "spent_over_budget": round(spent / budget, 4),
            "overshoot": round(overshoot, 6), "in_flight_at_limit": len(in_flight),
            "in_flight_cost": round(bound, 6), "within_bound": overshoot <= bound + 1e-12,
            "model_calls": len(calls), "completed": statuses["completed"],
            "budget_exhausted": statuses["budget_exhausted"],
            "wall_s": round(max(o["wall_s"] for o in outs), 2),
            "store_reserves": sum(o["store_reserves"] for o in outs)}


async def _journal_spend(db: str, day: float) -> float:
    store = store_from_url(db)
    await store.open()
    try:
        d = dt.datetime.fromtimestamp(day, dt.UTC).date()
        midnight = dt.datetime.combine(d, dt.time(), tzinfo=dt.UTC).timestamp()
        return (await store.tenant_spend(TENANT, midnight, midnight + 86400))[1]
    finally:
        await store.aclose()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        db, shared, sessions, budget, seed, index, day = sys.argv[2:9]
        asyncio.run(worker(db, shared == "1", int(sessions), float(budget), int(seed),
                           int(index), float(day)))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engines", type=int, default=2)
    ap.add_argument("--sessions", type=int, default=1000, help="sessions per engine")
    ap.add_argument("--budget-usd", type=float, default=None,
                    help="default: $0.00025 a session, a fraction of what they would spend")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--db", default=None, metavar="URL",
                    help="a postgresql:// database (a fresh schema per mode); default: a "
                         "fresh SQLite file")
    a = ap.parse_args()
    if a.engines < 1 or a.sessions < 1:
        ap.error("--engines and --sessions must be >= 1")
    if a.db is not None and not is_postgres_url(a.db):
        ap.error("--db takes a postgresql:// URL (SQLite is the default)")
    budget = a.budget_usd if a.budget_usd is not None else \
        round(a.engines * a.sessions * 0.00025, 6)
    out: dict[str, Any] = {"store": "postgres" if a.db else "sqlite", "engines": a.engines,
                           "sessions_per_engine": a.sessions, "budget": budget}
    for mode, shared in (("per_process", False), ("shared", True)):
        out[mode] = run_mode(shared, a.engines, a.sessions, budget, a.seed, a.db)
    print(json.dumps(out))
    sys.exit(0 if out["shared"]["within_bound"] else 1)


if __name__ == "__main__":
    main()
