"""Typed agents, the validation layer, tools, handoffs and the orchestration patterns."""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest
from pydantic import BaseModel

import convoy
from convoy import ModelRequest

from .conftest import Classification, Ticket

OK = {"label": "billing", "confidence": 0.9}


def single(agent: convoy.Agent[Any, Any]) -> convoy.Workflow[Any, Any]:
    @convoy.workflow(name=f"single-{agent.name}")
    async def wf(ctx: convoy.Context, t: Ticket) -> Any:
        return await ctx.run(agent, t)

    return wf


async def test_typed_output_is_validated(engine_factory: Any) -> None:
    sim = convoy.SimModel({"a": {"output": OK}})
    agent = convoy.Agent(name="a", input_type=Ticket, output_type=Classification, model=sim)
    res = await engine_factory().run(single(agent), {"text": "hi"})
    assert res.ok
    assert res.output == Classification(**OK)
    assert res.steps == 1
    assert res.usage.input_tokens > 0


async def test_invalid_output_is_reprompted_with_the_errors(engine_factory: Any) -> None:
    seen: list[ModelRequest] = []

    def script(req: ModelRequest) -> dict[str, Any]:
        seen.append(req)
        if len(seen) == 1:
            return {"output": {"label": "billing"}}  # confidence missing
        return {"output": OK}

    agent = convoy.Agent(name="a", output_type=Classification, model=convoy.SimModel(script))
    res = await engine_factory().run(single(agent), {"text": "x"})
    assert res.ok and res.steps == 2
    repair = seen[1].messages[-1].content or ""
    assert "confidence" in repair and "Field required" in repair


async def test_output_still_invalid_after_retries_is_a_typed_failure(engine_factory: Any) -> None:
    sim = convoy.SimModel({"a": {"text": "not json at all"}})
    agent = convoy.Agent(name="a", output_type=Classification, model=sim, output_retries=2)
    res = await engine_factory().run(single(agent), {"text": "x"})
    assert res.status == "failed"
    assert res.error is not None and res.error["type"] == "OutputValidationError"
    assert res.steps == 3  # first try + 2 repairs
    assert sim.calls == 3


async def test_output_validation_error_is_journaled_as_classify_sees_it(
        engine_factory: Any) -> None:
    # Output still invalid after the repair attempts is a contract violation: terminal.
    # The journaled record, the rebuilt error and classify() must all say the same.
    from convoy._errors import error_from_record
    from convoy.resilience import classify

    sim = convoy.SimModel({"a": {"text": "not json at all"}})
    agent = convoy.Agent(name="a", output_type=Classification, model=sim, output_retries=1)
    engine = engine_factory()
    res = await engine.run(single(agent), {"text": "x"})
    row = await engine.store.get_session(res.id)
    assert row is not None and row.error_record is not None
    for rec in (res.error, row.error_record):
        assert rec is not None and rec["type"] == "OutputValidationError"
        assert rec["retryable"] is False
        again = error_from_record(rec)
        assert isinstance(again, convoy.OutputValidationError)
        assert again.retryable is False and classify(again) == "terminal"


@pytest.mark.parametrize("cls", [convoy.OutputValidationError, convoy.CircuitOpenError,
                                 convoy.PolicyDenied])
def test_terminal_error_kinds_never_say_retryable(cls: type[convoy.StepError]) -> None:
    from convoy.resilience import classify

    err = cls("x", retryable=True)
    assert err.retryable is False and err.to_record()["retryable"] is False
    assert classify(err) == "terminal"


async def test_tool_arguments_are_validated_before_the_tool_runs(engine_factory: Any) -> None:
    calls: list[int] = []

    @convoy.tool
    def double(n: int) -> int:
        """Double a number."""
        calls.append(n)
        return 2 * n

    replies: list[Any] = [
        {"tool_calls": [{"name": "double", "arguments": {"n": "not a number"}}]},
        {"tool_calls": [{"name": "double", "arguments": {"n": 21}}]},
        {"output": OK},
    ]
    seen: list[ModelRequest] = []

    def script(req: ModelRequest) -> Any:
        seen.append(req)
        return replies[len(seen) - 1]

    agent = convoy.Agent(name="a", output_type=Classification, tools=[double],
                         model=convoy.SimModel(script))
    res = await engine_factory().run(single(agent), {"text": "x"})
    assert res.ok
    assert calls == [21]
    first_reply = seen[1].messages[-1]
    assert first_reply.role == "tool" and "invalid arguments" in (first_reply.content or "")
    assert seen[2].messages[-1].content == "42"


async def test_tool_results_are_validated(engine_factory: Any) -> None:
    @convoy.tool
    def broken() -> int:
        """Returns the wrong type."""
        return "nope"  # type: ignore[return-value]

    sim = convoy.SimModel({"a": [{"tool_calls": [{"name": "broken"}]}, {"output": OK}]})
    agent = convoy.Agent(name="a", output_type=Classification, tools=[broken], model=sim)
    seen: list[str] = []

    class Spy(convoy.Interceptor):
        async def model_call(self, input: convoy.ModelCallInput, next: Any) -> Any:
            seen.extend(m.content or "" for m in input.request.messages if m.role == "tool")
            return await next(input)

    res = await engine_factory(interceptors=[Spy()]).run(single(agent), {"text": "x"})
    assert res.ok
    assert any("invalid result" in s for s in seen)


async def test_undeclared_handoff_is_fed_back_with_the_valid_options(engine_factory: Any) -> None:
    billing = convoy.Agent(name="billing", input_type=Ticket, output_type=Classification,
                           model=convoy.SimModel({"billing": {"output": OK}}))
    seen: list[ModelRequest] = []

    def script(req: ModelRequest) -> Any:
        seen.append(req)
        if len(seen) == 1:
            return {"handoff": "refunds", "payload": {"text": "x"}}
        return {"handoff": "billing", "payload": {"text": "charged twice"}}

    triage = convoy.Agent(name="triage", input_type=Ticket, output_type=Classification,
                          handoffs=[billing], model=convoy.SimModel(script))
    res = await engine_factory().run(single(triage), {"text": "hello"})
    assert res.ok and res.output == Classification(**OK)
    err = seen[1].messages[-1].content or ""
    assert "'refunds' is not a declared handoff target" in err and "billing" in err


async def test_invalid_handoff_payload_is_recoverable_then_bounded(engine_factory: Any) -> None:
    billing = convoy.Agent(name="billing", input_type=Ticket, output_type=Classification)
    sim = convoy.SimModel({"triage": {"handoff": "billing", "payload": {"wrong": 1}}})
    triage = convoy.Agent(name="triage", input_type=Ticket, output_type=Classification,
                          handoffs=[billing], model=sim, handoff_retries=2)
    res = await engine_factory().run(single(triage), {"text": "hello"})
    assert res.status == "failed"
    assert res.error is not None and res.error["type"] == "HandoffError"
    assert "invalid payload" in res.error["message"]
    assert sim.calls == 3


async def test_supervisor_gets_control_back_and_workers_run_in_parallel(
        engine_factory: Any) -> None:
    class Report(BaseModel):
        workers: list[str]

    class Done(BaseModel):
        worker: str

    order: list[str] = []

    def boss(req: ModelRequest) -> Any:
        results = [m for m in req.messages if m.role == "tool"]
        if not results:
            return {"tool_calls": [{"name": "w1", "arguments": {"task": "a"}},
                                   {"name": "w2", "arguments": {"task": "b"}}]}
        return {"output": {"workers": [json.loads(m.content or "")["worker"]
                                       for m in results]}}

    def worker(req: ModelRequest) -> Any:
        order.append(req.agent)
        return {"output": {"worker": req.agent}}

    wsim = convoy.SimModel(worker, latency=0.01)
    w1 = convoy.Agent(name="w1", output_type=Done, model=wsim)
    w2 = convoy.Agent(name="w2", output_type=Done, model=wsim)
    sup = convoy.Agent(name="boss", output_type=Report, model=convoy.SimModel(boss))

    @convoy.workflow(name="sup")
    async def wf(ctx: convoy.Context, t: str) -> Report:
        return await convoy.supervisor(ctx, sup, [w1, w2], t)

    eng = engine_factory()
    res = await eng.run(wf, "ticket")
    assert res.ok and res.output == Report(workers=["w1", "w2"])
    assert sorted(order) == ["w1", "w2"]
    keys = [r.key for r in await eng.store.journal(res.id)]
    assert sorted(keys) == ["0/0", "0/1/0", "0/2/0", "0/3"]


async def test_pipeline_and_fan_out(engine_factory: Any) -> None:
    class Summary(BaseModel):
        n: int

    def script(req: ModelRequest) -> Any:
        if req.agent == "reduce":
            payload = json.loads(req.messages[-1].content or "")
            return {"output": {"n": len(payload["results"])}}
        return {"output": OK}

    sim = convoy.SimModel(script)
    a = convoy.Agent(name="a", output_type=Classification, model=sim)
    b = convoy.Agent(name="b", input_type=Classification, output_type=Classification, model=sim)
    red = convoy.Agent(name="reduce", output_type=Summary, model=sim)

    @convoy.workflow(name="pf")
    async def wf(ctx: convoy.Context, texts: list[str]) -> Summary:
        first = await convoy.pipeline(ctx, [a, b], texts[0])
        assert first == Classification(**OK)
        out: Summary = await convoy.fan_out(ctx, a, texts, reducer=red)
        return out

    res = await engine_factory().run(wf, ["x", "y", "z"])
    assert res.ok and res.output == Summary(n=3)
    assert res.steps == 2 + 3 + 1


async def test_recursive_decomposition_stops_at_the_depth_limit(engine_factory: Any) -> None:
    class Plan(BaseModel):
        subtasks: list[str]

    class Answer(BaseModel):
        text: str

    def script(req: ModelRequest) -> Any:
        content = req.messages[-1].content or ""
        payload = json.loads(content) if content.startswith("{") else {"task": content}
        if req.agent == "planner":  # always wants to split: the depth limit must stop it
            return {"output": {"subtasks": [payload["task"] + ".1", payload["task"] + ".2"]}}
        if req.agent == "solver":
            return {"output": {"text": payload["task"]}}
        return {"output": {"text": "+".join(r["text"] for r in payload["results"])}}

    sim = convoy.SimModel(script)
    planner = convoy.Agent(name="planner", output_type=Plan, model=sim)
    solver = convoy.Agent(name="solver", output_type=Answer, model=sim)
    combiner = convoy.Agent(name="combiner", output_type=Answer, model=sim)

    @convoy.workflow(name="dec")
    async def wf(ctx: convoy.Context, task: str) -> Answer:
        out: Answer = await convoy.decompose(ctx, task, planner=planner, solver=solver,
                                             combiner=combiner, max_depth=2)
        return out

    res = await engine_factory().run(wf, "t")
    assert res.ok
    assert res.output == Answer(text="t.1.1+t.1.2+t.2.1+t.2.2")


def test_agent_definition_errors_are_clear() -> None:
    with pytest.raises(convoy.UserError, match="agent name"):
        convoy.Agent(name="bad name")
    a = convoy.Agent(name="x")
    with pytest.raises(convoy.UserError, match="two tools/workers/handoffs are named 'x'"):
        convoy.Agent(name="y", workers=[a, a])


def test_unknown_provider_suggests_the_closest() -> None:
    with pytest.raises(convoy.UserError, match="Did you mean 'openai:gpt'"):
        convoy.infer_model("opneai:gpt")


def test_tool_schema_comes_from_the_signature() -> None:
    @convoy.tool(writes=True)
    def refund(ctx: convoy.ToolContext, invoice: str, amount: float,
               mode: Literal["card", "credit"] = "card") -> dict[str, str]:
        """Refund an invoice."""
        return {}

    assert refund.writes and not refund.idempotent and refund.takes_ctx
    assert refund.spec.description == "Refund an invoice."
    assert set(refund.spec.parameters["properties"]) == {"invoice", "amount", "mode"}
    assert refund.spec.parameters["required"] == ["invoice", "amount"]


async def test_an_agent_without_a_model_is_an_error_not_the_simulator(
        engine_factory: Any) -> None:
    agent = convoy.Agent(name="nomodel", output_type=Classification)
    assert agent.model is None
    res = await engine_factory().run(single(agent), {"text": "x"})
    assert res.status == "failed"
    assert res.error is not None and res.error["type"] == "UserError"
    msg = res.error["message"]
    assert "'nomodel'" in msg and "model='sim:'" in msg and "Engine(model=" in msg
    sim = convoy.SimModel({"nomodel": {"output": OK}})
    assert (await engine_factory(model=sim).run(single(agent), {"text": "x"})).ok


async def test_agent_model_settings_reach_the_model_request(engine_factory: Any) -> None:
    seen: list[ModelRequest] = []

    def script(req: ModelRequest) -> dict[str, Any]:
        seen.append(req)
        return {"output": OK}

    settings = convoy.ModelSettings(temperature=0.1, max_tokens=64)
    agent = convoy.Agent(name="a", output_type=Classification, model=convoy.SimModel(script),
                         model_settings=settings)
    assert (await engine_factory().run(single(agent), {"text": "x"})).ok
    assert seen[0].settings == settings


class Back(BaseModel):
    text: str
    back: bool = False


async def test_handoffs_both_ways_by_name(engine_factory: Any) -> None:
    """billing names triage by string: triage, defined after it, can hand off to billing
    and billing back to triage; the handoff tool carries triage's input schema."""
    seen: dict[str, list[ModelRequest]] = {"triage": [], "billing": []}

    def script(req: ModelRequest) -> Any:
        seen[req.agent].append(req)
        if req.agent == "billing":
            return {"handoff": "triage", "payload": {"text": "not billing", "back": True}}
        if json.loads(req.messages[-1].content or "{}").get("back"):
            return {"output": OK}
        return {"handoff": "billing", "payload": {"text": "charged twice"}}

    sim = convoy.SimModel(script)
    billing = convoy.Agent(name="billing", input_type=Ticket, output_type=Classification,
                           handoffs=["triage"], model=sim)
    triage = convoy.Agent(name="triage", input_type=Back, output_type=Classification,
                          handoffs=[billing], model=sim)
    res = await engine_factory().run(single(triage), {"text": "hello"})
    assert res.ok and res.output == Classification(**OK), res.error
    (spec,) = seen["billing"][0].tools
    assert spec.name == "transfer_to_triage"
    assert spec.parameters["properties"].keys() == {"text", "back"}
    assert [h if isinstance(h, str) else h.name for h in billing.handoffs] == ["triage"]


async def test_an_unresolvable_name_fails_the_session_naming_it(engine_factory: Any) -> None:
    a = convoy.Agent(name="a", input_type=Ticket, handoffs=["ghost"],
                     model=convoy.SimModel({"a": {"text": "x"}}))
    res = await engine_factory().run(single(a), {"text": "hello"})
    assert res.status == "failed" and res.error is not None
    msg = res.error["message"]
    assert "'ghost'" in msg and "'a'" in msg and "agents=" in msg, msg


async def test_names_resolve_through_the_workflow_agents(engine_factory: Any) -> None:
    sim = convoy.SimModel({"a": {"handoff": "b", "payload": {"text": "y"}},
                           "b": {"output": OK}})
    a = convoy.Agent(name="a", input_type=Ticket, output_type=Classification,
                     handoffs=["b"], model=sim)
    b = convoy.Agent(name="b", input_type=Ticket, output_type=Classification, model=sim)

    @convoy.workflow(name="registry", agents=[b])
    async def wf(ctx: convoy.Context, t: Ticket) -> Any:
        return await ctx.run(a, t)

    res = await engine_factory().run(wf, {"text": "hello"})
    assert res.ok and res.output == Classification(**OK), res.error


async def test_a_worker_named_by_string(engine_factory: Any) -> None:
    def script(req: ModelRequest) -> Any:
        if req.agent == "helper":
            return {"text": "helped"}
        if any(m.role == "tool" for m in req.messages):
            return {"text": "boss: " + (req.messages[-1].content or "")}
        return {"delegate": "helper", "payload": {"task": "help"}}

    sim = convoy.SimModel(script)
    boss = convoy.Agent(name="boss", input_type=Ticket, workers=["helper"], model=sim)
    helper = convoy.Agent(name="helper", model=sim)

    @convoy.workflow(name="named-worker", agents=[helper])
    async def wf(ctx: convoy.Context, t: Ticket) -> Any:
        return await ctx.run(boss, t)

    res = await engine_factory().run(wf, {"text": "hello"})
    assert res.ok and res.output == "boss: helped", res.error


def test_names_in_handoffs_are_checked_at_definition() -> None:
    with pytest.raises(convoy.UserError, match="agent name"):
        convoy.Agent(name="a", handoffs=["no spaces"])
    with pytest.raises(convoy.UserError, match="two tools/workers/handoffs are named"):
        convoy.Agent(name="a", handoffs=["b", "b"])


def test_annotated_constraints_of_tool_arguments_are_kept() -> None:
    from typing import Annotated

    from pydantic import Field

    @convoy.tool
    def refund(invoice_id: Annotated[str, Field(max_length=12)],
               amount: Annotated[float, Field(gt=0)]) -> str:
        """Refund."""
        return invoice_id

    props = refund.spec.parameters["properties"]
    assert props["invoice_id"]["maxLength"] == 12 and props["amount"]["exclusiveMinimum"] == 0
    with pytest.raises(ValueError, match="amount"):
        refund.validate_args('{"invoice_id": "INV-1", "amount": -3}')
