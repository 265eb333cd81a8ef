"""Asking a person, durably: ``ctx.ask_human`` parks the session on an inbox task, the
answer (validated, attributed) wakes it, deadlines decide when nobody answers, and a
tenant's inbox reaches nothing of another tenant."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

import convoy
from convoy.hitl._task import INBOX
from convoy.stores import SQLiteStore, StateWrite

from .conftest import FakeClock


class Refund(BaseModel):
    approve: bool
    amount: float
    note: str = ""


@convoy.workflow(name="humans.refund")
async def refund(ctx: convoy.Context, amount: float) -> dict[str, Any]:
    got = await ctx.ask_human(f"Refund ${amount}?", Refund, context={"amount": amount},
                              queue="billing")
    return {"approve": got.value.approve, "amount": got.value.amount, "by": got.by,
            "comment": got.comment, "task": got.task_id}


@convoy.workflow(name="humans.deadline")
async def with_deadline(ctx: convoy.Context, mode: str) -> Any:
    on: Literal["fail", "default", "escalate"] = mode  # type: ignore[assignment]
    try:
        got = await ctx.ask_human("Ship it?", bool, deadline=60, on_deadline=on,
                                  default=False if mode == "default" else None)
    except convoy.HumanTimeout as e:
        return f"timed out: {e.task_id}"
    return [got.value, got.by, got.timed_out]


def _engine(db: Path, clock: FakeClock, **kw: Any) -> convoy.Engine:
    return convoy.Engine(SQLiteStore(db, clock=clock), **kw)


async def test_a_question_parks_the_session_until_a_person_answers(db: Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        acme = eng.tenant("acme")
        res = await acme.run(refund, 120.0, session_id="r1")
        assert res.status == "waiting"
        row = await eng.store.get_session("r1")
        assert row is not None and row.owner is None and "r1" not in eng._running
        [task] = await acme.inbox.tasks()
        assert task.id == "r1:0" and task.kind == "question" and task.queue == "billing"
        assert task.prompt == "Refund $120.0?" and task.context == {"amount": 120.0}
        assert task.answer_schema is not None and "approve" in task.answer_schema["properties"]
        assert task.actions == ("answer",)
        clock.advance(3600)  # a person takes an hour; the session holds nothing meanwhile
        done = await acme.inbox.answer("r1:0", {"approve": True, "amount": 100},
                                       by="alice", comment="partial")
        assert done.status == "answered" and done.decision is not None
        assert done.decision.by == "alice" and done.decision.value["amount"] == 100.0
        [res] = await acme.resume()
        assert res.ok and res.output == {"approve": True, "amount": 100.0, "by": "alice",
                                         "comment": "partial", "task": "r1:0"}
        assert await acme.inbox.tasks() == []
        [answered] = await acme.inbox.tasks(status="answered")
        assert answered.id == "r1:0"
        versions = await acme.inbox.history("r1:0")
        assert [v.status for v in versions] == ["open", "answered"]
        assert (await eng.replay("r1")).matches  # the answer replays from the journal


async def test_an_answer_is_validated_and_given_once(db: Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        await eng.run(refund, 5.0, session_id="r2")
        with pytest.raises(convoy.UserError, match=r"amount.*number|approve"):
            await eng.inbox.answer("r2:0", {"approve": "perhaps", "amount": "x"}, by="bob")
        assert (await eng.inbox.get("r2:0")).is_open  # nothing was written
        with pytest.raises(convoy.UserError, match="by="):
            await eng.inbox.answer("r2:0", {"approve": True, "amount": 5}, by="")
        with pytest.raises(convoy.UserError, match="answer it, not approve"):
            await eng.inbox.approve("r2:0", by="bob")
        await eng.inbox.answer("r2:0", {"approve": False, "amount": 0}, by="bob")
        with pytest.raises(convoy.UserError, match="already answered by 'bob'"):
            await eng.inbox.answer("r2:0", {"approve": True, "amount": 5}, by="carol")
        [res] = await eng.resume()
        assert res.ok and res.output["by"] == "bob" and res.output["approve"] is False


async def test_a_forged_invalid_answer_reopens_the_task(db: Path) -> None:
    """The session checks the answer against its type itself: an answer written around
    the inbox (or against a stale schema) reopens the task with the error."""
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        await eng.run(refund, 5.0, session_id="r3")
        task = await eng.inbox.get("r3:0")
        forged = task.model_copy(update={"status": "answered", "decision": convoy.Decision(
            action="answer", value={"approve": "nope"}, by="mallory", at=clock())})
        res = await eng.store.state_put(StateWrite(
            tenant="default", namespace=INBOX, key="r3:0", value=forged.model_dump_json(),
            expected_version=task.version))
        assert res.written and res.woken == 1
        [run] = await eng.resume()
        assert run.status == "waiting"
        again = await eng.inbox.get("r3:0")
        assert again.is_open and again.error is not None and "mallory" in again.error
        await eng.inbox.answer("r3:0", {"approve": True, "amount": 5}, by="alice")
        [run] = await eng.resume()
        assert run.ok and run.output["by"] == "alice"


async def test_a_comment_decides_nothing(db: Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        await eng.run(refund, 7.0, session_id="r4")
        await eng.inbox.comment("r4:0", "checking with finance", by="alice")
        [run] = await eng.resume()  # woken by the change, it waits again
        assert run.status == "waiting"
        task = await eng.inbox.get("r4:0")
        assert task.is_open and [c.text for c in task.comments] == ["checking with finance"]
        await eng.inbox.answer("r4:0", {"approve": True, "amount": 7}, by="alice")
        [run] = await eng.resume()
        assert run.ok


@pytest.mark.parametrize(("mode", "expected"), [
    ("default", [False, "convoy:deadline", True]),
    ("fail", "timed out: d:0"),
])
async def test_past_its_deadline_the_default_or_a_timeout(db: Path, mode: str,
                                                          expected: Any) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        res = await eng.run(with_deadline, mode, session_id="d")
        assert res.status == "waiting"
        row = await eng.store.get_session("d")
        assert row is not None and row.wake_at == clock() + 60
        clock.advance(59)
        assert [r.status for r in await eng.resume()] == ["waiting"]
        clock.advance(2)
        [res] = await eng.resume()
        assert res.ok and res.output == expected
        task = await eng.inbox.get("d:0")
        assert task.status == "expired" and task.decision is not None
        assert task.decision.by == "convoy:deadline"
        with pytest.raises(convoy.UserError, match="already expired"):
            await eng.inbox.answer("d:0", True, by="late")


async def test_past_its_deadline_an_escalation_moves_the_task(db: Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        await eng.run(with_deadline, "escalate", session_id="e")
        clock.advance(61)
        [res] = await eng.resume()
        assert res.status == "waiting"
        row = await eng.store.get_session("e")
        assert row is not None and row.wake_at is None  # no second deadline
        [task] = await eng.inbox.tasks(queue="escalations")
        assert task.escalated and task.is_open
        await eng.inbox.answer(task.id, True, by="lead")
        [res] = await eng.resume()
        assert res.ok and res.output == [True, "lead", False]


async def test_a_tenant_reaches_only_its_own_tasks(db: Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        await eng.tenant("acme").run(refund, 1.0, session_id="a1")
        await eng.tenant("globex").run(refund, 2.0, session_id="g1")
        acme, globex = eng.tenant("acme").inbox, eng.tenant("globex").inbox
        assert [t.id for t in await acme.tasks()] == ["a1:0"]
        assert [t.id for t in await globex.tasks()] == ["g1:0"]
        assert {t.id for t in await eng.inbox.tasks()} == {"a1:0", "g1:0"}
        with pytest.raises(convoy.UserError) as other:
            await acme.answer("g1:0", {"approve": True, "amount": 1}, by="x")
        with pytest.raises(convoy.UserError) as unknown:
            await acme.answer("zz:0", {"approve": True, "amount": 1}, by="x")
        assert str(other.value).replace("g1", "zz") == str(unknown.value)
        for call in (acme.get("g1:0"), acme.history("g1:0"), acme.reject("g1:0", by="x"),
                     acme.comment("g1:0", "hi", by="x")):
            with pytest.raises(convoy.UserError, match="no human task 'g1:0' of tenant"):
                await call
        assert (await globex.get("g1:0")).is_open  # untouched


async def test_assignees_and_reserved_namespaces(db: Path) -> None:
    @convoy.workflow(name="humans.assigned")
    async def assigned(ctx: convoy.Context, x: int) -> bool:
        return (await ctx.ask_human("ok?", bool, assignees=["alice"])).value

    @convoy.workflow(name="humans.forger")
    async def forger(ctx: convoy.Context, x: int) -> None:
        ctx.state(INBOX)

    clock = FakeClock()
    async with _engine(db, clock) as eng:
        await eng.run(assigned, 1, session_id="as")
        with pytest.raises(convoy.UserError, match="assigned to alice, not 'bob'"):
            await eng.inbox.answer("as:0", True, by="bob")
        assert await eng.inbox.tasks(assignee="bob") == []
        await eng.inbox.answer("as:0", True, by="alice")
        res = await eng.run(forger, 1)
        assert res.status == "failed" and "reserved for Convoy" in res.error["message"]
        with pytest.raises(convoy.UserError, match="reserved"):
            eng.state(INBOX)
        with pytest.raises(convoy.UserError, match="reserved"):
            eng.tenant("acme").state("convoy.approvals")


async def test_bad_questions_are_one_clear_error(db: Path) -> None:
    @convoy.workflow(name="humans.bad")
    async def bad(ctx: convoy.Context, kind: str) -> Any:
        if kind == "no-default":
            return await ctx.ask_human("?", int, deadline=1, on_deadline="default")
        if kind == "bad-default":
            return await ctx.ask_human("?", int, deadline=1, on_deadline="default",
                                       default="many")
        return await ctx.ask_human("", int)

    async with _engine(db, FakeClock()) as eng:
        for kind, msg in (("no-default", "needs default="), ("bad-default", "default does "
                          "not match"), ("empty", "needs a prompt")):
            res = await eng.run(bad, kind)
            assert res.status == "failed" and msg in res.error["message"], res.error
