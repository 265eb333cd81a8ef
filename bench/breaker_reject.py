"""What a call rejected by an open circuit breaker costs, and proof it never reaches the
downstream.

    python bench/breaker_reject.py [--calls 20000]

Opens the breaker of a model endpoint with a burst of failures, then sends ``--calls`` model
calls through the engine's interceptor chain (``protections()``: retry, breaker, timeout)
and times each rejection. Prints one JSON line: ``median_us``, ``p99_us``, ``max_us`` per
rejected call (the whole chain, including the retry interceptor seeing a terminal error),
``downstream_calls`` during the open period (must be 0), and ``session_us`` for a whole
session that fails fast on the open breaker (journaling included).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import convoy
from convoy._stats import percentile
from convoy.durability._executor import JournaledExecutor
from convoy.resilience import BreakerPolicy, RetryPolicy, protections
from convoy.runtime._session import SessionState


class Out(BaseModel):
    ok: bool


class Down(convoy.Model):
    """A downstream that fails every call with HTTP 503 and counts what reaches it."""

    name = "bench:down"

    def __init__(self) -> None:
        self.calls = 0

    async def request(self, request: convoy.ModelRequest) -> convoy.ModelResponse:
        self.calls += 1
        raise convoy.ModelError("HTTP 503", retryable=True, status_code=503)


async def main(calls: int) -> dict[str, Any]:
    down = Down()
    agent: convoy.Agent[int, Out] = convoy.Agent(name="a", output_type=Out, model=down)

    @convoy.workflow(name="breaker-bench")
    async def wf(ctx: convoy.Context, x: int) -> Out:
        out: Out = await ctx.run(agent, x)
        return out

    policy = BreakerPolicy(minimum_calls=10, wait_in_open=3600)
    chain = protections(retry=RetryPolicy(max_attempts=3, initial_delay=0.0, max_delay=0.0),
                        breaker=policy)
    with tempfile.TemporaryDirectory() as d:
        async with convoy.Engine(Path(d) / "b.db", interceptors=chain) as engine:
            for i in range(20):  # open it
                await engine.run(wf, i)
            before = down.calls
            rt = engine.runtime
            # A session to hand the chain; the breaker rejects before anything journals.
            executor = JournaledExecutor(engine.store, "probe", None, journal=None,
                                         clock=engine.clock)
            state = SessionState(rt, "probe", "default", "breaker-bench", executor=executor)
            req = convoy.ModelRequest(messages=[convoy.Message(role="user", content="x")],
                                      agent="a")
            inp = convoy.ModelCallInput(session=state, key="0", agent=agent, model=down,
                                        request=req)
            samples = []
            for _ in range(calls):
                t0 = time.perf_counter()
                with contextlib.suppress(convoy.CircuitOpenError):
                    await rt.model_chain.call(inp)
                samples.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            n_sessions = 2000
            results = [await engine.run(wf, 1000 + i) for i in range(n_sessions)]
            session_s = (time.perf_counter() - t0) / n_sessions
            assert all(r.error and r.error["type"] == "CircuitOpenError" for r in results)
            leaked = down.calls - before
    p99 = percentile(samples, 99)
    return {"rejected_calls": calls, "median_us": round(statistics.median(samples) * 1e6, 2),
            "p99_us": round(p99 * 1e6, 2),
            "max_us": round(max(samples) * 1e6, 2), "downstream_calls": leaked,
            "session_us": round(session_s * 1e6, 1), "under_1ms": max(samples) < 1e-3 or
            p99 < 1e-3}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20_000)
    print(json.dumps(asyncio.run(main(ap.parse_args().calls))))
