"""What journaling each step's agent configuration hash costs (issue 11, item 9).

    .venv/bin/python bench/config_hash.py --steps 20000 --rounds 7

Appends the same model-step records through a SQLite store with ``StepRecord.config`` set to
the agent's 16-hex-digit ``Agent.config_id`` (what the agent loop journals), to the full
64-digit ``Agent.config_hash`` (for comparison), and to ``None``, in alternating rounds in
one process, one awaited append at a time, timed by process CPU time (the store's
checkpoint thread included). Reports the median µs per append of each and the differences
to ``None``. The hash is computed once per agent definition, not per step. One JSON line.
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

FULL = "038041b98100e15eb1b64530c5af56ae6d8fc9d86088a5c62ebd3e3b494b579b"
VARIANTS = {"none": None, "id16": FULL[:16], "full64": FULL}


async def _round(store: SQLiteStore, sid: str, config: str | None, steps: int,
                 start: int) -> float:
    t = time.process_time()
    for i in range(start, start + steps):
        await store.append(sid, "me", StepRecord(
            key=str(i), kind="model", target="a", status="completed", result='{"x":1}',
            input_hash="deadbeef", input_tokens=50, output_tokens=10, config=config))
    return (time.process_time() - t) / steps * 1e6


async def main(steps: int, rounds: int) -> dict[str, object]:
    d = Path(tempfile.mkdtemp(prefix="convoy-config-"))
    store = SQLiteStore(d / "c.db")
    await store.open()
    for sid in VARIANTS:
        store.create_session(NewSession(id=sid, workflow="w", version="1", tenant="t",
                                        input="1"), owner="me", lease_s=3600)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    n = 0
    for _ in range(rounds):
        for name, config in VARIANTS.items():
            times[name].append(await _round(store, name, config, steps, n))
        n += steps
    await store.aclose()
    med = {name: statistics.median(t) for name, t in times.items()}
    return {"bench": "config_hash", "steps": steps, "rounds": rounds,
            **{f"us_per_append_{k}": round(v, 2) for k, v in med.items()},
            "us_id16_minus_none": round(med["id16"] - med["none"], 2),
            "us_full64_minus_none": round(med["full64"] - med["none"], 2)}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    print(json.dumps(asyncio.run(main(args.steps, args.rounds))))
