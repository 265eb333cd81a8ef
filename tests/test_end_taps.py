"""``SessionInput.end_taps``: told how a run of a session ended once it is written, with
the status the store holds, not the one the run ended with (the worker printed
``completed`` for a run whose end the store then failed to write)."""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.stores import SQLiteStore
from convoy.stores._protocol import NewSession, SessionOutcome


@convoy.workflow(name="endtaps.double")
async def double(ctx: convoy.Context, n: int) -> int:
    got: int = await ctx.step("double", lambda: n * 2)
    return got


@convoy.workflow(name="endtaps.waits")
async def waits(ctx: convoy.Context, n: int) -> int:
    got: int = await ctx.wait_for("go", int)
    return n + got


@convoy.workflow(name="endtaps.fails")
async def fails(ctx: convoy.Context, n: int) -> int:
    raise ValueError(f"no good: {n}")


class Told(convoy.Interceptor):
    """Adds an end tap to every run, before ``next`` or after it returned."""

    def __init__(self, *, after: bool = False) -> None:
        self.after = after
        self.told: list[tuple[str, str, Any, str | None]] = []

    async def session_run(self, input: convoy.SessionInput,
                          next: convoy.Next[convoy.SessionInput, convoy.SessionEnd],
                          ) -> convoy.SessionEnd:
        sid = input.info.session_id

        def tap(end: convoy.SessionEnd) -> None:
            self.told.append((sid, end.status, end.output,
                              None if end.error is None else end.error.get("type")))

        if not self.after:
            input.end_taps.append(tap)
        end = await next(input)
        if self.after:
            input.end_taps.append(tap)
        return end


class FailsToFinish(SQLiteStore):
    """Fails to write how session ``bad`` ended, once."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.failing = True

    def finish(self, session_id: str, owner: str | None, outcome: SessionOutcome,
               **kw: Any) -> Any:
        if self.failing and session_id == "bad":
            self.failing = False
            raise convoy.StoreError("disk I/O error", transient=True)
        return super().finish(session_id, owner, outcome, **kw)


@pytest.mark.parametrize("after", [False, True], ids=["before-next", "after-next"])
async def test_taps_are_told_each_end_as_written(tmp_path: Path, after: bool) -> None:
    told = Told(after=after)
    async with convoy.Engine(tmp_path / "c.db", interceptors=[told]) as eng:
        assert (await eng.run(double, 2, session_id="ok")).output == 4
        assert (await eng.run(fails, 3, session_id="no")).status == "failed"
        assert (await eng.run(waits, 1, session_id="w")).status == "waiting"
        await eng.signal("w", "go", 5)
        [resumed] = await eng.resume()
        assert resumed.output == 6
    assert told.told == [("ok", "completed", 4, None), ("no", "failed", None, "ValueError"),
                         ("w", "waiting", None, None), ("w", "completed", 6, None)]


async def test_a_run_whose_end_the_store_failed_to_write_is_told_pending(
        tmp_path: Path) -> None:
    """The run completed; the store failed to write it: the tap is told ``pending``, with
    the store's error (and no output), and the caller gets the same."""
    told = Told()
    async with convoy.Engine(FailsToFinish(tmp_path / "c.db"), interceptors=[told]) as eng:
        res = await eng.run(double, 2, session_id="bad")
        assert res.status == "pending"
        [again] = await eng.resume()
        assert again.output == 4
    assert told.told == [("bad", "pending", None, "StoreError"), ("bad", "completed", 4, None)]


async def test_a_replay_tells_no_tap(tmp_path: Path) -> None:
    told = Told()
    async with convoy.Engine(tmp_path / "c.db", interceptors=[told]) as eng:
        await eng.run(double, 2, session_id="ok")
        told.told.clear()
        assert (await eng.replay("ok")).matches
    assert told.told == []


async def test_a_tap_that_raises_is_logged_and_the_others_are_told(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    told = Told()

    class Broken(convoy.Interceptor):
        async def session_run(self, input: convoy.SessionInput,
                              next: convoy.Next[convoy.SessionInput, convoy.SessionEnd],
                              ) -> convoy.SessionEnd:
            input.end_taps.append(self.broken)
            return await next(input)

        def broken(self, end: convoy.SessionEnd) -> None:
            raise RuntimeError("tap broke")

    with caplog.at_level(logging.ERROR, logger="convoy"):
        async with convoy.Engine(tmp_path / "c.db", interceptors=[Broken(), told]) as eng:
            assert (await eng.run(double, 2, session_id="ok")).output == 4
    assert told.told == [("ok", "completed", 4, None)]
    assert "an end tap raised on the end of a run of session 'ok' (completed); the session " \
        "ended as written" in caplog.text


async def test_an_async_tap_added_after_the_run_is_logged_and_not_called(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Added after ``next`` returned, an ``async`` tap (or a partial of one) is found only
    as the end is told, once it is written: it is logged, not called, and the run's result
    and the other taps are as they would be (raising then stopped a whole ``run_many``)."""
    told = Told(after=True)

    class Late(convoy.Interceptor):
        async def tap(self, end: convoy.SessionEnd, *_: Any) -> None:
            pass

        async def session_run(self, input: convoy.SessionInput,
                              next: convoy.Next[convoy.SessionInput, convoy.SessionEnd],
                              ) -> convoy.SessionEnd:
            end = await next(input)
            input.end_taps.append(self.tap)
            input.end_taps.append(partial(self.tap, 1))
            return end

    with caplog.at_level(logging.ERROR, logger="convoy"):
        async with convoy.Engine(tmp_path / "c.db", interceptors=[Late(), told]) as eng:
            results = await eng.run_many(double, [1, 2], ids=["a", "b"])
    assert [r.output for r in results] == [2, 4]
    assert sorted(told.told) == [("a", "completed", 2, None), ("b", "completed", 4, None)]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 4 and all("Late.tap is an async function" in m and "it was not "
                                  "told how session" in m for m in said), said


async def test_a_partial_of_an_async_function_is_refused_before_the_run(
        tmp_path: Path) -> None:
    """What a ``functools.partial`` calls is what is checked (a partial was taken for a
    plain tap, and every partial after it too)."""
    async def tap(what: str, end: convoy.SessionEnd) -> None:
        pass

    class Early(convoy.Interceptor):
        async def session_run(self, input: convoy.SessionInput,
                              next: convoy.Next[convoy.SessionInput, convoy.SessionEnd],
                              ) -> convoy.SessionEnd:
            input.end_taps.append(partial(lambda end: None))
            input.end_taps.append(partial(tap, "x"))
            return await next(input)

    async with convoy.Engine(tmp_path / "c.db", interceptors=[Early()]) as eng:
        with pytest.raises(convoy.UserError, match=r"end_taps: .*tap is an async function"):
            await eng.run(double, 2, session_id="p")


async def test_a_hook_that_ends_the_run_without_next_tells_the_taps(tmp_path: Path) -> None:
    """An outer hook's tap is told the end an inner hook made up without calling ``next``
    (the worker printed no line for such a session, and did not count it)."""
    told = Told(after=True)

    class Refuses(convoy.Interceptor):
        async def session_run(self, input: convoy.SessionInput,
                              next: convoy.Next[convoy.SessionInput, convoy.SessionEnd],
                              ) -> convoy.SessionEnd:
            return convoy.SessionEnd(status="failed", error={"type": "Refused",
                                                             "message": "not today"})

    async with convoy.Engine(tmp_path / "c.db", interceptors=[told, Refuses()]) as eng:
        assert (await eng.run(double, 2, session_id="no")).status == "failed"
    assert told.told == [("no", "failed", None, "Refused")]


async def test_a_waiting_end_says_what_it_waits_for_and_a_tap_changes_no_result(
        tmp_path: Path) -> None:
    """A tap is told what a waiting session waits for (the wait's name), though the
    caller's result has no error; a tap that changes what it is told changes nothing of
    the result."""
    seen: list[dict[str, Any] | None] = []

    class Meddles(convoy.Interceptor):
        def tap(self, end: convoy.SessionEnd) -> None:
            seen.append(end.error)
            end.output = "changed"

        async def session_run(self, input: convoy.SessionInput,
                              next: convoy.Next[convoy.SessionInput, convoy.SessionEnd],
                              ) -> convoy.SessionEnd:
            input.end_taps.append(self.tap)
            return await next(input)

    async with convoy.Engine(tmp_path / "c.db", interceptors=[Meddles()]) as eng:
        waiting = await eng.run(waits, 1, session_id="w")
        done = await eng.run(double, 2, session_id="d")
    assert waiting.status == "waiting" and waiting.error is None
    assert seen[0] is not None and seen[0]["wait_name"] == "go"
    assert done.output == 4


async def test_a_cancel_that_ends_a_pending_session_tells_the_taps(tmp_path: Path) -> None:
    """Cancelling a session that never ran is a run that executes nothing: its end, as
    written, reaches the taps too."""
    async with convoy.Engine(tmp_path / "c.db") as first:
        first.drain()
        await first.run_many(double, [1], ids=["p"])
    told = Told()
    async with convoy.Engine(tmp_path / "c.db", interceptors=[told]) as eng:
        await eng.cancel("p")
        row = await eng.store.get_session("p")
    assert row is not None and row.status == "cancelled"
    assert told.told == [("p", "cancelled", None, "Cancelled")]


class Raises(convoy.Interceptor):
    """A session hook that raises: before ``next`` (a policy refusing the run, a bug), or
    after it returned (the run's steps are journaled)."""

    def __init__(self, *, after: bool = False) -> None:
        self.after = after

    async def session_run(self, input: convoy.SessionInput,
                          next: convoy.Next[convoy.SessionInput, convoy.SessionEnd],
                          ) -> convoy.SessionEnd:
        if self.after:
            await next(input)
        raise RuntimeError("the hook broke")


async def test_a_hook_that_raises_gives_the_session_back_unfinished(tmp_path: Path) -> None:
    """The run raises the hook's error, and the session is left ``pending`` (a new one
    kept, with its input), not ``running`` under this engine's lease until it lapses,
    then resumed by another engine into the same error; once the hook is fixed, a run
    finishes it."""
    told = Told()  # (its tap is added before ``next``: the inner hook raises out of it)
    db = tmp_path / "c.db"
    async with convoy.Engine(db, interceptors=[told, Raises()]) as eng:
        with pytest.raises(RuntimeError, match="the hook broke"):
            await eng.run(double, 2, session_id="r")
        row = await eng.store.get_session("r")
        assert row is not None and (row.status, row.owner, row.input) == ("pending", None, "2")
    assert told.told == [("r", "pending", None, "RuntimeError")]
    async with convoy.Engine(db) as eng:
        res = await eng.run(double, 2, session_id="r")
        assert (res.status, res.output) == ("completed", 4)


async def test_a_refused_async_tap_gives_the_session_back(tmp_path: Path) -> None:
    async def tap(end: convoy.SessionEnd) -> None:
        pass

    class Early(convoy.Interceptor):
        async def session_run(self, input: convoy.SessionInput,
                              next: convoy.Next[convoy.SessionInput, convoy.SessionEnd],
                              ) -> convoy.SessionEnd:
            input.end_taps.append(tap)
            return await next(input)

    async with convoy.Engine(tmp_path / "c.db", interceptors=[Early()]) as eng:
        with pytest.raises(convoy.UserError, match="async function"):
            await eng.run_many(double, [1, 2], ids=["x", "y"])
        rows = [await eng.store.get_session(s) for s in ("x", "y")]
        assert [(r.status, r.owner) for r in rows if r is not None] == [("pending", None)] * 2


async def test_a_hook_that_raises_after_the_run_ended_keeps_that_end(tmp_path: Path) -> None:
    """The end the workflow's run reached is written though a hook raised after ``next``:
    a session cancelled meanwhile stays ``cancelled`` (given back ``pending``, a resume
    ran it again, its next step too), a completed one keeps its output."""
    reached, go = asyncio.Event(), asyncio.Event()
    ran: list[str] = []

    async def first() -> int:
        ran.append("first")
        reached.set()
        await go.wait()
        return 1

    def second() -> int:
        ran.append("second")
        return 2

    @convoy.workflow(name="endtaps.two_steps")
    async def two(ctx: convoy.Context, n: int) -> int:
        a: int = await ctx.step("first", first, idempotent=True)
        b: int = await ctx.step("second", second)
        return n + a + b

    told = Told()
    async with convoy.Engine(tmp_path / "c.db", interceptors=[told, Raises(after=True)],
                             workflows=[two]) as eng:
        task = asyncio.create_task(eng.run(two, 0, session_id="c"))
        await reached.wait()
        assert await eng.cancel("c", by="alice") == "cancelled"
        with pytest.raises(RuntimeError, match="the hook broke"):
            await task
        row = await eng.store.get_session("c")
        assert row is not None and (row.status, row.owner) == ("cancelled", None)
        assert await eng.resume() == [] and ran == ["first"]
        go.set()
        with pytest.raises(RuntimeError, match="the hook broke"):
            await eng.run(two, 0, session_id="done")
        done = await eng.store.get_session("done")
        assert done is not None and (done.status, done.output) == ("completed", "3")
    assert told.told == [("c", "cancelled", None, "Cancelled"),
                         ("done", "completed", 3, None)]


async def test_run_many_gives_back_the_sessions_it_had_not_started(tmp_path: Path) -> None:
    """``run_many`` creates (and claims) its sessions up front: those it had not started
    when one raised were held while the engine renewed its leases."""
    async with convoy.Engine(tmp_path / "c.db", interceptors=[Raises()],
                             concurrency=1) as eng:
        with pytest.raises(RuntimeError, match="the hook broke"):
            await eng.run_many(double, [1, 2, 3], ids=["a", "b", "c"])
    # (given back in the background: the engine waits for that as it closes)
    async with convoy.Engine(tmp_path / "c.db") as eng:
        rows = [await eng.store.get_session(s) for s in "abc"]
    assert [(r.status, r.owner) for r in rows if r is not None] == [("pending", None)] * 3


async def test_an_escalation_run_whose_hook_raises_before_next_still_escalates(
        tmp_path: Path) -> None:
    """A session whose input the workflow no longer takes is escalated in a run of its
    own; a hook that raises there, before ``next``, left it held, then (stop 50) gave it
    back, for a worker to claim and escalate again in a loop. The escalation is the
    engine's decision, not work a hook refuses: written, then the hook's error raised."""
    db = tmp_path / "c.db"
    async with convoy.Engine(db, workflows=[double]) as eng:
        await eng.store.create_sessions([NewSession(
            id="u", workflow=double.name, version=double.version, tenant="default",
            input='"not a number"')])
    async with convoy.Engine(db, interceptors=[Raises()], workflows=[double]) as eng:
        with pytest.raises(RuntimeError, match="the hook broke"):
            await eng.resume()
        row = await eng.store.get_session("u")
        assert row is not None and (row.status, row.owner) == ("escalated", None)


@pytest.mark.parametrize("after", [True, False], ids=["after_next", "before_next"])
async def test_runs_that_end_a_session_keep_their_end_when_a_hook_raises(
        tmp_path: Path, after: bool) -> None:
    """A cancel of a session that is not running, and the escalation of one whose input
    no longer reads, end it in a run that executes nothing: a hook that raised after
    ``next`` there gave the session back (the cancel undone; the escalation run again at
    every resume); one that raised before ``next`` did too (a worker claimed it again and
    again, the cancel never landing). The end is a person's request or the engine's
    decision: written, then the hook's error raised."""
    db = tmp_path / "c.db"
    async with convoy.Engine(db, workflows=[double, waits]) as eng:
        await eng.store.create_sessions([
            NewSession(id="p", workflow=double.name, version=double.version,
                       tenant="default", input="5"),
            NewSession(id="u", workflow=double.name, version=double.version,
                       tenant="default", input='"not a number"')])
        assert (await eng.run(waits, 1, session_id="w")).status == "waiting"
    told = Told()
    async with convoy.Engine(db, interceptors=[told, Raises(after=after)],
                             workflows=[double, waits]) as eng:
        for sid in ("p", "w"):  # (a waiting one: its give-back, fenced, raised LeaseLost)
            with pytest.raises(RuntimeError, match="the hook broke"):
                await eng.cancel(sid, by="alice")
        with pytest.raises(RuntimeError, match="the hook broke"):
            await eng.resume()
        rows = [await eng.store.get_session(s) for s in ("p", "w", "u")]
        assert [(r.status, r.owner) for r in rows if r is not None] == [
            ("cancelled", None), ("cancelled", None), ("escalated", None)]
    assert sorted(told.told) == [("p", "cancelled", None, "Cancelled"),
                                 ("u", "escalated", None, "SessionUnreadable"),
                                 ("w", "cancelled", None, "Cancelled")]


@pytest.mark.parametrize("after", [True, False], ids=["after_next", "before_next"])
async def test_a_cancel_whose_hook_raises_a_validation_error_runs_the_hooks_once(
        tmp_path: Path, after: bool) -> None:
    """A pydantic ``ValidationError`` out of a cancel's run was taken for the workflow's
    own (an input it no longer takes): the cancel ran a second time, its hooks with it,
    and the end taps were told ``cancelled``, then ``running`` (the second write refused)."""
    from pydantic import BaseModel, ValidationError

    class Policy(BaseModel):
        limit: int

    entered: list[str] = []

    class Validates(convoy.Interceptor):
        async def session_run(self, input: convoy.SessionInput, next: Any) -> Any:
            entered.append(input.info.session_id)
            if after:
                await next(input)
            Policy.model_validate({"limit": "many"})  # raises
            raise AssertionError("not reached")

    db = tmp_path / "c.db"
    async with convoy.Engine(db, workflows=[double]) as eng:
        await eng.store.create_sessions([NewSession(
            id="p", workflow=double.name, version=double.version, tenant="default",
            input="5")])
    told = Told()
    async with convoy.Engine(db, interceptors=[told, Validates()],
                             workflows=[double]) as eng:
        with pytest.raises(ValidationError):
            await eng.cancel("p", by="alice")
        row = await eng.store.get_session("p")
        assert row is not None and (row.status, row.owner) == ("cancelled", None)
    assert entered == ["p"]
    assert told.told == [("p", "cancelled", None, "Cancelled")]


async def test_a_tap_that_raises_in_a_subjects_session_is_logged_by_its_type_alone(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The tap's error may quote the subject's data (the run's output): the log line says
    its type, with no message and no traceback (which nothing could erase); the journal
    tap's and a run tap's alike."""
    from convoy.privacy import MasterKey

    planted = "Octavia Modelworth"

    class Quoting(convoy.Interceptor):
        async def session_run(self, input: convoy.SessionInput,
                              next: convoy.Next[convoy.SessionInput, convoy.SessionEnd],
                              ) -> convoy.SessionEnd:
            input.end_taps.append(self.choke)
            input.journal_taps.append(self.choke)
            return await next(input)

        def choke(self, end: object) -> None:
            raise ValueError(f"choked on {planted}: {end!r}")

    with caplog.at_level(logging.ERROR, logger="convoy"):
        async with convoy.Engine(tmp_path / "c.db", interceptors=[Quoting()],
                                 master_key=MasterKey.from_text(MasterKey.generate())) as eng:
            assert (await eng.run(double, 2, session_id="s", subject="p-1")).output == 4
            assert (await eng.run(double, 3, session_id="o")).output == 6
    subject = [r for r in caplog.records if "session 's'" in r.getMessage()
               or " of session s;" in r.getMessage()]
    assert len(subject) == 3, caplog.text  # (its two records' journal tap, its end tap)
    for r in subject:
        assert planted not in r.getMessage() and r.exc_info is None, r.getMessage()
        assert "ValueError (message withheld: a data subject's session)" in r.getMessage()
    other = [r for r in caplog.records if r not in subject]
    assert other and all(r.exc_info is not None for r in other)  # (its traceback, as before)
