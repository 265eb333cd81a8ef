"""Observability leaves a session's run no garbage only the cycle collector can free.

A run that leaves a reference cycle (an object whose callback refers back to it) makes the
collector run over and over under load, and a long-lived heap makes each full collection
cost milliseconds: what a bare engine never pays (its runs leave no cycle)."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel

import convoy
from convoy.audit import AuditInterceptor
from convoy.observability import Metrics, Tracing, observe


class Label(BaseModel):
    label: str


def _agents() -> list[convoy.Agent[str, Label]]:
    model = convoy.SimModel({"*": {"output": {"label": "billing"}}})
    return [convoy.Agent(name=f"a{i}", model=model, output_type=Label) for i in range(3)]


CHAINS: dict[str, Callable[[], list[convoy.Interceptor]]] = {
    "none": list,
    "audit": lambda: [AuditInterceptor()],
    "metrics": lambda: observe(metrics=Metrics()),
    "all three": lambda: [*observe(Tracing(["store"]), Metrics()), AuditInterceptor()],
    "all three, live spans": lambda: [*observe(Tracing(["store"], live=True), Metrics()),
                                      AuditInterceptor()],
}


@pytest.mark.parametrize("chain", list(CHAINS))
async def test_runs_leave_no_cycles(tmp_path: Path, chain: str) -> None:
    agents = _agents()

    @convoy.workflow(name="pipeline")
    async def pipeline(ctx: convoy.Context, text: str) -> str:
        for agent in agents:
            text = (await ctx.run(agent, text)).label
        return text

    async with convoy.Engine(tmp_path / "x.db", interceptors=CHAINS[chain]()) as engine:
        await engine.run(pipeline, "warm up")
        gc.collect()
        gc.disable()
        try:
            for i in range(10):
                result = await engine.run(pipeline, f"ticket {i}")
                assert result.status == "completed"
            found = gc.collect()
        finally:
            gc.enable()
    assert found == 0, f"{found} objects in reference cycles after 10 runs"
