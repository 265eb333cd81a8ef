"""Two engines on one store: a session whose run ends by an exception on engine A (its
caller's cancel, a session hook's refusal) is given back at once, so engine B (another
``Engine`` on the same store, as another process would have) resumes it at once, where it
waited out A's lease before (an hour here). Every wait is for the store's state."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import convoy

from .conftest import STORE_KINDS, store_db
from .test_durability import _gated_flow


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


async def given_back(engine: convoy.Engine, sid: str) -> None:
    """Wait until ``sid`` is ``pending`` and held by no engine (the give-back is written
    in the background after a cancel)."""
    for _ in range(20_000):
        row = await engine.store.get_session(sid)
        if row is not None and (row.status, row.owner) == ("pending", None):
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{sid} was never given back")


async def test_another_engine_resumes_a_run_whose_caller_cancelled_it_at_once(
        db: str | Path) -> None:
    flow, reached, runs = _gated_flow("give_back.cancelled")
    async with convoy.Engine(db, workflows=[flow], lease_seconds=3600) as a:
        task = asyncio.create_task(a.run(flow, 1, session_id="c"))
        await reached.wait()  # (in its idempotent step, under A's hour-long lease)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await given_back(a, "c")
        async with convoy.Engine(db, workflows=[flow]) as b:  # (A still open)
            [res] = await b.resume()
    assert (res.id, res.status, res.output, len(runs)) == ("c", "completed", 8, 2)


async def test_another_engine_resumes_a_session_a_hook_refused_at_once(
        db: str | Path) -> None:
    @convoy.workflow(name="give_back.refused")
    async def flow(ctx: convoy.Context, n: int) -> int:
        got: int = await ctx.step("double", lambda: n * 2)
        return got

    class Refuses(convoy.Interceptor):
        async def session_run(self, input: convoy.SessionInput, next: Any) -> Any:
            raise convoy.UserError("tenant 'acme' is suspended")

    async with convoy.Engine(db, workflows=[flow], interceptors=[Refuses()],
                             lease_seconds=3600) as a:
        with pytest.raises(convoy.UserError, match="suspended"):
            await a.run(flow, 4, session_id="r")
        await given_back(a, "r")
        async with convoy.Engine(db, workflows=[flow]) as b:  # (A still open)
            [res] = await b.resume()
    assert (res.id, res.status, res.output) == ("r", "completed", 8)


async def test_a_worker_holds_back_a_session_a_hook_refuses_on_either_store(
        db: str | Path) -> None:
    """As ``tests/test_worker_refusals.py`` shows on SQLite, on both stores (PostgreSQL's
    round trips suspend where SQLite's do not): the refused session is held back while the
    other completes, tried again when due, and completed once the hook lets it through."""
    from convoy.stores import store_from_url

    from .fakeclock import FakeClock
    from .test_worker_backoff import count, until

    clock = FakeClock()
    refusing, refused = [True], [0]

    class Refuses(convoy.Interceptor):
        async def session_run(self, input: convoy.SessionInput, next: Any) -> Any:
            if input.info.session_id == "bad" and refusing[0]:
                refused[0] += 1
                raise convoy.UserError("tenant 'acme' is suspended")
            return await next(input)

    async with convoy.Engine(store_from_url(db, clock=clock)) as e:
        e.drain()
        await e.run_many(count, [1, 2], ids=["bad", "good"])  # (created, pending)
    store = store_from_url(db, clock=clock)
    rounds = [0]
    claim = store.claim_runnable

    async def counted(*a: Any, **kw: Any) -> Any:
        rounds[0] += 1
        return await claim(*a, **kw)

    store.claim_runnable = counted  # type: ignore[method-assign]

    async def rounds_pass(n: int) -> None:
        start = rounds[0]
        await until(lambda: rounds[0] >= start + n, f"{n} more claim rounds")

    def completed(sid: str) -> Any:
        async def check() -> bool:
            row = await engine.store.get_session(sid)
            return row is not None and row.status == "completed"
        return check

    async with convoy.Engine(store, workflows=[count], interceptors=[Refuses()]) as engine:
        server = asyncio.create_task(engine.serve(poll_interval=0.001))
        await until(lambda: refused[0] == 1, "bad refused")
        await until(lambda: engine._backoff.waiting("bad"), "bad held back")
        await until(completed("good"), "good completed")
        await rounds_pass(20)
        assert refused[0] == 1  # (held back: not tried again before it is due)
        clock.advance(1)
        await until(lambda: refused[0] == 2, "bad refused again, when due")
        # (held back from when the give-back records it, just after: the clock moved
        # before that would move the due time with it)
        await until(lambda: engine._backoff.waiting("bad"), "bad held back again")
        refusing[0] = False
        clock.advance(2)
        await until(completed("bad"), "bad completed")
        assert refused[0] == 2 and not server.done()
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server
