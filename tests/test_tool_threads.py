"""Sync tools: a bounded pool of daemon threads, and process isolation for tools that may
hang (issue 8, bug 3)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy import ToolThreads, ToolThreadsExhausted

CTX: convoy.ToolContext[Any] = convoy.ToolContext(
    session_id="s", tenant="t", agent="a", step_key="k", idempotency_key="i")


async def call(t: convoy.Tool, args: str = "{}") -> Any:
    return await t.invoke(t.validate_args(args), CTX)


async def until(cond: Any) -> None:
    """Wait for observable state (bounded, so a bug fails instead of hanging)."""
    async with asyncio.timeout(30):
        while not cond():  # noqa: ASYNC110 - the state changes in other threads/processes
            await asyncio.sleep(0.001)


async def test_a_hung_sync_tool_does_not_poison_later_sync_tools() -> None:
    pool = ToolThreads(2, max_stuck_per_tool=1)
    release = threading.Event()

    @convoy.tool(threads=pool)
    def hang() -> str:
        """Hangs until released."""
        release.wait()
        return "late"

    @convoy.tool(threads=pool)
    def double(x: int) -> int:
        """Doubles."""
        return 2 * x

    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(call(hang), 0.05)
        assert pool.stuck == 1
        # The hung tool may not take another thread: it fails at once, typed and retryable.
        with pytest.raises(ToolThreadsExhausted) as info:
            await call(hang)
        assert info.value.retryable and "isolate='process'" in str(info.value)
        # Every other sync tool still runs.
        assert [await call(double, f'{{"x": {i}}}') for i in range(50)] == \
            [2 * i for i in range(50)]
    finally:
        release.set()
    await until(lambda: pool.stuck == 0)
    assert await call(hang) == "late"


async def test_a_pool_held_by_stuck_calls_refuses_at_once_instead_of_waiting() -> None:
    pool = ToolThreads(2, max_stuck_per_tool=2)
    release = threading.Event()

    @convoy.tool(threads=pool)
    def hang() -> str:
        """Hangs until released."""
        release.wait()
        return "late"

    @convoy.tool(threads=pool)
    def quick() -> str:
        """Answers."""
        return "ok"

    try:
        for _ in range(2):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(call(hang), 0.05)
        with pytest.raises(ToolThreadsExhausted, match="all 2 sync-tool threads"):
            await call(quick)
        assert pool.exhausted == 1
    finally:
        release.set()
    await until(lambda: pool.stuck == 0)
    assert await call(quick) == "ok"


async def test_a_process_isolated_hung_tool_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    @convoy.tool(isolate="process")
    def hang() -> str:
        """Hangs forever in its own process."""
        pid_file.write_text(str(os.getpid()))
        time.sleep(3600)
        return "never"

    @convoy.tool(isolate="process")
    def answer(x: int) -> int:
        """Answers from a child process."""
        return x + os.getpid() - os.getpid()

    @convoy.tool(isolate="process")
    def broken() -> int:
        """Raises in the child."""
        raise ValueError("bad input")

    assert await call(answer, '{"x": 41}') == 41
    with pytest.raises(convoy.ToolError, match="ValueError: bad input"):
        await call(broken)
    task = asyncio.create_task(call(hang))
    await until(lambda: pid_file.exists() and pid_file.read_text())
    pid = int(pid_file.read_text())
    assert pid != os.getpid()
    task.cancel()  # what a tool timeout does
    with pytest.raises(asyncio.CancelledError):
        await task

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    await until(gone)  # killed and reaped


def test_a_process_with_a_hung_sync_tool_exits_after_the_engine_closes(tmp_path: Path) -> None:
    script = tmp_path / "hung.py"
    script.write_text(textwrap.dedent('''
        import asyncio, sys, threading
        import convoy
        from convoy.resilience import Timeout

        @convoy.tool
        def stuck() -> str:
            """Never returns."""
            threading.Event().wait()
            return "never"

        sim = convoy.SimModel({"a": [{"tool_calls": [{"name": "stuck"}]}, {"text": "done"}]})
        agent = convoy.Agent(name="a", tools=[stuck], model=sim)

        @convoy.workflow(name="hung")
        async def wf(ctx: convoy.Context, t: str) -> str:
            return await ctx.run(agent, t)

        async def main():
            async with convoy.Engine(sys.argv[1], interceptors=[Timeout(tool=0.05)]) as eng:
                res = await eng.run(wf, "t")
            print("closed", res.status, flush=True)

        asyncio.run(main())
    '''))
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "s.db")],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "closed" in proc.stdout
