"""Where does Convoy spend its time per step? cProfile + commit-latency breakdown.

    .venv/bin/python bench/profile_convoy.py --workload W1 --sessions 2000 [--top 15]

Runs the same sessions as `convoy_peer.py` (same engine, durability, fake model), after
20 warm-up sessions, sequentially for W1/W3 or all at once for W2, under cProfile; prints
the top functions by tottime and by cumtime, and the distribution of the SQLite journal
commit (`SQLiteStore._write_batch`) durations measured on the side (one commit is the
event loop blocked on SQLite: a WAL append, or a WAL auto-checkpoint with fsyncs).
Nothing in src/ is changed; the wrapper only times the store's own method.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

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

    async def run() -> tuple[float, int]:
        if a.workload == "W2":
            await asyncio.gather(*(sess(i) for i in range(a.warmup)))
        else:
            for i in range(a.warmup):
                await sess(i)
        commit_s.clear()
        c0 = store.commits
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        if a.workload == "W2":
            await asyncio.gather(*(sess(i) for i in range(a.sessions)))
        else:
            for i in range(a.sessions):
                await sess(i)
        prof.disable()
        wall = time.perf_counter() - t0
        if a.out:
            prof.dump_stats(a.out)
        for key in ("tottime", "cumulative"):
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(a.top)
            text = buf.getvalue()
            print(f"===== sorted by {key} =====")
            print(text[text.find("   ncalls"):].rstrip() + "\n")
        return wall, store.commits - c0

    wall, commits = asyncio.run(run())
    steps = a.sessions * common.STEPS[a.workload]
    xs = sorted(commit_s)
    tot = sum(xs)
    slow = [x for x in xs if x > 1e-3]
    print(f"wall under cProfile: {wall:.3f} s = {wall / steps * 1e6:.1f} µs/step "
          f"({a.sessions} sessions, {steps} model steps)")
    if xs:
        pct = lambda p: xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1e6  # noqa: E731
        print(f"journal commits: {commits} ({commits / a.sessions:.2f} / session), total "
              f"{tot:.3f} s = {tot / wall:.0%} of wall; per commit p50 {pct(50):.0f} µs, "
              f"p99 {pct(99):.0f} µs, max {xs[-1] * 1e6:.0f} µs; {len(slow)} commits > 1 ms "
              f"took {sum(slow):.3f} s ({sum(slow) / wall:.0%} of wall)")


if __name__ == "__main__":
    main()
