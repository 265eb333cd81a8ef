"""The series of the metrics are what Prometheus keeps: one series per distinct set of
(bounded) labels, whatever raw values fell into ``"other"``; an agent run is counted
once, however many times a resumed session replays it; failed runs and steps have
durations too."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import convoy
from convoy.cost import Budget, Budgets
from convoy.observability import Metrics, _metrics, _spans, _tracing
from convoy.resilience import BreakerPolicy, Breakers, Retry, RetryPolicy
from convoy.runtime import _agent_loop
from convoy.stores import SQLiteStore

from .fakeclock import FakeClock
from .obs_flows import Ticket
from .test_metrics import observed, total
from .test_metrics_exposition import MS, Ticks, Timed, scripted_run

HOWS = ["alone", "traced", "untraced"]


def series(metrics: Metrics) -> Counter[tuple[str, tuple[tuple[str, str], ...]]]:
    """How many times the exposition has each (sample name, labels)."""
    return Counter((s.name, tuple(sorted(s.labels.items())))
                   for fam in text_string_to_metric_families(metrics.text())
                   for s in fam.samples)


def duplicates(metrics: Metrics) -> list[Any]:
    return [key for key, n in series(metrics).items() if n > 1]


def _const(i: int) -> Any:
    async def fn() -> int:
        return i

    return fn


@pytest.mark.parametrize("how", HOWS)
async def test_values_past_the_bound_are_one_other_series(engine_factory: Any,
                                                         how: str) -> None:
    metrics = Metrics()

    @convoy.workflow(name="obs.wide")
    async def wide(ctx: convoy.Context, n: int) -> int:
        for i in range(n):
            await ctx.step(f"step-{i}", _const(i), idempotent=True)
        return n

    assert (await engine_factory(interceptors=observed(metrics, how)).run(wide, 250)).ok
    assert duplicates(metrics) == []
    assert total(metrics, "convoy_steps_total", kind="effect") == 250
    assert total(metrics, "convoy_steps_total", kind="effect", target="other") == 50
    assert total(metrics, "convoy_step_seconds_count", kind="effect") == 250
    assert total(metrics, "convoy_step_seconds_bucket", kind="effect", target="other",
                 le="+Inf") == 50


@pytest.mark.parametrize("how", HOWS)
async def test_dropping_the_cache_of_raw_labels_loses_no_counts(engine_factory: Any,
                                                               how: str) -> None:
    """The raw-label lookups are cached in a bounded cache; clearing it (here after every
    few lookups) keeps every count: token and cost totals included."""
    def run_with(metrics: Metrics) -> Any:
        sim = convoy.SimModel({"*": {"output": "ok"}})
        bots = [convoy.Agent(name=f"bot-{i}", model=sim) for i in range(7)]

        @convoy.workflow(name="obs.churn")
        async def churn(ctx: convoy.Context, n: int) -> int:
            for i in range(n):
                await ctx.step(f"step-{i % 9}", _const(i), idempotent=True)
                await ctx.run(bots[i % len(bots)], "hi")
            return n

        return engine_factory(interceptors=observed(metrics, how)).run(churn, 40)

    roomy, tight = Metrics(max_label_values=5), Metrics(max_label_values=5)
    tight._cache_max = 2  # (the default: 100,000 raw label tuples)
    for m in (roomy, tight):
        assert (await run_with(m)).ok
        assert duplicates(m) == []

    def counts(m: Metrics) -> dict[Any, float]:
        return {key: v for key, v in _values(m).items()
                if key[0].endswith(("_total", "_count"))}

    assert counts(tight) == counts(roomy)
    assert total(tight, "convoy_steps_total", kind="effect") == 40
    assert total(tight, "convoy_agent_runs_total") == 40
    assert total(tight, "convoy_steps_total", kind="model", agent="other") == 40 - 4 * 6
    assert total(tight, "convoy_tokens_total") == total(roomy, "convoy_tokens_total") > 0
    assert total(tight, "convoy_cost_usd_total") == total(roomy, "convoy_cost_usd_total")


def _values(m: Metrics) -> dict[Any, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(m.text()) for s in fam.samples}


async def test_sessions_and_tenants_past_the_bound_are_one_other_series(
        engine_factory: Any) -> None:
    metrics = Metrics(max_label_values=2)
    flows = []
    for i in range(4):
        @convoy.workflow(name=f"obs.flow{i}")
        async def flow(ctx: convoy.Context, n: int) -> int:
            return n

        flows.append(flow)
    eng = engine_factory(interceptors=observed(metrics, "alone"))
    for i, flow in enumerate(flows):
        assert (await eng.tenant(f"t{i}").run(flow, i)).ok
    assert duplicates(metrics) == []
    assert total(metrics, "convoy_sessions_total", workflow="other", tenant="other") == 2
    assert total(metrics, "convoy_session_run_seconds_count", workflow="other") == 2
    assert total(metrics, "convoy_sessions_running", workflow="other") == 0


@pytest.mark.parametrize("how", HOWS)
async def test_a_resumed_session_counts_its_earlier_agent_runs_once(
        engine_factory: Any, how: str) -> None:
    sim = convoy.SimModel({"triage": {"handoff": "billing", "payload": {"text": "twice"}},
                           "billing": {"output": "refunded"}})
    billing = convoy.Agent(name="billing", input_type=Ticket, model=sim)
    triage = convoy.Agent(name="triage", input_type=Ticket, handoffs=[billing], model=sim)

    @convoy.workflow(name="obs.parked")
    async def parked(ctx: convoy.Context, t: str) -> str:
        out: str = await ctx.run(triage, {"text": t})
        await ctx.wait_for("go")
        return out

    metrics = Metrics()
    eng = engine_factory(interceptors=observed(metrics, how))
    first = await eng.run(parked, "t", session_id="s1")
    assert first.status == "waiting", first
    await eng.signal("s1", "go", True)
    [res] = await eng.resume()
    assert res.ok, res
    m = metrics
    assert total(m, "convoy_agent_runs_total", agent="triage") == 1
    assert total(m, "convoy_agent_runs_total", agent="triage", outcome="handoff") == 1
    assert total(m, "convoy_agent_runs_total", agent="billing", outcome="ok") == 1
    assert total(m, "convoy_agent_run_seconds_count") == 2
    assert total(m, "convoy_steps_total", kind="model") == 2
    # a session's runs: one parked, one completed
    assert total(m, "convoy_sessions_total", workflow="obs.parked") == 2
    assert total(m, "convoy_sessions_total", outcome="waiting") == 1
    assert total(m, "convoy_sessions_total", outcome="completed") == 1


@pytest.mark.parametrize("how", HOWS)
async def test_a_run_that_parked_inside_an_agent_is_counted_when_it_ends(
        engine_factory: Any, how: str) -> None:
    """An agent whose run parked (a tool call waits for a person's approval) has not
    ended: the resumed session replays its first steps and runs the rest, and the run is
    counted then."""

    @convoy.tool(requires_approval=convoy.Approval(queue="finance"))
    def refund(cents: int) -> str:
        """Refund (a person approves it first)."""
        return f"refunded {cents}"

    sim = convoy.SimModel({"clerk": [
        {"tool_calls": [{"name": "refund", "arguments": {"cents": 5}}]}, {"output": "done"}]})
    clerk = convoy.Agent(name="clerk", tools=[refund], model=sim)

    @convoy.workflow(name="obs.inside")
    async def inside(ctx: convoy.Context, t: str) -> str:
        out: str = await ctx.run(clerk, t)
        return out

    metrics = Metrics()
    eng = engine_factory(interceptors=observed(metrics, how))
    assert (await eng.run(inside, "t", session_id="s2")).status == "waiting"
    assert total(metrics, "convoy_agent_runs_total") == 0
    [task] = await eng.inbox.tasks()
    await eng.inbox.approve(task.id, by="fin")
    [res] = await eng.resume()
    assert res.ok, res
    assert total(metrics, "convoy_agent_runs_total", agent="clerk", outcome="ok") == 1
    assert total(metrics, "convoy_agent_run_seconds_count", agent="clerk") == 1


@pytest.mark.parametrize("how", HOWS)
async def test_failed_agent_runs_and_steps_have_durations(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """The slowest runs are often the failed ones (a timeout): they are in the latency
    histograms, with ``outcome="error"``."""
    ticks = Ticks()
    for module, name in ((_metrics, "perf_ns"), (_agent_loop, "perf_ns"), (_tracing, "time_ns"),
                         (_spans, "time_ns")):
        monkeypatch.setattr(module, name, ticks)

    @convoy.tool
    def slow(query: str) -> str:
        """Fails after 40 s."""
        ticks.ns += 40_000 * MS
        raise RuntimeError("the CRM timed out")

    fragile = convoy.Agent(name="fragile", tools=[slow], tool_failures=0, model=Timed(
        {"fragile": {"tool_calls": [{"name": "slow", "arguments": {"query": "x"}}]}},
        ticks, 2))

    @convoy.workflow(name="obs.slowfail")
    async def wf(ctx: convoy.Context, t: str) -> str:
        out: str = await ctx.run(fragile, t)
        return out

    metrics = Metrics()
    assert (await engine_factory(interceptors=observed(metrics, how)).run(wf, "t")
            ).status == "failed"
    m = metrics
    assert total(m, "convoy_agent_runs_total", agent="fragile", outcome="error",
                 error="tool_error") == 1
    assert total(m, "convoy_agent_run_seconds_count", agent="fragile", outcome="error") == 1
    assert total(m, "convoy_agent_run_seconds_sum", agent="fragile",
                 outcome="error") == pytest.approx(40.002)
    assert total(m, "convoy_agent_run_seconds_bucket", agent="fragile", outcome="error",
                 le="30.0") == 0
    assert total(m, "convoy_step_seconds_count", kind="tool", target="slow",
                 outcome="error") == 1
    assert total(m, "convoy_step_seconds_sum", kind="tool", target="slow",
                 outcome="error") == pytest.approx(40.0)
    assert total(m, "convoy_step_seconds_count", kind="model", agent="fragile",
                 outcome="ok") == 1
    assert duplicates(m) == []


DOCS = Path(__file__).parents[1] / "docs" / "how-to" / "observability.md"


def documented() -> dict[str, set[str]]:
    """The metrics table of the how-to: each metric's labels."""
    text = DOCS.read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    table: dict[str, set[str]] = {}
    for row in text.splitlines():
        cells = row.split("|")
        if len(cells) < 4 or not cells[1].strip().startswith("`"):
            continue
        names, labels = (re.findall(r"`([^`]+)`", re.sub(r"\([^()]*\)", "", cell))
                         for cell in cells[1:3])
        for name in names:
            table[name] = set(labels)
    return table


async def test_the_docs_table_lists_each_metric_with_its_labels(
        engine_factory: Any, tmp_path: Path) -> None:
    clock = FakeClock()
    metrics = Metrics()
    budgets = Budgets(tenant_daily={"acme": Budget(usd=5.0), "poor": Budget(usd=0.00001)},
                      clock=clock)
    breakers = Breakers(BreakerPolicy(minimum_calls=1000), clock=clock, sync_interval=None,
                        agents={"down": BreakerPolicy(window_type="count", window=2,
                                                      minimum_calls=2)})
    retry = Retry(RetryPolicy(max_attempts=3, initial_delay=0, max_delay=0))
    eng = engine_factory(db=SQLiteStore(tmp_path / "x.db", clock=clock),
                         interceptors=[*observed(metrics, "alone"), retry, breakers, budgets])
    await scripted_run(eng, Ticks())
    exposed: dict[str, set[str]] = {}
    for fam in text_string_to_metric_families(metrics.text()):
        name = fam.name + ("_total" if fam.type == "counter" else "")
        exposed[name] = {k for s in fam.samples for k in s.labels if k != "le"}
    table = documented()
    assert set(exposed) <= set(table), set(exposed) - set(table)
    for name, labels in exposed.items():
        assert labels <= table[name], (name, labels, table[name])
        if labels:  # (a family with no sample shows none of its labels)
            assert labels == table[name], (name, labels, table[name])
