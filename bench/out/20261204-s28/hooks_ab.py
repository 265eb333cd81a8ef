"""What switching on the engine's hook paths costs per W1 step, A/B in one process
(stop 38): engines that differ only by one interceptor, timed in alternating rounds by
``user_sys.py``'s loop (user + system CPU), paired medians against bare.

    .venv/bin/python bench/out/20261204-s28/hooks_ab.py bare,sess,jtap,rtap,both,metrics 1000 31

- sess:    a session hook that only calls ``next`` (the session path switched on);
- jtap:    the same, adding a journal tap that is a list's ``append`` (C: no Python per
           record beyond the executor's call);
- rtap:    the same, adding a run tap that is a list's ``append`` (the agent loop's tapped
           path: the run's key and times, an ``AgentRunEnded`` per agent run);
- both:    both taps (what metrics kept from the journal would cost at least);
- metrics: ``observe(metrics=Metrics())``; audit: ``AuditInterceptor()``.

The taps' lists are emptied as sessions end (kept, they would grow the collector's work).
"""
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "20261204-s27"))
from user_sys import rounds

import convoy
from convoy.audit import AuditInterceptor
from convoy.interceptors._base import Interceptor
from convoy.observability import Metrics, observe


class Taps(Interceptor):
    """A session hook adding the taps named (``"journal"``, ``"run"``), each a list's
    ``append``."""

    stage = "trace"

    def __init__(self, *taps: str) -> None:
        self.taps = taps
        self.journal: list[Any] = []
        self.runs: list[Any] = []

    async def session_run(self, input: Any, next: Any) -> Any:
        if "journal" in self.taps:
            input.journal_taps.append(self.journal.append)
        if "run" in self.taps:
            input.run_taps.append(self.runs.append)
        end = await next(input)
        self.journal.clear()
        self.runs.clear()
        return end


CHAINS = {"bare": list, "sess": lambda: [Taps()], "jtap": lambda: [Taps("journal")],
          "rtap": lambda: [Taps("run")], "both": lambda: [Taps("journal", "run")],
          "metrics": lambda: observe(metrics=Metrics()), "audit": lambda: [AuditInterceptor()]}


async def main(names: list[str], sessions: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        es = {n: convoy.Engine(Path(tmp) / f"{n}.db", interceptors=CHAINS[n](),
                               concurrency=1000) for n in names}
        for e in es.values():
            await e.open()
        out = await rounds(es, sessions, runs)
        for e in es.values():
            await e.aclose()
    bare = [u + s for u, s in zip(out["bare"]["u"], out["bare"]["s"], strict=True)]
    print(f"# {' '.join(sys.argv[1:])}: µs per W1 step (user + system CPU), median of "
          f"{runs} rounds; paired: the median of each round's ratio to bare's")
    for n, d in out.items():
        t = [u + s for u, s in zip(d["u"], d["s"], strict=True)]
        paired = statistics.median(x / b for x, b in zip(t, bare, strict=True)) - 1
        print(f"{n:8s} {statistics.median(t):7.1f} µs  paired {100 * paired:+5.1f}%")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3])))
