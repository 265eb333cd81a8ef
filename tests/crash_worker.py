"""A process the crash tests SIGKILL: runs (or resumes) N sessions of a workflow with model
latency, a write tool honouring idempotency keys, and call logs that survive the kill.

usage: python crash_worker.py run|resume|submit|serve DIR N

``submit`` creates N sessions for any engine to run; ``serve`` runs sessions as they become
runnable until none is left (an engine among several sharing one store).

``CRASH_IDEMPOTENT=0`` declares the write tool not idempotent: a write whose outcome a kill
left unknown must then be escalated, never run again. ``CRASH_DB`` is the store (default
``DIR/convoy.db``); ``CRASH_CLOCK`` a file holding the time every process reads (a clock the
test moves); ``CRASH_HOST`` the host name in the engine's owner id (an engine "on another
machine", whose death is seen only when its leases expire); ``CRASH_LEASE`` its lease in
seconds; ``CRASH_WHO`` a name logged with each write (``who.log``); ``CRASH_GATE`` a file
whose creation ``serve`` waits for once its engine is open (``DIR/ready-PID`` says it is);
``CRASH_AUDIT=1`` audits every step (:class:`convoy.audit.AuditInterceptor`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import convoy
import convoy.stores

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
    _log("who.log", f"{os.environ.get('CRASH_WHO', '')} {ctx.session_id}")
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


def shared_clock() -> float:
    """The time in the ``CRASH_CLOCK`` file (written by the test, read by every process)."""
    return float(Path(os.environ["CRASH_CLOCK"]).read_text())


def wait_for_gate(gate: Path) -> None:
    """Say this engine is open, then wait until the test opens the gate."""
    (DIR / f"ready-{os.getpid()}").touch()
    while not gate.exists():
        time.sleep(0.01)


async def main() -> None:
    mode, n = sys.argv[1], int(sys.argv[3])
    db = os.environ.get("CRASH_DB") or DIR / "convoy.db"
    store = convoy.stores.store_from_url(
        db, clock=shared_clock if os.environ.get("CRASH_CLOCK") else time.time)
    interceptors: list[convoy.Interceptor] = []
    if os.environ.get("CRASH_AUDIT") == "1":
        from convoy.audit import AuditInterceptor

        interceptors.append(AuditInterceptor())
    async with convoy.Engine(store, concurrency=CONCURRENCY, workflows=[flow],
                             lease_seconds=float(os.environ.get("CRASH_LEASE", "30")),
                             interceptors=interceptors) as engine:
        if os.environ.get("CRASH_HOST"):
            engine.owner = f"{os.environ['CRASH_HOST']}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        if mode == "run":
            await engine.run_many(flow, [f"ticket {i}" for i in range(n)],
                                  ids=[f"s{i}" for i in range(n)])
        elif mode == "submit":
            await engine.store.create_sessions([convoy.stores.NewSession(
                id=f"s{i}", workflow=flow.name, version=flow.version, tenant="default",
                input=json.dumps(f"ticket {i}")) for i in range(n)])
        elif mode == "serve":
            if os.environ.get("CRASH_GATE"):  # start together with the other workers
                await asyncio.to_thread(wait_for_gate, Path(os.environ["CRASH_GATE"]))
            await engine.serve(until_idle=True, poll_interval=0.05)
        else:
            await engine.resume()


if __name__ == "__main__":
    asyncio.run(main())
