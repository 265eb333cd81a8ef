"""The whole exposition of the metrics (what a scrape gets) for a scripted multi-agent run,
pinned line by line: handoffs, tools, worker runs, shared state and a stale write, an
effect, sessions that fail by tool error, invalid output and budget, retries of a flaky
model, a breaker that opens and rejects, tenants' budgets. Durations come from a virtual
clock that only the models and tools move, so every histogram bucket and sum is exact.
However the metrics are recorded (alone, or by the hooks of a tracing that traces every
session or none), the text is the same: an optimisation that drops, miscounts or
relabels anything fails here."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.cost import Budget, Budgets
from convoy.observability import Metrics, _metrics, _spans, _tracing
from convoy.resilience import BreakerPolicy, Breakers, Retry, RetryPolicy
from convoy.runtime import _agent_loop
from convoy.stores import SQLiteStore

from .fakeclock import FakeClock
from .obs_flows import TICKET, agents, desk_workflow, script
from .test_metrics import observed

GOLDEN = Path(__file__).parent / "data" / "metrics_exposition.txt"
MS = 1_000_000


class Ticks:
    """A nanosecond clock that moves only when a model or a tool says so."""

    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns


class Timed(convoy.SimModel):
    """A scripted model whose every call takes ``ms`` virtual milliseconds and whose
    first ``fail`` attempts of a call fail with a 503."""

    def __init__(self, script: Any, ticks: Ticks, ms: int, fail: int = 0) -> None:
        super().__init__(script)
        self.ticks, self.ms, self.fail = ticks, ms, fail

    async def request(self, request: convoy.ModelRequest) -> convoy.ModelResponse:
        self.ticks.ns += self.ms * MS
        if request.attempt < self.fail:
            raise convoy.ModelError("upstream 503", retryable=True, status_code=503)
        return await super().request(request)


async def scripted_run(eng: convoy.Engine, ticks: Ticks) -> None:
    """The run whose metrics are pinned (every session's outcome is asserted too)."""
    desk = desk_workflow(agents(Timed(script(), ticks, 3)), name="x.desk")
    for _ in range(2):
        assert (await eng.tenant("acme").run(desk, TICKET)).ok

    @convoy.tool
    def broken(query: str) -> str:
        """Always fails."""
        ticks.ns += 40 * MS
        raise RuntimeError("the CRM is down")

    fragile = convoy.Agent(name="fragile", tools=[broken], tool_failures=0, model=Timed(
        {"fragile": {"tool_calls": [{"name": "broken", "arguments": {"query": "x"}}]}},
        ticks, 2))
    flaky = convoy.Agent(name="flaky", model=Timed({"*": {"output": "ok"}}, ticks, 7,
                                                   fail=2))
    vague = convoy.Agent(name="vague", output_type=int, output_retries=1,
                         model=Timed({"*": {"output": "not a number"}}, ticks, 1))
    down = convoy.Agent(name="down", model=Timed({"*": {"output": "ok"}}, ticks, 5, fail=99))

    @convoy.workflow(name="x.one")
    async def one(ctx: convoy.Context, which: str) -> Any:
        agent = {"fragile": fragile, "flaky": flaky, "vague": vague, "down": down}[which]
        return await ctx.run(agent, which)

    assert (await eng.run(one, "fragile")).status == "failed"
    assert (await eng.run(one, "flaky")).ok
    assert (await eng.run(one, "vague")).status == "failed"
    for _ in range(2):  # the breaker opens after the first session's attempts...
        assert (await eng.run(one, "down")).status == "failed"

    @convoy.workflow(name="x.state")
    async def state(ctx: convoy.Context, t: str) -> str:
        st = ctx.state("customer:42")
        await st.set("n", 1, expected_version=0)
        with contextlib.suppress(convoy.StateConflict):
            await st.set("n", 2, expected_version=0)  # stale: refused
        await ctx.step("pause", _pause(ticks), idempotent=True)
        out: str = await ctx.run(flaky, t)
        return out

    assert (await eng.tenant("acme").run(state, "t")).ok
    res = await eng.tenant("poor").run(desk, TICKET)  # ...a budget of one cent runs out
    assert res.status == "budget_exhausted"


def _pause(ticks: Ticks) -> Any:
    async def fn() -> int:
        ticks.ns += 11 * MS
        return 1

    return fn


def exposition(metrics: Metrics) -> list[str]:
    """The scrape's lines, sorted (Prometheus reads samples in any order)."""
    return sorted(line for line in metrics.text().splitlines() if line)


@pytest.mark.parametrize("how", ["alone", "traced", "untraced"])
async def test_the_exposition_of_a_scripted_run_is_pinned(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        how: str) -> None:
    ticks = Ticks()
    for module, name in ((_metrics, "perf_ns"), (_agent_loop, "perf_ns"), (_tracing, "time_ns"),
                         (_spans, "time_ns")):
        monkeypatch.setattr(module, name, ticks)
    clock = FakeClock()
    metrics = Metrics()
    budgets = Budgets(tenant_daily={"acme": Budget(usd=5.0), "poor": Budget(usd=0.00001)},
                      clock=clock)
    breakers = Breakers(BreakerPolicy(minimum_calls=1000), clock=clock, sync_interval=None,
                        agents={"down": BreakerPolicy(window_type="count", window=2,
                                                      minimum_calls=2)})
    retry = Retry(RetryPolicy(max_attempts=3, initial_delay=0, max_delay=0))
    eng = engine_factory(db=SQLiteStore(tmp_path / "x.db", clock=clock),
                         interceptors=[*observed(metrics, how), retry, breakers, budgets])
    await scripted_run(eng, ticks)
    # (tests/data/metrics_exposition.txt: written from the code before its optimisation)
    assert exposition(metrics) == GOLDEN.read_text().splitlines()
