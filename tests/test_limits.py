"""Every session ends: step, handoff, depth and wall-clock limits, repeats and ping-pong."""

from __future__ import annotations

import json
from typing import Any

import convoy
from convoy import ModelRequest

from .conftest import Ticket


def flow(agent: convoy.Agent[Any, Any]) -> convoy.Workflow[Any, Any]:
    @convoy.workflow(name=f"limits-{agent.name}")
    async def wf(ctx: convoy.Context, t: Ticket) -> str:
        out: str = await ctx.run(agent, t)
        return out

    return wf


def ping_pong_agents(same_input: bool) -> convoy.Agent[Any, Any]:
    def script(req: ModelRequest) -> Any:
        other = "b" if req.agent == "a" else "a"
        text = "same" if same_input else f"{req.agent}-{len(req.messages[-1].content or '')}"
        if not same_input:
            prev = json.loads(req.messages[-1].content or "{}").get("text", "")
            text = prev + "."
        return {"handoff": other, "payload": {"text": text}}

    sim = convoy.SimModel(script)
    b = convoy.Agent(name="b", input_type=Ticket, model=sim, handoffs=["a"])
    return convoy.Agent(name="a", input_type=Ticket, model=sim, handoffs=[b])


async def test_same_agent_same_input_is_a_loop(engine_factory: Any) -> None:
    a = ping_pong_agents(same_input=True)
    res = await engine_factory().run(flow(a), {"text": "same"})
    assert res.status == "loop_detected"
    assert res.error is not None and "same input a second time" in res.error["message"]


async def test_ping_pong_with_changing_inputs_is_a_loop(engine_factory: Any) -> None:
    a = ping_pong_agents(same_input=False)
    res = await engine_factory(limits=convoy.Limits(max_ping_pong=3)).run(flow(a), {"text": "x"})
    assert res.status == "loop_detected"
    assert res.error is not None and "handed over to each other 3 times" in res.error["message"]
    assert res.steps <= 2 * 7  # ended within a few handoffs, not at max_steps


async def test_handoff_limit(engine_factory: Any) -> None:
    a = ping_pong_agents(same_input=False)
    limits = convoy.Limits(max_handoffs=2, max_ping_pong=50)
    res = await engine_factory(limits=limits).run(flow(a), {"text": "x"})
    assert res.status == "limit_exceeded"
    assert res.error is not None and "max_handoffs=2" in res.error["message"]


async def test_step_limit_stops_a_tool_call_loop(engine_factory: Any) -> None:
    @convoy.tool
    def poll() -> str:
        """Poll."""
        return "not yet"

    sim = convoy.SimModel({"a": {"tool_calls": [{"name": "poll"}]}})
    a = convoy.Agent(name="a", input_type=Ticket, tools=[poll], model=sim, max_turns=1000)
    res = await engine_factory(limits=convoy.Limits(max_steps=25)).run(flow(a), {"text": "x"})
    assert res.status == "limit_exceeded"
    assert res.error is not None and "max_steps=25" in res.error["message"]
    assert res.steps == 26


async def test_depth_limit_on_recursive_delegation(engine_factory: Any) -> None:
    def script(req: ModelRequest) -> Any:
        n = len(req.messages[-1].content or "")
        if any(m.role == "tool" for m in req.messages):
            return {"text": "done"}
        return {"delegate": "rec", "payload": {"task": "x" * (n + 1)}}

    sim = convoy.SimModel(script)
    rec = convoy.Agent(name="rec", model=sim, workers=["rec"])
    res = await engine_factory(limits=convoy.Limits(max_depth=4)).run(flow(rec), {"text": "x"})
    assert res.status == "limit_exceeded"
    assert res.error is not None and "max_depth=4" in res.error["message"]


async def test_wall_clock_limit_ends_a_hung_session(engine_factory: Any) -> None:
    sim = convoy.SimModel({"a": {"text": "late"}}, latency=30.0)
    a = convoy.Agent(name="a", input_type=Ticket, model=sim)
    res = await engine_factory(limits=convoy.Limits(max_seconds=0.2)).run(flow(a), {"text": "x"})
    assert res.status == "limit_exceeded"
    assert res.error is not None and "max_seconds" in res.error["message"]


async def test_workflow_code_cannot_swallow_a_limit(engine_factory: Any) -> None:
    a = ping_pong_agents(same_input=True)

    @convoy.workflow(name="swallow")
    async def wf(ctx: convoy.Context, t: Ticket) -> str:
        try:
            await ctx.run(a, t)
        except Exception:
            return "swallowed"
        return "no"

    res = await engine_factory().run(wf, {"text": "same"})
    assert res.status == "loop_detected"
