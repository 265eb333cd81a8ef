"""A process the shared-state crash test SIGKILLs: N sessions each add one to a shared
counter ROUNDS times (random pauses between) and append their id to a shared list, all
through ``ctx.state(...).update``: compare-and-set writes racing on three keys.

usage: python state_crash_worker.py run|resume STORE N  (STORE: a SQLite path or a URL)
"""

from __future__ import annotations

import asyncio
import sys

import convoy

STORE = sys.argv[2]
N = int(sys.argv[3])
ROUNDS = 3


@convoy.workflow(name="state_crash_worker:bump")
async def bump(ctx: convoy.Context, i: int) -> int:
    race = ctx.state("race")
    for _ in range(ROUNDS):
        await ctx.sleep(await ctx.random() * 0.01)
        # N attempts always suffice: each failed one means another writer's write landed.
        await race.update(f"counter{i % 2}", lambda n: n + 1, default=0, attempts=N * ROUNDS)
    done = await race.update("log", lambda ids: [*ids, ctx.session_id], default=[],
                             attempts=N)
    return done.version


async def main() -> None:
    async with convoy.Engine(STORE, concurrency=50, workflows=[bump]) as engine:
        if sys.argv[1] == "run":
            await engine.run_many(bump, list(range(N)), ids=[f"s{i}" for i in range(N)])
        else:
            await engine.resume()


if __name__ == "__main__":
    asyncio.run(main())
