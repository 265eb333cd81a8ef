"""The interceptor chain: order, typed inputs, short-circuits, timing and accounting."""

from __future__ import annotations

from typing import Any

import convoy

from .conftest import Classification

OK = {"label": "billing", "confidence": 0.9}


class Recorder(convoy.Interceptor):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def model_call(self, input: convoy.ModelCallInput, next: Any) -> Any:
        self.log.append(f"{self.name}>model:{input.agent.name}:{input.key}")
        out = await next(input)
        self.log.append(f"{self.name}<model")
        return out

    async def tool_call(self, input: convoy.ToolCallInput, next: Any) -> Any:
        self.log.append(f"{self.name}>tool:{input.tool.name}:{input.args.model_dump()}")
        return await next(input)


def tool_agent() -> tuple[convoy.Agent[Any, Any], convoy.SimModel]:
    @convoy.tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    sim = convoy.SimModel({"x": [{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]},
                                 {"output": OK}]}, usage=(100, 20))
    return convoy.Agent(name="x", output_type=Classification, tools=[add], model=sim), sim


def flow(agent: convoy.Agent[Any, Any]) -> convoy.Workflow[Any, Any]:
    @convoy.workflow(name="ic")
    async def wf(ctx: convoy.Context, t: str) -> Classification:
        out: Classification = await ctx.run(agent, t)
        return out

    return wf


async def test_interceptors_run_in_order_with_typed_inputs(engine_factory: Any) -> None:
    log: list[str] = []
    agent, _ = tool_agent()
    eng = engine_factory(interceptors=[Recorder("outer", log), Recorder("inner", log)])
    res = await eng.run(flow(agent), "t")
    assert res.ok
    assert log == [
        "outer>model:x:0/0", "inner>model:x:0/0", "inner<model", "outer<model",
        "outer>tool:add:{'a': 1, 'b': 2}", "inner>tool:add:{'a': 1, 'b': 2}",
        "outer>model:x:0/2", "inner>model:x:0/2", "inner<model", "outer<model",
    ]


async def test_an_interceptor_can_short_circuit_a_step(engine_factory: Any) -> None:
    class Cache(convoy.Interceptor):
        async def model_call(self, input: convoy.ModelCallInput, next: Any) -> Any:
            return convoy.ModelResponse(text='{"label": "cached", "confidence": 1}')

    agent, sim = tool_agent()
    res = await engine_factory(interceptors=[Cache()]).run(flow(agent), "t")
    assert res.ok and res.output == Classification(label="cached", confidence=1)
    assert sim.calls == 0


async def test_step_timing_and_cost_accounting_are_interceptors(engine_factory: Any) -> None:
    agent, _ = tool_agent()
    prices = convoy.PriceTable(
        {"sim:default": convoy.Price(input_per_mtok=1.0, output_per_mtok=2.0)})
    eng = engine_factory(prices=prices)
    res = await eng.run(flow(agent), "t")
    assert eng.timings.by_kind["model"].count == 2
    assert eng.timings.by_kind["tool"].count == 1
    expected = 2 * (100 * 1.0 + 20 * 2.0) / 1e6
    assert abs(res.cost - expected) < 1e-12
    spend = eng.accounting.by_agent["x"]
    assert spend.calls == 2 and spend.usage.input_tokens == 200
    assert abs(eng.accounting.by_tenant["default"].cost - expected) < 1e-12
    row = await eng.store.get_session(res.id)
    assert row is not None and abs(row.cost - expected) < 1e-12


async def test_replayed_steps_skip_the_chain(engine_factory: Any) -> None:
    log: list[str] = []
    agent, _ = tool_agent()
    eng = engine_factory(interceptors=[Recorder("r", log)])
    res = await eng.run(flow(agent), "t")
    n = len(log)
    rr = await eng.replay(res.id)
    assert rr.matches and len(log) == n


def test_unknown_prices_cost_nothing_and_are_reported() -> None:
    table = convoy.PriceTable()
    assert table.cost("openai:some-new-model", convoy.Usage(1000, 1000)) == 0.0
    assert "openai:some-new-model" in table.unknown
    assert table.cost("openai:gpt-4o-mini", convoy.Usage(1_000_000, 0)) == 0.15
