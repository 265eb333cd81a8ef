"""Where tracing's cost per W1 step goes: throw-away variants of ``Tracing(["store"])``
(CPU time, sessions run one after another, engines alternating, medians).

    .venv/bin/python bench/out/20261202-s18/tracing_parts.py [NAMES] [RUNS]

``nowrite``: the span chunks are made and never written; ``nochunk``: no chunk is made
(the run's spans are dropped when it ends). Not a test: it patches private methods.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from resilience_overhead import CLOCKS, timed

import convoy
from convoy.audit import AuditInterceptor
from convoy.observability import Metrics, Tracing, observe


def _variant(name: str) -> list[convoy.Interceptor]:
    t = Tracing(["store"])
    if name == "nowrite":
        t._write = lambda items, wait: None  # type: ignore[method-assign]
    elif name == "nochunk":
        t._batch = lambda run: setattr(run, "spans", [])  # type: ignore[method-assign]
    return observe(t)


async def main(names: list[str], runs: int) -> None:
    tick = CLOCKS["cpu"]
    with tempfile.TemporaryDirectory() as tmp:
        chains: dict[str, Any] = {
            "bare": [], "tracing": _variant("tracing"), "nowrite": _variant("nowrite"),
            "nochunk": _variant("nochunk"),
            "all": [*observe(Tracing(["store"]), Metrics()), AuditInterceptor()]}
        engines = {n: convoy.Engine(Path(tmp) / f"{n}.db", interceptors=chains[n],
                                    concurrency=1000) for n in names}
        samples: dict[str, list[float]] = {n: [] for n in engines}
        for e in engines.values():
            await e.open()
        for n, e in engines.items():
            await timed(e, f"warm-{n}", 50, tick)
        for r in range(runs):
            for n, e in engines.items():
                samples[n].append(await timed(e, f"{n}-{r}", 300, tick))
        for e in engines.values():
            await e.aclose()
    med = {n: statistics.median(v) for n, v in samples.items()}
    print({n: round(v, 1) for n, v in med.items()},
          {n: round(100 * (v / med["bare"] - 1), 1) for n, v in med.items()})


if __name__ == "__main__":
    asyncio.run(main((sys.argv[1] if len(sys.argv) > 1 else "bare,tracing,nowrite,nochunk")
                     .split(","), int(sys.argv[2]) if len(sys.argv) > 2 else 7))
