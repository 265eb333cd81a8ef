"""Approvals bound to arguments: a sensitive tool call parks the session until a person
approves it; the approval is bound to the tool, arguments, tenant and session, expires,
is used once; a rejected call goes back to the model as an error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.definitions._tools import ToolContext
from convoy.hitl._task import INBOX
from convoy.interceptors._base import ToolCallInput
from convoy.stores import SQLiteStore

from .conftest import FakeClock

CALLS: list[tuple[str, int]] = []


@convoy.tool(writes=True, idempotent=True, requires_approval=convoy.Approval(
    queue="finance", expires_after=600))
def refund(customer: str, cents: int) -> str:
    """Refund a customer."""
    CALLS.append((customer, cents))
    return f"refunded {cents} to {customer}"


def _sim(after: str = "done") -> convoy.SimModel:
    return convoy.SimModel({"clerk": [
        {"tool_calls": [{"name": "refund", "arguments": {"customer": "c1", "cents": 500}}]},
        lambda req: {"text": f"{after}: {req.messages[-1].content}"}]})


clerk = convoy.Agent(name="clerk", tools=[refund], model="sim:")


@convoy.workflow(name="approvals.desk")
async def desk(ctx: convoy.Context, text: str) -> str:
    return await ctx.run(clerk, text)


def _engine(db: Path, clock: FakeClock, **kw: Any) -> convoy.Engine:
    return convoy.Engine(SQLiteStore(db, clock=clock), models={"sim:": kw.pop("sim", _sim())},
                         **kw)


@pytest.fixture(autouse=True)
def _calls() -> None:
    CALLS.clear()


async def test_a_call_waits_for_approval_then_runs_once(db: Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        res = await eng.tenant("acme").run(desk, "refund c1", session_id="s1")
        assert res.status == "waiting" and CALLS == []
        [task] = await eng.tenant("acme").inbox.tasks()
        assert task.kind == "approval" and task.queue == "finance"
        assert task.proposal == {"tool": "refund", "arguments": {"customer": "c1",
                                                                 "cents": 500}}
        assert task.binding == convoy.security._approval.binding(
            "refund", refund.args_model(customer="c1", cents=500), "acme", "s1")
        assert task.actions == ("approve", "reject", "edit")
        approved = await eng.tenant("acme").inbox.approve(task.id, by="fin", comment="ok")
        assert approved.expires_at == clock() + 600
        [res] = await eng.tenant("acme").resume()
        assert res.ok and res.output == 'done: "refunded 500 to c1"'
        assert CALLS == [("c1", 500)]
        used = await eng.tenant("acme").inbox.get(task.id)
        assert used.status == "used" and used.used_by is not None
        kinds = [(r.kind, r.target, r.status) for r in await eng.journal("s1")
                 if r.kind == "tool"]
        # the refusal that asked for the approval, then the approved call
        assert kinds == [("tool", "refund", "failed"), ("tool", "refund", "completed")]
        assert (await eng.replay("s1")).matches
        assert eng.tool_guard.approved_calls == 1


async def test_a_rejected_call_goes_back_to_the_model(db: Path) -> None:
    async with _engine(db, FakeClock()) as eng:
        await eng.run(desk, "refund c1", session_id="s2")
        [task] = await eng.inbox.tasks()
        await eng.inbox.reject(task.id, by="fin", comment="not this customer")
        [res] = await eng.resume()
        assert res.ok and CALLS == []
        assert "rejected this call of tool 'refund': not this customer" in res.output
        assert '"refused": "rejected"' in res.output


async def test_edited_arguments_are_validated_and_used(db: Path) -> None:
    async with _engine(db, FakeClock()) as eng:
        await eng.run(desk, "refund c1", session_id="s3")
        [task] = await eng.inbox.tasks()
        with pytest.raises(convoy.UserError, match="cents"):
            await eng.inbox.edit(task.id, {"customer": "c1", "cents": "lots"}, by="fin")
        await eng.inbox.edit(task.id, {"customer": "c1", "cents": 200}, by="fin")
        [res] = await eng.resume()
        assert res.ok and CALLS == [("c1", 200)]


async def test_an_approval_that_expired_before_the_call_is_asked_again(db: Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        await eng.run(desk, "refund c1", session_id="s4")
        [task] = await eng.inbox.tasks()
        await eng.inbox.approve(task.id, by="fin")
        clock.advance(601)  # nobody ran the session while the approval was valid
        [res] = await eng.resume()
        assert res.status == "waiting" and CALLS == []
        [again] = await eng.inbox.tasks()
        assert again.id != task.id and again.kind == "approval"
        await eng.inbox.approve(again.id, by="fin")
        [res] = await eng.resume()
        assert res.ok and CALLS == [("c1", 500)]


async def _input(eng: convoy.Engine, sid: str, key: str, args: dict[str, Any],
                 approval: str | None, tenant: str = "default") -> ToolCallInput:
    """A call of ``refund`` as the guard sees it, in session ``sid``."""
    from convoy.durability._executor import JournaledExecutor
    from convoy.runtime._session import SessionState

    executor = JournaledExecutor(eng.store, sid, None, journal=None, clock=eng.clock)
    s = SessionState(eng.runtime, sid, tenant, "approvals.desk", executor=executor)
    return ToolCallInput(session=s, key=key, agent=clerk, tool=refund,
                         args=refund.args_model(**args),
                         context=ToolContext(session_id=sid, tenant=tenant, agent="clerk",
                                             step_key=key, idempotency_key=f"{sid}:{key}"),
                         approval=approval)


async def test_an_approval_is_bound_to_its_call_and_used_once(db: Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        await eng.tenant("acme").run(desk, "refund c1", session_id="s5")
        await eng.tenant("acme").run(desk, "refund c1", session_id="s6")
        tasks = {t.session_id: t.id for t in await eng.inbox.tasks()}
        await eng.inbox.approve(tasks["s5"], by="fin")
        ok = {"customer": "c1", "cents": 500}
        approved = convoy.approved
        assert not await approved(await _input(eng, "s5", "0/9", {**ok, "cents": 501},
                                               tasks["s5"], "acme"))  # other arguments
        assert not await approved(await _input(eng, "s6", "0/9", ok, tasks["s5"], "acme"))
        assert not await approved(await _input(eng, "s5", "0/9", ok, tasks["s5"], "globex"))
        assert not await approved(await _input(eng, "s5", "0/9", ok, None, "acme"))
        assert not await approved(await _input(eng, "s5", "0/9", ok, tasks["s6"], "acme"))
        assert await approved(await _input(eng, "s5", "0/9", ok, tasks["s5"], "acme"))
        # used: the same step again (a retry after a crash) still holds it, no other does
        assert await approved(await _input(eng, "s5", "0/9", ok, tasks["s5"], "acme"))
        assert not await approved(await _input(eng, "s5", "0/10", ok, tasks["s5"], "acme"))
        history = await eng.store.state_history("acme", INBOX, tasks["s5"])
        assert [e.value.count('"status":"used"') for e in history] == [0, 0, 1]
        await eng.inbox.approve(tasks["s6"], by="fin")
        clock.advance(601)  # past expires_after
        assert not await approved(await _input(eng, "s6", "0/9", ok, tasks["s6"], "acme"))


class FlagLargeRefunds(convoy.Interceptor):
    """A policy of its own asks for approvals the same way the guard does."""

    stage = "policy"

    async def tool_call(self, input: ToolCallInput, next: Any) -> Any:
        if getattr(input.args, "cents", 0) > 100 and not await convoy.approved(input):
            raise convoy.ApprovalRequired("refunds over $1 need a second pair of eyes",
                                          rule="large-refund")
        return await next(input)


async def test_a_policy_can_require_an_approval(db: Path) -> None:
    @convoy.tool(writes=True, idempotent=True)
    def refund(customer: str, cents: int) -> str:  # the same tool, no approval declared
        CALLS.append((customer, cents))
        return "ok"

    agent = convoy.Agent(name="clerk", tools=[refund], model="sim:")

    @convoy.workflow(name="approvals.policy")
    async def flow(ctx: convoy.Context, text: str) -> str:
        return await ctx.run(agent, text)

    async with _engine(db, FakeClock(), interceptors=[FlagLargeRefunds()]) as eng:
        res = await eng.run(flow, "refund", session_id="p1")
        assert res.status == "waiting"
        [task] = await eng.inbox.tasks()
        assert task.reason == "refunds over $1 need a second pair of eyes"
        assert task.context["rule"] == "large-refund"
        await eng.inbox.approve(task.id, by="fin")
        [res] = await eng.resume()
        assert res.ok and CALLS == [("c1", 500)]


async def test_nobody_approving_before_the_deadline_refuses_the_call(db: Path) -> None:
    @convoy.tool(writes=True, requires_approval=convoy.Approval(deadline=300))
    def wire(account: str, cents: int) -> str:
        CALLS.append((account, cents))
        return "sent"

    agent = convoy.Agent(name="clerk", tools=[wire], model="sim:")

    @convoy.workflow(name="approvals.deadline")
    async def flow(ctx: convoy.Context, text: str) -> str:
        return await ctx.run(agent, text)

    sim = convoy.SimModel({"clerk": [
        {"tool_calls": [{"name": "wire", "arguments": {"account": "x", "cents": 1}}]},
        lambda req: {"text": req.messages[-1].content or ""}]})
    clock = FakeClock()
    async with _engine(db, clock, sim=sim) as eng:
        res = await eng.run(flow, "wire it", session_id="dl")
        assert res.status == "waiting"
        [task] = await eng.inbox.tasks()
        history = task.history or {}
        assert history["input"] == "wire it" and history["tool"] == "wire"
        assert history["messages"][-1]["tool_calls"][0]["name"] == "wire"  # the call itself
        clock.advance(301)
        [res] = await eng.resume()
        assert res.ok and CALLS == []
        assert "nobody approved this call of tool 'wire' before its deadline" in res.output
        assert (await eng.inbox.get(task.id)).status == "expired"
