"""What a sandboxed tool call costs, against the other ways a sync tool runs.

    python bench/sandbox.py [--calls 20] [--gap 1.0] [--concurrent 8]

One trivial tool (adds two ints) run ``--calls`` times through ``Tool.invoke`` in each mode:
a pool thread (the default), ``isolate="process"`` (a fork of the engine), a sandbox
process started per call (``Sandbox()``), and a warm sandbox (``Sandbox(warm=1)``: the
next process is started and locked down while the agent does something else). Warm calls
are timed twice: back to back, and with ``--gap`` seconds between calls (a model turn;
not timed) so the warm process is ready when the call comes. Then ``--concurrent`` cold
sandboxed calls at once (wall time). Prints one JSON line per measurement, in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import time
from typing import Any

import convoy
from convoy._stats import percentile
from convoy.sandbox import _runner

CTX: convoy.ToolContext[Any] = convoy.ToolContext(
    session_id="s", tenant="t", agent="a", step_key="0", idempotency_key="s:0")


@convoy.tool
def add_thread(a: int, b: int) -> int:
    """Adds on a pool thread."""
    return a + b


@convoy.tool(isolate="process")
def add_process(a: int, b: int) -> int:
    """Adds in a forked child."""
    return a + b


@convoy.tool(sandbox=convoy.Sandbox())
def add_sandbox(a: int, b: int) -> int:
    """Adds in a sandbox process started for the call."""
    return a + b


@convoy.tool(sandbox=convoy.Sandbox(warm=1))
def add_warm(a: int, b: int) -> int:
    """Adds in a sandbox process started ahead of the call."""
    return a + b


async def timed(t: convoy.Tool, calls: int, gap: float) -> list[float]:
    args = t.validate_args('{"a": 1, "b": 2}')
    out = []
    for _ in range(calls):
        if gap:
            await asyncio.sleep(gap)  # the model's turn: not timed
        start = time.perf_counter()
        assert await t.invoke(args, CTX) == 3
        out.append((time.perf_counter() - start) * 1000)
    return out


def children_cpu() -> float:
    """CPU seconds of reaped child processes (the sandbox processes, once cleaned up)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def report(name: str, ms: list[float], cpu: float | None = None) -> None:
    line = {"mode": name, "calls": len(ms), "median_ms": round(statistics.median(ms), 2),
            "p90_ms": round(percentile(ms, 90), 2), "max_ms": round(max(ms), 2)}
    if cpu is not None:  # less at the mercy of a busy machine than the latency
        line["child_cpu_ms_per_call"] = round(cpu * 1000 / len(ms), 1)
    print(json.dumps(line), flush=True)


async def settled() -> float:
    """Children CPU once every sandbox process so far has been reaped."""
    async with asyncio.timeout(60):
        while _runner._Process.live:  # noqa: ASYNC110 - cleaned up on daemon threads
            await asyncio.sleep(0.01)
    return children_cpu()


async def main(calls: int, gap: float, concurrent: int) -> None:
    report("thread", await timed(add_thread, calls * 10, 0))
    report("process (fork)", await timed(add_process, calls * 10, 0))
    before = await settled()
    ms = await timed(add_sandbox, calls, 0)
    report("sandbox, started per call", ms, await settled() - before)
    await timed(add_warm, 1, 0)  # starts the first warm process
    report("sandbox warm, back to back", await timed(add_warm, calls, 0))
    report(f"sandbox warm, {gap:g} s between calls", await timed(add_warm, calls, gap))
    _runner.WARM.close()
    args = add_sandbox.validate_args('{"a": 1, "b": 2}')
    start = time.perf_counter()
    await asyncio.gather(*[add_sandbox.invoke(args, CTX) for _ in range(concurrent)])
    wall = (time.perf_counter() - start) * 1000
    print(json.dumps({"mode": f"sandbox, {concurrent} calls at once", "wall_ms": round(wall, 1),
                      "per_call_ms": round(wall / concurrent, 1)}), flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--gap", type=float, default=1.0)
    p.add_argument("--concurrent", type=int, default=8)
    a = p.parse_args()
    asyncio.run(main(a.calls, a.gap, a.concurrent))
