"""What journaling each step's agent configuration hash costs (issue 11, item 9).

    .venv/bin/python bench/config_hash.py --steps 20000 --rounds 7

Appends the same model-step records through a SQLite store, with the agent's 64-hex-digit
configuration hash (``StepRecord.config``, what the agent loop now journals) and without
(``None``), in alternating rounds in one process, one awaited append at a time, timed by
process CPU time (the store's checkpoint thread included). Reports the median µs per append
of each and their difference. The hash itself is computed once per agent definition, not
per step: ``Agent.config_hash`` is a plain attribute. One JSON line.
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

CONFIG = "038041b98100e15eb1b64530c5af56ae6d8fc9d86088a5c62ebd3e3b494b579b"


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
    for sid in ("with", "without"):
        store.create_session(NewSession(id=sid, workflow="w", version="1", tenant="t",
                                        input="1"), owner="me", lease_s=3600)
    with_hash: list[float] = []
    without: list[float] = []
    n = 0
    for _ in range(rounds):
        without.append(await _round(store, "without", None, steps, n))
        with_hash.append(await _round(store, "with", CONFIG, steps, n))
        n += steps
    await store.aclose()
    a, b = statistics.median(with_hash), statistics.median(without)
    return {"bench": "config_hash", "steps": steps, "rounds": rounds,
            "us_per_append_with_hash": round(a, 2), "us_per_append_without": round(b, 2),
            "us_difference": round(a - b, 2)}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    print(json.dumps(asyncio.run(main(args.steps, args.rounds))))
