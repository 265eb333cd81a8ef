"""A live-traced session for tests/test_trace_killed.py: agent ``a1`` answers, agent
``a2`` calls the tool ``slow``, which blocks until ``RELEASE`` names a file that exists
(the test SIGKILLs the process while it blocks). Run as ``python trace_killed_app.py DB``."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from pydantic import BaseModel

import convoy
from convoy.observability import Tracing, observe


class Ticket(BaseModel):
    text: str


class Answer(BaseModel):
    action: str


@convoy.tool
def slow(query: str) -> str:
    """A lookup that waits for the test."""
    release = os.environ.get("RELEASE")
    while release is None or not Path(release).exists():
        time.sleep(0.01)  # (a child process the test kills: no test waits on this)
    return "done"


sim = convoy.SimModel({
    "a1": [{"output": {"action": "first"}}],
    "a2": [{"tool_calls": [{"name": "slow", "arguments": {"query": "q"}}]},
           {"output": {"action": "second"}}],
})
a1 = convoy.Agent(name="a1", input_type=Ticket, output_type=Answer, model=sim)
a2 = convoy.Agent(name="a2", input_type=Ticket, output_type=Answer, tools=[slow], model=sim)


@convoy.workflow(name="trace.killed")
async def killed(ctx: convoy.Context, t: Ticket) -> Answer:
    r = await ctx.run(a1, t)
    out: Answer = await ctx.run(a2, Ticket(text=r.action))
    return out


def chain() -> list[convoy.Interceptor]:
    return observe(Tracing(["store"], live=True))


async def main(db: str) -> None:
    async with convoy.Engine(db, interceptors=chain()) as engine:
        await engine.run(killed, {"text": "x"}, session_id="k-1")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
