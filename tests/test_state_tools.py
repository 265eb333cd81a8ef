"""Shared state from tools: a stale write reaches the model as a recoverable tool error
carrying the current value (the agent re-plans), it is journaled and counted, and a tool
run again after a crash does not apply its write twice."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import convoy
from convoy.stores import store_from_url

from .conftest import STORE_KINDS, Crash, FakeClock, store_db


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    """Every test of this module runs on SQLite and on PostgreSQL."""
    yield from store_db(request.param, tmp_path)


class Credit(BaseModel):
    amount: int


class Done(BaseModel):
    amount: int
    version: int


@convoy.tool
async def read_credit(ctx: convoy.ToolContext) -> Done:
    """The customer's credit and its version."""
    got = await ctx.state("customer:7", type=Credit).get("credit", Credit(amount=0))
    return Done(amount=got.value.amount, version=got.version)


@convoy.tool(writes=True, idempotent=True)
async def set_credit(ctx: convoy.ToolContext, amount: int, expected_version: int) -> Done:
    """Set the customer's credit, if it is still at the version you read."""
    done = await ctx.state("customer:7", type=Credit).set(
        "credit", Credit(amount=amount), expected_version=expected_version)
    return Done(amount=done.value.amount, version=done.version)


TOLD: list[dict[str, Any]] = []  # the conflicts the cashier model was told about


def cashier(req: convoy.ModelRequest) -> Any:
    """Reads the credit, takes 10 off what it read; told of a conflict, takes 10 off the
    current value the conflict carries."""
    tools = [json.loads(m.content or "{}") for m in req.messages if m.role == "tool"]
    if not tools:
        return {"tool_calls": [{"name": "read_credit", "arguments": {}}]}
    last = tools[-1]
    if "conflict" in last:
        TOLD.append(last)
        now = last["conflict"]
        return {"tool_calls": [{"name": "set_credit", "arguments": {
            "amount": now["current_value"]["amount"] - 10,
            "expected_version": now["current_version"]}}]}
    if len(tools) == 1:
        return {"tool_calls": [{"name": "set_credit", "arguments": {
            "amount": last["amount"] - 10, "expected_version": last["version"]}}]}
    return {"output": last}


class WriteAfterRead(convoy.Interceptor):
    """Another writer changes the credit right after the agent read it (once)."""

    def __init__(self, engine: Callable[[], convoy.Engine]) -> None:
        self.engine = engine
        self.done = False

    async def tool_call(self, input: convoy.ToolCallInput,
                        next: Callable[[convoy.ToolCallInput], Awaitable[Any]]) -> Any:
        out = await next(input)
        if input.tool.name == "read_credit" and not self.done:
            self.done = True
            await self.engine().state("customer:7", type=Credit).set(
                "credit", Credit(amount=70), expected_version=out.version)
        return out


async def test_a_conflict_in_a_tool_goes_back_to_the_model_which_re_plans(db: str | Path) -> None:
    TOLD.clear()
    sim = convoy.SimModel({"cashier": cashier})
    agent = convoy.Agent(name="cashier", output_type=Done, tools=[read_credit, set_credit],
                         model=sim)

    @convoy.workflow(name="state.cashier")
    async def wf(ctx: convoy.Context, x: str) -> Done:
        out: Done = await ctx.run(agent, x)
        return out

    eng: convoy.Engine
    eng = convoy.Engine(db, interceptors=[WriteAfterRead(lambda: eng)])
    async with eng:
        await eng.state("customer:7", type=Credit).set("credit", Credit(amount=100),
                                                       expected_version=0)
        res = await eng.run(wf, "take 10", session_id="c")
        assert res.ok and res.output == Done(amount=60, version=3)  # 70 - 10: nothing lost
        # the model was told, with the current value and version
        [told] = TOLD
        assert told["conflict"] == {"namespace": "customer:7", "key": "credit",
                                    "expected_version": 1, "current_version": 2,
                                    "current_value": {"amount": 70}}
        assert "StateConflict" in told["error"]
        # counted, and in the session's history
        assert eng.state_stats.conflicts == 1
        steps = [(r.target, r.status) for r in await eng.store.journal("c") if r.kind == "tool"]
        assert steps == [("read_credit", "completed"), ("set_credit", "failed"),
                         ("set_credit", "completed")]
        failed = next(r for r in await eng.store.journal("c") if r.status == "failed")
        record = json.loads(failed.result or "{}")
        assert record["type"] == "ToolError"
        assert record["attrs"]["details"]["conflict"]["current_version"] == 2
        history = await eng.state("customer:7", type=Credit).history("credit")
        assert [(h.value.amount, h.session_id, h.agent) for h in history] == [
            (100, None, None), (70, None, None), (60, "c", "cashier")]
        calls = sim.calls
        assert (await eng.replay("c")).matches  # the model is told the same on replay
        assert sim.calls == calls


class CrashAfterTool(convoy.Interceptor):
    """The tool's write lands, then the process dies before the journal records the call."""

    def __init__(self) -> None:
        self.crashed = False

    async def tool_call(self, input: convoy.ToolCallInput,
                        next: Callable[[convoy.ToolCallInput], Awaitable[Any]]) -> Any:
        out = await next(input)
        if input.tool.name == "bump" and not self.crashed:
            self.crashed = True
            raise Crash
        return out


@convoy.tool(writes=True, idempotent=True)
async def bump(ctx: convoy.ToolContext) -> int:
    """Add one to the visit counter."""
    visits = ctx.state("site")
    cur = await visits.get("visits", 0)
    return (await visits.set("visits", cur.value + 1, expected_version=cur.version)).value


async def test_a_tool_run_again_after_a_crash_does_not_write_twice(db: str | Path) -> None:
    sim = convoy.SimModel({"a": [{"tool_calls": [{"name": "bump", "arguments": {}}]},
                                 {"output": {"amount": 1, "version": 1}}]})
    agent = convoy.Agent(name="a", output_type=Done, tools=[bump], model=sim)

    @convoy.workflow(name="state.bump")
    async def wf(ctx: convoy.Context, x: str) -> Done:
        out: Done = await ctx.run(agent, x)
        return out

    clock = FakeClock()
    async with convoy.Engine(store_from_url(db, clock=clock),
                             interceptors=[CrashAfterTool()]) as eng:
        with pytest.raises(Crash):
            await eng.run(wf, "go", session_id="b")
        assert (await eng.state("site").get("visits")).value == 1
    clock.advance(3600)  # the crashed engine's lease expired
    async with convoy.Engine(store_from_url(db, clock=clock), workflows=[wf],
                             models={}) as eng2:
        [res] = await eng2.resume()
        assert res.ok
        history = await eng2.state("site").history("visits")
        assert [(h.value, h.session_id, h.step_key) for h in history] == [(1, "b", "0/1#1")]


async def test_a_tool_context_built_by_hand_has_no_state() -> None:
    ctx = convoy.ToolContext(session_id="s", tenant="t", agent="a", step_key="0",
                             idempotency_key="s:0")
    with pytest.raises(convoy.UserError, match="outside a session"):
        ctx.state("x")
