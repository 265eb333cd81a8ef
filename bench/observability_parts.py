"""Instructions per W1 step by observability part (issue 11): run one engine for N
sessions, to be counted by ``valgrind --tool=callgrind`` (the instructions of N=300 minus
those of N=100, over 1,000 steps, are one step's: a busy host does not move them).

    valgrind --tool=callgrind --callgrind-out-file=cg.out \\
        .venv/bin/python bench/observability_parts.py NAME 300

With ``--bytecodes`` it counts instead the Python bytecodes each function executes over
the N sessions (``sys.settrace`` opcode events: exact and repeatable, blind to C code
such as SQLite's and hashlib's) and prints the bytecodes per step and the functions that
execute the most, as JSON; two names' outputs side by side say where one's per-step cost
goes (``--top K`` functions; default 25):

    .venv/bin/python bench/observability_parts.py NAME 200 --bytecodes

NAME: ``bare``; ``noopam`` (an interceptor whose agent and model hooks only pass the call
on: what two hooks per step cost by themselves); ``trace_none`` (tracing that keeps no span:
its hooks and spans, no export); ``tracing`` (to the store: spans derived when read);
``metrics``; ``tm`` (tracing and metrics); ``audit``; ``tma`` (all three);
``tracing_live`` and ``tma_live`` (the same with spans recorded live, ``live=True``). The
workload is bench/resilience_overhead.py's W1
(5 agents, a zero-latency model, SQLite journal), as bench/observability.py runs it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import CodeType
from typing import Any

from resilience_overhead import AGENTS, timed

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
    "tracing_live": lambda: observe(Tracing(["store"], live=True)),
    "tma_live": lambda: [*observe(Tracing(["store"], live=True), Metrics()),
                         AuditInterceptor()],
}


async def main(which: str, sessions: int,
               chains: dict[str, Callable[[], list[convoy.Interceptor]]] = CHAINS,
               count: collections.Counter[str] | None = None) -> None:
    """Run ``sessions`` W1 sessions (after 20 to warm up) on an engine with the chain
    ``chains[which]`` (bench/onepass_floor.py passes its own chains); ``count``: count
    the bytecodes of the timed sessions into it, by function."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = convoy.Engine(Path(tmp) / "x.db", interceptors=chains[which](),
                               concurrency=1000)
        await engine.open()
        await timed(engine, "warm", 20)
        if count is not None:
            tracer = _opcodes(count)
            threading.settrace(tracer)  # (the store's threads run Python too)
            sys.settrace(tracer)
        try:
            await timed(engine, "run", sessions)
        finally:
            sys.settrace(None)
            threading.settrace(None)  # type: ignore[arg-type, unused-ignore]
        await engine.aclose()


def _opcodes(count: collections.Counter[str]) -> Any:
    """A ``sys.settrace`` function counting the opcodes each function executes."""
    def name(code: CodeType) -> str:
        f = code.co_filename
        return (f.split("/convoy/")[-1] if "/convoy/" in f else f.rsplit("/", 1)[-1]) + \
            ":" + code.co_name

    def trace(frame: Any, event: str, arg: Any) -> Any:
        if event == "call":
            frame.f_trace_opcodes = True
        elif event == "opcode":
            count[name(frame.f_code)] += 1
        return trace

    return trace


if __name__ == "__main__":
    args = sys.argv[1:]
    bytecodes = "--bytecodes" in args
    top = 25
    if "--top" in args:
        i = args.index("--top")
        top = int(args[i + 1]) if i + 1 < len(args) and args[i + 1].isdigit() else -1
        del args[i:i + 2]
    args = [a for a in args if a != "--bytecodes"]
    if len(args) != 2 or args[0] not in CHAINS or not args[1].isdigit() or \
            int(args[1]) < 1 or top < 0:
        raise SystemExit(f"usage: observability_parts.py {'|'.join(CHAINS)} SESSIONS "
                         "[--bytecodes [--top K]]")
    counted: collections.Counter[str] | None = collections.Counter() if bytecodes else None
    asyncio.run(main(args[0], int(args[1]), count=counted))
    if counted is not None:
        steps = int(args[1]) * AGENTS  # W1: one model step per agent
        print(json.dumps({"chain": args[0], "sessions": int(args[1]),
                          "bytecodes_per_step": round(sum(counted.values()) / steps, 1),
                          "top": {k: round(v / steps, 1)
                                  for k, v in counted.most_common(top)}}))
