"""Escalation instead of failure: with ``Escalation`` rules, an agent run that fails (or
answers with low confidence) becomes an inbox task with its reason and history; the
reviewer approves, edits (validated), rejects or comments, and the session goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import convoy
from convoy.cost import Budget, Budgets
from convoy.models._messages import ModelRequest
from convoy.stores import SQLiteStore

from .conftest import FakeClock


class Verdict(BaseModel):
    label: str
    confidence: float


def _engine(db: Path, sim: convoy.SimModel, **kw: Any) -> convoy.Engine:
    return convoy.Engine(SQLiteStore(db, clock=FakeClock()), models={"sim:": sim}, **kw)


def _flow(agent: convoy.Agent[Any, Any], name: str) -> convoy.Workflow[str, Any]:
    @convoy.workflow(name=name)
    async def flow(ctx: convoy.Context, text: str) -> Any:
        out = await ctx.run(agent, text)
        return out.model_dump() if isinstance(out, BaseModel) else out

    return flow


judge = convoy.Agent(name="judge", output_type=Verdict, model="sim:", output_retries=1,
                     escalation=convoy.Escalation(on=["invalid_output"], queue="review"))
judge_flow = _flow(judge, "esc.judge")
ALWAYS_BAD = convoy.SimModel({"judge": {"text": "I think it is spam"}})


async def test_invalid_output_goes_to_a_person_who_edits_it(db: Path) -> None:
    async with _engine(db, ALWAYS_BAD) as eng:
        res = await eng.run(judge_flow, "mail", session_id="j1")
        assert res.status == "waiting"
        [task] = await eng.inbox.tasks()
        assert task.kind == "escalation" and task.queue == "review"
        assert task.reason is not None and task.reason.startswith("invalid_output: ")
        assert task.proposal == "I think it is spam"  # the last answer, for the reviewer
        history = task.history or {}
        assert history["agent"] == "judge" and history["input"] == "mail"
        assert history["error"]["type"] == "OutputValidationError"
        assert history["last_output"] == "I think it is spam"
        with pytest.raises(convoy.UserError, match="confidence"):
            await eng.inbox.edit(task.id, {"label": "spam"}, by="ann")
        await eng.inbox.edit(task.id, {"label": "spam", "confidence": 1.0}, by="ann")
        [res] = await eng.resume()
        assert res.ok and res.output == {"label": "spam", "confidence": 1.0}
        assert (await eng.replay("j1")).matches


async def test_a_rejected_escalation_fails_with_the_original_error(db: Path) -> None:
    async with _engine(db, ALWAYS_BAD) as eng:
        await eng.run(judge_flow, "mail", session_id="j2")
        [task] = await eng.inbox.tasks()
        await eng.inbox.reject(task.id, by="ann", comment="unfixable")
        [res] = await eng.resume()
        assert res.status == "failed" and res.error["type"] == "OutputValidationError"
        assert res.error["attrs"]["escalated_task"] == task.id


async def test_approve_runs_the_agent_again_with_the_comment(db: Path) -> None:
    seen: list[str] = []

    def script(req: ModelRequest) -> Any:
        seen.append(req.messages[-1].content or "")
        if len(seen) == 1:
            return {"error": {"message": "upstream down", "status_code": 503}}
        return {"output": {"label": "ham", "confidence": 0.9}}

    agent = convoy.Agent(name="judge", output_type=Verdict, model="sim:",
                         escalation=convoy.Escalation())
    async with _engine(db, convoy.SimModel({"judge": script})) as eng:
        res = await eng.run(_flow(agent, "esc.retry"), "mail", session_id="r1")
        assert res.status == "waiting"
        [task] = await eng.inbox.tasks()
        assert task.reason is not None and task.reason.startswith("retries_exhausted")
        await eng.inbox.approve(task.id, by="ops", comment="the provider is back")
        [res] = await eng.resume()
        assert res.ok and res.output == {"label": "ham", "confidence": 0.9}
        assert seen == ["mail", "A reviewer's note: the provider is back"]


async def test_low_confidence_is_reviewed(db: Path) -> None:
    agent = convoy.Agent(name="judge", output_type=Verdict, model="sim:",
                         escalation=convoy.Escalation(confidence_below=0.5))
    sim = convoy.SimModel({"judge": {"output": {"label": "spam", "confidence": 0.2}}})
    flow = _flow(agent, "esc.confidence")
    async with _engine(db, sim) as eng:
        await eng.run(flow, "a", session_id="c1")
        await eng.run(flow, "b", session_id="c2")
        tasks = {t.session_id: t for t in await eng.inbox.tasks()}
        assert tasks["c1"].proposal == {"label": "spam", "confidence": 0.2}
        await eng.inbox.approve(tasks["c1"].id, by="ann")
        await eng.inbox.reject(tasks["c2"].id, by="ann", comment="it is ham")
        results = {r.id: r for r in await eng.resume()}
        assert results["c1"].ok and results["c1"].output["label"] == "spam"
        assert results["c2"].status == "failed" and results["c2"].error["type"] == "Rejected"
        assert "it is ham" in results["c2"].error["message"]
    sure = convoy.SimModel({"judge": {"output": {"label": "spam", "confidence": 0.9}}})
    async with _engine(db, sure) as eng:
        res = await eng.run(flow, "c")
        assert res.ok  # confident enough: nobody is asked


async def test_the_prompt_says_what_approve_does(db: Path) -> None:
    """The bug: a low-confidence task said "Approve to run it again (keeping its
    answer)", while approving keeps the answer and runs nothing again. Each prompt says
    what approving does there: run the agent again after an error, keep the answer of a
    low-confidence one."""
    calls: list[str] = []

    def script(req: ModelRequest) -> Any:
        calls.append(req.messages[-1].content or "")
        return {"output": {"label": "spam", "confidence": 0.2}}

    agent = convoy.Agent(name="judge", output_type=Verdict, model="sim:",
                         escalation=convoy.Escalation(confidence_below=0.5))
    async with _engine(db, convoy.SimModel({"judge": script})) as eng:
        await eng.run(_flow(agent, "esc.prompt"), "a", session_id="p1")
        [task] = await eng.inbox.tasks()
        assert task.prompt == ("Agent 'judge' answered with low confidence. Approve to keep "
                               "its answer (the agent does not run again), edit to give its "
                               "output yourself, or reject.")
        await eng.inbox.approve(task.id, by="ann")
        [res] = await eng.resume()
        assert res.ok and res.output == {"label": "spam", "confidence": 0.2}
        assert calls == ["a"]  # approved: not run again
    async with _engine(db, ALWAYS_BAD) as eng:
        await eng.run(judge_flow, "mail", session_id="p2")
        [task] = await eng.inbox.tasks()
        assert task.prompt.endswith(". Approve to run it again, edit to give its output "
                                    "yourself, or reject."), task.prompt


async def test_an_exhausted_budget_asks_for_more(db: Path) -> None:
    agent = convoy.Agent(name="judge", model="sim:", escalation=convoy.Escalation(
        on=["budget"]))

    @convoy.workflow(name="esc.budget")
    async def flow(ctx: convoy.Context, text: str) -> list[str]:
        return [await ctx.run(agent, f"{text} {i}") for i in range(3)]

    sim = convoy.SimModel({"judge": {"text": "ok"}})
    async with _engine(db, sim) as eng:  # what one call costs, without a budget
        per_call = (await eng.run(flow, "t")).usage.total_tokens // 3
    budgets = Budgets(session=Budget(tokens=per_call), on_exhausted="escalate")
    async with _engine(db, sim, interceptors=[budgets]) as eng:
        res = await eng.run(flow, "t", session_id="b1")
        assert res.status == "waiting"  # the first call spent the budget, the second asks
        [task] = await eng.inbox.tasks()
        assert task.reason is not None and task.reason.startswith("budget: budget")
        await eng.inbox.approve(task.id, by="finance")  # one more budget's worth
        [res] = await eng.resume()
        assert res.status == "waiting"  # the second call ran and spent it: the third asks
        [task] = await eng.inbox.tasks()
        await eng.inbox.reject(task.id, by="finance")
        [res] = await eng.resume()
        assert res.status == "escalated"  # the original outcome stands
        assert res.usage.total_tokens == 2 * per_call


async def test_an_approved_escalation_of_a_tenant_budget_kept_in_the_store_lets_it_go_on(
        db: Path) -> None:
    # The tenant's daily budget is reserved in the store (shared by engines): the grant
    # of the approved escalation must count there too, not only in the engine's ledger.
    agent = convoy.Agent(name="judge", model="sim:", escalation=convoy.Escalation(
        on=["budget"]))

    @convoy.workflow(name="esc.tenant_budget")
    async def flow(ctx: convoy.Context, text: str) -> list[str]:
        return [await ctx.run(agent, f"{text} {i}") for i in range(2)]

    sim = convoy.SimModel({"judge": {"text": "ok"}}, usage=(10, 10))
    sim.max_output_tokens = 10  # a call reserves about what it costs
    budgets = Budgets(tenant_daily=Budget(tokens=20), on_exhausted="escalate")
    async with _engine(db, sim, interceptors=[budgets]) as eng:
        res = await eng.run(flow, "t", session_id="tb1", tenant="acme")
        assert res.status == "waiting"  # the first call spent the day's budget
        [task] = await eng.inbox.tasks()
        await eng.inbox.approve(task.id, by="finance")  # one more budget's worth
        [res] = await eng.resume()
    assert res.ok and sim.calls == 2 and budgets.store_reserves > 0


async def test_without_rules_an_escalated_session_is_answered_in_the_inbox(db: Path) -> None:
    agent = convoy.Agent(name="judge", model="sim:")
    budgets = Budgets(session=Budget(tokens=1), on_exhausted="escalate")

    @convoy.workflow(name="esc.session")
    async def flow(ctx: convoy.Context, text: str) -> list[str]:
        return [await ctx.run(agent, f"{text} {i}") for i in range(2)]

    sim = convoy.SimModel({"judge": {"text": "ok"}})
    async with _engine(db, sim, interceptors=[budgets]) as eng:
        res = await eng.tenant("acme").run(flow, "t", session_id="e1")
        assert res.status == "escalated"
        [task] = await eng.tenant("acme").inbox.tasks()
        assert task.id == "e1:escalated" and task.kind == "escalation"
        assert task.reason == "Escalated" and "exhausted" in task.prompt
        assert await eng.tenant("globex").inbox.tasks() == []
        await eng.tenant("acme").inbox.reject(task.id, by="ops", comment="too expensive")
        row = await eng.store.get_session("e1")
        assert row is not None and row.status == "failed"
        assert row.error_record is not None and row.error_record["message"] == "too expensive"
        [done] = await eng.tenant("acme").inbox.history(task.id)
        assert done.decision is not None and done.decision.by == "ops"
        assert await eng.tenant("acme").inbox.tasks() == []


async def test_a_loop_can_be_let_through(db: Path) -> None:
    calls = {"billing": 0}

    def billing(req: ModelRequest) -> Any:
        calls["billing"] += 1
        if calls["billing"] == 1:
            return {"handoff": "triage", "payload": {"task": "back"}}
        return {"text": "billing resolved it"}

    triage = convoy.Agent(name="triage", model="sim:", handoffs=["billing"])
    billing_agent = convoy.Agent(name="billing", model="sim:", handoffs=[triage],
                                 escalation=convoy.Escalation(on=["loop"]))
    sim = convoy.SimModel({"triage": {"handoff": "billing", "payload": {"task": "same"}},
                           "billing": billing})

    @convoy.workflow(name="esc.loop", agents=[billing_agent])
    async def flow(ctx: convoy.Context, text: str) -> str:
        return await ctx.run(triage, text)

    async with _engine(db, sim) as eng:
        res = await eng.run(flow, "start", session_id="l1")
        assert res.status == "waiting"
        [task] = await eng.inbox.tasks()
        assert task.reason is not None and task.reason.startswith("loop: ")
        await eng.inbox.approve(task.id, by="ops")
        [res] = await eng.resume()
        assert res.ok and res.output == "billing resolved it"


async def test_bad_rules_are_one_clear_error() -> None:
    with pytest.raises(convoy.UserError, match="unknown reason"):
        convoy.Escalation(on=["bored"])  # type: ignore[list-item]
    with pytest.raises(convoy.UserError, match="list of reasons"):
        convoy.Escalation(on="loop")  # type: ignore[arg-type]
    with pytest.raises(convoy.UserError, match=r"must be a convoy\.Escalation"):
        convoy.Agent(name="a", escalation="always")  # type: ignore[arg-type]


async def test_nobody_deciding_in_time_keeps_the_original_error(db: Path) -> None:
    agent = convoy.Agent(name="judge", output_type=Verdict, model="sim:", output_retries=0,
                         escalation=convoy.Escalation(deadline=60))
    clock = FakeClock()
    eng = convoy.Engine(SQLiteStore(db, clock=clock), models={"sim:": ALWAYS_BAD})
    async with eng:
        res = await eng.run(_flow(agent, "esc.deadline"), "mail", session_id="d1")
        assert res.status == "waiting"
        clock.advance(61)
        [res] = await eng.resume()
        assert res.status == "failed" and res.error["type"] == "OutputValidationError"


ATTEMPTS: list[int] = []


@convoy.workflow(name="esc.step")
async def risky_step(ctx: convoy.Context, x: int) -> Any:
    async def charge() -> str:
        ATTEMPTS.append(x)
        if len(ATTEMPTS) == 1:
            raise convoy.Escalated("the card processor needs a person to look")
        return "charged"

    return await ctx.step("charge", charge)


async def test_an_escalated_session_is_approved_or_edited_in_the_inbox(db: Path) -> None:
    ATTEMPTS.clear()
    async with _engine(db, convoy.SimModel({})) as eng:
        res = await eng.run(risky_step, 1, session_id="st1")
        assert res.status == "escalated"
        shown = await eng.inbox.get("st1:escalated")
        assert shown.history is not None and shown.history["step"] == "0"
        await eng.inbox.approve("st1:escalated", by="ops", comment="try again")
        [res] = await eng.resume()  # the step ran again
        assert res.ok and res.output == "charged" and ATTEMPTS == [1, 1]
        ATTEMPTS.clear()
        res = await eng.run(risky_step, 2, session_id="st2")
        await eng.inbox.edit("st2:escalated", "charged by hand", by="ops")
        [res] = await eng.resume()  # the step is recorded done with that result
        assert res.ok and res.output == "charged by hand" and ATTEMPTS == [2]
        [answered] = await eng.inbox.history("st2:escalated")
        assert answered.decision is not None and answered.decision.action == "edit"
