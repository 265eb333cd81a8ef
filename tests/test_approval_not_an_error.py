"""A tool call that waits for a person's approval is not a failure: the step is refused
until someone approves, and the session parks. Traces (live and derived from the journal),
metrics and the baseline alerts' error rate say so (``approval_required``), where they
counted it as an error of kind ``other``: every approval put a red span in a completed
session's trace, an error on the dashboards, and a failure in the error-rate baseline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.alerts import BaselineAlerts
from convoy.alerts._metrics import Tally
from convoy.observability import Metrics, Tracing, observe
from convoy.resilience import ERROR_KINDS, error_kind

from .clikit import cli
from .test_metrics import total


@convoy.tool(requires_approval=convoy.Approval(queue="finance"))
def refund(cents: int) -> str:
    """Refund (a person approves it first)."""
    return f"refunded {cents}"


clerk = convoy.Agent(name="clerk", tools=[refund], model=convoy.SimModel({"clerk": [
    {"tool_calls": [{"name": "refund", "arguments": {"cents": 5}}]}, {"output": "done"}]}))


@convoy.workflow(name="approvals.refund")
async def refund_flow(ctx: convoy.Context, t: str) -> str:
    out: str = await ctx.run(clerk, t)
    return out


class _Seen(BaselineAlerts):
    """Baseline alerts that keep each run's tallies."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Tally]] = []

    async def observe(self, tenant: str, tallies: Mapping[str, Tally]) -> None:
        self.seen.append(dict(tallies))
        await super().observe(tenant, tallies)


def test_approval_required_is_a_kind_of_its_own() -> None:
    assert "approval_required" in ERROR_KINDS
    assert error_kind(convoy.ApprovalRequired("rule 'x': a person approves first")) == \
        "approval_required"


@pytest.mark.parametrize("live", [True, False])
def test_a_tool_call_waiting_for_approval_is_no_error_in_traces_metrics_or_alerts(
        tmp_path: Path, live: bool) -> None:
    db = tmp_path / "a.db"
    metrics, alerts = Metrics(), _Seen()
    chain = [*observe(Tracing(["store"], live=live), metrics), alerts]

    async def approved() -> None:
        async with convoy.Engine(db, interceptors=chain) as eng:
            assert (await eng.run(refund_flow, "t", session_id="a1")).status == "waiting"
            [task] = await eng.inbox.tasks()
            await eng.inbox.approve(task.id, by="fin")
            [res] = await eng.resume()
            assert res.ok, res

    asyncio.run(approved())
    # metrics: one refused call waiting for approval, one call that ran; no error
    assert total(metrics, "convoy_steps_total", kind="tool", target="refund",
                 outcome="approval_required") == 1
    assert total(metrics, "convoy_steps_total", kind="tool", target="refund",
                 outcome="ok") == 1
    assert total(metrics, "convoy_steps_total", outcome="error") == 0
    assert total(metrics, "convoy_attempt_errors_total") == 0
    # alerts: the error rate counts no error, and the refused call is no call
    tallies = [t for run in alerts.seen for t in run.values()]
    assert sum(t.errors for t in tallies) == 0, tallies
    assert sum(t.calls for t in tallies) == 3  # (two model calls, the refund that ran)
    # the trace: no span in error; the refused call's span says it waited for approval
    res = cli("trace", "a1", "--db", str(db), "--json")
    assert res.code == 0, res.stderr
    spans: list[dict[str, Any]] = json.loads(res.stdout)
    assert [s["name"] for s in spans if s["status"] == "error"] == []
    waited = [s for s in spans if s["attrs"].get("convoy.approval.required")]
    assert [s["name"] for s in waited] == ["execute_tool refund"], spans
    assert "error.type" not in waited[0]["attrs"]
    assert "error" not in cli("trace", "a1", "--db", str(db)).stdout.splitlines()[-1]


class _AsksFirst(convoy.Interceptor):
    """A policy of the application's, after the baseline alerts in the chain: every
    refund waits for a person's approval."""

    stage = "custom"

    async def tool_call(self, input: Any, next: Any) -> Any:
        if input.tool.name == "refund" and input.approval is None:
            raise convoy.ApprovalRequired("refunds need a person's approval")
        return await next(input)


def test_an_approval_a_policy_after_the_alerts_asks_for_is_no_error_of_theirs(
        tmp_path: Path) -> None:
    alerts = _Seen()

    @convoy.tool
    def refund(cents: int) -> str:
        """Refund."""
        return f"refunded {cents}"

    agent = convoy.Agent(name="clerk", tools=[refund], model=convoy.SimModel({"clerk": [
        {"tool_calls": [{"name": "refund", "arguments": {"cents": 5}}]},
        {"output": "done"}]}))

    @convoy.workflow(name="approvals.policy")
    async def flow(ctx: convoy.Context, t: str) -> str:
        out: str = await ctx.run(agent, t)
        return out

    async def approved() -> None:
        async with convoy.Engine(tmp_path / "p.db",
                                 interceptors=[alerts, _AsksFirst()]) as eng:
            assert (await eng.run(flow, "t", session_id="p1")).status == "waiting"
            [task] = await eng.inbox.tasks()
            await eng.inbox.approve(task.id, by="fin")
            [res] = await eng.resume()
            assert res.ok, res

    asyncio.run(approved())
    tallies = [t for run in alerts.seen for t in run.values()]
    assert sum(t.errors for t in tallies) == 0, tallies
    assert sum(t.calls for t in tallies) == 3
