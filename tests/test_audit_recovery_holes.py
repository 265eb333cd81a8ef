"""Holes in auditing a session from its journal at the end of each run (review): a killed
run's steps must get their entries whatever happens to the session next, and whatever the
clocks of the engines that run it say."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.audit import AuditEvent, AuditInterceptor
from convoy.stores import store_from_url

from .conftest import (
    STORE_KINDS,
    Classification,
    Crash,
    audit_sealed,
    later_engine,
    store_db,
)
from .test_audit_recovery import CrashAt, _check_one_entry_per_record, _entries, _flow


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


async def test_a_killed_session_that_is_cancelled_keeps_the_entries_of_its_steps(
        db: str | Path) -> None:
    """The run journals a model call and is killed; the operator cancels the session
    instead of resuming it: its journaled steps must still be in the log."""
    flow = _flow(CrashAt(2))
    async with convoy.Engine(db, workflows=[flow], interceptors=[AuditInterceptor()]) as eng:
        with pytest.raises(Crash):
            await eng.run(flow, "t", session_id="s1")  # call 1 journaled, killed in call 2
    async with later_engine(db, workflows=[flow], interceptors=[AuditInterceptor()]) as eng2:
        await eng2.cancel("s1")
        assert (await eng2.store.get_session("s1")).status == "cancelled"  # type: ignore[union-attr]
        await _check_one_entry_per_record(eng2, "s1")
        ends = [(e.kind, e.status, e.actor) for e in await _entries(eng2)
                if e.session_id == "s1" and e.kind == "session"]
    assert ends == [("session", "cancelled", f"engine {eng2.owner}")]


async def test_a_killed_run_on_an_engine_whose_clock_is_behind_is_audited(
        db: str | Path) -> None:
    """Engine A parks the session (its audit cursor is A's clock); engine B, whose clock is
    a minute behind A's, resumes it and is killed; engine C resumes it again: B's steps
    must be audited (once)."""
    await _parked_ahead_killed_behind_resumed(db)


async def _parked_ahead_killed_behind_resumed(db: str | Path,
                                              *more: convoy.Interceptor) -> None:
    """Engine A, whose clock is a minute ahead, parks s1 and signals it; engine B, whose
    clock is behind A's, resumes it and is killed after one model call; engine C resumes
    it: every journaled step has one entry."""
    now = time.time()
    flow = _flow(convoy.SimModel({"*": {"output": {"label": "billing", "confidence": 0.9}}}))
    store_a = store_from_url(str(db), clock=lambda: now + 60)
    async with convoy.Engine(store_a, workflows=[flow],
                             interceptors=[AuditInterceptor(), *more]) as eng:
        assert (await eng.run(flow, "t", session_id="s1")).status == "waiting"
        await eng.signal("s1", "go", "now")
    flow_b = _flow(CrashAt(2))  # the second agent after the wait: one model call journaled
    store_b = store_from_url(str(db), clock=lambda: now)
    async with convoy.Engine(store_b, workflows=[flow_b],
                             interceptors=[AuditInterceptor()]) as eng_b:
        with pytest.raises(Crash):
            await eng_b.resume()
    async with later_engine(db, workflows=[flow], interceptors=[AuditInterceptor()]) as eng_c:
        [res] = await eng_c.resume()
        assert res.ok, res
        await _check_one_entry_per_record(eng_c, "s1")


async def test_a_run_whose_end_is_refused_after_a_takeover_appends_nothing(
        db: str | Path) -> None:
    """Engine A's run journals its steps, then waits on plain code (nothing journaled)
    while engine B takes the session over and completes it; A's end is then refused (it
    lost the lease): A's entries must not be in the log as well as B's."""
    gate, reached = asyncio.Event(), asyncio.Event()
    model = convoy.SimModel({"*": {"output": {"label": "billing", "confidence": 0.9}}})
    agent = convoy.Agent(name="a0", output_type=Classification, model=model)

    def make(wait: bool) -> convoy.Workflow[Any, Any]:
        @convoy.workflow(name="audit.takeover")
        async def flow(ctx: convoy.Context, text: str) -> str:
            out = await ctx.run(agent, text)
            if wait:  # the model call is committed
                reached.set()
                await gate.wait()
            return str(out.label)

        return flow

    flow_a, flow_b = make(True), make(False)
    async with convoy.Engine(db, workflows=[flow_a], interceptors=[AuditInterceptor()]) as a:
        run_a = asyncio.create_task(a.run(flow_a, "t", session_id="s1"))
        await reached.wait()
        async with later_engine(db, workflows=[flow_b],
                                interceptors=[AuditInterceptor()]) as b:
            [res] = await b.resume()
            assert res.ok, res
            gate.set()
            assert (await run_a).status == "running"  # refused: B has finished it
            await _check_one_entry_per_record(b, "s1")


_CHARGES: list[int] = []


@convoy.workflow(name="audit.escalated")
async def _escalating(ctx: convoy.Context, x: int) -> str:
    async def charge() -> str:
        _CHARGES.append(x)
        raise convoy.Escalated("the card processor needs a person")

    return await ctx.step("charge", charge)


async def test_an_escalation_completed_on_an_engine_whose_clock_is_behind_is_audited(
        db: str | Path) -> None:
    """Engine A, whose clock is an hour ahead, runs the session until a step escalates
    (its audit cursor is that step's failure); a person completes the step by hand through
    engine B, whose clock is behind, and B resumes the session: the step's completion is
    audited."""
    now = time.time()
    store_a = store_from_url(str(db), clock=lambda: now + 3600)
    async with convoy.Engine(store_a, interceptors=[AuditInterceptor()]) as eng:
        assert (await eng.run(_escalating, 1, session_id="e1")).status == "escalated"
    async with convoy.Engine(store_from_url(str(db), clock=lambda: now),
                             workflows=[_escalating],
                             interceptors=[AuditInterceptor()]) as eng_b:
        await eng_b.signal("e1", convoy.ESCALATION, {"action": "complete",
                                                     "result": "charged by hand"})
        [res] = await eng_b.resume()
        assert res.ok and res.output == "charged by hand", res
        [record] = [r for r in await eng_b.journal("e1") if r.target == "charge"]
        await audit_sealed(eng_b)
        events = [AuditEvent.decode(r.body)
                  for r in await eng_b.store.audit_entries("default", 0, 100)]
    assert [(e.status, e.at) for e in events if e.step_key == record.key
            and e.kind == "effect"] == [
        ("Escalated", pytest.approx(now + 3600, abs=60)), ("ok", record.at)]


class _OldCursor(convoy.Interceptor):
    """What Convoy wrote as a session's audit cursor before records were stamped in order:
    the engine's clock when the run ended (here a second after its last record)."""

    stage = "timing"  # outermost: it writes the header after the audit interceptor

    def __init__(self, at: float) -> None:
        self.at = at

    async def session_run(self, input: convoy.SessionInput,
                          next: convoy.Next[convoy.SessionInput, convoy.SessionEnd]
                          ) -> convoy.SessionEnd:
        end = await next(input)
        input.headers["convoy.audit"] = repr(self.at)
        return end


async def test_a_cursor_written_before_the_upgrade_loses_no_entries(db: str | Path) -> None:
    """A session parked by an older Convoy (its cursor a clock's time, ahead of its last
    record) is resumed by this one on an engine whose clock is behind, which is killed;
    the next resume audits what the killed run journaled."""
    await _parked_ahead_killed_behind_resumed(db, _OldCursor(time.time() + 61))


_MODE = {"escalate": True, "crash": False}


@convoy.workflow(name="audit.retried")
async def _retried(ctx: convoy.Context, x: int) -> str:
    async def charge() -> str:
        if _MODE["escalate"]:
            raise convoy.Escalated("needs a person")
        return "charged"

    async def second() -> str:
        return "two"

    a = await ctx.step("charge", charge)
    if _MODE["crash"]:
        raise Crash
    return a + await ctx.step("second", second)


async def _stepped(eng: convoy.Engine, sid: str) -> None:
    """Every completed step of ``sid`` has an ``ok`` entry."""
    await audit_sealed(eng)
    events = [AuditEvent.decode(r.body) for r in await eng.store.audit_entries(
        "default", 0, 1000)]
    ok = {e.step_key for e in events if e.session_id == sid and e.status == "ok"}
    done = {r.key for r in await eng.journal(sid) if r.status == "completed"}
    assert done and done <= ok, (done, events)


async def test_a_step_retried_after_an_escalation_on_an_engine_whose_clock_is_behind(
        db: str | Path) -> None:
    """The escalated step (the last record audited) is dropped by a person's retry; the
    engine that runs it again has a clock an hour behind and is killed after it: the next
    resume audits it."""
    now = time.time()
    _MODE.update(escalate=True, crash=False)
    async with convoy.Engine(store_from_url(str(db), clock=lambda: now + 3600),
                             interceptors=[AuditInterceptor()]) as eng:
        assert (await eng.run(_retried, 1, session_id="e1")).status == "escalated"
    _MODE.update(escalate=False, crash=True)
    async with convoy.Engine(store_from_url(str(db), clock=lambda: now),
                             workflows=[_retried], interceptors=[AuditInterceptor()]) as eng_b:
        await eng_b.signal("e1", convoy.ESCALATION, {"action": "retry"})
        with pytest.raises(Crash):
            await eng_b.resume()
    _MODE.update(crash=False)
    async with later_engine(db, 7200, workflows=[_retried],
                            interceptors=[AuditInterceptor()]) as eng_c:
        [res] = await eng_c.resume()
        assert res.ok, res
        await _stepped(eng_c, "e1")


async def test_a_retry_of_an_audited_session_on_an_engine_whose_clock_is_behind(
        db: str | Path) -> None:
    """``retry_many`` makes a new session with the old one's headers (its audit cursor
    among them); run on an engine whose clock is behind and killed, then resumed: its
    steps are audited."""
    now = time.time()
    _MODE.update(escalate=False, crash=False)

    @convoy.workflow(name="audit.retry_failed")
    async def failing(ctx: convoy.Context, x: int) -> str:
        async def one() -> str:
            if _MODE["escalate"]:
                raise ValueError("boom")
            return "one"

        async def two() -> str:
            if _MODE["crash"]:
                raise Crash
            return "two"

        return await ctx.step("one", one) + await ctx.step("two", two, idempotent=True)

    _MODE.update(escalate=True)
    async with convoy.Engine(store_from_url(str(db), clock=lambda: now + 3600),
                             interceptors=[AuditInterceptor()]) as eng:
        assert (await eng.run(failing, 1, session_id="r1")).status == "failed"
    _MODE.update(escalate=False, crash=True)
    async with convoy.Engine(store_from_url(str(db), clock=lambda: now), workflows=[failing],
                             interceptors=[AuditInterceptor()]) as eng_b:
        with pytest.raises(BaseException):  # noqa: B017 - the Crash, however it is wrapped
            await eng_b.retry_many(["r1"])
    _MODE.update(crash=False)
    async with later_engine(db, 7200, workflows=[failing],
                            interceptors=[AuditInterceptor()]) as eng_c:
        [res] = await eng_c.resume()
        assert res.ok, res
        await _stepped(eng_c, res.id)
