"""Sessions parked on human tasks: what they cost, whether a SIGKILL loses any, and how
fast an answer resumes one.

    .venv/bin/python bench/humans.py --sessions 1000 --sequential 200

1. A child process opens an engine, runs one warm-up session to the end (imports, the
   store, the first commits), measures its resident memory (the *idle engine*), starts
   ``--sessions`` sessions that each ask a person a typed question
   (``ctx.ask_human``) and park, and measures again: RSS above the idle engine, and how
   many per-session runtime objects are left in memory. It then serves (waits for
   answers) until it is SIGKILLed, with every session still waiting.
2. A new child process opens an engine on the same store and serves. From that process
   (as an HTTP handler in front of the engine would), ``--sequential`` tasks are answered
   one at a time through ``engine.inbox.answer`` and the time from the call to the
   session's completion being committed is measured (p50, p99; and the p50 of the answer
   call alone, its compare-and-set write); then
   every other task is answered at once and the time until all are completed is taken.
   Every output is checked against its answer and who gave it.

One JSON line on stdout. Real SQLite file store, durability ``process``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from pydantic import BaseModel

import convoy


class Decision(BaseModel):
    approve: bool
    amount: int


@convoy.workflow(name="bench.humans")
async def refund(ctx: convoy.Context, i: int) -> list[object]:
    got = await ctx.ask_human(f"Refund #{i}?", Decision, context={"ticket": i},
                              queue="billing")
    return [i, got.value.approve, got.value.amount, got.by]


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no /proc/self/status")


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def park(db: Path, n: int) -> None:
    async with convoy.Engine(db, workflows=[refund], concurrency=1000) as eng:
        [warm] = await eng.run_many(refund, [-1], ids=["warm"])
        await eng.inbox.answer("warm:0", {"approve": True, "amount": 0}, by="bench")
        await eng.resume()
        gc.collect()
        idle = rss_kb()
        t0 = time.perf_counter()
        results = await eng.run_many(refund, list(range(n)), ids=[f"s{i}" for i in range(n)])
        park_s = time.perf_counter() - t0
        assert all(r.status == "waiting" for r in results), {r.status for r in results}
        del results, warm
        gc.collect()
        after = rss_kb()
        left = sum(1 for o in gc.get_objects()
                   if type(o).__name__ in ("SessionState", "JournaledExecutor", "Context")
                   and str(type(o).__module__).startswith("convoy"))
        emit(phase="parked", idle_rss_kb=idle, parked_rss_kb=after, park_wall_s=park_s,
             runtime_objects_left=left)
        await eng.serve(poll_interval=0.5)  # until SIGKILLed


async def _poll(check: Callable[[], Awaitable[bool]], every: float) -> None:
    """Read the store until ``check`` holds (the session ran in the serve task)."""
    while True:
        if await check():
            return
        await asyncio.sleep(every)


async def _done(eng: convoy.Engine, sid: str) -> bool:
    row = await eng.store.get_session(sid)
    return row is not None and row.status == "completed"


async def _all_done(eng: convoy.Engine, n: int) -> bool:
    return (await eng.store.counts()).get("completed", 0) >= n


async def answer(db: Path, n: int, sequential: int) -> None:
    async with convoy.Engine(db, workflows=[refund], concurrency=1000) as eng:
        gc.collect()
        rss_restart = rss_kb()
        waiting = await eng.store.counts()
        tasks = await eng.inbox.tasks(queue="billing")
        server = asyncio.create_task(eng.serve(poll_interval=0.5))
        lat: list[float] = []
        recorded: list[float] = []
        try:
            for i in range(sequential):
                t = time.perf_counter()
                await eng.inbox.answer(f"s{i}:0", {"approve": i % 2 == 0, "amount": i},
                                       by=f"clerk{i % 7}")
                recorded.append(time.perf_counter() - t)
                await _poll(lambda i=i: _done(eng, f"s{i}"), 0.0002)  # type: ignore[misc]
                lat.append(time.perf_counter() - t)
            t0 = time.perf_counter()
            for i in range(sequential, n):
                await eng.inbox.answer(f"s{i}:0", {"approve": i % 2 == 0, "amount": i},
                                       by=f"clerk{i % 7}")
            answered_s = time.perf_counter() - t0
            await _poll(lambda: _all_done(eng, n + 1), 0.01)
            burst_s = time.perf_counter() - t0
        finally:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server
        wrong = 0
        for i in range(n):
            res = await eng.result(f"s{i}")
            wrong += res.output != [i, i % 2 == 0, i, f"clerk{i % 7}"]
        lat.sort()
        emit(answer_recorded_ms_p50=statistics.median(recorded) * 1000 if recorded else None,
             phase="answered", waiting_after_restart=waiting.get("waiting", 0),
             open_tasks_after_restart=len(tasks), rss_after_restart_kb=rss_restart,
             answer_to_completed_ms_p50=statistics.median(lat) * 1000 if lat else None,
             answer_to_completed_ms_p99=lat[int(0.99 * (len(lat) - 1))] * 1000 if lat
             else None, burst_answers=n - sequential, burst_answer_s=answered_s,
             burst_all_completed_s=burst_s, wrong_outputs=wrong,
             completed=(await eng.store.counts()).get("completed", 0) - 1)


def child(mode: str, db: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, "--child", mode, "--db", str(db),
                             *args], stdout=subprocess.PIPE, text=True)


def main(n: int, sequential: int) -> dict[str, object]:
    d = Path(tempfile.mkdtemp(prefix="convoy-humans-"))
    db = d / "h.db"
    proc = child("park", db, "--sessions", str(n))
    assert proc.stdout is not None
    parked = json.loads(proc.stdout.readline())
    time.sleep(1.0)  # serving, every session parked
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc = child("answer", db, "--sessions", str(n), "--sequential", str(sequential))
    out, _ = proc.communicate(timeout=3600)
    answered = json.loads(out.strip().splitlines()[-1])
    return {
        "bench": "humans", "sessions": n,
        "idle_engine_rss_mb": round(parked["idle_rss_kb"] / 1024, 1),
        "rss_above_idle_mb": round((parked["parked_rss_kb"] - parked["idle_rss_kb"]) / 1024,
                                   2),
        "rss_kb_per_parked_session": round(
            (parked["parked_rss_kb"] - parked["idle_rss_kb"]) / n, 2),
        "park_wall_s": round(parked["park_wall_s"], 2),
        "runtime_objects_left": parked["runtime_objects_left"],
        "sigkilled_while_waiting": True,
        "waiting_after_restart": answered["waiting_after_restart"],
        "open_tasks_after_restart": answered["open_tasks_after_restart"],
        "restarted_engine_rss_mb": round(answered["rss_after_restart_kb"] / 1024, 1),
        "answer_recorded_ms_p50": round(answered["answer_recorded_ms_p50"], 2),
        "answer_to_completed_ms_p50": round(answered["answer_to_completed_ms_p50"], 2),
        "answer_to_completed_ms_p99": round(answered["answer_to_completed_ms_p99"], 2),
        "sequential_answers": sequential,
        "burst_answers": answered["burst_answers"],
        "burst_answer_s": round(answered["burst_answer_s"], 2),
        "burst_all_completed_s": round(answered["burst_all_completed_s"], 2),
        "completed": answered["completed"], "wrong_outputs": answered["wrong_outputs"],
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--sequential", type=int, default=200)
    p.add_argument("--child", choices=["park", "answer"])
    p.add_argument("--db", type=Path)
    a = p.parse_args()
    if a.child == "park":
        asyncio.run(park(a.db, a.sessions))
    elif a.child == "answer":
        asyncio.run(answer(a.db, a.sessions, a.sequential))
    else:
        print(json.dumps(main(a.sessions, min(a.sequential, a.sessions))))
