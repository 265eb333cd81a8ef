"""A session whose run a session hook refuses (a policy, a check whose service is down)
does not stop the worker that claimed it: the worker serves the other sessions, and runs
the refused one again after a delay that doubles with each refusal (as it does a session
the store failed to record), until the hook lets it through. Before, the hook's error
stopped ``serve`` (``convoy worker`` exited), and a restarted worker claimed the session
at once and stopped again. Time is a fake clock the test moves; every wait is for state
the test can observe."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.stores import SQLiteStore

from .clikit import FIXTURES
from .fakeclock import FakeClock
from .test_privacy import wait_a_day
from .test_worker_backoff import count, created, finished, rounds_pass, runs, until


class Counted(SQLiteStore):
    """Counts its claim rounds (:func:`rounds_pass`)."""

    def __init__(self, path: Path, clock: FakeClock) -> None:
        super().__init__(path, clock=clock)
        self.rounds = 0

    async def claim_runnable(self, owner: str, lease_s: float, **kw: Any) -> Any:
        self.rounds += 1
        return await super().claim_runnable(owner, lease_s, **kw)


class Refuses(convoy.Interceptor):
    """Refuses the runs of session ``bad`` while ``refusing`` (before ``next``); with
    ``after``, raises after ``next`` instead (the run's end is kept)."""

    def __init__(self, *, after: bool = False, cancelled: bool = False) -> None:
        self.refusing, self.after, self.refused = True, after, 0
        self.cancelled = cancelled  # (raises CancelledError, nobody having cancelled)

    async def session_run(self, input: convoy.SessionInput, next: Any) -> Any:
        bad = input.info.session_id == "bad" and self.refusing
        if bad and not self.after:
            self.refused += 1
            if self.cancelled:
                raise asyncio.CancelledError
            raise convoy.UserError("tenant 'acme' is suspended\n(a second line)")
        end = await next(input)
        if bad:
            self.refused += 1
            if self.cancelled:
                raise asyncio.CancelledError
            raise RuntimeError("the audit service is down")
        return end


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "convoy"]


async def test_a_session_a_hook_refuses_is_held_back_and_the_worker_serves_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    store = Counted(tmp_path / "r.db", clock)
    hook = Refuses()
    runs.clear()
    await created(tmp_path / "r.db", clock, "bad", "good")
    async with convoy.Engine(store, workflows=[count], interceptors=[hook]) as engine:
        with caplog.at_level(logging.WARNING, logger="convoy"):
            server = asyncio.create_task(engine.serve(poll_interval=0.001))
            await until(finished(engine, "good"), "good completed")
            await until(lambda: hook.refused == 1, "bad refused")
            # Many claim rounds later, with the clock still: refused once, the worker on.
            await rounds_pass(store, 50)
            assert hook.refused == 1 and not server.done()
            assert runs == [2]  # (bad, of input 1, never reached its workflow)
            assert said(caplog) == ["session 'bad': a session hook refused its run "
                                    "(UserError: tenant 'acme' is suspended); it runs "
                                    "again in 1 s"]
            # Tried again a second later, then two seconds after that, ...
            clock.advance(0.99)
            await rounds_pass(store, 20)
            assert hook.refused == 1
            clock.advance(0.01)
            await until(lambda: hook.refused == 2, "the second refusal")
            # (said as it is held back, just after the hook raised: before the clock moves)
            await until(lambda: len(said(caplog)) == 2, "the second refusal said")
            assert said(caplog)[-1].endswith("it runs again in 2 s")
            # ... and run once the hook lets it through.
            hook.refusing = False
            clock.advance(2)
            await until(finished(engine, "bad"), "bad completed")
            assert (await engine.result("bad")).output == 2
            assert not server.done()
            server.cancel()
            with pytest.raises(asyncio.CancelledError):
                await server


async def test_until_idle_does_not_wait_for_a_session_a_hook_refuses(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """It returns once the rest is done; the refused session is left ``pending``, held by
    no engine, for a later worker or ``convoy resume``; its warning says so (it said the
    session runs again in 1 s, and the worker returned before)."""
    clock = FakeClock()
    hook = Refuses()
    runs.clear()
    await created(tmp_path / "r.db", clock, "bad", "good")
    async with convoy.Engine(SQLiteStore(tmp_path / "r.db", clock=clock),
                             workflows=[count], interceptors=[hook]) as engine:
        with caplog.at_level(logging.WARNING, logger="convoy"):
            await asyncio.wait_for(engine.serve(until_idle=True, poll_interval=0.001), 60)
        assert said(caplog) == [
            "session 'bad': a session hook refused its run (UserError: tenant 'acme' is "
            "suspended); it runs again in 1 s if this worker still serves then (serving "
            "until idle does not wait for it: it is left pending)"]
        bad = await engine.store.get_session("bad")
        assert bad is not None and (bad.status, bad.owner) == ("pending", None)
        assert hook.refused == 1
        assert (await engine.result("good")).status == "completed"
        hook.refusing = False
        assert [r.status for r in await engine.resume()] == ["completed"]


@pytest.mark.parametrize("cancelled", [False, True], ids=["runtime_error", "cancelled_error"])
async def test_a_hook_that_raises_after_the_run_ended_keeps_the_end_and_the_worker(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, cancelled: bool) -> None:
    """Raised after ``next``: the end is written, nothing is held back, and the worker
    says what was raised, in one line (a ``CancelledError`` nobody sent was said to run
    again, and held back)."""
    clock = FakeClock()
    hook = Refuses(after=True, cancelled=cancelled)
    runs.clear()
    await created(tmp_path / "r.db", clock, "bad", "good")
    async with convoy.Engine(SQLiteStore(tmp_path / "r.db", clock=clock),
                             workflows=[count], interceptors=[hook]) as engine:
        with caplog.at_level(logging.WARNING, logger="convoy"):
            await asyncio.wait_for(engine.serve(until_idle=True, poll_interval=0.001), 60)
        assert [(await engine.result(s)).status for s in ("bad", "good")] == \
            ["completed", "completed"]
        raised = "CancelledError (from a session hook: nobody cancelled the run)" \
            if cancelled else "RuntimeError: the audit service is down"
        assert said(caplog) == [f"session 'bad': its run raised {raised}; its end was "
                                "written all the same: completed"]
        assert hook.refused == 1 and "bad" not in engine._backoff


@pytest.mark.parametrize("error", [
    convoy.AuditError("tenant 'default': audit entry 3 was changed"),
    convoy.StoreError("database disk image is malformed", transient=False),
], ids=["audit", "store"])
async def test_the_logs_or_the_stores_error_out_of_a_hook_still_stops_the_worker(
        tmp_path: Path, error: Exception, caplog: pytest.LogCaptureFixture) -> None:
    """Not one session's: every session would meet it. The worker stops with it, as it
    does when the store fails so as it claims, and holds nothing back."""
    clock = FakeClock()
    await created(tmp_path / "r.db", clock, "bad")

    class Fails(convoy.Interceptor):
        async def session_run(self, input: convoy.SessionInput, next: Any) -> Any:
            raise error

    async with convoy.Engine(SQLiteStore(tmp_path / "r.db", clock=clock),
                             workflows=[count], interceptors=[Fails()]) as engine:
        with caplog.at_level(logging.WARNING, logger="convoy"), \
                pytest.raises(type(error), match=str(error).split("'")[0]):
            await asyncio.wait_for(engine.serve(poll_interval=0.001), 60)
        assert said(caplog) == []
    async with convoy.Engine(SQLiteStore(tmp_path / "r.db", clock=clock)) as engine:
        bad = await engine.store.get_session("bad")  # (once the first closed: given back)
        assert bad is not None and (bad.status, bad.owner) == ("pending", None)


@pytest.mark.parametrize("cancelled", [False, True], ids=["refused", "cancelled_error"])
async def test_a_cancel_of_a_session_a_hook_refuses_lands(tmp_path: Path,
                                                          cancelled: bool) -> None:
    """The worker holds a refused session back; a cancel sent meanwhile (from another
    process: a request) ends it at its next claim, though the hook refuses that run too:
    the end is a person's request, not work the hook can refuse. It looped before: the
    cancel's run refused, the session released, claimed again at once (tens of thousands
    of runs a second), never cancelled; a hook that raised ``CancelledError`` (nobody
    having cancelled the run) kept it from landing after that was fixed."""
    clock = FakeClock()
    store = Counted(tmp_path / "r.db", clock)
    hook = Refuses(cancelled=cancelled)
    await created(tmp_path / "r.db", clock, "bad")
    async with convoy.Engine(store, workflows=[count], interceptors=[hook]) as engine:
        server = asyncio.create_task(engine.serve(poll_interval=0.001))
        await until(lambda: hook.refused == 1, "bad refused")

        def status(want: str, owner: str | None) -> Any:
            async def check() -> bool:
                row = await engine.store.get_session("bad")
                return row is not None and (row.status, row.owner) == (want, owner)
            return check

        await until(status("running", engine.owner), "bad held back (claimed again)")
        async with convoy.Engine(SQLiteStore(tmp_path / "r.db", clock=clock)) as other:
            assert await other.cancel("bad", by="alice") == "requested"
        await rounds_pass(store, 50)
        assert hook.refused == 1  # (held back: not tried again before it is due)
        clock.advance(1)
        await until(status("cancelled", None), "bad cancelled")
        await rounds_pass(store, 50)
        assert hook.refused == 2 and not server.done()
        assert (await engine.result("bad")).error["by"] == "alice"  # type: ignore[index]
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server


async def test_until_idle_with_one_slot_says_nothing_of_sessions_it_runs_next(
        tmp_path: Path) -> None:
    """A round whose claim found only the refused session, held back (the limit of one
    slot leaving the rest for the next round), is not a round with nothing to run: the
    worker said it waited for sessions it "cannot run now", then ran them."""
    clock = FakeClock()
    hook = Refuses()
    runs.clear()
    await created(tmp_path / "r.db", clock, "bad", "g1", "g2", "g3")
    waited: list[list[str]] = []
    async with convoy.Engine(SQLiteStore(tmp_path / "r.db", clock=clock),
                             workflows=[count], interceptors=[hook],
                             concurrency=1) as engine:
        await asyncio.wait_for(engine.serve(
            until_idle=True, poll_interval=0.001,
            on_wait=lambda rows: waited.append([r.id for r in rows])), 60)
        assert [(await engine.result(s)).status for s in ("g1", "g2", "g3")] == \
            ["completed"] * 3
    assert waited == []


async def test_a_cancelled_error_out_of_a_hook_is_held_back_as_a_refusal(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Nobody cancelled the run: the session is held back, with one line, not claimed
    again on every round."""
    clock = FakeClock()
    store = Counted(tmp_path / "r.db", clock)
    raised: list[str] = []

    class Cancels(convoy.Interceptor):
        async def session_run(self, input: convoy.SessionInput, next: Any) -> Any:
            if input.info.session_id == "bad":
                raised.append("bad")
                raise asyncio.CancelledError
            return await next(input)

    await created(tmp_path / "r.db", clock, "bad", "good")
    async with convoy.Engine(store, workflows=[count], interceptors=[Cancels()]) as engine:
        with caplog.at_level(logging.WARNING, logger="convoy"):
            server = asyncio.create_task(engine.serve(poll_interval=0.001))
            await until(finished(engine, "good"), "good completed")
            await until(lambda: raised == ["bad"], "bad's hook raised")
            await rounds_pass(store, 50)
            assert raised == ["bad"] and not server.done()
            assert said(caplog) == ["session 'bad': its run raised CancelledError (from a "
                                    "session hook: nobody cancelled the run); it runs "
                                    "again in 1 s"]
            # Tried again when due, once, and held back longer (it was tried twice at
            # each due time, always held back 1 s, every second refusal unsaid).
            clock.advance(1)
            await until(lambda: len(raised) == 2, "the second attempt")
            await rounds_pass(store, 50)
            assert len(raised) == 2
            assert said(caplog)[-1].endswith("it runs again in 2 s") and len(said(caplog)) == 2
            server.cancel()
            with pytest.raises(asyncio.CancelledError):
                await server


async def test_until_idle_waits_for_a_timer_of_a_session_whose_hook_raised_after_next(
        tmp_path: Path) -> None:
    """The session parked on its timer, then a hook raised: while the worker read how the
    run left it (a round trip), the session was marked refused, and ``until_idle``, which
    does not wait for refused sessions, returned with its timer pending."""
    clock = FakeClock()
    reading, gate = asyncio.Event(), asyncio.Event()

    class SlowRead(Counted):
        async def get_session(self, session_id: str, **kw: Any) -> Any:
            if hook.refused and not gate.is_set():
                reading.set()
                await gate.wait()
            return await super().get_session(session_id, **kw)

    store = SlowRead(tmp_path / "r.db", clock)
    hook = Refuses(after=True)
    async with convoy.Engine(SQLiteStore(tmp_path / "r.db", clock=clock)) as e:
        e.drain()
        await e.run_many(wait_a_day, ["x"], ids=["bad"])  # (a timer a day off)
    async with convoy.Engine(store, workflows=[wait_a_day], interceptors=[hook]) as engine:
        server = asyncio.create_task(engine.serve(until_idle=True, poll_interval=0.001))
        async def rounds_or_returned() -> None:
            start = store.rounds
            await until(lambda: store.rounds >= start + 20 or server.done(),
                        "20 more claim rounds")
            assert not server.done()  # (it returned, the timer a day off)

        await until(reading.is_set, "the worker reads how the run left the session")
        await rounds_or_returned()
        gate.set()
        bad = await engine.store.get_session("bad")
        assert bad is not None and bad.status == "waiting"
        await rounds_or_returned()
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server


async def test_a_hook_error_after_next_is_said_when_the_end_could_not_be_written(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The store failed to write the end the run reached, after a hook raised: the store's
    failure was said, the hook's error not at all."""
    from .test_worker_backoff import FailingEnds

    clock = FakeClock()
    store = FailingEnds(tmp_path / "c.db", clock, "bad")
    hook = Refuses(after=True)
    await created(tmp_path / "c.db", clock, "bad")
    async with convoy.Engine(store, workflows=[count], interceptors=[hook]) as engine:
        with caplog.at_level(logging.WARNING, logger="convoy"):
            server = asyncio.create_task(engine.serve(poll_interval=0.001))
            await until(lambda: hook.refused == 1, "the hook raised")
            await rounds_pass(store, 20)
            server.cancel()
            with pytest.raises(asyncio.CancelledError):
                await server
    assert said(caplog) == [
        "session 'bad' could not be recorded (disk I/O error); it runs again in 1 s",
        "session 'bad': its run raised RuntimeError: the audit service is down"]


class QuotesInput(convoy.Interceptor):
    """Refuses every run with a message that quotes the session's input (a policy that
    names what it refused), before ``next`` or, with ``after``, after it."""

    def __init__(self, *, after: bool) -> None:
        self.after = after

    async def session_run(self, input: convoy.SessionInput, next: Any) -> Any:
        if self.after:
            await next(input)
        raise PermissionError(f"account suspended for {input.input!r}")


@pytest.mark.parametrize("after", [False, True], ids=["refused", "raised_after_next"])
async def test_a_refusal_of_a_data_subjects_session_is_said_without_its_message(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, after: bool) -> None:
    """The warning is a log line: of a data subject's session it names the error's type
    alone, as its spans and JSON logs do (the message may quote the subject's data, which
    no erasure reaches once logged). Another session's says its message."""
    from convoy import MasterKey

    key = MasterKey.from_text(MasterKey.generate())
    db = tmp_path / "s.db"
    async with convoy.Engine(db, master_key=key) as e:
        e.drain()
        await e.run(count, 7, session_id="subject", subject="zebulon-quaxworth")
        await e.run(count, 8, session_id="plain")
    async with convoy.Engine(db, master_key=key, workflows=[count],
                             interceptors=[QuotesInput(after=after)]) as engine:
        with caplog.at_level(logging.WARNING, logger="convoy"):
            await asyncio.wait_for(engine.serve(until_idle=True, poll_interval=0.001), 60)
    lines = {line.split("'")[1]: line for line in said(caplog)}
    assert set(lines) == {"subject", "plain"}, said(caplog)
    assert "PermissionError (message withheld: a data subject's session)" in \
        lines["subject"], lines
    assert "7" not in lines["subject"].replace("'subject'", ""), lines
    assert "PermissionError: account suspended for 8" in lines["plain"], lines


class RefusesOutput(convoy.Interceptor):
    """A check after the run that refuses what it returned, quoting it."""

    async def session_run(self, input: convoy.SessionInput, next: Any) -> Any:
        end = await next(input)
        if input.info.session_id == "reader":
            raise PermissionError(f"output not allowed: {end.output}")
        return end


async def test_a_hook_raising_after_a_run_that_read_a_subjects_data_is_said_without_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A session of no subject that read a subject's shared state: its run's end is
    written (the store forgets then what the run read) before the worker says that a hook
    raised after it; the warning quoted the person (the review of stop 53)."""
    from convoy import MasterKey

    monkeypatch.syspath_prepend(str(FIXTURES))
    from subject_state_flows import read_back, write_person

    key = MasterKey.from_text(MasterKey.generate())
    db = tmp_path / "s.db"
    async with convoy.Engine(db, master_key=key) as e:
        assert (await e.run(write_person, "Margaret Zebulon-Quaxworth", session_id="w",
                            subject="margaret")).ok
        e.drain()
        await e.run(read_back, "m", session_id="reader")
    async with convoy.Engine(db, master_key=key, workflows=[read_back],
                             interceptors=[RefusesOutput()]) as engine:
        with caplog.at_level(logging.WARNING, logger="convoy"):
            await asyncio.wait_for(engine.serve(until_idle=True, poll_interval=0.001), 60)
    [line] = said(caplog)
    assert "PermissionError (message withheld: a data subject's session)" in line, line
    assert "Zebulon" not in line, line
