"""What the limits engines share cost per model call, on the SQLite or PostgreSQL store.

    .venv/bin/python bench/store_limits.py [--calls 20000] [--rounds 5]
    .venv/bin/python bench/store_limits.py --db postgresql://USER@HOST/DB

One store (a SQLite file, durability "process"; or with `--db` a fresh schema
`limits_<random>` of that PostgreSQL database), one caller, calls one after another, as a
W1-like session makes them. Per simulated call:

* `journal_append`: one awaited journal append (what every step already pays: reference);
* `reserve_settle`: a budget reservation (`Store.reserve`, awaited: it commits before the
  call may start) and its settlement (`Store.settle`, not awaited: it rides the next batch,
  here the next reservation's);
* `reserve_settle_append`: the two above with the journal append, as a step with a shared
  budget makes them (the settlement rides the append's batch);
* `take_give`: a rate-limit take (awaited) and the tokens-per-minute adjustment (not);
* `cache_miss`: a cache lookup that misses (`Store.cache_get`, a read) and the journal
  append; the answers are put 50 at a time (not awaited), as `ResponseCache` batches them.

Rounds alternate the kinds; prints the median µs per call of each as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from convoy.stores import Hold, NewSession, Spend, StepRecord, is_postgres_url, store_from_url

OWNER = "bench"


async def main_async(calls: int, rounds: int, url: str | None) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="convoy-limits-") as tmp:
        db = str(Path(tmp) / "limits.db") if url is None else \
            url + ("&" if "?" in url else "?") + f"schema=limits_{uuid.uuid4().hex[:8]}"
        store = store_from_url(db)
        await store.open()
        await store.create_sessions([NewSession(id="s", workflow="w", version="1", tenant="t",
                                                input="{}")], owner=OWNER, lease_s=1e9)
        n = 0

        def record() -> StepRecord:
            return StepRecord(key=str(n), kind="model", target="a", status="completed",
                              result='{"text":"ok"}', input_tokens=50, output_tokens=10)

        async def append() -> None:
            await store.append("s", OWNER, record())

        hold = [Hold(scope="budget:tenant:t:day", unit="usd", amount=0.01, limit=1e12)]
        spent = [Spend(scope="budget:tenant:t:day", unit="usd", amount=0.001)]

        async def reserve_settle() -> None:
            await store.reserve(str(n), OWNER, hold, lease_s=30)
            store.settle(str(n), spent)

        async def reserve_settle_append() -> None:
            await store.reserve(str(n), OWNER, hold, lease_s=30)
            store.settle(str(n), spent)
            await store.append("s", OWNER, record())

        async def take_give() -> None:
            await store.take("rate:tpm:m", 300, rate=1e9, capacity=1e12)
            store.give("rate:tpm:m", 240, rate=1e9, capacity=1e12)

        async def cache_miss() -> None:
            await store.cache_get("t", f"k{n}")
            if n % 50 == 0:
                for k in range(n - 50, n):
                    store.cache_put("t", f"k{k}", '{"v":1,"response":{"text":"ok"}}',
                                    ttl=3600)
            await store.append("s", OWNER, record())

        kinds: dict[str, Callable[[], Awaitable[None]]] = {
            "journal_append": append, "reserve_settle": reserve_settle,
            "reserve_settle_append": reserve_settle_append, "take_give": take_give,
            "cache_miss": cache_miss}
        samples: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(rounds):
            for name, op in kinds.items():
                t0 = time.perf_counter()
                for _ in range(calls):
                    n += 1
                    await op()
                samples[name].append((time.perf_counter() - t0) / calls * 1e6)
        await store.aclose()
    med = {k: round(statistics.median(v), 1) for k, v in samples.items()}
    return {"store": "sqlite" if url is None else "postgres", "calls_per_round": calls,
            "rounds": rounds, "us_per_call": med,
            "us_reserve_added_to_a_step": round(med["reserve_settle_append"]
                                                - med["journal_append"], 1),
            "samples": {k: [round(x, 1) for x in v] for k, v in samples.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--db", default=None, metavar="URL",
                    help="a postgresql:// database (a fresh schema); default: a SQLite file")
    a = ap.parse_args()
    if a.calls < 1 or a.rounds < 1:
        ap.error("--calls and --rounds must be >= 1")
    if a.db is not None and not is_postgres_url(a.db):
        ap.error("--db takes a postgresql:// URL (SQLite is the default)")
    print(json.dumps(asyncio.run(main_async(a.calls, a.rounds, a.db))))


if __name__ == "__main__":
    main()
