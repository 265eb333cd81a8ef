"""Per-step overhead of the full resilience and cost chain against the bare engine.

    .venv/bin/python bench/resilience_overhead.py [--sessions 1000] [--runs 5]

A W1-like workload: 5 typed agents in sequence, a fake model with zero latency (a canned
answer, 50 tokens in / 10 out), journaling on (SQLite file, durability "process"),
sessions one after another. Three engines, opened and warmed up before timing:

* bare:        `Engine(...)` with no interceptors;
* protections: `protections()` with its defaults: retry, circuit breakers (per model
  endpoint and per agent), per-attempt timeouts;
* full:        `protections(cache=ResponseCache(), budgets=Budgets(session=...,
  tenant_daily=...))`: the same plus the response cache and the budgets. Every input is
  unique, so the cache never hits: what is measured is the cost of the checks. The
  tenant's budget and the cache are kept in the store (the default, shared by every
  engine on it): a reservation per call and a cache read per call;
* full_local:  the same with `shared=False`: the tenant's budget and the cache in the
  process only (right with one engine).

Runs alternate (bare, protections, full, full_local, bare, ...) `--runs` times each; prints
the median µs per agent step of each and the added percentages (target: < 20%), as one
JSON line; ``paired_added_pct`` is the median of each round's ratio to that round's bare
run, steadier when the host's speed drifts. Each timed run starts after a full garbage
collection, so none pays for the garbage another engine left. ``--clock cpu`` times the
process's CPU time instead of elapsed time: on a shared host busy with other work,
elapsed time mostly measures the neighbours.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

import convoy
from convoy.cost import Budget, Budgets, ResponseCache
from convoy.resilience import protections

AGENTS = 5


class Classification(BaseModel):
    label: str
    confidence: float


CANNED = Classification(label="billing", confidence=0.9).model_dump_json()


class FakeModel(convoy.Model):
    """Zero latency, a canned valid answer."""

    name = "sim:fake"

    async def request(self, request: convoy.ModelRequest) -> convoy.ModelResponse:
        return convoy.ModelResponse(text=CANNED, usage=convoy.Usage(50, 10),
                                    finish_reason="stop")


MODEL = FakeModel()
CHAIN = [convoy.Agent(name=f"agent{i}", input_type=str if i == 0 else Classification,
                      output_type=Classification, model=MODEL) for i in range(AGENTS)]


@convoy.workflow(name="resilience_overhead:w1")
async def w1(ctx: convoy.Context, ticket: str) -> Classification:
    out: Classification = await convoy.pipeline(ctx, CHAIN, ticket)
    return out


def full(shared: bool) -> list[convoy.Interceptor]:
    return protections(cache=ResponseCache(shared=shared),
                       budgets=Budgets(session=Budget(usd=10.0, tokens=10_000_000),
                                       tenant_daily=Budget(usd=1e9), shared=shared))


def engines(tmp: Path) -> dict[str, convoy.Engine]:
    return {"bare": convoy.Engine(tmp / "bare.db", concurrency=1000),
            "protections": convoy.Engine(tmp / "protections.db", interceptors=protections(),
                                         concurrency=1000),
            "full": convoy.Engine(tmp / "full.db", interceptors=full(True), concurrency=1000),
            "full_local": convoy.Engine(tmp / "full_local.db", interceptors=full(False),
                                        concurrency=1000)}


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


async def timed(engine: convoy.Engine, tag: str, sessions: int,
                clock: Callable[[], float] = time.perf_counter) -> float:
    """µs per agent step over ``sessions`` sequential sessions with unique inputs."""
    t0 = clock()
    for i in range(sessions):
        res = await engine.run(w1, f"ticket {tag}-{i}: my invoice is wrong")
        if not res.ok:
            raise SystemExit(f"session failed: {res.status} {res.error}")
    return (clock() - t0) / (sessions * AGENTS) * 1e6


async def main_async(sessions: int, runs: int, warmup: int,
                     clock: str = "wall") -> dict[str, object]:
    tick = CLOCKS[clock]
    with tempfile.TemporaryDirectory(prefix="convoy-overhead-") as tmp:
        es = engines(Path(tmp))
        samples: dict[str, list[float]] = {name: [] for name in es}
        for e in es.values():
            await e.open()
        try:
            for name, e in es.items():
                await timed(e, f"warm-{name}", warmup, tick)
            for r in range(runs):
                for name, e in es.items():
                    gc.collect()  # no run pays for the garbage of the one before
                    samples[name].append(await timed(e, f"{name}-{r}", sessions, tick))
        finally:
            for e in es.values():
                await e.aclose()
        budgets = next(ic for ic in es["full"].runtime.interceptors if isinstance(ic, Budgets))
        calls = (warmup + runs * sessions) * AGENTS
    med = {name: statistics.median(xs) for name, xs in samples.items()}
    bare = med["bare"]
    return {"workload": "W1-like, 5 agents, zero latency, journaling on",
            "sessions_per_run": sessions, "runs": runs, "clock": clock,
            "us_per_step_bare": round(bare, 1),
            "us_per_step_protections": round(med["protections"], 1),
            "us_per_step_full": round(med["full"], 1),
            "us_per_step_full_local": round(med["full_local"], 1),
            "added_pct_protections": round(100 * (med["protections"] - bare) / bare, 1),
            "added_pct_full": round(100 * (med["full"] - bare) / bare, 1),
            "added_pct_full_local": round(100 * (med["full_local"] - bare) / bare, 1),
            # Each round's engine against the bare one of the same round, the median of
            # those: what drifts between rounds (the neighbours, the clock speed) cancels.
            "paired_added_pct": {
                name: round(100 * (statistics.median(
                    x / b for x, b in zip(samples[name], samples["bare"], strict=True)) - 1), 1)
                for name in es if name != "bare"},
            "full_store_reserves_per_call": round(budgets.store_reserves / calls, 4),
            "target_pct": 20,
            "samples": {name: [round(x, 1) for x in xs] for name, xs in samples.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=1000, help="sessions per timed run")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per engine")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall: elapsed time; cpu: the process's CPU time (all its threads), "
                    "steadier on a shared, busy host")
    a = ap.parse_args()
    if a.sessions < 1 or a.runs < 1 or a.warmup < 0:
        ap.error("--sessions and --runs must be >= 1, --warmup >= 0")
    print(json.dumps(asyncio.run(main_async(a.sessions, a.runs, a.warmup, a.clock))))


if __name__ == "__main__":
    main()
