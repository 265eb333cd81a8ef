"""A worker whose store keeps failing to record how a session ended does not run that
session again at once, over and over (a review saw about 160,000 runs in 100 s): it runs
it again after a delay that doubles with each failure, up to a third of the lease, while
the other sessions run. Time is a fake clock the test moves; every wait is for state the
test can observe (claim rounds, runs, statuses), never for a span of time."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.stores import SQLiteStore
from convoy.stores._protocol import SessionOutcome

from .fakeclock import FakeClock

runs: list[int] = []


@convoy.workflow(name="backoff.count")
async def count(ctx: convoy.Context, n: int) -> int:
    runs.append(n)
    got: int = await ctx.step("double", lambda: n * 2)
    return got


class FailingEnds(SQLiteStore):
    """A store that fails to record how session ``bad`` ended (``finish``) while
    ``failing``; it counts its claim rounds."""

    def __init__(self, path: Path, clock: FakeClock, bad: str, *,
                 fail_journal: bool = False) -> None:
        super().__init__(path, clock=clock)
        self.bad, self.failing, self.fail_journal = bad, True, fail_journal
        self.rounds = 0
        self.failures = 0
        self.fail_release = self.release_hangs = False
        self.down, self.down_after, self.down_transient = 0, False, True
        self.down_error = "could not reach PostgreSQL at localhost:5432"
        self.journal_down, self.journal_transient = 0, True
        self.as_it_fails: Callable[[], None] | None = None  # (called as a call fails)

    async def claim_runnable(self, owner: str, lease_s: float, **kw: Any) -> Any:
        self.rounds += 1
        if self.down:  # (``"after"``: the claim commits, its answer is lost)
            self.down -= 1
            if self.down_after:
                await super().claim_runnable(owner, lease_s, **kw)
            if self.as_it_fails is not None:
                self.as_it_fails()
            raise convoy.StoreError(self.down_error, transient=self.down_transient)
        return await super().claim_runnable(owner, lease_s, **kw)

    async def unfinished(self, *a: Any, **kw: Any) -> Any:
        if self.down:
            if self.as_it_fails is not None:
                self.as_it_fails()
            raise convoy.StoreError(self.down_error, transient=self.down_transient)
        return await super().unfinished(*a, **kw)

    async def load_journal(self, session_id: str, **kw: Any) -> Any:
        if self.journal_down:
            self.journal_down -= 1
            raise convoy.StoreError("connection lost", transient=self.journal_transient)
        return await super().load_journal(session_id, **kw)

    def finish(self, session_id: str, owner: str | None, outcome: SessionOutcome,
               **kw: Any) -> Any:
        if self.failing and session_id == self.bad and not self.fail_journal:
            self.failures += 1
            raise convoy.StoreError("disk I/O error", transient=True)
        return super().finish(session_id, owner, outcome, **kw)

    async def release(self, session_id: str, owner: str, *a: Any, **kw: Any) -> Any:
        if self.release_hangs:
            await asyncio.Event().wait()  # (never answers)
        if self.fail_release and session_id == self.bad:
            raise convoy.StoreError("disk I/O error", transient=True)
        return await super().release(session_id, owner, *a, **kw)

    def append(self, session_id: str, *a: Any, **kw: Any) -> Any:
        if self.failing and session_id == self.bad and self.fail_journal:
            self.failures += 1
            raise convoy.StoreError("disk I/O error", transient=True)
        return super().append(session_id, *a, **kw)


async def until(check: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    """Wait (yielding to the engine) until ``check()`` holds (or what it awaits); a
    generous bound on loop turns so a broken engine fails the test rather than hanging."""
    for _ in range(20_000):
        got = check()
        if await got if inspect.isawaitable(got) else got:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never happened: {what}")


def finished(engine: convoy.Engine, *ids: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        rows = [await engine.store.get_session(sid) for sid in ids]
        return all(r is not None and r.status == "completed" for r in rows)
    return check


async def rounds_pass(store: FailingEnds, n: int) -> None:
    """Wait until the engine has claimed ``n`` more times (with the clock still, a session
    that was not due then is not due yet)."""
    start = store.rounds
    await until(lambda: store.rounds >= start + n, f"{n} more claim rounds")


async def serving(store: FailingEnds, body: Callable[[convoy.Engine], Awaitable[None]],
                  **kw: Any) -> None:
    async with convoy.Engine(store, workflows=[count], **kw) as engine:
        task = asyncio.create_task(engine.serve(poll_interval=0.001))
        try:
            await body(engine)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def created(path: Path, clock: FakeClock, *ids: str) -> None:
    """Pending sessions ``ids`` of :func:`count`, of inputs 1, 2, ... (an engine drained
    before it ran them)."""
    async with convoy.Engine(SQLiteStore(path, clock=clock)) as e:
        e.drain()
        await e.run_many(count, list(range(1, len(ids) + 1)), ids=list(ids))


@pytest.mark.parametrize("fail_journal", [False, True], ids=["end", "journal"])
async def test_a_session_whose_end_the_store_keeps_failing_to_write_backs_off(
        tmp_path: Path, fail_journal: bool, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    store = FailingEnds(tmp_path / "c.db", clock, "bad", fail_journal=fail_journal)
    runs.clear()

    async def body(engine: convoy.Engine) -> None:
        with caplog.at_level(logging.WARNING, logger="convoy"):
            await created(tmp_path / "c.db", clock, "bad", "good")
            await until(lambda: store.failures >= 1, "the first failure")
            # Many claim rounds later, with the clock still, it has not run again ...
            await rounds_pass(store, 50)
            assert store.failures == 1
            assert runs.count(1) == 1
            assert (await engine.sessions(status="completed"))[0].id == "good"
            # ... it runs again a second later, then two seconds after that, ...
            clock.advance(0.99)
            await rounds_pass(store, 20)
            assert store.failures == 1
            clock.advance(0.01)
            await until(lambda: store.failures == 2, "the second attempt")
            clock.advance(1.99)
            await rounds_pass(store, 20)
            assert store.failures == 2
            clock.advance(0.01)
            await until(lambda: store.failures == 3, "the third attempt")
            # ... and each failure says so, in one line, with when it runs again.
            said = [r.getMessage() for r in caplog.records if r.name == "convoy"]
            assert len(said) == 3, said
            assert said[-1].startswith("session 'bad' could not be recorded"), said
            assert "disk I/O error" in said[-1] and "runs again in 4 s" in said[-1], said
            assert "\n" not in said[-1]
            # Once the store takes the write, it completes.
            store.failing = False
            clock.advance(4)
            await until(finished(engine, "bad"), "bad completed")
            assert (await engine.result("bad")).output == 2

    await serving(store, body)


async def test_the_delay_stops_growing_at_a_third_of_the_lease(tmp_path: Path) -> None:
    """However often the write fails, the session runs again within a third of the lease,
    so the engine never holds it past its lease."""
    clock = FakeClock()
    store = FailingEnds(tmp_path / "c.db", clock, "bad")
    runs.clear()

    async def body(engine: convoy.Engine) -> None:
        await created(tmp_path / "c.db", clock, "bad")
        for n, delay in enumerate([1, 2, 4, 8, 10, 10, 10], start=1):
            await until(lambda n=n: store.failures == n, f"failure {n}")  # type: ignore[misc]
            clock.advance(delay - 0.01)
            await rounds_pass(store, 20)
            assert store.failures == n, f"ran again before {delay} s"
            clock.advance(0.01)
        await until(lambda: store.failures == 8, "failure 8")

    await serving(store, body, lease_seconds=30.0)


async def test_a_session_another_engine_finished_meanwhile_is_not_run_again(
        tmp_path: Path) -> None:
    """While the session waits to run again, another engine takes it (its write works
    there) and completes it: when its time comes, this engine finds it ended and leaves
    it."""
    clock = FakeClock()
    store = FailingEnds(tmp_path / "c.db", clock, "bad")
    runs.clear()

    async def body(engine: convoy.Engine) -> None:
        await created(tmp_path / "c.db", clock, "bad")
        await until(lambda: store.failures >= 1, "the first failure")
        other = SQLiteStore(tmp_path / "c.db", clock=clock)
        async with convoy.Engine(other, workflows=[count]) as second:
            # Its lease has lapsed for everyone but this engine (which holds it).
            clock.advance(31)
            assert [r.status for r in await second.resume()] == ["completed"]
        before = len(runs)
        clock.advance(1)
        await rounds_pass(store, 50)
        assert len(runs) == before
        assert store.failures == 1

    await serving(store, body)


async def test_a_session_the_store_failed_to_give_back_runs_again_when_due(
        tmp_path: Path) -> None:
    """The release fails too: the session stays held by this engine, which never claims
    its own sessions in a claim round; it is claimed again by its id when due, and runs
    (it stayed held, run by nobody, until the worker restarted)."""
    clock = FakeClock()
    store = FailingEnds(tmp_path / "c.db", clock, "bad")
    store.fail_release = True
    runs.clear()

    async def body(engine: convoy.Engine) -> None:
        await created(tmp_path / "c.db", clock, "bad")
        await until(lambda: store.failures >= 1, "the first failure")
        await rounds_pass(store, 20)
        row = await engine.store.get_session("bad")
        assert row is not None and (row.status, row.owner) == ("running", engine.owner)
        store.failing = store.fail_release = False
        clock.advance(1)
        await until(finished(engine, "bad"), "bad completed")
        assert runs == [1, 1]

    await serving(store, body)


async def test_a_worker_rides_out_a_store_that_is_down_for_a_while(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The store fails (transiently: a lost connection) as the worker claims: it does not
    stop (it exited with one line, a server restart stopping every worker); it warns,
    tries again after 1 s, 2 s, ..., and once the store answers runs every session."""
    clock = FakeClock()
    store = FailingEnds(tmp_path / "c.db", clock, "none")
    runs.clear()
    store.down = 3

    async def body(engine: convoy.Engine) -> None:
        with caplog.at_level(logging.WARNING, logger="convoy"):
            await created(tmp_path / "c.db", clock, "a", "b")
            for n, delay in enumerate([1, 2, 4], start=1):
                await until(lambda n=n: store.rounds == n, f"claim {n}")  # type: ignore[misc]
                for _ in range(50):  # (no claim until the clock reaches the delay)
                    await asyncio.sleep(0.001)
                assert store.rounds == n
                clock.advance(delay)
            await until(finished(engine, "a", "b"), "both sessions completed")
        said = [r.getMessage() for r in caplog.records if r.name == "convoy"]
        assert said == [f"the store failed (could not reach PostgreSQL at localhost:5432); "
                        f"the worker tries it again in {d} s" for d in (1, 2, 4)]

    await serving(store, body)


async def test_a_store_error_that_is_not_transient_still_stops_the_worker(
        tmp_path: Path) -> None:
    """A store that needs an operator (read-only, a schema it cannot read) stops the worker
    with its error, as before: waiting would not mend it."""
    clock = FakeClock()
    store = FailingEnds(tmp_path / "c.db", clock, "none")
    store.down, store.down_transient = 1, False
    store.down_error = "attempt to write a readonly database"
    async with convoy.Engine(store, workflows=[count]) as engine:
        with pytest.raises(convoy.StoreError, match="readonly database"):  # (itself, not
            await engine.serve(poll_interval=0.001)  # in an ExceptionGroup)


async def test_a_store_error_that_is_not_transient_in_a_session_stops_the_worker_with_it(
        tmp_path: Path) -> None:
    """The same error as a claimed session's journal is loaded (in the task that runs it)
    stops ``serve`` with that error, as a library user catches it (it raised an
    ``ExceptionGroup`` of it)."""
    clock = FakeClock()
    await created(tmp_path / "c.db", clock, "one")
    store = FailingEnds(tmp_path / "c.db", clock, "none")
    store.journal_down, store.journal_transient = 1, False
    async with convoy.Engine(store, workflows=[count]) as engine:
        with pytest.raises(convoy.StoreError, match="connection lost"):
            await engine.serve(poll_interval=0.001)


async def test_a_claim_whose_answer_was_lost_is_run_once_the_store_is_back(
        tmp_path: Path) -> None:
    """The claim commits, then the connection drops before its answer arrives: the
    sessions are held by this worker, which does not know it. Once the store answers
    again, the worker takes up what it holds and does not run, and runs it (it stayed
    held by the worker, run by nobody, until the worker restarted)."""
    clock = FakeClock()
    store = FailingEnds(tmp_path / "c.db", clock, "none")
    runs.clear()
    store.down, store.down_after = 1, True
    await created(tmp_path / "c.db", clock, "a", "b")  # (before the first claim)

    async def body(engine: convoy.Engine) -> None:
        async def held() -> bool:
            rows = [await engine.store.get_session(sid) for sid in ("a", "b")]
            return all(r is not None and r.owner == engine.owner for r in rows)

        await until(held, "the lost claim")
        await rounds_pass(store, 0)
        assert store.rounds == 1 and runs == []
        clock.advance(1)
        await until(finished(engine, "a", "b"), "both sessions completed")
        assert sorted(runs) == [1, 2]

    await serving(store, body)


async def test_a_journal_that_cannot_be_loaded_for_now_backs_its_session_off(
        tmp_path: Path) -> None:
    """Loading a claimed session's journal fails (a lost connection): the worker does not
    stop (it did, leaving its other sessions held until their leases lapsed); that session
    runs again a second later, and the others run meanwhile."""
    clock = FakeClock()
    store = FailingEnds(tmp_path / "c.db", clock, "none")
    runs.clear()
    store.journal_down = 1

    async def body(engine: convoy.Engine) -> None:
        await created(tmp_path / "c.db", clock, "a", "b")
        await until(lambda: store.journal_down == 0, "the failed load")
        await until(lambda: len(runs) == 1, "the other session's run")
        await rounds_pass(store, 20)
        assert len(runs) == 1
        clock.advance(1)
        await until(finished(engine, "a", "b"), "both sessions completed")
        assert sorted(runs) == [1, 2]

    await serving(store, body)


async def test_a_cancel_a_store_call_swallowed_still_stops_the_worker(tmp_path: Path) -> None:
    """Python 3.11's ``asyncio.wait_for`` loses a cancel that comes as what it waits for
    is done; psycopg_pool waits for a connection with it, so a worker cancelled as its
    PostgreSQL store came back ran on, forever (seen in the outage test). A store call that
    swallows the cancel stands for it here: the worker still stops."""
    clock = FakeClock()
    inside = asyncio.Event()

    class Swallows(FailingEnds):
        swallow = True

        async def next_wake(self, **kw: Any) -> Any:
            if self.swallow:
                self.swallow = False
                inside.set()
                with contextlib.suppress(asyncio.CancelledError):  # (the library's bug)
                    await asyncio.Event().wait()
            return await super().next_wake(**kw)

    store = Swallows(tmp_path / "c.db", clock, "none")
    async with convoy.Engine(store, workflows=[count]) as engine:
        worker = asyncio.create_task(engine.serve(poll_interval=0.001))
        await inside.wait()
        worker.cancel()
        done, _ = await asyncio.wait([worker], timeout=120)  # (a bound, not a timing)
        assert worker in done and worker.cancelled()


async def test_a_worker_that_stops_gives_back_what_waits_to_run_again(tmp_path: Path) -> None:
    """Claimed again before it was due, the session is held by the worker: as the worker
    stops, it is given back (pending, owned by nobody) for the next one, not left held
    until its lease lapses."""
    clock = FakeClock()
    store = FailingEnds(tmp_path / "c.db", clock, "bad")
    await created(tmp_path / "c.db", clock, "bad")

    async def body(engine: convoy.Engine) -> None:
        await until(lambda: store.failures >= 1, "the first failure")

        async def held() -> bool:
            row = await engine.store.get_session("bad")
            return row is not None and row.owner == engine.owner

        await until(held, "the session claimed again, held")

    await serving(store, body)
    async with convoy.Engine(SQLiteStore(tmp_path / "c.db", clock=clock)) as e:
        row = await e.store.get_session("bad")
    assert row is not None and (row.status, row.owner) == ("pending", None)


async def test_a_store_that_does_not_answer_does_not_hold_up_the_stop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store no longer answers as the worker stops: giving back what it holds takes at
    most ``GIVE_BACK_SECONDS`` (here shortened), then the leases are left to lapse."""
    from convoy.engine import _engine

    monkeypatch.setattr(_engine, "GIVE_BACK_SECONDS", 0.05)
    clock = FakeClock()
    store = FailingEnds(tmp_path / "c.db", clock, "bad")
    await created(tmp_path / "c.db", clock, "bad")

    async def body(engine: convoy.Engine) -> None:
        await until(lambda: store.failures >= 1, "the first failure")
        store.release_hangs = True

    await serving(store, body)


@convoy.workflow(name="backoff.gated")
async def gated(ctx: convoy.Context, n: int) -> int:
    async def first() -> int:
        GATE["in"].set()
        await GATE["open"].wait()
        return n

    got: int = await ctx.step("first", first)
    return got + await ctx.step("second", lambda: n)


GATE: dict[str, asyncio.Event] = {}


async def test_a_worker_that_drains_warns_of_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A stop (``drain``) ends a running session's run before its next step: nothing
    failed to be recorded, and the worker runs nothing again, so it says neither (it
    warned 'could not be recorded ... runs again in 1 s' for each running session)."""
    GATE.update({"in": asyncio.Event(), "open": asyncio.Event()})
    clock = FakeClock()
    async with convoy.Engine(SQLiteStore(tmp_path / "c.db", clock=clock)) as e:
        e.drain()
        await e.run_many(gated, [1], ids=["g"])
    store = FailingEnds(tmp_path / "c.db", clock, "none")
    with caplog.at_level(logging.WARNING, logger="convoy"):
        async with convoy.Engine(store, workflows=[gated]) as engine:
            worker = asyncio.create_task(engine.serve(poll_interval=0.001))
            await GATE["in"].wait()
            engine.drain()
            GATE["open"].set()
            await worker
            row = await engine.store.get_session("g")
    assert row is not None and (row.status, row.steps) == ("pending", 1)
    assert [r.getMessage() for r in caplog.records if r.name == "convoy"] == []


async def test_convoy_worker_stopped_while_the_store_is_down_stops_as_a_stop(
        tmp_path: Path) -> None:
    """``convoy worker`` stopped (Ctrl-C, SIGTERM: a drain) while the store is down ends
    with its stop's line, not with the store's error from the closing count of what is
    left unfinished (a count only an idle worker prints: it is not read after a stop)."""
    from convoy.cli._common import Scope
    from convoy.cli._worker import _serve

    clock = FakeClock()
    store = FailingEnds(tmp_path / "c.db", clock, "none")
    store.down = 10**6
    async with convoy.Engine(store, workflows=[count]) as engine:
        worker = asyncio.create_task(_serve(engine, Scope(None), False, 0.001, {count.name},
                                            "serving", "later"))
        await rounds_pass(store, 1)
        engine.drain()
        left = await worker
    assert left == {}


async def test_a_stop_that_comes_as_a_store_call_fails_warns_of_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A stop (a drain) that comes while a claim is failing: the worker stops, and does not
    say that it tries the store again (review: ``the store failed (...); the worker tries
    it again in 2 s`` came after ``stopping:``)."""
    from convoy.cli._common import Scope
    from convoy.cli._worker import _serve

    clock = FakeClock()
    store = FailingEnds(tmp_path / "c.db", clock, "none")
    store.down = 10**6
    with caplog.at_level(logging.WARNING, logger="convoy"):
        async with convoy.Engine(store, workflows=[count]) as engine:
            store.as_it_fails = engine.drain  # (the claim and the summary's read)
            left = await _serve(engine, Scope(None), False, 0.001, {count.name}, "serving",
                                "later")
    assert left == {} and store.rounds == 1
    assert [r.getMessage() for r in caplog.records if r.name == "convoy"] == []


async def test_a_stop_that_comes_as_the_idle_summary_is_read_ends_as_a_stop(
        tmp_path: Path) -> None:
    """``--until-idle``: the worker is idle and reads what is left for its closing line as
    a stop comes and the store fails: it ends as a stop, not with the store's error."""
    from convoy.cli._common import Scope
    from convoy.cli._worker import _serve

    clock = FakeClock()

    class DownAtTheEnd(FailingEnds):
        async def unfinished(self, *a: Any, **kw: Any) -> Any:
            if "left_out" not in kw:  # (serve's own reads pass; the summary's fails)
                self.down = 1
            return await super().unfinished(*a, **kw)

    store = DownAtTheEnd(tmp_path / "c.db", clock, "none")
    async with convoy.Engine(store, workflows=[count]) as engine:
        store.as_it_fails = engine.drain
        left = await _serve(engine, Scope(None), True, 0.001, {count.name}, "serving",
                            "later")
    assert left == {}


async def test_a_workers_line_is_the_status_written_not_the_one_the_run_ended_with(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's line for a session is printed once how its run ended is written, with
    the status the store holds: a run whose end the store failed to write is ``pending``
    (it runs again), not ``completed`` (it printed ``completed`` before the write, then
    the warning that the write failed, then ``completed`` again)."""
    import io

    from rich.console import Console

    import convoy.cli._worker as worker
    from convoy.cli._worker import SessionLog

    printed = io.StringIO()
    monkeypatch.setattr(worker, "out", Console(file=printed, width=200, no_color=True))
    clock = FakeClock()
    store = FailingEnds(tmp_path / "c.db", clock, "bad")
    runs.clear()
    log = SessionLog()

    def lines() -> list[str]:
        return [" ".join(ln.split()) for ln in printed.getvalue().splitlines()]

    async def body(engine: convoy.Engine) -> None:
        log.store = engine.store
        await created(tmp_path / "c.db", clock, "bad")
        await until(lambda: store.failures >= 1, "the first failure")
        await until(lambda: len(lines()) == 1, "the line of the failed write")
        assert lines()[0].startswith("bad pending StoreError"), lines()
        assert "disk I/O error" in lines()[0]
        store.failing = False
        clock.advance(1)
        await until(finished(engine, "bad"), "bad completed")
        await until(lambda: len(lines()) == 2, "the line of the run that was written")
        assert lines()[1] == "bad completed", lines()
        assert log.ends == {"pending": 1, "completed": 1}

    await serving(store, body, interceptors=[log])


async def test_an_idle_worker_says_it_waits_to_run_its_own_session_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--until-idle``, a session whose end the store failed to write, held by this worker
    to run again: the worker says it waits to run it again, not that another engine runs
    it (it did, of its own session, as the review saw on PostgreSQL)."""
    import io

    from rich.console import Console

    import convoy.cli._worker as worker
    from convoy.cli._common import Scope

    said = io.StringIO()
    monkeypatch.setattr(worker, "err", Console(file=said, width=300, no_color=True))
    monkeypatch.setattr(worker, "out", Console(file=io.StringIO(), width=300))
    clock = FakeClock()
    store = FailingEnds(tmp_path / "c.db", clock, "bad")
    runs.clear()
    await created(tmp_path / "c.db", clock, "bad")
    async with convoy.Engine(store, workflows=[count]) as engine:
        serving = asyncio.create_task(worker._serve(
            engine, Scope(None), True, 0.001, {count.name}, "serving", "later"))
        await until(lambda: "waiting to run 1 session again" in said.getvalue(),
                    "the notice of the held session")
        assert "another engine runs them" not in said.getvalue(), said.getvalue()
        store.failing = False
        clock.advance(1)
        left = await asyncio.wait_for(serving, 30)
    assert left == {} and runs == [1, 1]


@pytest.mark.parametrize("what", ["read", "write"])
def test_the_worker_quotes_a_lost_server_without_advice_for_the_user(what: str) -> None:
    """The worker tries the store again itself: its warning quotes what failed, not the
    advice to try again (and to resume a session) meant for a command that stops (a new
    user's trial: 'try again once the server is reachable ... resume it then)); the worker
    tries it again in 1 s')."""
    import psycopg

    from convoy.engine._engine import _store_reason
    from convoy.stores._postgres_sql import store_error

    e = store_error(psycopg.OperationalError("connection refused"),
                    "postgresql://app@db/convoy", what)
    assert _store_reason(str(e)) == \
        f"the store postgresql://app@db/convoy failed to {what}: connection refused"
