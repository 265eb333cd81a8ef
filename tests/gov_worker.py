"""An engine process with governance on, for tests/test_governance_procs.py: the audit
interceptor, live tracing to the embedded store, metrics, and a master key (data subjects'
sessions sealed). It serves the store's sessions until none is left runnable (an engine
among several sharing one store, SIGKILLed by the test).

usage: python gov_worker.py DIR

``GOV_DB``: the store; ``GOV_CLOCK``: a file holding the time every process reads (the test
moves it); ``GOV_HOST``: the host name in the engine's owner id; ``GOV_LEASE``: its lease in
seconds; ``GOV_GATE``: a file whose creation it waits for once open (``DIR/ready-PID`` says
it is); ``CONVOY_MASTER_KEY``: the master key. Each tool call logs ``WHO SESSION`` to
``DIR/tool_calls.log`` (ids only: no personal data in any file but the store's).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import convoy
import convoy.stores
from convoy.audit import AuditInterceptor
from convoy.observability import Metrics, Tracing, observe

DIR = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")
PERSON = "Ingrid Quellenberg-Saxby"
IBAN = "DE89370400440532013000"
OTHER_IBAN = "FR7630006000011234567890189"


class Customer(BaseModel):
    name: str


class Reply(BaseModel):
    text: str


def _log(line: str) -> None:
    fd = os.open(DIR / "tool_calls.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@convoy.tool
async def lookup(ctx: convoy.ToolContext, name: str) -> dict[str, str]:
    """The customer's bank account."""
    _log(f"{os.environ.get('GOV_WHO', '')} {ctx.session_id}")
    return {"name": name, "iban": IBAN if name == PERSON else OTHER_IBAN}


def script(req: convoy.ModelRequest) -> Any:
    tools = [m for m in req.messages if m.role == "tool"]
    if not tools:
        name = PERSON if PERSON in (req.messages[-1].content or "") else "someone"
        return {"tool_calls": [{"name": "lookup", "arguments": {"name": name}}]}
    return {"output": {"text": f"paid from {tools[-1].content}"}}


clerk = convoy.Agent(name="clerk", input_type=Customer, output_type=Reply,
                     model=convoy.SimModel(script, seed=3, latency=convoy.Latency(
                         kind="uniform", low=0.005, high=0.03)), tools=[lookup])


@convoy.workflow(name="gov.serve")
async def serve(ctx: convoy.Context, c: Customer) -> str:
    first = await ctx.run(clerk, c)
    again = await ctx.run(clerk, c)
    return first.text + " / " + again.text


def wait_for_gate(gate: Path) -> None:
    """Say this engine is open, then wait until the test opens the gate."""
    (DIR / f"ready-{os.getpid()}").touch()
    while not gate.exists():
        time.sleep(0.01)  # (a child the test releases: no test waits on this)


def shared_clock() -> float:
    return float(Path(os.environ["GOV_CLOCK"]).read_text())


def interceptors() -> list[convoy.Interceptor]:
    return [*observe(Tracing(["store"], live=True), Metrics()), AuditInterceptor()]


async def main() -> None:
    store = convoy.stores.store_from_url(os.environ["GOV_DB"], clock=shared_clock)
    async with convoy.Engine(store, concurrency=10, workflows=[serve],
                             lease_seconds=float(os.environ.get("GOV_LEASE", "30")),
                             interceptors=interceptors(),
                             master_key=convoy.MasterKey.from_env()) as engine:
        engine.owner = f"{os.environ['GOV_HOST']}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        await asyncio.to_thread(wait_for_gate, Path(os.environ["GOV_GATE"]))
        await engine.serve(until_idle=True, poll_interval=0.05)


if __name__ == "__main__":
    asyncio.run(main())
