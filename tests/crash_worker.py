"""A process the crash tests SIGKILL: runs (or resumes) N sessions of a workflow with model
latency, a write tool honouring idempotency keys, and call logs that survive the kill.

usage: python crash_worker.py run|resume DIR N

``CRASH_IDEMPOTENT=0`` declares the write tool not idempotent: a write whose outcome a kill
left unknown must then be escalated, never run again.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import convoy

DIR = Path(sys.argv[2])
CONCURRENCY = 20


class Verdict(BaseModel):
    label: str
    score: float


def _log(name: str, line: str) -> None:
    fd = os.open(DIR / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class CountingSim(convoy.SimModel):
    async def request(self, request: convoy.ModelRequest) -> convoy.ModelResponse:
        _log("model_calls.log", f"{request.session_id} {request.step_key}")
        return await super().request(request)


def script(req: convoy.ModelRequest) -> Any:
    rng = SIM.rng(req)
    if req.agent == "writer" and not any(m.role == "tool" for m in req.messages):
        return {"tool_calls": [{"name": "record", "arguments": {
            "note": f"{req.session_id}", "amount": rng.randint(1, 100)}}]}
    return {"output": {"label": f"{req.agent}-{rng.randint(0, 9)}", "score": rng.random()}}


SIM = CountingSim(script, seed=11, latency=convoy.Latency(kind="uniform", low=0.005, high=0.03))


IDEMPOTENT = os.environ.get("CRASH_IDEMPOTENT", "1") == "1"


@convoy.tool(writes=True, idempotent=IDEMPOTENT)
def record(ctx: convoy.ToolContext, note: str, amount: int) -> str:
    """Apply a write to the effects database, at most once per idempotency key."""
    _log("tool_calls.log", ctx.idempotency_key)
    with sqlite3.connect(DIR / "effects.db", timeout=30) as c:
        c.execute("CREATE TABLE IF NOT EXISTS applied(key TEXT PRIMARY KEY, note TEXT, "
                  "amount INT)")
        c.execute("INSERT OR IGNORE INTO applied VALUES(?,?,?)",
                  (ctx.idempotency_key, note, amount))
    return f"recorded {amount}"


first = convoy.Agent(name="first", output_type=Verdict, model=SIM)
writer = convoy.Agent(name="writer", input_type=Verdict, output_type=Verdict, model=SIM,
                      tools=[record])
last = convoy.Agent(name="last", input_type=Verdict, output_type=Verdict, model=SIM)


@convoy.workflow(name="crash_worker:flow")
async def flow(ctx: convoy.Context, text: str) -> Verdict:
    out: Verdict = await convoy.pipeline(ctx, [first, writer, last], text)
    return out


async def main() -> None:
    mode, n = sys.argv[1], int(sys.argv[3])
    async with convoy.Engine(DIR / "convoy.db", concurrency=CONCURRENCY,
                             workflows=[flow]) as engine:
        if mode == "run":
            await engine.run_many(flow, [f"ticket {i}" for i in range(n)],
                                  ids=[f"s{i}" for i in range(n)])
        else:
            await engine.resume()


if __name__ == "__main__":
    asyncio.run(main())
