"""What a parked session costs, and how fast a signal wakes it.

    .venv/bin/python bench/waits.py --parked 10000 --signals 500

1. Parks ``--parked`` sessions (each waits for a signal with ``ctx.wait_for``), then
   measures the engine process's resident memory per parked session (RSS after minus RSS
   before, both after a GC, divided by the count) and checks that no per-session runtime
   object is left in memory.
2. With ``engine.serve()`` running, sends ``--signals`` signals one at a time and measures
   the time from ``engine.signal(...)`` returning to the session's completion being
   committed (median and p99), in the same process.

Results are printed as one JSON line. Real SQLite file store, durability "process".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import convoy


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@convoy.workflow(name="bench.approval")
async def approval(ctx: convoy.Context, n: int) -> int:
    ok = await ctx.wait_for("approve", bool)
    return n if ok else -n


async def main(parked: int, signals: int) -> dict[str, object]:
    d = Path(tempfile.mkdtemp(prefix="convoy-waits-"))
    done: dict[str, float] = {}
    async with convoy.Engine(d / "w.db", workflows=[approval], concurrency=1000) as eng:
        await eng.run_many(approval, [0])  # warm up imports, the store, the first commit
        gc.collect()
        before = rss_kb()
        t0 = time.perf_counter()
        results = await eng.run_many(approval, list(range(parked)))
        park_s = time.perf_counter() - t0
        assert all(r.status == "waiting" for r in results)
        del results
        gc.collect()
        after = rss_kb()
        leftovers = sum(1 for o in gc.get_objects()
                        if type(o).__name__ in ("SessionState", "JournaledExecutor")
                        and str(type(o).__module__).startswith("convoy"))
        ids = [r.id for r in await eng.store.list_sessions(
            convoy.stores.SessionFilter(status="waiting", limit=signals))]

        latencies: list[float] = []
        server = asyncio.create_task(eng.serve(poll_interval=0.5))
        try:
            for sid in ids:
                t = time.perf_counter()
                await eng.signal(sid, "approve", True)
                while True:
                    row = await eng.store.get_session(sid)
                    if row is not None and row.status == "completed":
                        break
                    await asyncio.sleep(0.0005)
                latencies.append(time.perf_counter() - t)
        finally:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server
        done["n"] = len(latencies)
    latencies.sort()
    return {
        "bench": "waits", "parked": parked, "park_wall_s": round(park_s, 3),
        "rss_kb_per_parked_session": round((after - before) / parked, 3),
        "rss_mb_total_parked": round((after - before) / 1024, 2),
        "runtime_objects_left": leftovers,
        "signals": len(latencies),
        "signal_to_completed_ms_p50": round(statistics.median(latencies) * 1000, 3),
        "signal_to_completed_ms_p99": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000,
                                            3),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parked", type=int, default=10_000)
    p.add_argument("--signals", type=int, default=500)
    a = p.parse_args()
    print(json.dumps(asyncio.run(main(a.parked, a.signals))))
    sys.exit(0)
