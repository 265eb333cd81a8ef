"""Deployments, not model names (issue 8, item 10): two deployments of one model (two
fault servers on two loopback ports) keep their own breakers, rate limits, cooldowns and
metrics, and calls are routed among them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

import convoy
from convoy.resilience import BreakerPolicy, RetryPolicy, protections

from .fault_servers import OK, error


class Label(BaseModel):
    label: str


def flow(agent: convoy.Agent[Any, Any], name: str = "deployments") -> convoy.Workflow[Any, Any]:
    @convoy.workflow(name=name)
    async def wf(ctx: convoy.Context, t: str) -> Any:
        return await ctx.run(agent, t)

    return wf


STRICT = BreakerPolicy(window_type="count", window=5, minimum_calls=5, wait_in_open=3600)


async def test_two_deployments_of_one_model_do_not_share_a_breaker(
        engine_factory: Any, servers: Any) -> None:
    # bench/faults.py --fallback-model gpt-4o-mini: the primary and its fallback are the same
    # model on two base URLs. Keyed by model name, the primary's failures opened the one
    # breaker both shared, and the healthy fallback was refused.
    down, up = servers(lambda now: error(503)), servers(lambda now: OK)
    primary = f"openai:gpt-4o-mini?base_url={down.base_url()}"
    backup = f"openai:gpt-4o-mini?base_url={up.base_url()}"
    agent = convoy.Agent(name="extract", output_type=Label, model=primary)
    eng = engine_factory(interceptors=protections(
        retry=RetryPolicy(max_attempts=1), breaker=STRICT, fallbacks={"extract": [backup]}))
    results = [await eng.run(flow(agent), f"sess-{i}") for i in range(20)]
    assert [r.status for r in results] == ["completed"] * 20, results[-1].error
    assert len(down.log) == 5  # then the primary's own breaker opened
    assert up.served == set(range(20))
