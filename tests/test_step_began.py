"""Every step's journal record says when the step began (``StepRecord.began``), on the
engine's clock, as well as when it was written (``at``): a step's span is derived from its
record. A wait began when it started waiting, in whichever run that was."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.stores import store_from_url

from .conftest import STORE_KINDS, FakeClock, store_db

T0 = 2_000_000_000.0


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


def _flow(clock: FakeClock) -> convoy.Workflow[Any, Any]:
    @convoy.workflow(name="began")
    async def flow(ctx: convoy.Context, n: int) -> str:
        async def slow() -> int:
            clock.advance(2.5)  # the step takes 2.5 s
            return n

        async def broken() -> int:
            clock.advance(1.0)
            raise ValueError("no")

        await ctx.step("slow", slow)
        with contextlib.suppress(ValueError):
            await ctx.step("broken", broken)
        await ctx.now()
        return await ctx.wait_for("go")

    return flow


async def test_a_steps_record_says_when_it_began_and_a_wait_when_it_started_waiting(
        db: str | Path) -> None:
    clock = FakeClock(T0)
    flow = _flow(clock)
    async with convoy.Engine(store_from_url(str(db), clock=clock), workflows=[flow]) as eng:
        assert (await eng.run(flow, 1, session_id="s")).status == "waiting"
        clock.advance(60.0)
        await eng.signal("s", "go", '"yes"')
        clock.advance(5.0)
        [res] = await eng.resume()
        assert res.ok, res
        records = {r.target: r for r in await eng.journal("s")}
    slow, broken = records["slow"], records["broken"]
    assert slow.began == T0 and slow.at >= T0 + 2.5, slow
    assert broken.status == "failed" and broken.began >= slow.at, broken
    assert broken.at - broken.began >= 1.0, broken
    drawn = records["clock"]
    assert drawn.began == float(drawn.result or 0) <= drawn.at  # an instant
    wait = records["go"]
    assert wait.status == "completed" and wait.began <= T0 + 3.5 + 1e-3, wait
    assert wait.at - wait.began >= 65.0, wait  # from the first run to the one it ended in
