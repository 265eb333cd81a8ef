"""One fault vocabulary: the simulator's ``Faults`` and chaos's ``FaultSpec`` name the same
kinds, parse the same strings and mean the same thing."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import BaseModel

import convoy
from convoy.chaos import FAULT_KINDS, MODEL_FAULTS, FaultInjector, FaultSpec


class Step(BaseModel):
    value: int


def test_the_simulator_and_chaos_share_one_set_of_kinds() -> None:
    sim = {f.name for f in dataclasses.fields(convoy.Faults)}
    chaos = {f.name for f in dataclasses.fields(FaultSpec)}
    assert sim == chaos
    assert set(FAULT_KINDS) <= sim and set(MODEL_FAULTS) <= set(FAULT_KINDS)
    assert {"undeclared_tool", "undeclared_handoff", "slow", "tool_failure"} <= set(FAULT_KINDS)


def test_both_parse_the_same_strings_with_the_same_aliases() -> None:
    text = "hang=0.1:2,429=0.1:0.5,5xx=0.1,malformed_json=0.1,undeclared_tool=0.1,slow=0.1:1"
    sim, spec = convoy.Faults.parse(text), FaultSpec.parse(text)
    assert dataclasses.asdict(sim) == dataclasses.asdict(spec)
    assert (sim.timeout, sim.hang_seconds, sim.rate_limit, sim.retry_after, sim.malformed) == (
        0.1, 2.0, 0.1, 0.5, 0.1)
    assert str(sim) == str(spec) and convoy.Faults.parse(str(sim)) == sim
    with pytest.raises(convoy.UserError, match="Did you mean 'timeout'"):
        convoy.Faults.parse("timeuot=0.1")


def test_the_simulator_cannot_fail_tools_and_says_what_can() -> None:
    with pytest.raises(convoy.UserError, match="FaultInjector"):
        convoy.Faults(tool_failure=0.1)


async def test_slow_adds_latency_in_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    monkeypatch.setattr("convoy.models._sim.asyncio.sleep", sleep)
    sim = convoy.SimModel(faults=convoy.Faults(slow=1.0, slow_seconds=0.25))
    resp = await sim.request(convoy.ModelRequest(
        messages=[convoy.Message(role="user", content="hi")], agent="a", step_key="0/0",
        session_id="s"))
    assert resp.text == "[a] ok" and slept == [0.25]


async def _outcome(engine_factory: Any, sim: convoy.SimModel,
                   interceptors: list[convoy.Interceptor]) -> tuple[str, str | None]:
    agent = convoy.Agent(name="solo", output_type=Step, model=sim, output_retries=0,
                         handoff_retries=0)

    @convoy.workflow(name="faults-solo")
    async def wf(ctx: convoy.Context, text: str) -> Step:
        out: Step = await ctx.run(agent, text)
        return out

    res = await engine_factory(interceptors=interceptors).run(wf, "x")
    return res.status, res.error["type"] if res.error else None


@pytest.mark.parametrize("kind", MODEL_FAULTS)
async def test_every_model_fault_means_the_same_in_the_simulator_and_chaos(
        engine_factory: Any, kind: str) -> None:
    simulated = await _outcome(engine_factory, convoy.SimModel(
        faults=convoy.Faults(**{kind: 1.0}, hang_seconds=0)), [])
    injected = await _outcome(engine_factory, convoy.SimModel(), [FaultInjector(
        FaultSpec(**{kind: 1.0}, hang_seconds=0))])
    assert simulated == injected, (simulated, injected)
    assert simulated[0] == "failed"
