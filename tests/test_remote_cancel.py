"""Remote cancel: ``cancel`` of a session that another live engine runs (or that an engine
which died elsewhere still holds) records a durable request instead of refusing. The owner
stops the session at its next lease renewal; an engine that claims it later (its lease
lapsed, or it parked and woke) ends it ``cancelled`` without running a step.

Every test runs on SQLite and on PostgreSQL. The stores share a fake clock that never moves
unless a test moves it, so a lease lapses only when a test says so; an engine's renewals
(every ``lease_seconds / 3`` of real time) are awaited through the outcome they cause."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.engine._cancel import honour_requests
from convoy.stores import store_from_url
from convoy.stores._protocol import CANCEL_SIGNAL, Store

from .conftest import STORE_KINDS, Classification, Crash, FakeClock, store_db

#: An upper bound on the whole wait for an outcome (not a sleep: the test goes on the
#: moment the outcome is there).
PATIENCE = 60.0


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


def _engine(db: str | Path | Store, clock: FakeClock, **kw: Any) -> convoy.Engine:
    store = db if isinstance(db, Store) else store_from_url(db, clock=clock)
    return convoy.Engine(store, **kw)


class Ends(convoy.Interceptor):
    """Records how every run of a session ended, as the session hooks see it."""

    def __init__(self) -> None:
        self.ends: list[tuple[str, str]] = []

    async def session_run(self, input: convoy.SessionInput, next: Any) -> Any:
        end = await next(input)
        self.ends.append((input.info.session_id, end.status))
        return end


class Gate:
    """A step that blocks until released, and records what ran after it."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.after: list[str] = []

    async def blocked(self) -> str:
        self.entered.set()
        await self.release.wait()
        self.after.append("tool")  # the tool's continuation
        return "done"


async def _entered(gate: Gate, other: convoy.Engine, sid: str) -> None:
    """Wait until the gate's step runs and its session's row is committed, as ``other``
    reads the store: a first step that is not journaled before it runs (an idempotent
    one) can run before the commit that creates its session."""
    async with asyncio.timeout(PATIENCE):
        await gate.entered.wait()
        while await other.store.get_session(sid) is None:  # noqa: ASYNC110 - another writer commits it
            await asyncio.sleep(0.01)


def _blocked_flow(gate: Gate, name: str, *, then_wait: bool = False
                  ) -> convoy.Workflow[Any, Any]:
    @convoy.workflow(name=name)
    async def wf(ctx: convoy.Context, x: int) -> str:
        out: str = await ctx.step("blocked", gate.blocked, idempotent=True)
        if then_wait:
            out = await ctx.wait_for("go", str)
        gate.after.append("workflow")
        return out

    return wf


async def test_a_session_running_on_another_engine_is_stopped_by_its_owner(
        db: str | Path) -> None:
    """(a) Engine B cancels a session engine A runs (blocked inside a tool): the request is
    durable, A stops the session at its next lease renewal, and it ends ``cancelled``
    without the tool's continuation running."""
    gate = Gate()
    wf = _blocked_flow(gate, "remote-cancel-a")
    clock = FakeClock()
    # A renews every 10 ms of real time; the store's clock does not move, so A's lease never
    # lapses and B cannot take the session over: only the request can stop it.
    a = _engine(db, clock, lease_seconds=0.03, workflows=[wf])
    b = _engine(db, clock, workflows=[wf])
    async with a, b:
        run = asyncio.create_task(a.run(wf, 1, session_id="s"))
        await _entered(gate, b, "s")
        # "cancelled" when A honoured the request before cancel read the session again
        assert await b.cancel("s") in ("requested", "cancelled")
        row = await b.session("s")
        # B took nothing over: A still runs it, or has stopped it already (it renews
        # every 10 ms).
        assert (row.status, row.owner) in (("running", a.owner), ("cancelled", None))
        async with asyncio.timeout(PATIENCE):
            res = await run
        row = await b.session("s")
    assert res.status == "cancelled"
    assert row.status == "cancelled" and row.owner is None
    assert row.error_record is not None and row.error_record["type"] == "Cancelled"
    assert gate.after == []


async def test_the_engine_that_takes_over_a_dead_engines_session_ends_it_cancelled(
        db: str | Path) -> None:
    """(b) The engine running a session died on another machine (its lease has not lapsed
    yet): cancel records a request, and the worker that claims the session once the lease
    lapsed ends it ``cancelled``, through its session hooks, without running any step."""
    calls: list[str] = []

    async def first() -> int:
        calls.append("first")
        return 1

    async def second() -> int:
        calls.append("second")
        if calls.count("second") == 1:
            raise Crash  # the engine dies here, mid-step
        return 2

    @convoy.workflow(name="remote-cancel-b")
    async def wf(ctx: convoy.Context, x: int) -> int:
        one: int = await ctx.step("first", first, idempotent=True)
        two: int = await ctx.step("second", second, idempotent=True)
        return one + two

    clock = FakeClock()
    dead = _engine(db, clock, workflows=[wf])
    with pytest.raises(Crash):
        await dead.run(wf, 1, session_id="s")
    await dead.aclose()  # its process is gone; its lease is still running (another machine)
    ends = Ends()
    operator = _engine(db, clock)
    worker = _engine(db, clock, workflows=[wf], interceptors=[ends])
    async with operator, worker:
        assert await operator.cancel("s") == "requested"
        journal = await operator.journal("s")
        assert (await operator.session("s")).status == "running"
        clock.advance(3600)  # the dead engine's lease lapses
        await worker.serve(until_idle=True, poll_interval=0.01)
        row = await operator.session("s")
        assert await operator.journal("s") == journal
    assert row.status == "cancelled" and row.owner is None
    assert calls == ["first", "second"]  # no step ran again
    assert ends.ends == [("s", "cancelled")]


async def test_a_session_cancelled_after_its_engine_died_keeps_what_its_run_spent(
        db: str | Path) -> None:
    """A run that was killed never recorded its counts: the session that ends
    ``cancelled`` without running again counts its steps, tokens and cost from its
    journal (what a run that resumed it would have counted), not as none."""
    model = convoy.SimModel({"*": {"output": {"label": "billing", "confidence": 0.9}}},
                            usage=(50, 10))
    clerk = convoy.Agent(name="clerk", output_type=Classification, model=model)

    async def dies() -> int:
        raise Crash

    @convoy.workflow(name="remote-cancel-spent")
    async def wf(ctx: convoy.Context, x: int) -> int:
        await ctx.run(clerk, "my invoice is wrong")
        await ctx.now()
        return await ctx.step("dies", dies, idempotent=True)

    clock = FakeClock()
    dead = _engine(db, clock, workflows=[wf])
    with pytest.raises(Crash):
        await dead.run(wf, 1, session_id="s")
    await dead.aclose()
    operator = _engine(db, clock)
    worker = _engine(db, clock, workflows=[wf])
    async with operator, worker:
        journal = await operator.journal("s")
        assert await operator.cancel("s") == "requested"
        clock.advance(3600)  # the dead engine's lease lapses
        await worker.serve(until_idle=True, poll_interval=0.01)
        row = await operator.session("s")
    assert row.status == "cancelled"
    assert len(journal) == 2 and row.steps == 2
    assert (row.input_tokens, row.output_tokens) == (50, 10)
    assert row.cost == sum(r.cost for r in journal)


async def test_a_session_that_parks_after_the_request_ends_cancelled(db: str | Path) -> None:
    """(c) The request is written while the session runs; the session then parks (waiting
    for a signal that never comes) before its owner renews: the park leaves it runnable,
    and the engine that claims it ends it ``cancelled``."""
    gate = Gate()
    wf = _blocked_flow(gate, "remote-cancel-c", then_wait=True)
    clock = FakeClock()
    # A lease of an hour: a renewal (a third of it, in real time) never comes during this
    # test however slow the host, and one would honour the request before the park.
    a = _engine(db, clock, lease_seconds=3600, workflows=[wf])
    b = _engine(db, clock, workflows=[wf])
    async with a, b:
        run = asyncio.create_task(a.run(wf, 1, session_id="s"))
        await _entered(gate, b, "s")
        assert await b.cancel("s") == "requested"
        gate.release.set()
        assert (await run).status == "waiting"  # it parked, after the request
        assert (await b.session("s")).status == "pending"  # not waiting for "go"
        [res] = await b.resume()
        row = await b.session("s")
    assert res.status == "cancelled"
    assert row.status == "cancelled"
    assert gate.after == ["tool"]  # the step finished before the park; nothing after it


class _Interleaved:
    """A real store that runs ``between`` right after a failed claim: the moment between
    ``cancel`` reading a session as running elsewhere and writing its request."""

    def __init__(self, store: Store, between: Callable[[], Awaitable[None]]) -> None:
        self._store, self._between = store, between

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def claim(self, session_id: str, owner: str, lease_s: float, *,
                    tenant: str | None = None) -> Any:
        row = await self._store.claim(session_id, owner, lease_s, tenant=tenant)
        if row is None:
            await self._between()
        return row


async def test_a_session_that_parks_before_the_request_is_written_ends_cancelled(
        db: str | Path) -> None:
    """(c) cancel reads the session as running elsewhere; before it writes its request, the
    session parks (its park cannot see a request not yet written): cancel reads it again
    after writing, finds it parked and ends it itself."""
    gate = Gate()
    wf = _blocked_flow(gate, "remote-cancel-c2", then_wait=True)
    clock = FakeClock()
    a = _engine(db, clock, workflows=[wf])

    async def park_now() -> None:
        gate.release.set()
        assert (await run).status == "waiting"

    b = _engine(_Interleaved(store_from_url(db, clock=clock), park_now), clock)  # type: ignore[arg-type]
    async with a, b:
        run = asyncio.create_task(a.run(wf, 1, session_id="s"))
        await _entered(gate, b, "s")
        assert await b.cancel("s") == "cancelled"
        row = await b.session("s")
        assert await a.resume() == []
    assert row.status == "cancelled" and row.owner is None
    assert gate.after == ["tool"]


async def test_signal_names_starting_convoy_are_reserved(db: str | Path) -> None:
    """A cancel request cannot be forged or swallowed as a plain signal: nobody sends or
    waits for a reserved name (``convoy.escalation`` answers an escalation)."""
    clock = FakeClock()

    @convoy.workflow(name="remote-cancel-reserved")
    async def wf(ctx: convoy.Context, x: int) -> str:
        return str(await ctx.wait_for(CANCEL_SIGNAL))

    async with _engine(db, clock, workflows=[wf]) as eng:
        res = await eng.run(wf, 1, session_id="s")
        assert res.status == "failed" and res.error is not None
        assert "reserved" in res.error["message"]
        gate = Gate()
        waiting = _blocked_flow(gate, "remote-cancel-reserved-2", then_wait=True)
        gate.release.set()
        assert (await eng.run(waiting, 1, session_id="w")).status == "waiting"
        with pytest.raises(convoy.UserError, match="reserved"):
            await eng.signal("w", CANCEL_SIGNAL, None)
        assert (await eng.session("w")).status == "waiting"


class _SlowFinish:
    """A real store whose ``finish`` (how a run records its end) waits for ``release``."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def finish(self, *args: Any, **kw: Any) -> asyncio.Future[None]:
        async def later() -> None:
            self.entered.set()
            await self.release.wait()
            await self._store.finish(*args, **kw)

        return asyncio.ensure_future(later())


async def test_a_cancel_while_a_run_records_its_end_never_interrupts_that_write(
        db: str | Path) -> None:
    """A session whose workflow has returned is recording how it ended: a cancel then (a
    local one, or its owner honouring a request at a lease renewal) cannot stop it any
    more. The run ends as it ended, and its caller never gets a ``CancelledError``."""
    clock = FakeClock()

    @convoy.workflow(name="remote-cancel-settling")
    async def wf(ctx: convoy.Context, x: int) -> int:
        return x + 1

    store = _SlowFinish(store_from_url(db, clock=clock))
    async with _engine(store, clock, workflows=[wf]) as eng:  # type: ignore[arg-type]
        run = asyncio.create_task(eng.run(wf, 1, session_id="s"))
        async with asyncio.timeout(PATIENCE):
            await store.entered.wait()
            # Its row is committed by the store's writer, maybe after its finish began.
            while await store.get_session("s") is None:  # noqa: ASYNC110 - see above
                await asyncio.sleep(0.01)
        assert await eng.cancel("s") == "requested"  # honoured by nobody: it is ending
        store.release.set()
        res = await run
        row = await eng.session("s")
    assert res.status == "completed" and res.output == 2
    assert row.status == "completed"


async def test_running_a_known_session_again_honours_its_cancel_request(
        db: str | Path) -> None:
    """``run`` with the id of a session a dead engine left (the same call after a crash)
    claims it like a worker would: a cancel request for it ends it ``cancelled`` instead of
    running its steps again."""
    calls: list[str] = []

    async def step() -> int:
        calls.append("step")
        if len(calls) == 1:
            raise Crash  # the engine dies here, mid-step
        return 1

    @convoy.workflow(name="remote-cancel-known")
    async def wf(ctx: convoy.Context, x: int) -> int:
        out: int = await ctx.step("step", step, idempotent=True)
        return out

    clock = FakeClock()
    dead = _engine(db, clock, workflows=[wf])
    with pytest.raises(Crash):
        await dead.run(wf, 1, session_id="s")
    await dead.aclose()  # its lease still runs (another machine)
    async with _engine(db, clock, workflows=[wf]) as again:
        assert await again.cancel("s") == "requested"
        clock.advance(3600)  # the dead engine's lease lapses
        res = await again.run(wf, 1, session_id="s")
        row = await again.session("s")
    assert res.status == "cancelled" and row.status == "cancelled"
    assert calls == ["step"]  # the step did not run again


async def test_one_renewal_reads_the_cancel_requests_of_many_sessions_in_one_query(
        tmp_path: Path) -> None:
    """An owner that runs many sessions with cancel requests reads who asked for each in
    one query per renewal (it read them one session at a time), and stops each, recording
    its own requester. (SQLite: its statements are observable.)"""
    n = 20
    entered, release = asyncio.Event(), asyncio.Event()
    running = 0

    async def blocked() -> str:
        nonlocal running
        running += 1
        if running == n:
            entered.set()
        await release.wait()
        return "done"

    @convoy.workflow(name="remote-cancel-many")
    async def wf(ctx: convoy.Context, x: int) -> str:
        out: str = await ctx.step("blocked", blocked, idempotent=True)
        return out

    clock = FakeClock()
    db = tmp_path / "convoy.db"
    # Leases of an hour of real time: no renewal of its own runs while the test looks.
    a = _engine(db, clock, lease_seconds=3600, workflows=[wf])
    b = _engine(db, clock, workflows=[wf])
    async with a, b:
        runs = [asyncio.create_task(a.run(wf, i, session_id=f"s{i:02}")) for i in range(n)]
        async with asyncio.timeout(PATIENCE):
            await entered.wait()
            for i in range(n):
                await _entered_row(b, f"s{i:02}")
        for i in range(n):
            assert await b.cancel(f"s{i:02}", by=f"ops-{i}") == "requested"
        statements: list[str] = []
        a.store.conn.set_trace_callback(statements.append)  # type: ignore[attr-defined]
        try:
            await honour_requests(a, a._stopped_by_request)
        finally:
            a.store.conn.set_trace_callback(None)  # type: ignore[attr-defined]
        async with asyncio.timeout(PATIENCE):
            ends = await asyncio.gather(*runs)
        rows = [await b.session(f"s{i:02}") for i in range(n)]
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")
             and "signals" in s]
    assert len(reads) == 2, reads  # the sessions with a request, then who asked
    assert [e.status for e in ends] == ["cancelled"] * n
    assert [r.error_record for r in rows] == [
        {"type": "Cancelled", "message": f"cancelled by ops-{i}", "by": f"ops-{i}"}
        for i in range(n)]


async def _entered_row(other: convoy.Engine, sid: str) -> None:
    while await other.store.get_session(sid) is None:  # noqa: ASYNC110 - another writer commits it
        await asyncio.sleep(0.01)
