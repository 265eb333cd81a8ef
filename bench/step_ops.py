"""Python bytecodes per W1 step: the bare engine against an observed one (issue 11).

    PYTHONPATH=src .venv/bin/python bench/step_ops.py [metrics|tracing|tracing_metrics|
        audit|tracing_metrics_audit|agent_hook|model_hook] [--sessions 200] [--top 30]

Counts the opcode events of ``sys.settrace`` (every Python bytecode the engine's thread
runs; C code counts nothing) over ``--sessions`` W1 sessions (bench/resilience_overhead.py:
5 agents in sequence, a fake model with zero latency, journaling on), after 30 sessions of
warm-up, per agent step, for the bare engine and for the chain named. A busy host does
not move the figure, so a change to a hook can be measured even while timing is noise;
the time itself comes from bench/observability.py. Prints the totals, the difference by
file and the functions that differ most (bytecodes and calls per step).

``agent_hook`` and ``model_hook``: an interceptor whose agent-run (model-call) hook only
passes the input on: what the engine's side of that hook costs before any observability
code runs.

Bytecodes are a proxy that undercounts what C does for them: a call, a coroutine, an
object made. On 2026-12-01 the pass-through agent hook was 155 bytecodes but ~19-27k
machine instructions per step (+8-11%), while the metrics' own 40 fewer bytecodes saved
~0.5k. Confirm a change in instructions: ``valgrind --tool=callgrind`` around
``bench/observability.py --runs 1 --only NAME``, ``--sessions 300`` minus ``100``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from resilience_overhead import AGENTS, w1

import convoy
from convoy.audit import AuditInterceptor
from convoy.observability import Metrics, Tracing, observe


class AgentHook(convoy.Interceptor):
    async def agent_run(self, input: Any, next: Any) -> Any:
        return await next(input)


class ModelHook(convoy.Interceptor):
    async def model_call(self, input: Any, next: Any) -> Any:
        return await next(input)


CHAINS: dict[str, Callable[[], list[convoy.Interceptor]]] = {
    "metrics": lambda: observe(metrics=Metrics()),
    "tracing": lambda: observe(Tracing(["store"])),
    "tracing_metrics": lambda: observe(Tracing(["store"]), Metrics()),
    "audit": lambda: [AuditInterceptor()],
    "tracing_metrics_audit": lambda: [*observe(Tracing(["store"]), Metrics()),
                                      AuditInterceptor()],
    "agent_hook": lambda: [AgentHook()],
    "model_hook": lambda: [ModelHook()],
}
Counts = collections.Counter[str]


def _name(code: CodeType) -> str:
    f = code.co_filename
    short = f.split("/convoy/")[-1] if "/convoy/" in f else f.rsplit("/", 1)[-1]
    return f"{short}:{code.co_name}"


async def count(chain: list[convoy.Interceptor], sessions: int) -> tuple[Counts, Counts]:
    """Bytecodes and calls per agent step, by function."""
    ops: Counts = collections.Counter()
    calls: Counts = collections.Counter()

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "call":
            frame.f_trace_opcodes = True
            calls[_name(frame.f_code)] += 1
        elif event == "opcode":
            ops[_name(frame.f_code)] += 1
        return trace

    with tempfile.TemporaryDirectory(prefix="convoy-step-ops-") as tmp:
        async with convoy.Engine(Path(tmp) / "x.db", interceptors=chain,
                                 concurrency=1000) as eng:
            for i in range(30):
                await eng.run(w1, f"ticket w{i}: my invoice is wrong")
            sys.settrace(trace)
            try:
                for i in range(sessions):
                    await eng.run(w1, f"ticket t{i}: my invoice is wrong")
            finally:
                sys.settrace(None)
    steps = sessions * AGENTS
    return (collections.Counter({k: v / steps for k, v in ops.items()}),
            collections.Counter({k: v / steps for k, v in calls.items()}))


async def main_async(which: str, sessions: int, top: int) -> None:
    bare, bare_calls = await count([], sessions)
    ops, op_calls = await count(CHAINS[which](), sessions)
    b, o = sum(bare.values()), sum(ops.values())
    print(f"bytecodes per W1 step: bare {b:.0f}, {which} {o:.0f}, added {o - b:.0f} "
          f"({100 * (o - b) / b:+.1f}%)")
    diff = collections.Counter(ops)
    diff.subtract(bare)
    by_file: Counts = collections.Counter()
    for k, v in diff.items():
        by_file[k.split(":")[0]] += v
    for k, v in by_file.most_common(8):
        print(f"  {v:8.1f}  {k}")
    print("  bytecodes  calls  function")
    for k, v in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:top]:
        print(f"  {v:8.1f} {op_calls.get(k, 0) - bare_calls.get(k, 0):6.2f}  {k}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("chain", nargs="?", default="metrics", choices=sorted(CHAINS))
    ap.add_argument("--sessions", type=int, default=200, help="sessions counted")
    ap.add_argument("--top", type=int, default=30, help="functions listed")
    args = ap.parse_args()
    asyncio.run(main_async(args.chain, args.sessions, args.top))


if __name__ == "__main__":
    main()
