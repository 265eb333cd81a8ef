"""Budget stress: thousands of concurrent sessions of one tenant share one daily budget.

    .venv/bin/python bench/budget_stress.py --sessions 2000 [--budget-usd 0.5] [--seed S]

Every session runs 3 agents on its ticket against a seeded fake endpoint with lognormal
latency (median 50 ms) and realistic lengths: each ticket is 25-2,000 tokens long (the
budget's ~4-characters-a-token estimate sees exactly what is billed) and each answer
50-1,000 tokens, uniformly, with no `max_tokens` set, so the budget reserves the model's
output ceiling (`convoy.resilience.output_ceiling`: 4,096 here, the default for a model
that states none) and settles on the actual usage. The sessions together want several
times the budget and thousands of calls are in flight when it runs out. All sessions start
at the same instant (`Engine(concurrency >= sessions)`), billed to one tenant with
`Budgets(tenant_daily=Budget(usd=...))`.

A witness interceptor sits right inside `Budgets` and independently tracks the calls in
flight and the settled spend: when the spend first reaches the budget it snapshots the
calls still in flight (the crossing call included) and, at the end, what they cost. The
guarantee under test: the overshoot (spent - budget) is at most the cost of the calls in
flight when the budget was reached.

Prints ONE JSON line: `sessions`, `budget`, `spent`, `spent_over_budget` (spent / budget),
`overshoot`, `overshoot_over_in_flight_bound`, `in_flight_at_limit`
(as the budget ledger reports it), `max_in_flight_cost` (witness: cost of the calls in
flight at the limit, the crossing one included), `completed`, `budget_exhausted`,
`within_bound`, and cross-checks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import convoy
from convoy.cost import Budget, Budgets

TENANT = "acme"
INSTRUCTIONS = "Summarise the ticket."


class Endpoint(convoy.Model):
    """A fake endpoint with realistic lengths: it bills the prompt as the budget estimates
    it (~4 characters a token) and answers 50-1,000 tokens, seeded per call."""

    name = "sim:budget"

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.calls = 0

    async def request(self, request: convoy.ModelRequest) -> convoy.ModelResponse:
        self.calls += 1
        rng = random.Random(f"{self.seed}:{request.session_id}:{request.agent}")
        await asyncio.sleep(rng.lognormvariate(-3.0, 0.5))  # median 50 ms
        chars = sum(len(m.content or "") for m in request.messages)
        return convoy.ModelResponse(text='{"value": 1}', model=self.name,
                                    usage=convoy.Usage(chars // 4 + 1, rng.randint(50, 1000)))


class Step(BaseModel):
    value: int


class Witness(convoy.Interceptor):
    """Tracks in-flight calls and settled spend, and what was in flight at the limit."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.spent = 0.0
        self.in_flight: set[int] = set()
        self.max_in_flight = 0
        self.at_limit: set[int] | None = None   # calls in flight when the limit was reached
        self.crossing_cost = 0.0
        self.cost_of: dict[int, float] = {}
        self._next = 0

    async def model_call(self, input: convoy.ModelCallInput, next: Any) -> convoy.ModelResponse:
        me = self._next = self._next + 1
        self.in_flight.add(me)
        self.max_in_flight = max(self.max_in_flight, len(self.in_flight))
        try:
            resp: convoy.ModelResponse = await next(input)
        finally:
            self.in_flight.discard(me)
        self.cost_of[me] = resp.cost
        self.spent += resp.cost
        if self.at_limit is None and self.spent >= self.limit:
            self.at_limit = set(self.in_flight)
            self.crossing_cost = resp.cost
        return resp

    @property
    def in_flight_cost(self) -> float:
        """What the calls in flight at the limit (and the crossing call) cost in the end."""
        if self.at_limit is None:
            return 0.0
        return self.crossing_cost + sum(self.cost_of.get(c, 0.0) for c in self.at_limit)


def build(model: convoy.Model) -> convoy.Workflow[str, Step]:
    agents = [convoy.Agent(name=f"a{i}", instructions=INSTRUCTIONS, output_type=Step,
                           model=model) for i in range(3)]

    @convoy.workflow(name="budget_stress:chain")
    async def chain(ctx: convoy.Context, text: str) -> Step:
        out = Step(value=0)
        for agent in agents:
            out = await ctx.run(agent, text)
        return out

    return chain


def ticket(i: int, seed: int) -> str:
    """A ticket of 25-2,000 tokens (~4 characters each)."""
    n = random.Random(f"{seed}:ticket:{i}").randint(25, 2000)
    return (f"ticket {i}: " + "word " * n)[: 4 * n]


async def run(sessions: int, budget_usd: float, seed: int, db: Path) -> dict[str, Any]:
    sim = Endpoint(seed)
    # One UTC day for the whole run (the day it starts), even one that crosses midnight:
    # the run has one tenant-day ledger to report on.
    day = time.time()
    budgets = Budgets(tenant_daily=Budget(usd=budget_usd), clock=lambda: day)
    witness = Witness(budget_usd)
    wf = build(sim)
    t0 = time.perf_counter()
    async with convoy.Engine(db, interceptors=[budgets, witness],
                             concurrency=max(1000, sessions)) as engine:
        results = await engine.run_many(wf, [ticket(i, seed) for i in range(sessions)],
                                        tenant=TENANT)
        call_cost = engine.accounting.prices.cost(sim.name, convoy.Usage(1012, 525))
    wall = time.perf_counter() - t0
    (ledger,) = budgets.ledgers.values()
    statuses = Counter(r.status for r in results)
    overshoot = ledger.overshoot_usd
    return {
        "sessions": sessions, "budget": budget_usd, "spent": ledger.usd,
        "spent_over_budget": round(ledger.usd / budget_usd, 4),
        "overshoot": overshoot,
        "overshoot_over_in_flight_bound": (round(overshoot / witness.in_flight_cost, 4)
                                           if witness.in_flight_cost else None),
        "in_flight_at_limit": ledger.in_flight_at_limit,
        "max_in_flight_cost": witness.in_flight_cost,
        "completed": statuses["completed"], "budget_exhausted": statuses["budget_exhausted"],
        "within_bound": overshoot <= witness.in_flight_cost + 1e-12,
        "witness_in_flight_at_limit": (len(witness.at_limit)
                                       if witness.at_limit is not None else None),
        "spent_by_sessions": sum(r.cost for r in results),
        "spent_matches_sessions": abs(sum(r.cost for r in results) - ledger.usd) < 1e-9,
        "mean_cost_per_call": call_cost, "model_calls": sim.calls,
        "rejected_calls": ledger.rejected, "max_in_flight": witness.max_in_flight,
        "other_statuses": {k: v for k, v in statuses.items()
                           if k not in ("completed", "budget_exhausted")},
        "wall_s": round(wall, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--budget-usd", type=float, default=None,
                    help="default: $0.00025 a session, a fraction of what they would spend")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.sessions < 1:
        ap.error("--sessions must be >= 1")
    budget = a.budget_usd if a.budget_usd is not None else round(a.sessions * 0.00025, 6)
    with tempfile.TemporaryDirectory(prefix="convoy-budget-") as tmp:
        out = asyncio.run(run(a.sessions, budget, a.seed, Path(tmp) / "budget.db"))
    if not out["within_bound"]:
        print(f"FAIL: overshoot {out['overshoot']:.6f} exceeds the cost of the calls in "
              f"flight at the limit {out['max_in_flight_cost']:.6f}", file=sys.stderr)
    print(json.dumps(out))
    sys.exit(0 if out["within_bound"] else 1)


if __name__ == "__main__":
    main()
