"""Hole 1: a session is owned by one engine at a time (claims with leases, fenced writes)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.stores import store_from_url

from .conftest import STORE_KINDS, Classification, Crash, FakeClock, store_db


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    """Every test of this module runs on SQLite and on PostgreSQL."""
    yield from store_db(request.param, tmp_path)

OK = {"label": "billing", "confidence": 0.9}


def _flow(tool: convoy.Tool, *, latency: float = 0.0) -> convoy.Workflow[Any, Any]:
    sim = convoy.SimModel({"a": [{"tool_calls": [{"name": tool.name, "arguments": {"n": 1}}]},
                                 {"output": OK}]}, latency=latency)
    a = convoy.Agent(name="a", output_type=Classification, tools=[tool], model=sim)

    @convoy.workflow(name="own")
    async def wf(ctx: convoy.Context, text: str) -> Classification:
        out: Classification = await ctx.run(a, text)
        return out

    return wf


async def test_two_engines_resuming_one_store_run_each_session_once(db: str | Path) -> None:
    """The reproduction: two engines on one store both call resume(); a non-idempotent
    write tool must run once per session, not twice."""
    applied: list[str] = []
    crashed: set[str] = set()

    @convoy.tool(writes=True)
    async def write(ctx: convoy.ToolContext, n: int) -> int:
        """A write that is not idempotent."""
        if ctx.session_id not in crashed:
            crashed.add(ctx.session_id)
            raise Crash  # before any effect: the first engine dies here
        applied.append(ctx.session_id)
        await asyncio.sleep(0)  # let the other engine try to interleave
        return n

    wf = _flow(write)
    clock = FakeClock()
    first = convoy.Engine(store_from_url(db, clock=clock), workflows=[wf])
    for i in range(20):
        with pytest.raises(Crash):
            await first.run(wf, "t", session_id=f"s{i}")
    clock.advance(3600)  # the first engine's leases have expired
    # The crashed tool calls left 'started' records: non-idempotent, so they escalate;
    # answer every escalation with "retry" so both engines have real work to race on.
    a = convoy.Engine(store_from_url(db, clock=clock), workflows=[wf])
    b = convoy.Engine(store_from_url(db, clock=clock), workflows=[wf])
    async with a, b:
        escalated = await a.resume()
        assert {r.status for r in escalated} == {"escalated"}
        for r in escalated:
            await a.signal(r.id, convoy.ESCALATION, {"action": "retry"})
        ra, rb = await asyncio.gather(a.resume(), b.resume())
        # (one engine's run of each; the other may report it as finished already: the
        # stored result of a session the first finished after the other read it)
        done = [r for r in ra + rb if r.status == "completed" and not r.already_finished]
        assert sorted(r.id for r in done) == sorted(f"s{i}" for i in range(20))
        counts = await a.store.counts()
    assert sorted(applied) == sorted(f"s{i}" for i in range(20))  # each write exactly once
    assert counts == {"completed": 20}
    await first.aclose()


async def test_a_live_owner_keeps_its_session(db: str | Path) -> None:
    """While its lease holds, no other engine may claim a session."""
    clock = FakeClock()
    store = store_from_url(db, clock=clock)
    await store.open()
    store.create_session(convoy.stores.NewSession(id="x", workflow="w", version="1",
                                                  tenant="t", input="1"),
                         owner="engine-a", lease_s=30)
    await store.renew("engine-a", 30)
    assert await store.claim("x", "engine-b", 30) is None
    clock.advance(29)
    assert await store.claim("x", "engine-b", 30) is None
    clock.advance(2)
    row = await store.claim("x", "engine-b", 30)
    assert row is not None and row.owner == "engine-b"
    await store.aclose()


async def test_an_engine_that_lost_its_lease_cannot_write(db: str | Path) -> None:
    """Fencing: once another engine took the session over, the first engine's journal
    writes and its final status are refused; the session is not run twice."""
    clock = FakeClock()
    gate = asyncio.Event()
    release = asyncio.Event()
    both_in = asyncio.Event()
    calls: list[str] = []

    @convoy.tool
    async def slow(n: int) -> int:
        """Takes a while (the first engine is stuck in it when it loses its lease)."""
        calls.append("slow")
        gate.set()
        if len(calls) == 2:
            both_in.set()
        await release.wait()
        return n

    wf = _flow(slow)
    first = convoy.Engine(store_from_url(db, clock=clock), workflows=[wf])
    second = convoy.Engine(store_from_url(db, clock=clock), workflows=[wf])
    async with first, second:
        task = asyncio.create_task(first.run(wf, "t", session_id="s"))
        await gate.wait()
        clock.advance(3600)  # the first engine stalled past its lease
        taker = asyncio.create_task(second.resume())
        await both_in.wait()  # the second engine reached the tool too
        release.set()
        [taken] = await taker
        lost = await task
        row = await second.store.get_session("s")
    assert taken.ok
    assert lost.status == "running" and lost.error is not None  # refused, not finished
    assert lost.error["type"] == "LeaseLost"
    assert row is not None and row.status == "completed"


async def test_a_session_of_a_dead_local_process_is_taken_over_at_once(db: str | Path) -> None:
    """An owner on this machine whose process no longer exists holds no lease."""
    store = store_from_url(db)
    await store.open()
    store.create_session(convoy.stores.NewSession(id="x", workflow="own", version="1",
                                                  tenant="t", input='"t"'),
                         owner="nowhere:999999999:dead", lease_s=3600)
    await store.aclose()
    import socket

    store = store_from_url(db)
    await store.open()
    # A pid that certainly belonged to a process that is gone: one we started and reaped.
    import sys

    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await proc.wait()
    dead = f"{socket.gethostname()}:{proc.pid}:gone"
    store.create_session(convoy.stores.NewSession(id="y", workflow="own", version="1",
                                                  tenant="t", input='"t"'),
                         owner=dead, lease_s=3600)
    await store.aclose()

    @convoy.tool
    def noop(n: int) -> int:
        """Nothing."""
        return n

    wf = _flow(noop)
    async with convoy.Engine(db, workflows=[wf]) as eng:
        results = {r.id: r.status for r in await eng.resume()}
    # Another machine's owner keeps its lease; this machine's dead process does not.
    assert results == {"x": "running", "y": "completed"}


async def test_renewed_leases_outlive_their_first_term(db: str | Path) -> None:
    clock = FakeClock()
    store = store_from_url(db, clock=clock)
    await store.open()
    store.create_session(convoy.stores.NewSession(id="x", workflow="w", version="1",
                                                  tenant="t", input="1"),
                         owner="a", lease_s=30)
    for _ in range(5):
        clock.advance(20)
        assert await store.renew("a", 30) == 1
    assert await store.claim("x", "b", 30) is None
    row = await store.get_session("x")
    assert row is not None and row.active_s == pytest.approx(100)
    await store.aclose()
