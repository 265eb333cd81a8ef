"""``ctx.step`` takes an async function, a plain function, or a plain function that returns
an awaitable (``lambda: fetch(x)``); its result is the step's value, journaled once and
replayed without calling it again. Anything that is not callable is refused before a step
is taken."""

from __future__ import annotations

from typing import Any

import pytest

import convoy


async def test_a_plain_function_s_result_is_the_step_s_value(engine_factory: Any) -> None:
    calls: list[str] = []

    def write() -> int:
        calls.append("write")
        return 7

    async def fetch(x: int) -> int:
        calls.append("fetch")
        return x + 1

    @convoy.workflow(name="sync_step")
    async def wf(ctx: convoy.Context, x: int) -> int:
        a = await ctx.step("write", write)
        b = await ctx.step("fetch", lambda: fetch(x))
        c = await ctx.step("lambda", lambda: a * 2)
        return a + b + c

    engine = engine_factory()
    res = await engine.run(wf, 1, session_id="s")
    assert res.status == "completed" and res.output == 7 + 2 + 14
    assert calls == ["write", "fetch"]
    rr = await engine.replay("s")
    assert rr.matches and calls == ["write", "fetch"]  # replay calls nothing


async def test_a_plain_function_s_exception_is_journaled_and_raised(engine_factory: Any) -> None:
    def boom() -> int:
        raise ConnectionRefusedError("crm down")

    @convoy.workflow(name="sync_step_raises")
    async def wf(ctx: convoy.Context, x: int) -> str:
        try:
            await ctx.step("crm", boom)
        except ConnectionRefusedError as e:
            return f"refused:{e}"
        return "no"

    res = await engine_factory().run(wf, 1)
    assert res.status == "completed" and res.output == "refused:crm down"


async def test_a_coroutine_instead_of_a_function_is_refused_before_the_step(
        engine_factory: Any) -> None:
    async def fetch() -> int:
        return 1

    @convoy.workflow(name="step_not_callable")
    async def wf(ctx: convoy.Context, x: int) -> int:
        coro = fetch()
        try:
            return int(await ctx.step("fetch", coro))  # type: ignore[call-overload]
        finally:
            coro.close()

    engine = engine_factory()
    res = await engine.run(wf, 1, session_id="s")
    assert res.status == "failed" and res.error is not None
    assert "ctx.step('fetch', ...) needs a function" in res.error["message"]
    assert "lambda: " in res.error["message"]
    assert await engine.journal("s") == []  # refused before a step was taken


@pytest.mark.parametrize("bad", [None, 3])
async def test_a_non_callable_is_refused(engine_factory: Any, bad: Any) -> None:
    @convoy.workflow(name="step_none")
    async def wf(ctx: convoy.Context, x: int) -> int:
        return int(await ctx.step("s", bad))

    res = await engine_factory().run(wf, 1)
    assert res.status == "failed" and res.error is not None
    assert "needs a function" in res.error["message"]
