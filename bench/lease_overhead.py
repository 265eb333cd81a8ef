"""What session ownership costs per step: fenced journal writes and lease renewals.

    .venv/bin/python bench/lease_overhead.py --steps 50000 --rounds 5

Appends the same journal records through the store, fenced (the row lands only while the
writer owns the session: what the engine does) and unfenced (``owner=None``), in
alternating rounds in one process, one awaited append at a time (the worst case for group
commit: no batching). Reports the median µs per append of each and their difference: the
ownership check's cost per step. Also times one lease renewal covering 1,000 running
sessions (the engine renews every ``lease_seconds / 3``), amortised per step at the W1
step rate. One JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from convoy.stores import NewSession, SQLiteStore, StepRecord


async def _round(store: SQLiteStore, owner: str | None, sid: str, steps: int,
                 start: int) -> float:
    t = time.perf_counter()
    for i in range(start, start + steps):
        await store.append(sid, owner, StepRecord(key=str(i), kind="model", target="a",
                                                  status="completed", result='{"x":1}',
                                                  input_hash="deadbeef", agent="a",
                                                  input_tokens=50, output_tokens=10))
    return (time.perf_counter() - t) / steps * 1e6


async def main(steps: int, rounds: int) -> dict[str, object]:
    d = Path(tempfile.mkdtemp(prefix="convoy-lease-"))
    store = SQLiteStore(d / "l.db")
    await store.open()
    store.create_session(NewSession(id="s", workflow="w", version="1", tenant="t", input="1"),
                         owner="me", lease_s=3600)
    await store.create_sessions([NewSession(id=f"r{i}", workflow="w", version="1",
                                            tenant="t", input="1") for i in range(1000)],
                                owner="me", lease_s=3600)
    fenced, unfenced = [], []
    n = 0
    for _ in range(rounds):
        fenced.append(await _round(store, "me", "s", steps, n))
        n += steps
        unfenced.append(await _round(store, None, "s", steps, n))
        n += steps
    renewals = []
    for _ in range(20):
        t = time.perf_counter()
        await store.renew("me", 3600)
        renewals.append(time.perf_counter() - t)
    await store.aclose()
    f, u = statistics.median(fenced), statistics.median(unfenced)
    renew_s = statistics.median(renewals)
    # At the W1 rate (~50 µs per step, one session at a time) an engine takes
    # lease_seconds/3 = 10 s / 50 µs = 200,000 steps between renewals.
    return {"bench": "lease_overhead", "steps_per_round": steps, "rounds": rounds,
            "fenced_append_us": round(f, 2), "unfenced_append_us": round(u, 2),
            "fencing_us_per_step": round(f - u, 2),
            "renew_1000_sessions_ms": round(renew_s * 1000, 3),
            "renew_us_per_step_at_w1_rate": round(renew_s * 1e6 / 200_000, 4)}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    print(json.dumps(asyncio.run(main(a.steps, a.rounds))))
