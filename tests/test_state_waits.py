"""Waiting durably for shared state: a session parks until a key changes or satisfies a
condition (no coroutine, no slot), a write wakes it (from any session, engine or the
store), the wait survives a restart, and it times out durably."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.stores import store_from_url

from .conftest import STORE_KINDS, FakeClock, store_db


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    """Every test of this module runs on SQLite and on PostgreSQL."""
    yield from store_db(request.param, tmp_path)


def _engine(db: str | Path, clock: FakeClock, **kw: Any) -> convoy.Engine:
    return convoy.Engine(store_from_url(db, clock=clock), **kw)


@convoy.workflow(name="state.until_shipped")
async def until_shipped(ctx: convoy.Context, order: str) -> str:
    orders = ctx.state(f"order:{order}")
    try:
        got = await orders.wait("status", until=lambda v: v.value == "shipped", timeout=3600)
    except convoy.WaitTimeout:
        return "gave up"
    return f"{got.value} at version {got.version}"


@convoy.workflow(name="state.any_change")
async def any_change(ctx: convoy.Context, x: int) -> Any:
    got = await ctx.state("config").wait("mode")
    return [got.value, got.version]


async def parked(eng: convoy.Engine, sid: str) -> None:
    row = await eng.store.get_session(sid)
    assert row is not None and row.status == "waiting" and row.owner is None, row
    assert row.wait_name == f"convoy.state:order:{sid}/status"
    assert sid not in eng._running  # no coroutine, no slot


async def test_a_session_waits_parked_until_the_condition_holds(db: str | Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        res = await eng.run(until_shipped, "o1", session_id="o1")
        assert res.status == "waiting"
        await parked(eng, "o1")
        status = eng.state("order:o1")
        await status.set("status", "packed", expected_version=0)
        [res] = await eng.resume()  # woken: it reads "packed", and parks again
        assert res.status == "waiting"
        await parked(eng, "o1")
        assert [r.status for r in await eng.resume()] == ["waiting"]  # nothing new: stays
        await status.set("status", "shipped", expected_version=1)
        [res] = await eng.resume()
        assert res.ok and res.output == "shipped at version 2"
        assert (await eng.replay("o1")).matches


async def test_a_condition_already_true_returns_at_once(db: str | Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        await eng.state("order:o2").set("status", "shipped", expected_version=0)
        res = await eng.run(until_shipped, "o2")
        assert res.ok and res.output == "shipped at version 1"


async def test_without_a_condition_it_waits_for_the_next_version(db: str | Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        config = eng.state("config")
        await config.set("mode", "a", expected_version=0)
        res = await eng.run(any_change, 1, session_id="c")
        assert res.status == "waiting"  # "a" was there already: not a change
        await config.set("mode", "b", expected_version=1)
        [res] = await eng.resume()
        assert res.ok and res.output == ["b", 2]


async def test_a_write_by_another_session_wakes_the_waiter_under_serve(db: str | Path) -> None:
    clock = FakeClock()

    @convoy.workflow(name="state.shipper")
    async def shipper(ctx: convoy.Context, order: str) -> int:
        done = await ctx.state(f"order:{order}").set("status", "shipped", expected_version=0)
        return done.version

    async with _engine(db, clock, workflows=[until_shipped, shipper]) as eng:
        waiting = await eng.run(until_shipped, "o3", session_id="o3")
        assert waiting.status == "waiting"
        server = asyncio.create_task(eng.serve(poll_interval=3600))  # only a wake-up helps
        try:
            assert (await eng.run(shipper, "o3")).ok
            for _ in range(100_000):  # until the woken session has run (observable state)
                row = await eng.store.get_session("o3")
                if row is not None and row.status == "completed":
                    break
                await asyncio.sleep(0)
            assert row is not None and row.status == "completed"
            assert row.output == '"shipped at version 1"'
        finally:
            server.cancel()
            with pytest.raises(asyncio.CancelledError):
                await server


async def test_the_wait_survives_a_restart(db: str | Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        assert (await eng.run(until_shipped, "o4", session_id="o4")).status == "waiting"
    # the process is gone; a write from the outside (another process) wakes the session
    writer = store_from_url(db, clock=clock)
    await writer.open()
    from convoy.stores import StateWrite

    res = await writer.state_put(StateWrite(tenant="default", namespace="order:o4",
                                            key="status", value='"shipped"',
                                            expected_version=0))
    await writer.aclose()
    assert res.woken == 1
    async with _engine(db, clock, workflows=[until_shipped]) as eng2:
        [done] = await eng2.resume()
    assert done.ok and done.output == "shipped at version 1"


async def test_the_wait_times_out_durably(db: str | Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        assert (await eng.run(until_shipped, "o5", session_id="o5")).status == "waiting"
        clock.advance(1800)
        await eng.state("order:o5").set("status", "packed", expected_version=0)
        [res] = await eng.resume()
        assert res.status == "waiting"  # woken, not there yet, parked for what is left
        row = await eng.store.get_session("o5")
        assert row is not None and row.wake_at == pytest.approx(clock.now + 1800)
        clock.advance(1801)
        [res] = await eng.resume()
        assert res.ok and res.output == "gave up"
        assert (await eng.replay("o5")).matches


async def test_waiting_is_for_workflow_code(db: str | Path) -> None:
    async with _engine(db, FakeClock()) as eng:
        with pytest.raises(convoy.UserError, match="workflow code"):
            await eng.state("x").wait("k")
