"""Instructions per W1 step by observability part (issue 11): run one engine for N
sessions, to be counted by ``valgrind --tool=callgrind`` (the instructions of N=300 minus
those of N=100, over 1,000 steps, are one step's: a busy host does not move them).

    valgrind --tool=callgrind --callgrind-out-file=cg.out \\
        .venv/bin/python bench/observability_parts.py NAME 300

NAME: ``bare``; ``noopam`` (an interceptor whose agent and model hooks only pass the call
on: what two hooks per step cost by themselves); ``trace_none`` (tracing that keeps no span:
its hooks and spans, no export); ``tracing`` (to the store); ``metrics``; ``tm`` (tracing and
metrics); ``audit``; ``tma`` (all three). The workload is bench/resilience_overhead.py's W1
(5 agents, a zero-latency model, SQLite journal), as bench/observability.py runs it.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from resilience_overhead import timed

import convoy
from convoy.audit import AuditInterceptor
from convoy.observability import Metrics, Tracing, observe


class NoopAM(convoy.Interceptor):
    """Agent and model hooks that only pass the call on."""

    async def agent_run(self, input: Any, next: Any) -> Any:
        return await next(input)

    async def model_call(self, input: Any, next: Any) -> Any:
        return await next(input)


CHAINS: dict[str, Callable[[], list[convoy.Interceptor]]] = {
    "bare": list,
    "noopam": lambda: [NoopAM()],
    "trace_none": lambda: observe(Tracing([])),
    "tracing": lambda: observe(Tracing(["store"])),
    "metrics": lambda: observe(metrics=Metrics()),
    "tm": lambda: observe(Tracing(["store"]), Metrics()),
    "audit": lambda: [AuditInterceptor()],
    "tma": lambda: [*observe(Tracing(["store"]), Metrics()), AuditInterceptor()],
}


async def main(which: str, sessions: int,
               chains: dict[str, Callable[[], list[convoy.Interceptor]]] = CHAINS) -> None:
    """Run ``sessions`` W1 sessions (after 20 to warm up) on an engine with the chain
    ``chains[which]`` (bench/onepass_floor.py passes its own chains)."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = convoy.Engine(Path(tmp) / "x.db", interceptors=chains[which](),
                               concurrency=1000)
        await engine.open()
        await timed(engine, "warm", 20)
        await timed(engine, "run", sessions)
        await engine.aclose()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in CHAINS or not sys.argv[2].isdigit():
        raise SystemExit(f"usage: observability_parts.py {'|'.join(CHAINS)} SESSIONS")
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
