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
