"""An agent that runs out of turns fails its own run with ``AgentTurnsExhausted``, not the
session: the workflow can catch it and route the work elsewhere (with the transcript so far),
and that route replays and resumes like any other outcome. Uncaught, the session fails with
the typed error. Session-level ``Limits`` stay session-level (``limit_exceeded``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import convoy
from convoy._errors import error_from_record
from convoy.resilience import classify

from .conftest import Ticket


@convoy.tool
def poll() -> str:
    """Poll the job."""
    return "not yet"


class Handover(BaseModel):
    """Where the workflow routed a ticket its worker could not finish."""

    queue: str
    agent: str
    max_turns: int
    roles: list[str]
    first_call: str


def desk(max_turns: int = 3) -> tuple[convoy.SimModel, convoy.Agent[Any, Any]]:
    """A boss that delegates to a worker which only ever polls."""
    sim = convoy.SimModel({"worker": {"tool_calls": [{"name": "poll"}]},
                           "boss": {"delegate": "worker", "payload": {"text": "do it"}}})
    worker = convoy.Agent(name="worker", instructions="Work.", input_type=Ticket, tools=[poll],
                          model=sim, max_turns=max_turns)
    boss = convoy.Agent(name="boss", instructions="Delegate.", input_type=Ticket,
                        workers=[worker], model=sim)
    return sim, boss


def routed(boss: convoy.Agent[Any, Any]) -> convoy.Workflow[Any, Any]:
    @convoy.workflow(name="turns-routed")
    async def wf(ctx: convoy.Context, t: Ticket) -> Handover | str:
        try:
            out: str = await ctx.run(boss, t)
        except convoy.AgentTurnsExhausted as e:
            queue = await ctx.step("human_queue", _enqueue, idempotent=True)
            return Handover(queue=queue, agent=e.agent, max_turns=e.max_turns,
                            roles=[m["role"] for m in e.transcript],
                            first_call=e.transcript[2]["tool_calls"][0]["name"])
        return out

    return wf


async def _enqueue() -> str:
    return "humans"


def plain(agent: convoy.Agent[Any, Any]) -> convoy.Workflow[Any, Any]:
    @convoy.workflow(name="turns-plain")
    async def wf(ctx: convoy.Context, t: Ticket) -> str:
        out: str = await ctx.run(agent, t)
        return out

    return wf


def test_a_per_agent_failure_not_a_session_signal() -> None:
    e = convoy.AgentTurnsExhausted("out of turns", agent="worker", max_turns=3)
    assert isinstance(e, convoy.StepError) and isinstance(e, Exception)
    assert not isinstance(e, convoy.SessionTerminated)
    assert not e.retryable and classify(e) == "terminal"
    assert convoy.AgentTurnsExhausted("x", retryable=True).retryable is False  # terminal


async def test_uncaught_it_fails_the_session_with_the_typed_error(engine_factory: Any) -> None:
    sim, boss = desk()
    worker = boss.workers[0]
    res = await engine_factory().run(plain(worker), {"text": "x"})
    assert res.status == "failed"  # not limit_exceeded: no session limit was reached
    assert res.error is not None and res.error["type"] == "AgentTurnsExhausted"
    assert "max_turns=3" in res.error["message"]
    again = error_from_record(res.error)
    assert isinstance(again, convoy.AgentTurnsExhausted)
    assert (again.agent, again.max_turns) == ("worker", 3)
    roles = [m["role"] for m in again.transcript]
    assert roles == ["system", "user"] + ["assistant", "tool"] * 3
    assert sim.calls == 3 and res.steps == 6  # three model calls, three polls


async def test_the_workflow_catches_it_and_routes_the_ticket(engine_factory: Any) -> None:
    sim, boss = desk()
    engine = engine_factory()
    res = await engine.run(routed(boss), {"text": "x"}, session_id="t-1")
    assert res.status == "completed", res.error
    assert res.output == Handover(queue="humans", agent="worker", max_turns=3,
                                  roles=["system", "user"] + ["assistant", "tool"] * 3,
                                  first_call="poll")
    calls = sim.calls
    rr = await engine.replay("t-1")  # re-derived from the journaled turns, no model call
    assert rr.matches, rr
    assert sim.calls == calls


class SimulatedCrash(BaseException):
    """Stands in for the process dying (nothing catches it)."""


class CrashOnEffect(convoy.Interceptor):
    async def effect(self, input: convoy.EffectInput,
                     next: Callable[[convoy.EffectInput], Awaitable[Any]]) -> Any:
        raise SimulatedCrash


async def test_the_route_resumes_after_a_crash_without_calling_the_model(
        tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    sim, boss = desk()
    async with convoy.Engine(db, interceptors=[CrashOnEffect()]) as engine:
        with pytest.raises(SimulatedCrash):
            await engine.run(routed(boss), {"text": "x"}, session_id="t-2")
        crashed = engine.owner
    calls = sim.calls
    assert calls == 1 + 3  # the boss's delegation and the worker's three turns
    async with convoy.Engine(db) as engine:
        assert await engine.store.expire_owner(crashed) == 1
        wf = routed(boss)
        engine.register(wf)
        [res] = await engine.resume()
    assert res.status == "completed", res.error
    assert isinstance(res.output, Handover) and res.output.agent == "worker"
    assert sim.calls == calls  # the turns replayed from the journal


async def test_session_limits_stay_session_level(engine_factory: Any) -> None:
    _, boss = desk(max_turns=1000)
    res = await engine_factory(limits=convoy.Limits(max_steps=25)).run(
        routed(boss), {"text": "x"})
    assert res.status == "limit_exceeded"  # the workflow's except did not swallow it
    assert res.error is not None and "max_steps=25" in res.error["message"]
