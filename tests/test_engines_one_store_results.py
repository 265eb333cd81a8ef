"""Two engines on one store: a session one of them finishes after the other read it
unfinished, and before that one's claim of it, is reported by the other as what it is
(its stored result, ``already_finished``), not as ``running`` on another engine: a
``convoy run --strict`` of the same inputs failed on a session that had completed, and
its summary counted it as left to another engine."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import convoy

from .conftest import STORE_KINDS, store_db


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    """Every test of this module runs on SQLite and on PostgreSQL."""
    yield from store_db(request.param, tmp_path)


def _held(release: asyncio.Event, started: asyncio.Event) -> convoy.Workflow[Any, Any]:
    async def hold(name: str) -> str:
        started.set()
        await release.wait()
        return f"{name} done"

    @convoy.workflow(name="one_store.held")
    async def held(ctx: convoy.Context, name: str) -> str:
        return await ctx.step("hold", lambda: hold(name), idempotent=True)

    return held


Call = Callable[[convoy.Engine, convoy.Workflow[Any, Any]],
                Awaitable[convoy.SessionResult[Any]]]


async def _run_many(eng: convoy.Engine, wf: convoy.Workflow[Any, Any]
                    ) -> convoy.SessionResult[Any]:
    [res] = await eng.run_many(wf, ["x"], ids=["x"])
    return res


async def _run(eng: convoy.Engine, wf: convoy.Workflow[Any, Any]
               ) -> convoy.SessionResult[Any]:
    return await eng.run(wf, "x", session_id="x")


@pytest.mark.parametrize("call", [_run_many, _run], ids=["run_many", "run"])
async def test_a_session_the_other_engine_finished_before_the_claim_is_its_result(
        db: str | Path, call: Call) -> None:
    release, started = asyncio.Event(), asyncio.Event()
    wf = _held(release, started)
    async with convoy.Engine(db) as first, convoy.Engine(db) as second:
        running = asyncio.create_task(_run_many(first, wf))
        await started.wait()  # the first engine runs session x
        claim = second.store.claim

        async def finished_first(*args: Any, **kw: Any) -> Any:
            # (the other engine finishes it between this one's read and its claim)
            release.set()
            await running
            return await claim(*args, **kw)

        second.store.claim = finished_first  # type: ignore[method-assign]
        res = await call(second, wf)
        assert (await running).ok and not (await running).already_finished
        assert res.status == "completed" and res.output == "x done", res
        assert res.already_finished


@pytest.mark.parametrize("finished", [True, False], ids=["finished", "running"])
async def test_a_session_the_other_engine_created_first_is_not_run_here(
        db: str | Path, finished: bool) -> None:
    """Two ``run_many`` of the same new id at once: the one whose create came second
    (the row was not there when it read, and was when it created it) does not run the
    workflow as if the session were its own (it did, up to its first fenced write, and
    ``convoy run`` counted that as a session run); it reports the session as it is."""
    release, started = asyncio.Event(), asyncio.Event()
    entered: list[str] = []
    hold = _held(release, started)

    @convoy.workflow(name="one_store.counted")
    async def counted(ctx: convoy.Context, name: str) -> str:
        entered.append(name)
        if len(entered) > 1:  # (not to its step, which would hold this run too)
            raise RuntimeError("the session ran on both engines")
        return await hold.fn(ctx, name)

    if finished:
        release.set()
    async with convoy.Engine(db) as first, convoy.Engine(db) as second:
        running: list[asyncio.Task[convoy.SessionResult[Any]]] = []
        create = second.store.create_sessions

        async def created_first(*args: Any, **kw: Any) -> int:
            running.append(asyncio.create_task(_run_many(first, counted)))
            if finished:
                await running[0]
            else:
                await started.wait()
            return await create(*args, **kw)

        second.store.create_sessions = created_first  # type: ignore[method-assign]
        res = await _run_many(second, counted)
        assert entered == ["x"]  # (the first engine's run alone)
        if finished:
            assert res.status == "completed" and res.already_finished, res
        else:
            assert res.status == "running" and not res.duration_s, res
            release.set()
        assert (await running[0]).ok


async def test_an_id_another_tenant_created_first_is_not_run_or_read_here(
        db: str | Path) -> None:
    """``run_many`` of tenant ``a`` with an id that a session of tenant ``b`` took between
    this engine's read of the ids and its create: it raises (the id is taken), as when
    the session was there at the read; it neither runs ``b``'s session nor returns its
    output."""
    @convoy.workflow(name="one_store.tenants")
    async def echo(ctx: convoy.Context, name: str) -> str:
        return f"{name} done"

    async with convoy.Engine(db) as first, convoy.Engine(db) as second:
        create = second.store.create_sessions

        async def created_first(*args: Any, **kw: Any) -> int:
            await first.run_many(echo, ["secret of b"], ids=["x"], tenant="b")
            return await create(*args, **kw)

        second.store.create_sessions = created_first  # type: ignore[method-assign]
        with pytest.raises(convoy.UserError):
            res = await second.run_many(echo, ["a's"], ids=["x"], tenant="a")
            pytest.fail(f"tenant a got tenant b's session: {res}")
