"""``Engine.retry``: a finished session that did not complete runs again as a new session
linked to the old one, whose history is kept; on the current code version."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.stores import StepRecord

from .conftest import Crash, later_engine

BROKEN = {"on": True}


async def _fetch(text: str) -> str:
    if BROKEN["on"]:
        raise ConnectionError(f"backend down for {text!r}")
    return text.upper()


@convoy.workflow(name="retry_tests:flaky", version="1")
async def flaky(ctx: convoy.Context, text: str) -> str:
    if text == "bad":
        raise ValueError("bad input")
    return await ctx.step("fetch", lambda: _fetch(text))


@pytest.fixture(autouse=True)
def broken() -> Any:
    BROKEN["on"] = True
    yield
    BROKEN["on"] = True


async def journal(engine: convoy.Engine, sid: str) -> list[StepRecord]:
    return await engine.store.journal(sid)


async def test_retry_runs_a_new_linked_session_and_keeps_the_old_one(
        engine_factory: Callable[..., convoy.Engine]) -> None:
    engine = engine_factory()
    first = await engine.run(flaky, "a", session_id="s1")
    assert first.status == "failed" and first.error is not None
    old_journal = await journal(engine, "s1")
    BROKEN["on"] = False

    res = await engine.retry("s1")
    assert (res.id, res.status, res.output) == ("s1.r1", "completed", "A")
    new = await engine.store.get_session("s1.r1")
    assert new is not None and new.parent == "s1" and new.input == '"a"'
    old = await engine.store.get_session("s1")
    assert old is not None and old.status == "failed"
    assert await journal(engine, "s1") == old_journal

    with pytest.raises(convoy.UserError, match=r"'s1' was already retried as 's1\.r1'"):
        await engine.retry("s1")
    with pytest.raises(convoy.UserError, match=r"'s1\.r1' is completed"):
        await engine.retry("s1.r1")
    with pytest.raises(convoy.UserError, match="no session 'nope'"):
        await engine.retry("nope")


async def test_a_retry_of_a_retry_counts_up(
        engine_factory: Callable[..., convoy.Engine]) -> None:
    engine = engine_factory()
    await engine.run(flaky, "a", session_id="s1")
    assert (await engine.retry("s1")).status == "failed"
    BROKEN["on"] = False
    res = await engine.retry("s1.r1")
    assert res.id == "s1.r2" and res.ok
    row = await engine.store.get_session("s1.r2")
    assert row is not None and row.parent == "s1.r1"


async def test_retry_runs_the_current_version(
        engine_factory: Callable[..., convoy.Engine]) -> None:
    engine = engine_factory()
    await engine.run(flaky, "a", session_id="s1")

    @convoy.workflow(name="retry_tests:flaky", version="2")
    async def fixed(ctx: convoy.Context, text: str) -> str:
        return f"fixed {text}"

    try:
        engine.register(fixed)
        res = await engine.retry("s1")
        assert (res.status, res.output) == ("completed", "fixed a")
        row = await engine.store.get_session(res.id)
        assert row is not None and row.version == "2"
    finally:
        convoy.workflow(name="retry_tests:flaky", version="1")(flaky.fn)


async def test_retryable_selects_by_status_error_type_workflow_and_id(
        engine_factory: Callable[..., convoy.Engine]) -> None:
    engine = engine_factory()
    await engine.run_many(flaky, ["a", "bad", "b"], ids=["a", "bad", "b"])
    BROKEN["on"] = False
    await engine.run(flaky, "c", session_id="c")

    def ids(rows: list[Any]) -> list[str]:
        return sorted(r.id for r in rows)

    assert ids(await engine.retryable()) == ["a", "b", "bad"]
    assert ids(await engine.retryable(status="failed")) == ["a", "b", "bad"]
    assert ids(await engine.retryable(status=["cancelled"])) == []
    assert ids(await engine.retryable(error_type="ConnectionError")) == ["a", "b"]
    assert ids(await engine.retryable(error_type="ValueError")) == ["bad"]
    assert ids(await engine.retryable(workflow="retry_tests:other")) == []
    assert ids(await engine.retryable(ids=["b"])) == ["b"]
    with pytest.raises(convoy.UserError, match="'c' is completed"):
        await engine.retryable(ids=["c"])
    with pytest.raises(convoy.UserError, match="'running' is not a status a retry"):
        await engine.retryable(status="running")

    results = await engine.retry_many(["a", "b"])
    assert [(r.id, r.status) for r in results] == [("a.r1", "completed"), ("b.r1", "completed")]
    assert ids(await engine.retryable()) == ["bad"]  # the others were retried


PAID: list[str] = []


async def _pay(order: str) -> str:
    PAID.append(order)
    if len(PAID) == 1:
        raise Crash  # the process dies while paying: the outcome is unknown
    return f"paid {order}"


@convoy.workflow(name="retry_tests:pay")
async def pay(ctx: convoy.Context, order: str) -> str:
    return await ctx.step("pay", lambda: _pay(order))


async def _escalated(engine_factory: Callable[..., convoy.Engine], db: Path) -> convoy.Engine:
    PAID.clear()
    with pytest.raises(Crash):
        await engine_factory().run(pay, "o-1", session_id="p")
    later = later_engine(db, workflows=[pay])
    [res] = await later.resume()
    assert res.status == "escalated" and res.error is not None
    assert res.error["type"] == "UnknownOutcomeError" and PAID == ["o-1"]
    return later


async def test_an_escalated_session_is_not_retried_unless_asked(
        engine_factory: Callable[..., convoy.Engine], db: Path) -> None:
    """Its escalation is open: a person must check whether the payment went through. A
    retry would pay again, and answering the escalation later a third time."""
    async with await _escalated(engine_factory, db) as engine:
        with pytest.raises(convoy.UserError) as caught:
            await engine.retry("p")
        msg = str(caught.value)
        assert "\n" not in msg
        assert "session 'p' is escalated and its escalation is open" in msg
        assert "rerun_escalated=True" in msg
        assert ids(await engine.retryable()) == []  # not selected by default
        with pytest.raises(convoy.UserError, match="rerun_escalated=True"):
            await engine.retryable(status="escalated")
        assert ids(await engine.retryable(status="escalated", rerun_escalated=True)) == ["p"]
        assert PAID == ["o-1"] and (await engine.store.get_session("p")).status == "escalated"


async def test_a_retry_asked_for_closes_the_escalation(
        engine_factory: Callable[..., convoy.Engine], db: Path) -> None:
    async with await _escalated(engine_factory, db) as engine:
        res = await engine.retry("p", rerun_escalated=True)
        assert (res.id, res.status, res.output) == ("p.r1", "completed", "paid o-1")
        assert PAID == ["o-1", "o-1"]
        old = await engine.store.get_session("p")
        assert old is not None and old.status == "failed" and old.error_record is not None
        assert "retried as 'p.r1'" in old.error_record["message"]
        assert old.error_record["escalation"]["type"] == "UnknownOutcomeError"
        task = await engine.inbox.get("p:escalated")
        assert task.status == "answered" and task.decision is not None
        assert task.decision.action == "reject"
        # Nobody can answer it any more: the step never runs a third time.
        with pytest.raises(convoy.UserError, match="not escalated"):
            await engine.signal("p", convoy.ESCALATION, {"action": "retry"})
        assert await engine.resume() == []
        assert PAID == ["o-1", "o-1"]


def ids(rows: list[Any]) -> list[str]:
    return sorted(r.id for r in rows)
