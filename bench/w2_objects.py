"""What each in-flight W2 session keeps alive for the cyclic garbage collector.

    .venv/bin/python bench/w2_objects.py [--sessions 2000] [--top 40] [--burst 10000]

Park: the W2 chain of ``convoy_peer.py`` (journaling on, SQLite file store), after a
warm-up burst, with ``--sessions`` sessions launched at once; every fake model call waits
exactly as ``asyncio.sleep`` does (a future, a timer handle, one coroutine frame) but is
released by this script, so all sessions stay parked in their first model call while the
heap is counted. Printed: GC-tracked objects per parked session (``gc.get_objects()`` at
the peak minus before the burst, after a full collection each time), by type, with the
module and function of each coroutine / function and the owner (the one new object that
refers to it) of each new dict, list, tuple and cell.

Burst (``--burst N``, 0 to skip): then a real W2 burst of N sessions (50 ms per model
call), timing every collection with ``gc.callbacks``: count and seconds per generation,
and the tracked objects after the last full collection of the burst.
Nothing in src/ is changed.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import sys
import time
import types
from pathlib import Path
from typing import Any

_ap = argparse.ArgumentParser()
_ap.add_argument("--sessions", type=int, default=2000)
_ap.add_argument("--top", type=int, default=40)
_ap.add_argument("--burst", type=int, default=10_000)
ARGS = _ap.parse_args()
# convoy_peer sizes the engine's admission from --sessions: every session runs at once
sys.argv = [sys.argv[0], "--sessions", str(max(ARGS.sessions, ARGS.burst) + 50)]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import convoy_peer as cp  # noqa: E402

common = cp.common


def _where(code: types.CodeType) -> str:
    f = code.co_filename
    f = f.split("/src/")[-1] if "/src/" in f else f.rsplit("/", 1)[-1]
    return f"{f}:{code.co_qualname}"


def _label(o: object) -> str:
    """Type of ``o``, with the code location of coroutines, frames and functions."""
    if isinstance(o, types.CoroutineType):
        return f"coroutine {_where(o.cr_code)}"
    if isinstance(o, types.FunctionType):
        return f"function {_where(o.__code__)}"
    if isinstance(o, types.FrameType):
        return f"frame {_where(o.f_code)}"
    if isinstance(o, types.MethodType):
        return f"bound method {getattr(o.__func__, '__qualname__', '?')}"
    t = type(o)
    if t.__module__ == "builtins":
        if t.__name__ == "builtin_function_or_method":
            return f"builtin method {getattr(o, '__qualname__', '?')}"
        return t.__name__
    return f"{t.__module__}.{t.__qualname__}"


def _owned(o: object, owner: dict[int, object]) -> str:
    """Containers get their owner's label (one level up) to say where they come from."""
    label = _label(o)
    if type(o) in (dict, list, tuple, set, types.CellType):
        parent = owner.get(id(o))
        if parent is not None:
            return f"{label}  <- {_label(parent)}"
    return label


async def park(n: int, top: int) -> None:
    loop = asyncio.get_running_loop()
    release: list[asyncio.Future[None]] = []
    all_parked = asyncio.Event()
    parking = True

    async def fake_model_call() -> None:
        # asyncio.sleep's own shape: a future, a call_later handle, one frame
        common._state["calls"] += 1
        if not parking:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = loop.create_future()
        h = loop.call_later(3600, fut.set_result, None)
        release.append(fut)
        if len(release) == n:
            all_parked.set()
        try:
            await fut
        finally:
            h.cancel()

    cp.fake_model_call = fake_model_call  # type: ignore[assignment]  # the FakeModel's global
    parking = False
    await asyncio.gather(*(cp.chain_session(i) for i in range(50)))
    parking = True
    gc.collect()
    before = gc.get_objects()
    before_ids = {id(o) for o in before}
    tasks = [asyncio.ensure_future(cp.chain_session(10_000 + i)) for i in range(n)]
    await all_parked.wait()
    gc.collect()
    peak = gc.get_objects()
    new = [o for o in peak if id(o) not in before_ids and o is not before and o is not release
           and o is not tasks]
    owner: dict[int, object] = {}
    for o in new:
        for r in gc.get_referents(o):
            owner.setdefault(id(r), o)
    by: collections.Counter[str] = collections.Counter(_owned(o, owner) for o in new)
    by_type: collections.Counter[str] = collections.Counter(type(o).__name__ for o in new)
    print(f"parked sessions: {n}; GC-tracked objects per session: {len(new) / n:.2f}"
          f" (heap {len(before)} -> {len(peak)})")
    print("\nby type:")
    for k, c in by_type.most_common():
        print(f"  {c / n:7.2f}  {k}")
    print(f"\nby type and origin (top {top}):")
    for k, c in by.most_common(top):
        print(f"  {c / n:7.2f}  {k}")
    del before, before_ids, peak, new, owner
    parking = False
    for f in release:
        if not f.done():
            f.set_result(None)
    await asyncio.gather(*tasks)
    common._state["calls"] = 0
    cp.fake_model_call = common.fake_model_call


async def burst(n: int) -> None:
    common._state["latency"] = common.W2_LATENCY_S
    gc.collect()
    stats = {"t0": 0.0, "s": [0.0, 0.0, 0.0], "n": [0, 0, 0]}

    def cb(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            stats["t0"] = time.perf_counter()
        else:
            g = info["generation"]
            stats["s"][g] += time.perf_counter() - stats["t0"]  # type: ignore[index,operator]
            stats["n"][g] += 1  # type: ignore[index]

    heap0 = len(gc.get_objects())
    gc.callbacks.append(cb)
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(cp.chain_session(20_000 + i) for i in range(n)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    gc.callbacks.remove(cb)
    print(f"\nW2 burst of {n}: wall {wall:.2f} s, CPU {cpu:.2f} s "
          f"({cpu / n * 1e6:.0f} µs/session); heap before {heap0} objects")
    for g in range(3):
        print(f"  gen {g}: {stats['n'][g]} collections, {stats['s'][g]:.3f} s")  # type: ignore[index]


async def main() -> None:
    a = ARGS
    async with cp.engine:
        await park(a.sessions, a.top)
        if a.burst:
            await burst(a.burst)


if __name__ == "__main__":
    asyncio.run(main())
