"""Where does Convoy spend its time per step? cProfile + commit-latency breakdown.

    .venv/bin/python bench/profile_convoy.py --workload W1 --sessions 2000 [--top 15]

Runs the same sessions as `convoy_peer.py` (same engine, durability, fake model), after
20 warm-up sessions, sequentially for W1/W3 or all at once for W2, under cProfile; prints
the top functions by tottime and by cumtime, and the distribution of the SQLite journal
commit (`SQLiteStore._write_batch`) durations measured on the side (one commit is the
event loop blocked on SQLite: a WAL append, or a WAL auto-checkpoint with fsyncs), and the
time spent in the cyclic GC (`gc.callbacks`). `--no-cprofile` measures commits and GC
without the profiler's overhead, e.g. for W2 --sessions 10000.
Nothing in src/ is changed; the wrapper only times the store's own method.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import pstats
import shutil
import sys
import time
from pathlib import Path

from convoy._stats import percentile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convoy_peer as cp

common = cp.common


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="W1", choices=["W1", "W2", "W3"])
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--out", help="write the raw profile here (pstats file)")
    ap.add_argument("--no-cprofile", action="store_true", help="only commit and GC timings")
    a = ap.parse_args()
    sess = cp.supervisor_session if a.workload == "W3" else cp.chain_session
    common._state["latency"] = common.W2_LATENCY_S if a.workload == "W2" else 0.0

    store = cp.engine.store
    commit_s: list[float] = []
    orig = store._write_batch

    def timed_batch(batch):
        t = time.perf_counter()
        try:
            return orig(batch)
        finally:
            commit_s.append(time.perf_counter() - t)

    store._write_batch = timed_batch  # instance attribute: only this process, only timing

    gcs = {"on": False, "t0": 0.0, "s": [0.0, 0.0, 0.0], "n": [0, 0, 0]}

    def gc_cb(phase, info):
        if not gcs["on"]:
            return
        if phase == "start":
            gcs["t0"] = time.perf_counter()
        else:
            g = info["generation"]
            gcs["s"][g] += time.perf_counter() - gcs["t0"]
            gcs["n"][g] += 1

    gc.callbacks.append(gc_cb)

    async def run() -> tuple[float, int]:
        if a.workload == "W2":
            await asyncio.gather(*(sess(i) for i in range(a.warmup)))
        else:
            for i in range(a.warmup):
                await sess(i)
        gc.collect()
        commit_s.clear()
        c0 = store.commits
        prof = cProfile.Profile()
        gcs["on"] = True
        t0 = time.perf_counter()
        if not a.no_cprofile:
            prof.enable()
        if a.workload == "W2":
            await asyncio.gather(*(sess(i) for i in range(a.sessions)))
        else:
            for i in range(a.sessions):
                await sess(i)
        prof.disable()
        wall = time.perf_counter() - t0
        gcs["on"] = False
        if a.no_cprofile:
            return wall, store.commits - c0
        if a.out:
            prof.dump_stats(a.out)
        for key in ("tottime", "cumulative"):
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(a.top)
            text = buf.getvalue()
            print(f"===== sorted by {key} =====")
            print(text[text.find("   ncalls"):].rstrip() + "\n")
        return wall, store.commits - c0

    try:
        wall, commits = asyncio.run(run())
    finally:
        shutil.rmtree(cp._DB_DIR, ignore_errors=True)
    steps = a.sessions * common.STEPS[a.workload]
    xs = sorted(commit_s)
    tot = sum(xs)
    slow = [x for x in xs if x > 1e-3]
    label = "wall" if a.no_cprofile else "wall under cProfile"
    print(f"{label}: {wall:.3f} s = {wall / steps * 1e6:.1f} µs/step "
          f"({a.sessions} sessions, {steps} model steps)")
    if xs:
        def pct(p: float) -> float:
            return percentile(xs, p) * 1e6

        print(f"journal commits: {commits} ({commits / a.sessions:.2f} / session), total "
              f"{tot:.3f} s = {tot / wall:.0%} of wall; per commit p50 {pct(50):.0f} µs, "
              f"p99 {pct(99):.0f} µs, max {xs[-1] * 1e6:.0f} µs; {len(slow)} commits > 1 ms "
              f"took {sum(slow):.3f} s ({sum(slow) / wall:.0%} of wall)")
    g = sum(gcs["s"])
    print(f"cyclic GC: {g:.3f} s = {g / wall:.0%} of wall; collections per generation "
          f"{gcs['n']}, seconds per generation {[round(x, 3) for x in gcs['s']]}")


if __name__ == "__main__":
    main()
