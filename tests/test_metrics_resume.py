"""An agent run is counted once across a crash: by the run of its session that ended it.

The first engine "crashes" (:class:`~tests.conftest.Crash`, raised from a model call:
nothing catches it, so the session stays running and owned with whatever its journal held)
and a later engine on the same SQLite store, with metrics of its own, resumes the session;
the two scrapes add up to one count per agent run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.observability import Metrics

from .conftest import Crash, later_engine
from .obs_flows import Ticket
from .test_metrics import observed, total

HOWS = ["alone", "traced", "untraced"]


class CrashOnce(convoy.SimModel):
    """Crashes the process (once) at the ``nth`` model call of ``agent``."""

    def __init__(self, script: dict[str, Any], agent: str, nth: int) -> None:
        super().__init__(script)
        self.agent, self.nth, self.seen, self.crashed = agent, nth, 0, False

    async def request(self, request: convoy.ModelRequest) -> convoy.ModelResponse:
        if request.agent == self.agent and not self.crashed:
            self.seen += 1
            if self.seen == self.nth:
                self.crashed = True
                raise Crash
        return await super().request(request)


@convoy.tool
def lookup(query: str) -> str:
    """Look a customer up."""
    return f"customer {query}"


def desk(model: convoy.Model) -> convoy.Workflow[Any, Any]:
    """triage hands over to billing, which calls a tool and answers."""
    billing = convoy.Agent(name="billing", input_type=Ticket, tools=[lookup], model=model)
    triage = convoy.Agent(name="triage", input_type=Ticket, handoffs=[billing], model=model)

    @convoy.workflow(name="obs.resumed")
    async def wf(ctx: convoy.Context, t: str) -> str:
        out: str = await ctx.run(triage, {"text": t})
        return out

    return wf


SCRIPT = {"triage": {"handoff": "billing", "payload": {"text": "charged twice"}},
          "billing": [{"tool_calls": [{"name": "lookup", "arguments": {"query": "jane"}}]},
                      {"output": "refunded"}]}


async def crash_and_resume(db: Path, wf: convoy.Workflow[Any, Any], how: str,
                           session_id: str) -> tuple[Metrics, Metrics]:
    """Run ``wf`` until its model crashes, then resume it on a later engine; the metrics
    of both."""
    first, second = Metrics(), Metrics()
    eng = convoy.Engine(db, interceptors=observed(first, how))
    try:
        with pytest.raises(Crash):
            await eng.run(wf, "t", session_id=session_id)
        async with later_engine(db, workflows=[wf], interceptors=observed(second, how)) as e2:
            [res] = await e2.resume()
    finally:
        await eng.aclose()
    assert res.ok, res
    return first, second


def runs(m: Metrics, agent: str, **labels: str) -> float:
    return total(m, "convoy_agent_runs_total", agent=agent, **labels)


def timed(m: Metrics, agent: str) -> float:
    return total(m, "convoy_agent_run_seconds_count", agent=agent)


@pytest.mark.parametrize("how", HOWS)
async def test_a_run_that_ended_before_the_crash_is_not_counted_again(db: Path,
                                                                      how: str) -> None:
    """triage handed over (its last step, the handoff, journaled) and ended; the crash
    came in billing's first model call, before anything after triage was journaled. The
    resume replays every step of triage's run: the first engine counted it already."""
    wf = desk(CrashOnce(SCRIPT, "billing", 1))
    first, second = await crash_and_resume(db, wf, how, "r1")
    assert (runs(first, "triage", outcome="handoff"), timed(first, "triage")) == (1, 1)
    assert (runs(second, "triage"), timed(second, "triage")) == (0, 0)
    assert (runs(first, "billing"), timed(first, "billing")) == (0, 0)
    assert (runs(second, "billing", outcome="ok"), timed(second, "billing")) == (1, 1)
    # the resumed run's steps are billing's, all of them
    assert total(second, "convoy_steps_total", kind="model", agent="triage") == 0
    assert total(second, "convoy_steps_total", kind="model", agent="billing") == 2


@pytest.mark.parametrize("how", HOWS)
async def test_a_run_the_crash_cut_short_is_counted_once_when_it_ends(db: Path,
                                                                      how: str) -> None:
    """billing's first model call and its tool call were journaled, the crash came in its
    second model call: the first engine never saw billing's run end; the resumed one
    replays its first steps, runs the rest and counts it. triage's run, which ended
    before, is not counted again."""
    wf = desk(CrashOnce(SCRIPT, "billing", 2))
    first, second = await crash_and_resume(db, wf, how, "r2")
    assert (runs(first, "billing"), timed(first, "billing")) == (0, 0)
    assert (runs(second, "billing", outcome="ok"), timed(second, "billing")) == (1, 1)
    assert runs(first, "triage") + runs(second, "triage") == 1
    assert timed(first, "triage") + timed(second, "triage") == 1
    assert total(second, "convoy_steps_total", kind="model", agent="billing") == 1
    assert total(second, "convoy_steps_total", kind="tool") == 0


@pytest.mark.parametrize("how", HOWS)
async def test_concurrent_runs_are_counted_once_each(db: Path, how: str) -> None:
    """Two agents run side by side: ``quick`` answered (and ended) before the crash,
    which came in ``slow``'s second model call. On resume ``quick``'s run is replayed
    whole while ``slow`` still takes new steps: the journal is not exhausted when one
    ends and is when the other does, and neither tells whether a run ended before."""
    sim = CrashOnce({"quick": {"output": "fast"},
                     "slow": [{"tool_calls": [{"name": "lookup", "arguments": {"query": "x"}}]},
                              {"output": "late"}]}, "slow", 2)
    quick = convoy.Agent(name="quick", model=sim)
    slow = convoy.Agent(name="slow", tools=[lookup], model=sim)

    @convoy.workflow(name="obs.side")
    async def wf(ctx: convoy.Context, t: str) -> str:
        async def run(agent: convoy.Agent[Any, Any], c: convoy.Context) -> str:
            out: str = await c.run(agent, t)
            return out

        a, b = await ctx.gather(lambda c: run(slow, c), lambda c: run(quick, c))
        return a + b

    first, second = await crash_and_resume(db, wf, how, "r3")
    assert (runs(first, "quick"), runs(second, "quick")) == (1, 0)
    assert (runs(first, "slow"), runs(second, "slow")) == (0, 1)
    assert timed(first, "quick") + timed(second, "quick") == 1
    assert timed(first, "slow") + timed(second, "slow") == 1


@pytest.mark.parametrize("how", HOWS)
async def test_a_waiting_session_resumed_elsewhere_counts_only_its_new_runs(
        db: Path, how: str) -> None:
    """A session that parked after its agents ended (no crash): the engine that resumes
    it counts only the agent run after the wait."""
    sim = convoy.SimModel({**SCRIPT, "closer": {"output": "closed"}})
    closer = convoy.Agent(name="closer", model=sim)
    triage = convoy.Agent(name="triage", input_type=Ticket, model=sim, handoffs=[
        convoy.Agent(name="billing", input_type=Ticket, tools=[lookup], model=sim)])

    @convoy.workflow(name="obs.waits")
    async def wf(ctx: convoy.Context, t: str) -> str:
        out: str = await ctx.run(triage, {"text": t})
        await ctx.wait_for("go")
        done: str = await ctx.run(closer, out)
        return done

    first, second = Metrics(), Metrics()
    eng = convoy.Engine(db, interceptors=observed(first, how))
    try:
        assert (await eng.run(wf, "t", session_id="w1")).status == "waiting"
        await eng.signal("w1", "go", True)
        async with later_engine(db, workflows=[wf], interceptors=observed(second, how)) as e2:
            [res] = await e2.resume()
    finally:
        await eng.aclose()
    assert res.ok, res
    assert (runs(first, "triage"), runs(first, "billing"), runs(first, "closer")) == (1, 1, 0)
    assert (runs(second, "triage"), runs(second, "billing"), runs(second, "closer")) == \
        (0, 0, 1)
    assert timed(second, "triage") + timed(second, "billing") == 0
    assert timed(second, "closer") == 1
