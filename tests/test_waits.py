"""Durable waits: timers and signals park a session (no coroutine, no slot), survive
restarts, and wake it; hole 3: limits count active time, replay applies no deadline."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import convoy
from convoy.stores import store_from_url

from .conftest import STORE_KINDS, FakeClock, store_db


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    """Every test of this module runs on SQLite and on PostgreSQL."""
    yield from store_db(request.param, tmp_path)


class Approval(BaseModel):
    approved: bool
    by: str


def _engine(db: str | Path, clock: FakeClock, **kw: Any) -> convoy.Engine:
    return convoy.Engine(store_from_url(db, clock=clock), **kw)


@convoy.workflow(name="approve")
async def approval_flow(ctx: convoy.Context, amount: int) -> str:
    decision = await ctx.wait_for("approval", Approval, timeout=3600)
    return f"{amount}:{decision.approved}:{decision.by}"


@convoy.workflow(name="nap")
async def nap_flow(ctx: convoy.Context, hours: float) -> float:
    start = await ctx.now()
    await ctx.sleep(hours * 3600)
    return await ctx.now() - start


async def test_a_signal_wakes_a_parked_session(db: str | Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        res = await eng.run(approval_flow, 500, session_id="w")
        assert res.status == "waiting" and not res.finished
        row = await eng.store.get_session("w")
        assert row is not None and row.status == "waiting" and row.owner is None
        assert row.wait_name == "approval" and row.wake_at == clock.now + 3600
        assert not eng._running  # no coroutine, no slot: nothing of it is in the engine
        assert await eng.resume() == [convoy.SessionResult(id="w", status="waiting",
                                                           steps=1)]
        await eng.signal("w", "approval", {"approved": True, "by": "ann"})
        [done] = await eng.resume()
    assert done.ok and done.output == "500:True:ann"


async def test_a_parked_session_survives_a_restart(db: str | Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        await eng.run(approval_flow, 7, session_id="w")
    # a new engine (a new process) on the same store
    async with _engine(db, clock, workflows=[approval_flow]) as eng2:
        await eng2.signal("w", "approval", {"approved": False, "by": "bob"})
        [done] = await eng2.resume()
    assert done.ok and done.output == "7:False:bob"


async def test_a_signal_sent_before_the_wait_is_kept(db: str | Path) -> None:
    clock = FakeClock()
    gate = asyncio.Event()

    async def wait_gate() -> int:
        await gate.wait()
        return 1

    @convoy.workflow(name="early")
    async def wf(ctx: convoy.Context, x: int) -> bool:
        await ctx.step("gate", wait_gate, idempotent=True)
        return (await ctx.wait_for("go", Approval)).approved

    async with _engine(db, clock) as eng:
        task = asyncio.create_task(eng.run(wf, 1, session_id="e"))
        for _ in range(10_000):  # until the session's creation is committed
            if await eng.store.get_session("e") is not None:
                break
            await asyncio.sleep(0)
        await eng.signal("e", "go", {"approved": True, "by": "x"})
        gate.set()
        res = await task
    assert res.ok and res.output is True


async def test_a_wait_times_out_durably(db: str | Path) -> None:
    clock = FakeClock()

    @convoy.workflow(name="timeout")
    async def wf(ctx: convoy.Context, x: int) -> str:
        try:
            await ctx.wait_for("never", timeout=60)
        except convoy.WaitTimeout:
            return "timed out"
        return "signalled"

    async with _engine(db, clock) as eng:
        assert (await eng.run(wf, 1, session_id="t")).status == "waiting"
        clock.advance(30)
        assert [r.status for r in await eng.resume()] == ["waiting"]
        clock.advance(31)
        [res] = await eng.resume()
        assert res.ok and res.output == "timed out"
        assert (await eng.replay("t")).matches


async def test_a_long_sleep_parks_and_wakes_when_due(db: str | Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        res = await eng.run(nap_flow, 2.0, session_id="n")
        assert res.status == "waiting"
        row = await eng.store.get_session("n")
        assert row is not None and row.wake_at == pytest.approx(clock.now + 7200)
        assert await eng.store.next_wake() == row.wake_at
        clock.advance(7199)
        assert [r.status for r in await eng.resume()] == ["waiting"]
        clock.advance(2)
        [done] = await eng.resume()
    assert done.ok and done.output == pytest.approx(7201)


async def test_serve_runs_the_sessions_signals_woke(db: str | Path) -> None:
    async with convoy.Engine(db, workflows=[approval_flow]) as eng:
        for i in range(5):
            assert (await eng.run(approval_flow, i, session_id=f"s{i}")).status == "waiting"
        for i in range(5):
            await eng.signal(f"s{i}", "approval", {"approved": True, "by": "ops"})
        await asyncio.wait_for(eng.serve(until_idle=True, poll_interval=0.05), 30)
        counts = await eng.store.counts()
    assert counts == {"completed": 5}


async def test_serve_until_idle_leaves_sessions_waiting_for_a_signal_with_a_timeout(
        db: str | Path) -> None:
    """Their timer (an hour) is the signal's timeout: nothing can run until a signal
    comes, so a worker serving until idle returns, as 'convoy worker --until-idle' says."""
    async with convoy.Engine(db, workflows=[approval_flow]) as eng:
        for i in range(3):
            assert (await eng.run(approval_flow, i, session_id=f"w{i}")).status == "waiting"
        await eng.signal("w0", "approval", {"approved": True, "by": "ops"})
        await asyncio.wait_for(eng.serve(until_idle=True, poll_interval=0.05), 30)
        counts = await eng.store.counts()
    assert counts == {"completed": 1, "waiting": 2}


async def test_parked_sessions_hold_no_coroutine(db: str | Path) -> None:
    """A thousand parked sessions leave nothing of themselves in the engine's memory."""
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        results = await eng.run_many(approval_flow, list(range(1000)))
        ids = {r.id for r in results}
        gc.collect()
        live = [o for o in gc.get_objects() if str(type(o).__module__).startswith("convoy")
                and _session_of(o) in ids]
        assert live == []
        assert (await eng.store.counts()) == {"waiting": 1000}


def _session_of(o: object) -> str | None:
    """The session a per-session runtime object belongs to (None for anything else)."""
    name = type(o).__name__
    if name == "SessionState":
        return getattr(o, "id", None)
    if name == "Context":
        return getattr(getattr(o, "session", None), "id", None)
    if name == "JournaledExecutor":
        return getattr(o, "session_id", None)
    return None


async def test_signals_to_finished_or_unknown_sessions_are_refused(db: str | Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        with pytest.raises(convoy.UserError, match="no session"):
            await eng.signal("nope", "x")
        await eng.run(approval_flow, 1, session_id="w")
        await eng.signal("w", "approval", {"approved": True, "by": "a"})
        await eng.resume()
        with pytest.raises(convoy.UserError, match="completed"):
            await eng.signal("w", "approval", {"approved": True, "by": "a"})


async def test_an_invalid_signal_payload_is_refused_and_the_wait_goes_on(
        db: str | Path, caplog: pytest.LogCaptureFixture) -> None:
    """A payload the wait's type does not validate (a typo on the command line) does not
    fail the session: the signal is consumed without ending the wait, a warning says why,
    and the next valid signal ends it. Bad input loses nothing."""
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        await eng.run(approval_flow, 1, session_id="w")
        await eng.signal("w", "approval", {"approved": "perhaps"})
        with caplog.at_level(logging.WARNING, logger="convoy"):
            [res] = await eng.resume()
        assert res.status == "waiting"
        [warning] = [r for r in caplog.records if "refused" in r.getMessage()]
        message = warning.getMessage()
        assert "session 'w' refused signal 'approval'" in message
        assert "2 errors (bool_parsing, missing)" in message and "still waits" in message
        assert "perhaps" not in message
        caplog.clear()
        # A hostile payload: keys that are personal data or forge a log line, a union's
        # tag, thousands of errors. The line says how many errors of which kinds, on one
        # line, bounded, and holds nothing of the payload.
        hostile = {"approved": "alice@example.com", "by": ["x\nERROR forged\x1b[31m"],
                   **{f"k{i}\u202e": i for i in range(3000)}}
        await eng.signal("w", "approval", hostile)
        with caplog.at_level(logging.WARNING, logger="convoy"):
            [res] = await eng.resume()
        assert res.status == "waiting"
        [warning] = [r for r in caplog.records if "refused" in r.getMessage()]
        message = warning.getMessage()
        assert "2 errors (bool_parsing, string_type)" in message, message
        assert len(message) < 300 and "\n" not in message and "\x1b" not in message
        assert "alice" not in message and "forged" not in message and "k1" not in message
        row = await eng.store.get_session("w")
        assert row is not None and row.status == "waiting" and row.wait_name == "approval"
        assert await eng.store.next_signal("w", "approval") is None  # consumed
        # Refused before the wait too (sent first, kept): the same.
        await eng.signal("w", "approval", "not even an object")
        await eng.signal("w", "approval", {"approved": True, "by": "ann"})
        [done] = await eng.resume()
        assert done.ok and done.output == "1:True:ann"
        journal = await eng.journal("w")
    assert [(r.kind, r.status, r.result) for r in journal] == [
        ("wait", "completed", '{"approved":true,"by":"ann"}')]


async def test_cancel_a_waiting_session(db: str | Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        await eng.run(approval_flow, 1, session_id="w")
        await eng.cancel("w")
        row = await eng.store.get_session("w")
        assert row is not None and row.status == "cancelled"
        assert await eng.resume() == []


# -- hole 3: limits count active time ------------------------------------------------------


async def test_replay_long_after_the_run_applies_no_deadline(db: str | Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock, limits=convoy.Limits(max_seconds=60)) as eng:
        res = await eng.run(nap_flow, 0.0, session_id="r")
        assert res.ok
        clock.advance(10 * 86400)  # ten days later
        rr = await eng.replay("r")
    assert rr.matches and rr.status == "completed"


async def test_time_parked_does_not_count_against_max_seconds(db: str | Path) -> None:
    """A session waiting a day for its approval is not killed by a 60 s active limit."""
    clock = FakeClock()
    async with _engine(db, clock, limits=convoy.Limits(max_seconds=60)) as eng:
        await eng.run(approval_flow, 1, session_id="w")
        clock.advance(86400 - 1)
        await eng.signal("w", "approval", {"approved": True, "by": "a"})
        [res] = await eng.resume()
    assert res.ok


async def test_max_age_bounds_the_total_age(db: str | Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock, limits=convoy.Limits(max_seconds=60, max_age=3600)) as eng:
        await eng.run(approval_flow, 1, session_id="w")
        clock.advance(7200)
        await eng.signal("w", "approval", {"approved": True, "by": "a"})
        [res] = await eng.resume()
    assert res.status == "limit_exceeded" and res.error is not None
    assert "max_age" in res.error["message"]


async def test_the_approvals_example_runs(tmp_path: Path) -> None:
    from examples.approvals import main

    assert await main(tmp_path / "a.db") == "paid"


@convoy.workflow(name="lax")
async def lax_flow(ctx: convoy.Context, _: int) -> int:
    return await ctx.wait_for("go", int)


async def test_a_signal_is_validated_as_the_workflow_validates_it(db: str | Path) -> None:
    """Pydantic's lax mode, not a stricter JSON schema: "42" is an int to the wait, so
    sending it is not refused (a check against the type's JSON schema refused it)."""
    async with convoy.Engine(db, workflows=[lax_flow]) as eng:
        assert (await eng.run(lax_flow, 0, session_id="lax")).status == "waiting"
        await eng.signal("lax", "go", "42")
        [done] = await eng.resume()
    assert done.ok and done.output == 42


@convoy.workflow(name="short_wait")
async def short_wait_flow(ctx: convoy.Context, seconds: float) -> str:
    try:
        await ctx.wait_for("x", timeout=seconds)
    except convoy.WaitTimeout:
        return "timed out"
    return "signalled"


async def test_serve_until_idle_waits_for_a_signals_timeout_due_soon(db: str | Path) -> None:
    """A timeout within IDLE_HORIZON is part of the work (a script that waits 2 s for an
    answer then goes on); one further away leaves its session waiting."""
    from convoy.engine._engine import IDLE_HORIZON

    clock = FakeClock()
    async with _engine(db, clock, workflows=[short_wait_flow]) as eng:
        assert (await eng.run(short_wait_flow, 2.0, session_id="soon")).status == "waiting"
        assert (await eng.run(short_wait_flow, IDLE_HORIZON + 10, session_id="later")
                ).status == "waiting"
        server = asyncio.create_task(eng.serve(until_idle=True, poll_interval=0.01))
        await asyncio.sleep(0)  # (the server makes its first pass: "soon" is not due yet)
        clock.advance(3)
        await asyncio.wait_for(server, 30)  # (a limit for a broken setup only)
        soon, later = await eng.store.get_session("soon"), await eng.store.get_session("later")
    assert soon is not None and soon.status == "completed" and soon.output == '"timed out"'
    assert later is not None and later.status == "waiting"


async def test_a_payload_or_input_nested_too_deep_is_refused_in_one_line(
        db: str | Path) -> None:
    """Past what the JSON encoder writes (255 levels), a value to store is one clear
    error naming it, not the encoder's; nothing is stored."""
    deep: Any = []
    for _ in range(300):
        deep = [deep]
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        await eng.run(approval_flow, 1, session_id="w")
        with pytest.raises(convoy.UserError, match=r"^the payload of signal 'approval': "
                           "arrays and objects nest more than 200 levels deep"):
            await eng.signal("w", "approval", deep)
        assert await eng.store.next_signal("w", "approval") is None
        with pytest.raises(convoy.UserError, match=r"^input: arrays and objects nest"):
            await eng.run(lax_any_flow, deep, session_id="deep")
        assert await eng.store.get_session("deep") is None



async def test_a_payload_or_input_with_an_integer_too_long_to_read_back_is_refused(
        db: str | Path) -> None:
    """An integer of more than 4300 digits is written by the encoder but read back by no
    Python decoder: a value to store holding one is one clear error, nothing stored."""
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        await eng.run(approval_flow, 1, session_id="w")
        with pytest.raises(convoy.UserError, match=r"^the payload of signal 'approval': "
                           "an integer with more than 4300 digits"):
            await eng.signal("w", "approval", {"n": 10 ** 5000})
        assert await eng.store.next_signal("w", "approval") is None
        with pytest.raises(convoy.UserError, match=r"^input: an integer with more than 4300"):
            await eng.run(lax_any_flow, [-(10 ** 4300)], session_id="huge")
        assert await eng.store.get_session("huge") is None
        # (the input as JSON text, read by an input type a string is not)
        with pytest.raises(convoy.UserError, match=r"^input: an integer with more than 4300"):
            await eng.run(lax_dict_flow, '{"n": %s}' % ("1" * 5000), session_id="huge")
        assert (await eng.run(lax_any_flow, ["1" * 5000], session_id="digits")).ok


@convoy.workflow(name="lax_any")
async def lax_any_flow(ctx: convoy.Context, value: Any) -> str:
    return "ran"


@convoy.workflow(name="lax_dict")
async def lax_dict_flow(ctx: convoy.Context, value: dict[str, Any]) -> str:
    return "ran"


def test_the_refusals_a_wait_record_holds_are_read_only_in_the_shape_written() -> None:
    """``convoy sessions show`` reads the refusals from the wait's record; a record of an
    earlier Convoy (none) or one edited by hand (wrong types, not JSON, nested past the
    decoder) says nothing rather than failing the command."""
    from convoy.durability._executor import refused_signals, signals_refused
    from convoy.stores import StepRecord

    def wait(result: str | None, status: str = "started") -> StepRecord:
        return StepRecord(key="1", kind="wait", target="approve", status=status,
                          result=result)

    first = refused_signals(None, 100.0, "1 error (bool_parsing)")
    second = refused_signals(first, 200.5, "2 errors (missing)")
    assert second == {"count": 2, "last_sent_at": 200.5, "last_why": "2 errors (missing)"}
    assert signals_refused(wait(json.dumps({"deadline": None, "refused": second}))) == second
    assert refused_signals({"count": "9"}, 1.0, "x")["count"] == 1
    for result in (None, "", "{", "[1]", '{"deadline": null}', '{"refused": []}',
                   '{"refused": {"count": 0, "last_sent_at": 1, "last_why": "x"}}',
                   '{"refused": {"count": true, "last_sent_at": 1, "last_why": "x"}}',
                   '{"refused": {"count": 1, "last_sent_at": "1", "last_why": "x"}}',
                   '{"refused": {"count": 1, "last_sent_at": 1, "last_why": 5}}',
                   '{"refused": {"count": 1, "last_sent_at": NaN, "last_why": "x"}}',
                   '{"refused": {"count": 1, "last_sent_at": 1e300, "last_why": "x"}}',
                   "[" * 100_000):
        assert signals_refused(wait(result)) is None, result
    assert signals_refused(wait(json.dumps({"refused": second}), "completed")) is None


async def test_serve_until_idle_says_which_timers_it_waits_for(db: str | Path) -> None:
    """Nothing can run now, but timers keep the server from being idle: ``on_wait`` gets
    the sessions it waits for each time it finds that, so a worker can say so (the first
    one is due first, then only the second is left)."""
    clock = FakeClock()
    seen: list[list[tuple[str, float | None]]] = []
    waiting = asyncio.Event()

    def on_wait(rows: list[Any]) -> None:
        seen.append(sorted((r.id, r.wake_at) for r in rows))
        waiting.set()

    async with _engine(db, clock, workflows=[nap_flow]) as eng:
        t0 = clock.now
        assert (await eng.run(nap_flow, 1, session_id="one")).status == "waiting"
        assert (await eng.run(nap_flow, 2, session_id="two")).status == "waiting"
        server = asyncio.create_task(eng.serve(until_idle=True, poll_interval=0.01,
                                               on_wait=on_wait))
        await asyncio.wait_for(waiting.wait(), 30)  # (a limit for a broken setup only)
        assert seen[0] == [("one", t0 + 3600), ("two", t0 + 7200)]
        waiting.clear()
        clock.advance(3600)
        while seen[-1] != [("two", t0 + 7200)]:
            await asyncio.wait_for(waiting.wait(), 30)
            waiting.clear()
        clock.advance(3600)
        await asyncio.wait_for(server, 30)
        assert await eng.store.counts() == {"completed": 2}


CHANGED = {"on": False}


@convoy.workflow(name="replay_cancelled")
async def _sleeps_then_waits(ctx: convoy.Context, first: float) -> str:
    if CHANGED["on"]:  # the code changed since: it no longer sleeps or waits
        return "no wait"
    await ctx.sleep(first)
    ok = await ctx.wait_for("approve", bool)
    await ctx.sleep(3600)
    return f"approved: {ok}"


@pytest.mark.parametrize(("first", "advance", "stopped_at"), [
    (3600, 0, "0"),    # cancelled during an un-fired one-hour sleep
    (10, 11, "1"),     # the sleep fired; cancelled while waiting for a signal never sent
])
async def test_a_cancelled_session_replays_up_to_where_it_was_cancelled(
        db: str | Path, first: float, advance: float, stopped_at: str) -> None:
    """Replay reproduces the session up to where it stopped: the same result, said so. It
    never fires a timer that had not fired, nor delivers a signal the journal does not
    hold."""
    clock = FakeClock()
    CHANGED["on"] = False
    async with _engine(db, clock) as eng:
        assert (await eng.run(_sleeps_then_waits, first, session_id="c")).status == "waiting"
        if advance:
            clock.advance(advance)
            assert [r.status for r in await eng.resume()] == ["waiting"]
        await eng.cancel("c", by="ops")
        rr = await eng.replay("c")
        assert rr.matches and rr.status == rr.recorded_status == "cancelled"
        assert rr.stopped_at == stopped_at and rr.output is None
        clock.advance(7200)  # replayed long after: still not fired
        assert (await eng.replay("c")).stopped_at == stopped_at
        try:
            CHANGED["on"] = True  # code that no longer reaches that point: diverged
            changed = await eng.replay("c")
            assert not changed.matches and changed.stopped_at is None
            assert changed.error is not None
            assert changed.error["type"] == "NonDeterminismError"  # the journal's leftovers
        finally:
            CHANGED["on"] = False


async def test_a_completed_session_s_timers_and_signals_replay_as_they_fired(
        db: str | Path) -> None:
    clock = FakeClock()
    CHANGED["on"] = False
    async with _engine(db, clock) as eng:
        assert (await eng.run(_sleeps_then_waits, 10, session_id="d")).status == "waiting"
        clock.advance(11)
        await eng.resume()
        await eng.signal("d", "approve", True)
        await eng.resume()
        clock.advance(3601)
        [res] = await eng.resume()
        assert res.ok
        rr = await eng.replay("d")
        assert rr.matches and rr.status == "completed" and rr.stopped_at is None


class _Charge:
    """What the gathered charge of :func:`_approve_and_charge` did, and when it may end."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.started = asyncio.Event()
        self.go_on = asyncio.Event()
        self.waiter: asyncio.Task[Any] | None = None  # (the branch that waits)


CHARGE = {"now": _Charge()}


@convoy.workflow(name="approve_and_charge")
async def _approve_and_charge(ctx: convoy.Context, amount: int) -> str:
    charge = CHARGE["now"]

    async def pay() -> str:
        charge.calls.append("charge")
        charge.started.set()
        await charge.go_on.wait()
        return f"charged {amount}"

    async def approval(c: convoy.Context) -> str:
        charge.waiter = asyncio.current_task()
        await charge.started.wait()  # (the charge is under way when the wait parks)
        return await c.wait_for("approved", str)  # (no signal yet: it parks)

    async def work(c: convoy.Context) -> str:
        return await c.step("charge", pay)  # (not idempotent)

    return ",".join(await ctx.gather(approval, work))


async def test_a_gather_branch_that_parks_lets_a_sibling_s_step_finish(
        db: str | Path) -> None:
    """One branch parks on a wait while another's non-idempotent step runs: the step
    ends and is journaled (it is not cancelled, left ``started`` and escalated as an
    unknown outcome when the session wakes), then the session parks; woken, it completes
    with the step run once, as it would had nothing parked."""
    clock = FakeClock()
    CHARGE["now"] = charge = _Charge()
    async with _engine(db, clock) as eng:
        run = asyncio.create_task(eng.run(_approve_and_charge, 5, session_id="g"))
        await asyncio.wait_for(charge.started.wait(), 30)
        assert charge.waiter is not None
        await asyncio.wait_for(asyncio.wait([charge.waiter]), 30)  # (the wait parked)
        charge.go_on.set()
        assert (await asyncio.wait_for(run, 30)).status == "waiting"
        journal = {r.key: (r.kind, r.target, r.status) for r in await eng.store.journal("g")}
        assert journal == {"0/0": ("wait", "approved", "started"),
                           "1/0": ("effect", "charge", "completed")}
        await eng.signal("g", "approved", "yes")
        [res] = await eng.resume()
        assert res.ok and res.output == "yes,charged 5"
        assert charge.calls == ["charge"]
        assert (await eng.replay("g")).matches


@convoy.workflow(name="gather_waits")
async def _gather_waits(ctx: convoy.Context, hours: float) -> str:
    async def nap(c: convoy.Context) -> str:
        await c.sleep(hours * 3600)
        return "slept"

    async def approval(c: convoy.Context) -> str:
        return await c.wait_for("approved", str)

    async def work(c: convoy.Context) -> str:
        return str(await c.step("work", lambda: "worked"))

    return ",".join(await ctx.gather(nap, approval, work))


async def test_a_gather_whose_branches_park_wakes_at_the_first_timer_or_a_signal(
        db: str | Path) -> None:
    """Every branch goes on until it ends or parks; the session then waits for the
    earliest of their timers and for the signal a branch waits for."""
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        assert (await eng.run(_gather_waits, 2.0, session_id="p")).status == "waiting"
        row = await eng.store.get_session("p")
        assert row is not None and row.wait_name == "approved"
        assert row.wake_at == pytest.approx(clock.now + 7200)
        journal = {r.key: r.status for r in await eng.store.journal("p")}
        assert journal == {"0/0": "completed", "1/0": "started", "2/0": "completed"}
        clock.advance(7201)  # the nap ends: the session still waits for the signal
        assert [r.status for r in await eng.resume()] == ["waiting"]
        row = await eng.store.get_session("p")
        assert row is not None and row.wait_name == "approved" and row.wake_at is None
        await eng.signal("p", "approved", "yes")
        [res] = await eng.resume()
        assert res.ok and res.output == "slept,yes,worked"
        assert (await eng.replay("p")).matches


@convoy.workflow(name="waits.gather_two_signals")
async def _gather_two_signals(ctx: convoy.Context, x: int) -> str:
    async def watcher(c: convoy.Context) -> str:  # waits for what the other branch writes
        await c.state("ns", type=dict).wait("k")
        return "saw"

    async def writer(c: convoy.Context) -> str:  # needs a signal from outside first
        go = await c.wait_for("go", str)
        await c.state("ns", type=dict).set("k", {"v": go}, expected_version=0)
        return go

    return ",".join(await ctx.gather(watcher, writer))


async def test_a_gather_whose_branches_wait_for_different_signals_wakes_for_each(
        db: str | Path) -> None:
    """A review: branches waiting for different signals parked the session on the first
    branch's alone (in argument order); a signal another branch waited for was kept but
    woke nothing (a later fix looked for it after a tenth of the time waited, up to five
    minutes). The session now waits for every branch's signal, with no timer, and the
    signal a later branch waits for wakes it at once."""
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        assert (await eng.run(_gather_two_signals, 1, session_id="g")).status == "waiting"
        row = await eng.store.get_session("g")
        assert row is not None and row.wait_names == ("convoy.state:ns/k", "go"), row
        assert row.wake_at is None, row
        await eng.signal("g", "go", "yes")
        row = await eng.store.get_session("g")
        assert row is not None and row.status == "pending", row
        await eng.serve(until_idle=True)  # (the write wakes the watcher: a run more)
        res = await eng.result("g")
        assert res.ok and res.output == "saw,yes", res
        assert (await eng.replay("g")).matches


@convoy.workflow(name="waits.gather_signal_or_person")
async def _gather_signal_or_write(ctx: convoy.Context, x: int) -> str:
    async def go(c: convoy.Context) -> str:
        return await c.wait_for("go", str)

    async def changed(c: convoy.Context) -> str:
        seen = await c.state("ns", type=dict).wait("k")
        return str((seen.value or {}).get("v"))

    return ",".join(await ctx.gather(go, changed))


async def test_a_write_by_another_wakes_a_gather_waiting_for_it_and_a_signal(
        db: str | Path) -> None:
    """The key's write (by the engine's state API, as another session's would) wakes the
    session at once though it waits for a signal too, which then wakes it again."""
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        assert (await eng.run(_gather_signal_or_write, 1, session_id="w")).status == \
            "waiting"
        await eng.state("ns", type=dict).set("k", {"v": 7}, expected_version=0)
        row = await eng.store.get_session("w")
        assert row is not None and row.status == "pending", row
        assert [r.status for r in await eng.resume()] == ["waiting"]
        row = await eng.store.get_session("w")
        assert row is not None and row.wait_names == ("go",), row
        await eng.signal("w", "go", "yes")
        [res] = await eng.resume()
        assert res.ok and res.output == "yes,7", res
        assert (await eng.replay("w")).matches


@convoy.workflow(name="waits.gather_wait_then_fail")
async def _gather_wait_then_fail(ctx: convoy.Context, nap: float) -> str:
    async def waits(c: convoy.Context) -> str:
        if nap:
            await c.sleep(nap)
            return "slept"
        return await c.wait_for("approved", str)

    async def fails(c: convoy.Context) -> str:
        await c.step("work", lambda: "w")
        raise ValueError("boom")

    return ",".join(await ctx.gather(waits, fails))


@pytest.mark.parametrize("nap", [0.0, 7200.0])
async def test_a_gather_whose_branch_waits_while_another_fails_replays_the_same(
        db: str | Path, nap: float) -> None:
    """A review: a branch left waiting (a signal, a long timer) while its sibling failed
    made the session fail with the wait journaled unfinished, and ``replay`` then said
    the session diverged: the replayed wait raised before the sibling's failure came
    again. The replayed wait stops where the recorded run stopped, and the failure is the
    same."""
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        res = await eng.run(_gather_wait_then_fail, nap, session_id="f")
        assert res.status == "failed" and (res.error or {}).get("type") == "ValueError", res
        replayed = await eng.replay("f")
        assert replayed.matches, replayed
