"""``convoy worker | head -1``: once what reads its output exits, the worker stops as a
graceful stop does (the steps in flight finish, the sessions are left for the next
worker), with one line on stderr and exit 1. It died with a Python traceback (rich raises
``SystemExit`` on a broken pipe, inside the engine's task group)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import convoy

from .clikit import LIMIT, subprocess_env, workdir

__all__ = ["workdir"]  # the autouse fixture: each test in its own directory


def _pending(db: Path) -> None:
    """Session ``a`` (two clock steps) and ``g`` (waits at a gate file), not run yet."""
    import busy_flows  # (tests/fixtures: on the path by the workdir fixture)

    async def make() -> None:
        async with convoy.Engine(db) as engine:
            engine.drain()
            await engine.run_many(busy_flows.busy, [2], ids=["a"])
            await engine.run_many(busy_flows.gated, [1], ids=["g"])

    asyncio.run(make())


def test_a_worker_whose_output_is_closed_stops_gracefully(workdir: Path) -> None:
    _pending(workdir / "c.db")
    with open(workdir / "err.txt", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "convoy.cli", "worker", "busy_flows", "--db", "c.db",
             "--until-idle"], cwd=workdir, env=subprocess_env(), stdout=subprocess.PIPE,
            stderr=err, stdin=subprocess.DEVNULL, text=True)
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first.split() == ["a", "completed"], first
            proc.stdout.close()  # (what read it exited)
            (workdir / "gate").touch()  # g completes now, and its line meets a closed pipe
            code = proc.wait(timeout=LIMIT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    said = (workdir / "err.txt").read_text()
    assert code == 1, said
    assert "Traceback" not in said, said
    assert "stopped after 2 session runs: its standard output was closed" in said, said

    async def status() -> str | None:
        async with convoy.Engine(workdir / "c.db") as engine:
            row = await engine.store.get_session("g")
            return None if row is None else row.status

    assert asyncio.run(status()) == "completed"  # (its step in flight finished, recorded)
