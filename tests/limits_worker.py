"""An engine process of the shared-limits tests (``tests/test_shared_limits.py``): one
engine on a store that other processes share, with one kind of limit, driven line by line.

usage: python limits_worker.py DB CLOCK SCENARIO

``DB`` is a SQLite path or a ``postgresql://`` URL.

``CLOCK`` is a file holding the time (epoch seconds) every process reads, so the test moves
time for all of them at once and nothing depends on how fast the machine is. SCENARIO is
``tenant`` (a tenant budget per day), ``agent`` (an agent budget per day), ``hang`` (the
tenant budget, and calls that never return), ``breaker`` (an endpoint that always fails,
behind circuit breakers) or ``rpm`` (a requests-per-minute limit that refuses instead of
waiting).

The worker prints ``ready`` once its engine is open, then reads commands from stdin:
``run N`` runs N sessions at once, ``seq N`` N sessions one after another; both print one
JSON line (model calls made, statuses, error types). ``quit`` closes the engine.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import convoy
from convoy.cost import Budget, Budgets
from convoy.resilience import BreakerPolicy, Breakers, Rate, RateLimit
from convoy.stores import store_from_url

TENANT = "acme"
#: Every call costs exactly this many tokens (1 in, 99 out).
CALL_TOKENS = 100
TENANT_LIMIT = 3_000  # 30 calls a day for the tenant
AGENT_LIMIT = 1_000   # 10 calls a day for the agent "writer"
BURST = 3             # requests the rpm bucket holds


class Out(BaseModel):
    label: str


class FileClock:
    """The time the test wrote into a file (one clock for every process)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self) -> float:
        return float(self.path.read_text())


def build(scenario: str, clock: FileClock) -> tuple[convoy.SimModel, list[convoy.Interceptor]]:
    if scenario in ("tenant", "agent", "hang"):
        sim = convoy.SimModel({"*": {"output": {"label": "ok"}}}, usage=(1, 99),
                              latency=3600 if scenario == "hang" else 0.01)
        sim.max_output_tokens = 99  # budgets reserve the input estimate plus this ceiling
        budgets = Budgets(agent_daily={"writer": Budget(tokens=AGENT_LIMIT)}) \
            if scenario == "agent" else Budgets(tenant_daily=Budget(tokens=TENANT_LIMIT))
        return sim, [budgets]
    if scenario == "breaker":
        sim = convoy.SimModel(faults=convoy.Faults(server_error=1.0))
        policy = BreakerPolicy(window_type="count", window=10, minimum_calls=4,
                               failure_rate_threshold=50, wait_in_open=30)
        return sim, [Breakers(policy, clock=clock)]
    if scenario == "rpm":
        sim = convoy.SimModel({"*": {"output": {"label": "ok"}}})
        return sim, [RateLimit(Rate(rpm=60, burst=BURST, max_wait=0), clock=clock)]
    raise SystemExit(f"unknown scenario {scenario!r}")


async def main(db: str, clock_file: Path, scenario: str) -> None:
    clock = FileClock(clock_file)
    sim, interceptors = build(scenario, clock)
    writer = convoy.Agent(name="writer", instructions="Write.", output_type=Out, model="sim:")

    @convoy.workflow(name="limits")
    async def wf(ctx: convoy.Context, text: str) -> Out:
        out: Out = await ctx.run(writer, text)
        return out

    store = store_from_url(db, clock=clock)
    async with convoy.Engine(store, models={"sim:": sim}, interceptors=interceptors,
                             concurrency=1000) as engine:
        print("ready", flush=True)
        n = 0
        while True:
            line = (await asyncio.to_thread(sys.stdin.readline)).split()
            if not line or line[0] == "quit":
                return
            before = sim.calls
            count = int(line[1])
            inputs = [f"{scenario} {n + i}" for i in range(count)]
            if line[0] == "seq":
                results = [await engine.run(wf, x, tenant=TENANT) for x in inputs]
            else:
                results = await asyncio.gather(*(engine.run(wf, x, tenant=TENANT)
                                                 for x in inputs))
            n += count
            out: dict[str, Any] = {
                "calls": sim.calls - before,
                "statuses": dict(Counter(r.status for r in results)),
                "errors": dict(Counter((r.error or {}).get("type", "") for r in results
                                       if r.error))}
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), sys.argv[3]))
