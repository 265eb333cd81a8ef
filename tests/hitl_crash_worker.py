"""A process the human-in-the-loop crash tests SIGKILL.

usage: python hitl_crash_worker.py start DIR N   # N sessions that ask a person, then exit
       python hitl_crash_worker.py pay DIR       # one session whose tool needs approval
       python hitl_crash_worker.py serve DIR     # run sessions as answers wake them

With DIR/kill-in-tool present, the approved tool SIGKILLs its own process the first time
it runs (a crash in the middle of an approved call).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from pydantic import BaseModel

import convoy

DIR = Path(sys.argv[2])


class Answer(BaseModel):
    ok: bool
    amount: int


@convoy.workflow(name="hitl_crash:ask")
async def ask(ctx: convoy.Context, i: int) -> list[object]:
    got = await ctx.ask_human(f"Question {i}?", Answer, queue="q")
    return [i, got.value.ok, got.value.amount, got.by]


@convoy.tool(writes=True, idempotent=True, requires_approval=True)
def transfer(account: str, cents: int) -> str:
    """Move money (records every attempt)."""
    with open(DIR / "attempts", "a") as f:
        f.write(f"{account} {cents}\n")
    armed = DIR / "kill-in-tool"
    if armed.exists():
        armed.unlink()
        os.kill(os.getpid(), signal.SIGKILL)
    return f"moved {cents}"


clerk = convoy.Agent(name="clerk", tools=[transfer], model=convoy.SimModel({"clerk": [
    {"tool_calls": [{"name": "transfer", "arguments": {"account": "a-9", "cents": 4200}}]},
    lambda req: {"text": req.messages[-1].content or ""}]}))


@convoy.workflow(name="hitl_crash:pay")
async def pay(ctx: convoy.Context, text: str) -> str:
    return await ctx.run(clerk, text)


async def main() -> None:
    async with convoy.Engine(DIR / "convoy.db", workflows=[ask, pay],
                             lease_seconds=2.0) as engine:
        if sys.argv[1] == "start":
            n = int(sys.argv[3])
            await engine.run_many(ask, list(range(n)), ids=[f"s{i}" for i in range(n)])
        elif sys.argv[1] == "pay":
            await engine.run(pay, "pay a-9", session_id="p")
        else:
            (DIR / "serving").write_text(str(os.getpid()))
            await engine.serve(poll_interval=0.05)


if __name__ == "__main__":
    asyncio.run(main())
