"""A store error that stops a call reaches its caller as itself, the error a library user
catches (``except convoy.StoreError``), not wrapped in an ``ExceptionGroup`` by the task
group that ran the sessions (``run_many``; ``serve``: ``tests/test_worker_backoff.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.stores import SQLiteStore


@convoy.workflow(name="raised.double")
async def double(ctx: convoy.Context, n: int) -> int:
    got: int = await ctx.step("double", lambda: n * 2)
    return got


class NoClaims(SQLiteStore):
    """A store that cannot claim a session (an operator's problem: not transient)."""

    async def claim(self, *a: Any, **kw: Any) -> Any:
        raise convoy.StoreError("attempt to write a readonly database", transient=False)


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_run_many_raises_the_store_error_itself(tmp_path: Path,
                                                      concurrency: int) -> None:
    async with convoy.Engine(tmp_path / "c.db") as e:
        e.drain()  # (three pending sessions to take up)
        await e.run_many(double, [1, 2, 3], ids=["a", "b", "c"])
    async with convoy.Engine(NoClaims(tmp_path / "c.db"), workflows=[double],
                             concurrency=concurrency) as e:
        with pytest.raises(convoy.StoreError, match="readonly database"):
            await e.run_many(double, [1, 2, 3], ids=["a", "b", "c"])
