"""Passing ships, measured: writers racing on shared keys, with the state API and naively.

    .venv/bin/python bench/state_race.py                       # N = 10, 100, 1000, one process
    .venv/bin/python bench/state_race.py --writers 1000 --processes 4
    .venv/bin/python bench/state_race.py --db postgresql://USER@HOST/DB --processes 4 --kill-at 0.3

Each writer is a durable session. It applies ``--ops`` operations to 10 shared keys
(5 counters it increments, 5 lists it appends its tag to), and between reading a key and
writing it back it sleeps a random time (up to ``--delay-ms``, a journaled timer), so
writers of the same key overlap. Three workflows do the same work one after the other, in
the same run and on the same store:

* ``state``: ``ctx.state("race:...").get`` then ``.set(..., expected_version=...)``; on
  a :class:`~convoy.StateConflict` it reads again, sleeps again and retries.
* ``update``: the pause, then ``ctx.state("race:...").update(key, fn)``, which re-reads
  and re-applies on a conflict after a randomised backoff.
* ``naive``: read and write the interceptor key-value store (``Store.kv_get`` /
  ``kv_put``) in journaled ``ctx.step`` effects: a plain read-modify-write.

The check reads every key afterwards: a counter must equal the increments applied to it,
a list must hold every tag appended to it exactly once. What falls short is a lost update.

It also measures the cost of one compare-and-set write on the store itself: uncontended
(one writer, sequential) and with ``--cas-writers`` (1,000) tasks incrementing one key at
once; and a journaled ``ctx.state(...).set`` step in a session, uncontended.

``--processes P`` runs the writers in P engine processes on the same store (real
processes: ``multiprocessing`` with ``spawn``), and the checks run in this one;
``--kill-at F`` SIGKILLs the first of them once a fraction F of its sessions completed,
and an engine in this process takes its sessions over. ``--db`` is any store URL
(:func:`convoy.stores.store_from_url`); a PostgreSQL URL without ``?schema=`` gets a fresh
schema of its own (printed), so runs never meet each other's keys. Results: one JSON line
per measurement, then a summary table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import convoy
from convoy.stores import NewSession, StateWrite, Store, is_postgres_url, store_from_url

KEYS = 10
NS = "race"


class Op(BaseModel):
    key: str
    delay: float  # seconds between the read and the write


class Job(BaseModel):
    tag: str
    ops: list[Op]


def make_jobs(writers: int, ops: int, delay_ms: float, seed: int, run: str) -> list[Job]:
    rng = random.Random(seed)
    return [Job(tag=f"{run}-w{i}", ops=[
        Op(key=f"{'counter' if rng.random() < 0.5 else 'list'}{rng.randrange(KEYS // 2)}",
           delay=rng.random() * delay_ms / 1000) for _ in range(ops)])
        for i in range(writers)]


def apply(key: str, value: Any, tag: str) -> Any:
    if key.startswith("counter"):
        return (value or 0) + 1
    return [*(value or []), tag]


def store_for(db: str) -> Store:
    """The (unopened) store at ``db``: a SQLite path or any store URL."""
    return store_from_url(db)


def fresh_place(db: str | None) -> str:
    """Where this run keeps its store: a new temporary SQLite file, or a PostgreSQL URL
    with a schema of its own (a new one, unless the URL names one)."""
    if db is None:
        return str(Path(tempfile.mkdtemp(prefix="convoy-race-")) / "race.db")
    if is_postgres_url(db) and "schema=" not in db:
        db += ("&" if "?" in db else "?") + f"schema=race_{uuid.uuid4().hex[:8]}"
    return db


# -- the two workflows ---------------------------------------------------------------------


@convoy.workflow(name="bench.state_race.state")
async def cas_writer(ctx: convoy.Context, job: Job) -> int:
    """Read, wait, compare-and-set; on a conflict read again (and wait again)."""
    race = ctx.state(f"{NS}:{job.tag.split('-')[0]}")
    for op in job.ops:
        while True:
            cur = await race.get(op.key)
            await ctx.sleep(op.delay)
            try:
                await race.set(op.key, apply(op.key, cur.value, job.tag),
                               expected_version=cur.version)
                break
            except convoy.StateConflict:
                continue  # counted by engine.state_stats
    return 0


@convoy.workflow(name="bench.state_race.update")
async def update_writer(ctx: convoy.Context, job: Job) -> int:
    """The same operations through ``update`` (re-read and re-apply on a conflict, with a
    randomised backoff), after the same random pause."""
    race = ctx.state(f"{NS}:{job.tag.split('-')[0]}")
    for op in job.ops:
        await ctx.sleep(op.delay)

        def change(value: Any, key: str = op.key) -> Any:
            return apply(key, value, job.tag)

        await race.update(op.key, change, attempts=1_000_000)  # the check counts losses
    return 0


def naive_writer(store: Store) -> convoy.Workflow[Job, int]:
    @convoy.workflow(name="bench.state_race.naive")
    async def naive(ctx: convoy.Context, job: Job) -> int:
        """Read, wait, write back: the last writer wins, whatever it read."""
        space = f"{NS}:{job.tag.split('-')[0]}"
        for op in job.ops:
            async def read(key: str = op.key) -> Any:
                text = await store.kv_get(space, key)
                return None if text is None else json.loads(text)

            value = await ctx.step("read", read, idempotent=True)
            await ctx.sleep(op.delay)
            text = json.dumps(apply(op.key, value, job.tag))

            async def write(key: str = op.key, text: str = text) -> None:
                await store.kv_put(space, key, text)

            # Writing the same value again is harmless: retried after a crash.
            await ctx.step("write", write, idempotent=True)
        return 0

    return naive


# -- running writers -----------------------------------------------------------------------


def _workflow(kind: str, store: Store) -> convoy.Workflow[Job, int]:
    if kind == "state":
        return cas_writer
    return update_writer if kind == "update" else naive_writer(store)


def _engine(store: Store, writers: int) -> convoy.Engine:
    return convoy.Engine(store, concurrency=max(1, writers),
                         limits=convoy.Limits(max_steps=1_000_000, max_seconds=None))


def ids_of(jobs: list[Job]) -> list[str]:
    return [job.tag for job in jobs]


async def run_writers(db: str, jobs: list[Job], kind: str) -> dict[str, Any]:
    store = store_for(db)
    async with _engine(store, len(jobs)) as eng:
        wf = _workflow(kind, store)
        t0 = time.perf_counter()
        results = await eng.run_many(wf, jobs, ids=ids_of(jobs))
        wall = time.perf_counter() - t0
        conflicts = eng.state_stats.conflicts
    failed = [r for r in results if not r.ok]
    if failed:
        raise SystemExit(f"error: {len(failed)} {kind} writers failed, e.g. {failed[0].error}")
    return {"wall_s": wall, "conflicts": conflicts}


def _child(db: str, jobs: list[dict[str, Any]], kind: str, out: Any) -> None:
    out.put(asyncio.run(run_writers(db, [Job.model_validate(j) for j in jobs], kind)))


def run_processes(db: str, jobs: list[Job], kind: str, processes: int,
                  kill_at: float | None = None) -> dict[str, Any]:
    """The writers split over ``processes`` engine processes on the same store. With
    ``kill_at``, the first process is SIGKILLed once that fraction of its sessions has
    completed, and once the others are done an engine here takes its sessions over
    (``resume``)."""
    asyncio.run(create(db, jobs, kind))  # durable before any process runs (or is killed)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    shares = [jobs[i::processes] for i in range(processes)]
    t0 = time.perf_counter()
    procs = [ctx.Process(target=_child, args=(db, [j.model_dump() for j in share], kind, out))
             for share in shares]
    for p in procs:
        p.start()
    killed = 0
    if kill_at is not None:
        asyncio.run(until_done(db, ids_of(shares[0]), kill_at, procs[0]))
        if procs[0].exitcode is None:
            procs[0].kill()
            procs[0].join()
            killed = 1
    got = [out.get() for _ in procs[killed:]]
    for p in procs[killed:]:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"error: a {kind} writer process exited with {p.exitcode}")
    taken_over, more = asyncio.run(take_over(db, kind)) if killed else (0, 0)
    return {"wall_s": time.perf_counter() - t0, "killed": killed, "taken_over": taken_over,
            "conflicts": sum(g["conflicts"] for g in got) + more}


async def until_done(db: str, ids: list[str], fraction: float, proc: Any) -> None:
    """Wait until ``fraction`` of these sessions completed (or ``proc`` ended)."""
    store = store_for(db)
    await store.open()
    try:
        while proc.exitcode is None:
            rows = await store.get_sessions(ids)
            if sum(r.status == "completed" for r in rows.values()) >= fraction * len(ids):
                return
            await asyncio.sleep(0.01)
    finally:
        await store.aclose()


async def create(db: str, jobs: list[Job], kind: str) -> None:
    """Create the writers' sessions, pending, for the processes to claim."""
    store = store_for(db)
    wf = _workflow(kind, store)
    await store.open()
    try:
        await store.create_sessions([NewSession(
            id=job.tag, workflow=wf.name, version=wf.version, tenant="default",
            input=job.model_dump_json()) for job in jobs])
    finally:
        await store.aclose()


async def take_over(db: str, kind: str) -> tuple[int, int]:
    """Resume the sessions of a killed engine: how many ran here, and their conflicts."""
    store = store_for(db)
    wf = _workflow(kind, store)
    async with _engine(store, 1000) as eng:
        eng.register(wf)
        results = await eng.resume()
        conflicts = eng.state_stats.conflicts
    failed = [r for r in results if not r.ok]
    if failed:
        raise SystemExit(f"error: {len(failed)} resumed writers failed: {failed[0].error}")
    return len(results), conflicts


async def lost_updates(db: str, jobs: list[Job], kind: str) -> dict[str, int]:
    """Compare every key with what the writers applied: lost (and duplicated) updates."""
    intended: Counter[str] = Counter()
    tags: dict[str, Counter[str]] = {}
    for job in jobs:
        for op in job.ops:
            intended[op.key] += 1
            if op.key.startswith("list"):
                tags.setdefault(op.key, Counter())[job.tag] += 1
    store = store_for(db)
    await store.open()
    run = jobs[0].tag.split("-")[0]
    lost = dup = 0
    try:
        for key, n in intended.items():
            if kind != "naive":
                entry = await store.state_get("default", f"{NS}:{run}", key)
                value = None if entry is None else json.loads(entry.value)
            else:
                text = await store.kv_get(f"{NS}:{run}", key)
                value = None if text is None else json.loads(text)
            if key.startswith("counter"):
                lost += n - int(value or 0)
            else:
                seen = Counter(v for v in value or [] if v.startswith(run + "-"))
                lost += sum(max(0, c - seen[t]) for t, c in tags[key].items())
                dup += sum(max(0, c - tags[key][t]) for t, c in seen.items())
    finally:
        await store.aclose()
    return {"updates": sum(intended.values()), "lost": lost, "duplicated": dup}


# -- cost of one compare-and-set write -------------------------------------------------------


async def cas_cost(db: str, writes: int, writers: int) -> dict[str, Any]:
    store = store_for(db)
    await store.open()
    try:
        lat: list[float] = []
        for version in range(writes):  # uncontended: one writer, on the version it read
            t = time.perf_counter()
            res = await store.state_put(StateWrite(tenant="default", namespace="cost",
                                                   key="solo", value=str(version),
                                                   expected_version=version))
            lat.append(time.perf_counter() - t)
            assert res.written

        # Contended: each writer lands one increment on one of the KEYS keys, reading,
        # yielding to the others, then writing; on a conflict it reads again.
        attempts = 0
        put_s = 0.0

        async def writer(i: int) -> None:
            nonlocal attempts, put_s
            key = f"hot{i % KEYS}"
            while True:
                e = await store.state_get("default", "cost", key)
                v = e.version if e is not None else 0
                await asyncio.sleep(0)  # let the others in between the read and the write
                attempts += 1
                t = time.perf_counter()
                res = await store.state_put(StateWrite(
                    tenant="default", namespace="cost", key=key, value=str(v + 1),
                    expected_version=v))
                put_s += time.perf_counter() - t
                if res.written:
                    return

        t0 = time.perf_counter()
        await asyncio.gather(*(writer(i) for i in range(writers)))
        wall = time.perf_counter() - t0
        landed = 0
        for k in range(KEYS):
            e = await store.state_get("default", "cost", f"hot{k}")
            landed += e.version if e is not None else 0
        assert landed == writers  # none lost
    finally:
        await store.aclose()
    return {"uncontended_us_p50": statistics.median(lat) * 1e6,
            "uncontended_us_mean": statistics.fmean(lat) * 1e6,
            "contended_writers": writers,
            "contended_us_per_attempt": put_s / attempts * 1e6,  # waits for the pool too
            "contended_us_wall_per_attempt": wall / attempts * 1e6,
            "contended_us_per_write": wall / writers * 1e6,
            "contended_attempts_per_write": attempts / writers}


async def session_set_cost(db: str, writes: int) -> float:
    """µs per journaled ``ctx.state(...).set`` in one session (uncontended)."""

    @convoy.workflow(name="bench.state_race.setter")
    async def setter(ctx: convoy.Context, n: int) -> float:
        s = ctx.state("cost")
        version = 0
        t = time.perf_counter()
        for i in range(n):
            version = (await s.set("journaled", i, expected_version=version)).version
        return (time.perf_counter() - t) / n

    async with _engine(store_for(db), 1) as eng:
        res = await eng.run(setter, writes)
    return float(res.output or 0) * 1e6


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", help="store: a SQLite path (default: a fresh temporary file) "
                               "or a postgresql:// URL")
    p.add_argument("--writers", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--ops", type=int, default=2, help="operations per writer")
    p.add_argument("--delay-ms", type=float, default=5.0,
                   help="most time between a writer's read and its write")
    p.add_argument("--processes", type=int, default=1, help="engine processes")
    p.add_argument("--kill-at", type=float, default=None, metavar="FRACTION",
                   help="with --processes: SIGKILL the first process of each run once this "
                        "fraction of its sessions completed; an engine takes its sessions "
                        "over once the others are done")
    p.add_argument("--cas-writes", type=int, default=5000,
                   help="sequential writes of the uncontended measurement")
    p.add_argument("--cas-writers", type=int, default=1000,
                   help="writers of the contended measurement (one landed write each)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    db = fresh_place(args.db)
    shown = store_for(db).url  # without a password
    print(f"store: {shown}", file=sys.stderr, flush=True)
    rows = []
    for n in args.writers:
        for kind in ("state", "update", "naive"):
            run = f"{kind}{n}"
            jobs = make_jobs(n, args.ops, args.delay_ms, args.seed + n, run)
            if args.processes > 1:
                timing = run_processes(db, jobs, kind, args.processes, args.kill_at)
            else:
                timing = asyncio.run(run_writers(db, jobs, kind))
            row = {"writers": n, "kind": kind, "processes": args.processes,
                   **timing, **asyncio.run(lost_updates(db, jobs, kind))}
            print(json.dumps(row), flush=True)
            rows.append(row)
    cost = asyncio.run(cas_cost(db, args.cas_writes, args.cas_writers))
    cost["session_set_us"] = asyncio.run(session_set_cost(db, 2000))
    print(json.dumps(cost), flush=True)
    killed = [r for r in rows if r.get("killed")]
    print(f"\nstore {shown}, {args.processes} process(es), {args.ops} ops per writer, delays "
          f"up to {args.delay_ms} ms" + (
              f"; in {len(killed)} runs a process SIGKILLed once {args.kill_at:.0%} of its "
              f"sessions completed, {sum(r['taken_over'] for r in killed)} sessions taken "
              "over"
              if killed else ""))
    print("| writers | updates | get + set: lost / conflicts retried (wall s) | update: lost "
          "/ conflicts (wall s) | naive: lost (wall s) |")
    print("|---:|---:|---:|---:|---:|")
    for n in args.writers:
        s = next(r for r in rows if r["writers"] == n and r["kind"] == "state")
        u = next(r for r in rows if r["writers"] == n and r["kind"] == "update")
        v = next(r for r in rows if r["writers"] == n and r["kind"] == "naive")
        print(f"| {n:,} | {s['updates']:,} | {s['lost']} / {s['conflicts']:,} "
              f"({s['wall_s']:.2f}) | {u['lost']} / {u['conflicts']:,} ({u['wall_s']:.2f}) | "
              f"{v['lost']:,} = {v['lost'] / v['updates']:.0%} ({v['wall_s']:.2f}) |")
    print(f"\nCAS write on the store: {cost['uncontended_us_p50']:.0f} µs uncontended (p50); "
          f"with {cost['contended_writers']:,} writers on {KEYS} keys "
          f"{cost['contended_us_per_attempt']:.0f} µs per attempt "
          f"({cost['contended_us_wall_per_attempt']:.0f} µs of wall time), "
          f"{cost['contended_attempts_per_write']:.1f} attempts and "
          f"{cost['contended_us_per_write']:.0f} µs of wall time per landed write; "
          f"a journaled ctx.state().set in a session: {cost['session_set_us']:.0f} µs")


if __name__ == "__main__":
    main()
