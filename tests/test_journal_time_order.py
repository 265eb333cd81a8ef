"""The records a session journals are stamped in increasing time in the order they are
written, whatever the clocks of the engines that write them say: a record is never older
than one the session journaled before it. (An audit cursor is such a time: a record
stamped before it would never be audited.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.stores import store_from_url

from .conftest import STORE_KINDS, FakeClock, store_db


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


def _flow(clock: FakeClock, back: float) -> convoy.Workflow[Any, Any]:
    @convoy.workflow(name="time.order")
    async def flow(ctx: convoy.Context, n: int) -> int:
        total = 0
        for i in range(n):
            async def one(i: int = i) -> int:
                clock.advance(-back)  # the clock steps back while the step runs
                return i
            total += await ctx.step(f"s{i}", one)
        await ctx.wait_for("go")
        for i in range(n):
            async def two(i: int = i) -> int:
                return i
            total += await ctx.step(f"t{i}", two)
        return total

    return flow


async def test_records_are_stamped_after_the_sessions_earlier_ones(
        db: str | Path) -> None:
    """Engine A's clock steps back between steps, then A parks; engine B, whose clock is an
    hour behind A's, resumes the session: every record is stamped later than every one
    written before it."""
    clock_a = FakeClock(2_000_000_000.0)
    flow_a = _flow(clock_a, back=5.0)
    async with convoy.Engine(store_from_url(str(db), clock=clock_a),
                             workflows=[flow_a]) as eng:
        assert (await eng.run(flow_a, 3, session_id="s1")).status == "waiting"
        await eng.signal("s1", "go", "now")
        first = list(await eng.journal("s1"))
    clock_b = FakeClock(2_000_000_000.0 - 3600.0)
    flow_b = _flow(clock_b, back=0.0)
    async with convoy.Engine(store_from_url(str(db), clock=clock_b),
                             workflows=[flow_b]) as eng_b:
        [res] = await eng_b.resume()
        assert res.ok and res.output == 6, res
        records = list(await eng_b.journal("s1"))
    by_target = {r.target: r for r in records}
    written = [by_target[t] for t in ("s0", "s1", "s2")]  # A's steps, in the order written
    assert [r.at for r in written] == sorted({r.at for r in written}), written
    before = {(r.key, r.status) for r in first}
    later = [r for r in records if (r.key, r.status) not in before]  # what B wrote
    assert {r.target for r in later} >= {"t0", "t1", "t2"}, later
    assert min(r.at for r in later) > max(r.at for r in first), (first, later)
    b_steps = [by_target[t] for t in ("t0", "t1", "t2")]
    assert [r.at for r in b_steps] == sorted({r.at for r in b_steps}), b_steps
