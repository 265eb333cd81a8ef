"""A ``BaseException`` that is not an ``Exception`` (a ``KeyboardInterrupt``, a
``SystemExit``, an application's own) raised out of a session's run leaves the session as
a crash would: ``running``, held by this engine, its journal as far as it got. The caller
that caught it could then call ``serve(until_idle=True)`` on the same engine, and it waited
for ever: ``serve`` does not claim what its own engine holds, and this engine's lease
renewals kept any other engine off it. ``serve`` now runs such a session again, from its
journal, and gives back the one its own run left so as it stops (it raises the error), for
the next worker. Every test runs on SQLite and on PostgreSQL; the clock is a fake one that
never moves, so no lease lapses; every wait is for what the store or the engine says."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

import convoy
from convoy.stores import store_from_url

from .conftest import STORE_KINDS, FakeClock, store_db

#: A safety net against a hang (the bug): the tests go on the moment serve returns.
PATIENCE = 30.0


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


class Halt(BaseException):
    """An application's own ``BaseException``: nothing in the engine may swallow it."""


steps: list[int] = []  # the step's calls, by session input
halting: list[int] = []  # the inputs whose run raises ``Halt`` (once each, as listed)


@convoy.workflow(name="serve-base-exception.halts")
async def halts(ctx: convoy.Context, n: int) -> int:
    got: int = await ctx.step("count", lambda: steps.append(n) or n)
    if n in halting:
        halting.remove(n)
        raise Halt(f"stopped in session {n}")
    return got * 10


def engine(db: str | Path, clock: FakeClock) -> convoy.Engine:
    return convoy.Engine(store_from_url(db, clock=clock), workflows=[halts])


async def serve_until_idle(eng: convoy.Engine) -> None:
    async with asyncio.timeout(PATIENCE):
        await eng.serve(until_idle=True, poll_interval=0.01)


async def created(db: str | Path, clock: FakeClock, *inputs: int) -> None:
    """Pending sessions ``s<n>`` of :func:`halts` (an engine drained before it ran them)."""
    async with engine(db, clock) as eng:
        eng.drain()
        await eng.run_many(halts, list(inputs), ids=[f"s{n}" for n in inputs])


async def test_serve_raises_it_and_gives_the_session_back_for_the_next_serve(
        db: str | Path) -> None:
    """The run ``serve`` started raised it: ``serve`` raises it too, and the session,
    given back, is run by the next ``serve`` (which raises it again if it comes again)."""
    clock = FakeClock()
    steps.clear()
    await created(db, clock, 1)
    halting[:] = [1, 1]
    async with engine(db, clock) as eng:
        with pytest.raises(Halt, match="stopped in session 1"):
            await serve_until_idle(eng)
        row = await eng.session("s1")
        assert (row.status, row.owner) == ("pending", None)  # given back as serve stopped
        # Run again, it raises again: serve raises it again, rather than waiting.
        with pytest.raises(Halt):
            await serve_until_idle(eng)
        await serve_until_idle(eng)
        assert (await eng.result("s1")).output == 10
        assert (await eng.session("s1")).owner is None
    assert steps == [1]  # its journaled step ran once: the runs after it replayed it


async def test_a_session_whose_run_raised_it_to_its_caller_is_run_by_serve(
        db: str | Path) -> None:
    """``engine.run`` raised it: the session is left as a crash leaves it, and
    ``serve(until_idle=True)`` runs it again rather than waiting for ever."""
    clock = FakeClock()
    steps.clear()
    halting[:] = [2]
    async with engine(db, clock) as eng:
        with pytest.raises(Halt):
            await eng.run(halts, 2, session_id="s2")
        row = await eng.session("s2")
        assert (row.status, row.owner) == ("running", eng.owner)  # as a crash leaves it
        await serve_until_idle(eng)
        assert (await eng.result("s2")).output == 20
        assert (await eng.session("s2")).owner is None
    assert steps == [2]


async def test_a_serve_under_way_takes_it_up_and_others_run_on(db: str | Path) -> None:
    """The run that raised it was another caller's, while a worker served: the worker
    takes the session up without a new call, and the sessions it ran go on."""
    clock = FakeClock()
    steps.clear()
    await created(db, clock, 4)
    halting[:] = [3]
    async with engine(db, clock) as eng:
        server = asyncio.create_task(eng.serve(poll_interval=0.01))
        with pytest.raises(Halt):
            await eng.run(halts, 3, session_id="s3")
        async with asyncio.timeout(PATIENCE):
            for sid in ("s3", "s4"):
                while (await eng.session(sid)).status != "completed":  # noqa: ASYNC110
                    await asyncio.sleep(0.01)  # (the store's state, polled)
        assert [(await eng.result(sid)).output for sid in ("s3", "s4")] == [30, 40]
        assert not server.done()
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
    assert sorted(steps) == [3, 4]
