"""Tools that fail, time out or are refused by their breaker: reported to the model as
that, counted apart from invalid calls, and ending a session with the tool's own error."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import convoy
from convoy import ModelRequest
from convoy.resilience import BreakerPolicy, Breakers, Timeout

from .conftest import Classification
from .fakeclock import FakeClock

OK = {"label": "billing", "confidence": 0.9}


@convoy.tool
async def slow_lookup(id: int) -> int:
    """Hangs far past any timeout."""
    await asyncio.sleep(30)
    return id


@convoy.tool
def broken_lookup(id: int) -> int:
    """Its backend is down."""
    raise ConnectionError("backend down")


def flow(agent: convoy.Agent[Any, Any]) -> convoy.Workflow[Any, Any]:
    @convoy.workflow(name=f"tools-{agent.name}")
    async def wf(ctx: convoy.Context, t: str) -> Any:
        return await ctx.run(agent, t)

    return wf


def calls_until(tool: str, stop: str | None,
                seen: list[ModelRequest]) -> convoy.SimModel:
    """Calls ``tool`` every turn until a tool message contains ``stop``, then answers."""
    def script(req: ModelRequest) -> Any:
        seen.append(req)
        last = req.messages[-1]
        if stop is not None and last.role == "tool" and stop in (last.content or ""):
            return {"output": OK}
        return {"tool_calls": [{"name": tool, "arguments": {"id": 7}}]}

    return convoy.SimModel(script)


def tool_replies(req: ModelRequest) -> list[dict[str, Any]]:
    return [json.loads(m.content or "{}") for m in req.messages if m.role == "tool"]


async def test_a_timed_out_tool_is_reported_to_the_model_and_not_a_mistake(
        engine_factory: Any) -> None:
    seen: list[ModelRequest] = []
    # handoff_retries=0: a timeout counted as an invalid call would end the run at once
    agent = convoy.Agent(name="a", output_type=Classification, tools=[slow_lookup],
                         model=calls_until("slow_lookup", "timed out", seen),
                         handoff_retries=0)
    res = await engine_factory(interceptors=[Timeout(tool=0.05)]).run(flow(agent), "q")
    assert res.ok, res.error
    reply = tool_replies(seen[-1])[-1]
    assert "timed out" in reply["error"] and "slow_lookup" in reply["error"]
    assert reply["timed_out"] is True and reply["retryable"] is True


async def test_tool_timeouts_past_the_budget_end_the_run_with_the_tools_error(
        engine_factory: Any) -> None:
    seen: list[ModelRequest] = []
    agent = convoy.Agent(name="a", output_type=Classification, tools=[slow_lookup],
                         model=calls_until("slow_lookup", None, seen), tool_failures=2)
    res = await engine_factory(interceptors=[Timeout(tool=0.05)]).run(flow(agent), "q")
    assert res.status == "failed"
    assert res.error is not None
    assert res.error["type"] == "ToolError", res.error
    assert res.error["retryable"] is True and res.error["attrs"]["timeout"] is True
    assert "slow_lookup" in res.error["message"]
    assert len(seen) == 3  # the first call and the 2 the budget allows


async def test_an_open_tool_breaker_is_reported_as_unavailable(engine_factory: Any) -> None:
    seen: list[ModelRequest] = []
    policy = BreakerPolicy(window_type="count", window=10, minimum_calls=2,
                           wait_in_open=600)
    breakers = Breakers(policy, clock=FakeClock())
    agent = convoy.Agent(name="a", output_type=Classification, tools=[broken_lookup],
                         model=calls_until("broken_lookup", "unavailable", seen),
                         handoff_retries=0)
    res = await engine_factory(interceptors=[breakers]).run(flow(agent), "q")
    assert res.ok, res.error
    replies = tool_replies(seen[-1])
    assert len(replies) == 3  # two failures open the circuit; the third call is refused
    assert "backend down" in replies[0]["error"]
    assert "unavailable" in replies[-1]["error"] and replies[-1]["unavailable"] is True


async def test_an_open_tool_breaker_ends_the_run_as_circuit_open(engine_factory: Any) -> None:
    policy = BreakerPolicy(window_type="count", window=10, minimum_calls=2,
                           wait_in_open=600)
    breakers = Breakers(policy, clock=FakeClock())
    eng = engine_factory(interceptors=[breakers])
    opener = convoy.Agent(name="a", output_type=Classification, tools=[broken_lookup],
                          model=calls_until("broken_lookup", "unavailable", []))
    assert (await eng.run(flow(opener), "open it")).ok
    agent = convoy.Agent(name="b", output_type=Classification, tools=[broken_lookup],
                         model=calls_until("broken_lookup", None, []), tool_failures=0)
    res = await eng.run(flow(agent), "q")
    assert res.status == "failed"
    assert res.error is not None and res.error["type"] == "CircuitOpenError", res.error


async def test_replay_of_a_run_with_tool_failures_matches(engine_factory: Any) -> None:
    seen: list[ModelRequest] = []
    agent = convoy.Agent(name="a", output_type=Classification, tools=[slow_lookup],
                         model=calls_until("slow_lookup", "timed out", seen))
    eng = engine_factory(interceptors=[Timeout(tool=0.05)])
    res = await eng.run(flow(agent), "q")
    assert res.ok
    rr = await eng.replay(res.id)
    assert rr.matches, rr


def test_tool_failures_must_not_be_negative() -> None:
    with pytest.raises(convoy.UserError, match="tool_failures"):
        convoy.Agent(name="a", tool_failures=-1)
