"""The engine's session deadlines behave as ``asyncio.timeout`` does, on one shared timer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from convoy.engine._deadlines import Deadlines

Body = Callable[[], Awaitable[str]]


async def _forever() -> str:
    await asyncio.Event().wait()
    return "never"


async def _quick() -> str:
    await asyncio.sleep(0)
    return "done"


async def _swallows() -> str:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        return "swallowed"
    return "never"


async def _cancelled_too() -> str:
    task = asyncio.current_task()
    assert task is not None
    task.cancel()  # someone else cancels the run as well
    await asyncio.Event().wait()
    return "never"


async def _raises() -> str:
    await asyncio.sleep(0)
    raise ValueError("boom")


async def _with_timeout(delay: float, body: Body) -> str:
    async with asyncio.timeout(delay):
        return await body()


def _with_deadlines(deadlines: Deadlines) -> Callable[[float, Body], Awaitable[str]]:
    async def run(delay: float, body: Body) -> str:  # as ``Engine._body`` uses them
        token = deadlines.enter(delay)
        try:
            out = await body()
        except BaseException as e:
            deadlines.leave(token, e)
            raise
        deadlines.leave(token)
        return out

    return run


async def _outcome(run: Callable[[float, Body], Awaitable[str]], delay: float,
                   body: Body) -> tuple[str, int]:
    task = asyncio.ensure_future(run(delay, body))
    try:
        out = await asyncio.shield(task)
    except BaseException as e:
        out = type(e).__name__
    return out, task.cancelling()


@pytest.mark.parametrize(("delay", "body"), [
    (0.0, _forever), (3600.0, _quick), (0.0, _swallows), (0.0, _cancelled_too),
    (0.0, _raises), (3600.0, _raises)])
async def test_a_run_ends_as_under_asyncio_timeout(delay: float, body: Body) -> None:
    expected = await _outcome(_with_timeout, delay, body)
    assert await _outcome(_with_deadlines(Deadlines()), delay, body) == expected


async def test_each_run_is_cancelled_at_its_own_deadline_only() -> None:
    deadlines = Deadlines()
    run = _with_deadlines(deadlines)
    late = asyncio.ensure_future(run(3600.0, _forever))
    early = [asyncio.ensure_future(run(0.0, _forever)) for _ in range(3)]
    done = await asyncio.gather(*early, return_exceptions=True)
    assert all(isinstance(e, TimeoutError) for e in done)
    assert not late.done()
    late.cancel()  # not the deadline's: a plain cancellation
    with pytest.raises(asyncio.CancelledError):
        await late


async def test_a_run_that_left_is_not_cancelled_by_its_old_deadline() -> None:
    deadlines = Deadlines()
    task = asyncio.current_task()
    assert task is not None
    token = deadlines.enter(0.0)
    deadlines.leave(token)
    for _ in range(5):  # the timer's time comes and goes
        await asyncio.sleep(0)
    assert task.cancelling() == 0 and not deadlines.expired(token)


async def test_runs_that_left_do_not_pile_up() -> None:
    deadlines = Deadlines()
    for _ in range(1000):
        deadlines.leave(deadlines.enter(3600.0))
    assert len(deadlines._heap) <= 200  # compacted as left entries outnumber live ones
