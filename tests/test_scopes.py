"""Scopes: a tool declares what it needs, an agent (and a tenant) is granted scopes; a
call outside the grant, or with arguments that do not validate, is refused before the
tool runs, journaled, and reported to the model; the session goes on."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field

import convoy
from convoy.stores import SQLiteStore

from .conftest import FakeClock

RAN: list[tuple[str, Any]] = []


@convoy.tool(scopes=["payments:refund"], writes=True)
def refund(cents: int) -> str:
    """Refund money."""
    RAN.append(("refund", cents))
    return "refunded"


@convoy.tool(scopes=["crm:read"])
def lookup(customer: str) -> str:
    """Read a customer."""
    RAN.append(("lookup", customer))
    return "gold customer"


def _flow(grant: list[str]) -> convoy.Workflow[str, str]:
    agent = convoy.Agent(name="clerk", tools=[refund, lookup], scopes=grant, model="sim:")

    @convoy.workflow(name=f"scopes.flow.{'-'.join(grant) or 'none'}")
    async def flow(ctx: convoy.Context, text: str) -> str:
        return await ctx.run(agent, text)

    return flow


SIM = convoy.SimModel({"clerk": [
    {"tool_calls": [{"name": "lookup", "arguments": {"customer": "c1"}},
                    {"name": "refund", "arguments": {"cents": 500}}]},
    lambda req: {"text": " | ".join(m.content or "" for m in req.messages
                                    if m.role == "tool")}]})


@pytest.fixture(autouse=True)
def _ran() -> None:
    RAN.clear()


async def test_a_call_outside_the_grant_is_refused_before_it_runs(db: Path) -> None:
    async with convoy.Engine(db, models={"sim:": SIM}) as eng:
        res = await eng.run(_flow(["crm:read"]), "help", session_id="s1")
        assert res.ok and RAN == [("lookup", "c1")]  # the refund never ran
        assert "gold customer" in res.output
        assert "may not call tool 'refund': it needs scope(s) payments:refund" in res.output
        assert '"refused": "scope"' in res.output
        [refused] = [r for r in await eng.journal("s1") if r.target == "refund"]
        assert refused.status == "failed" and "ToolDenied" in (refused.result or "")
        assert eng.tool_guard.refused["scope"] == 1


@pytest.mark.parametrize("grant", [["*"], ["payments:*", "crm:read"],
                                   ["payments:refund", "crm:*"]])
async def test_grants_and_wildcards(db: Path, grant: list[str]) -> None:
    async with convoy.Engine(db, models={"sim:": SIM}) as eng:
        res = await eng.run(_flow(grant), "help")
        assert res.ok and RAN == [("lookup", "c1"), ("refund", 500)]


async def test_a_tenant_cap_bounds_every_agent(db: Path) -> None:
    async with convoy.Engine(SQLiteStore(db, clock=FakeClock()), models={"sim:": SIM},
                             tenant_scopes={"free": ["crm:*"]}) as eng:
        res = await eng.tenant("free").run(_flow(["*"]), "help")
        assert res.ok and RAN == [("lookup", "c1")]
        assert "not granted in tenant 'free'" in res.output
        RAN.clear()
        res = await eng.tenant("paid").run(_flow(["*"]), "help")
        assert res.ok and RAN == [("lookup", "c1"), ("refund", 500)]


def test_bad_scopes_are_one_clear_error() -> None:
    with pytest.raises(convoy.UserError, match="invalid scope 'pay ments'"):
        convoy.tool(name="t", scopes=["pay ments"])(lambda: None)
    with pytest.raises(convoy.UserError, match="invalid scope 'payments:\\*'"):
        convoy.tool(name="t", scopes=["payments:*"])(lambda: None)  # no wildcards
    with pytest.raises(convoy.UserError, match="list of names"):
        convoy.Agent(name="a", scopes="payments:refund")
    with pytest.raises(convoy.UserError, match="invalid scope grant"):
        convoy.Agent(name="a", scopes=["pay*"])
    with pytest.raises(convoy.UserError, match="invalid tenant name"):
        convoy.Engine(":memory:", tenant_scopes={"a b": ["*"]})


# -- fuzzing: every out-of-scope or schema-invalid call is refused before it runs ----------

PARTS = ["pay", "crm", "mail"]
ACTS = ["read", "write"]
SCOPES = [f"{p}:{a}" for p in PARTS for a in ACTS]
GRANTS = [*SCOPES, *(f"{p}:*" for p in PARTS), "*"]
TENANTS = {"open": None, "paycap": ["pay:*"], "readers": ["pay:read", "crm:read",
                                                          "mail:read"]}


def _covers(grants: list[str], scope: str) -> bool:
    """The rule, written out independently of the code under test."""
    return scope in grants or "*" in grants or f"{scope.split(':', maxsplit=1)[0]}:*" in grants


def _valid(arguments: str) -> bool:
    """The tools' argument contract, independently: {"n": int 0..9, "s"?: str}."""
    try:
        v = json.loads(arguments)
    except json.JSONDecodeError:
        return False
    return (isinstance(v, dict) and set(v) <= {"n", "s"} and "n" in v
            and type(v["n"]) is int and 0 <= v["n"] <= 9
            and ("s" not in v or isinstance(v["s"], str)))


arguments = st.one_of(
    st.fixed_dictionaries({"n": st.integers(0, 9)},
                          optional={"s": st.text(max_size=4)}).map(json.dumps),
    st.fixed_dictionaries({"n": st.one_of(st.integers(-5, 20), st.just("x"), st.none())},
                          optional={"s": st.one_of(st.integers(), st.text(max_size=2)),
                                    "extra": st.integers()}).map(json.dumps),
    st.sampled_from(["", "{", "[]", "null", '{"s": "a"}', "7"]))

case = st.fixed_dictionaries({
    "tools": st.lists(st.lists(st.sampled_from(SCOPES), max_size=2, unique=True),
                      min_size=1, max_size=4),
    "grant": st.lists(st.sampled_from(GRANTS), max_size=3, unique=True),
    "tenant": st.sampled_from(sorted(TENANTS)),
    "calls": st.lists(st.tuples(st.integers(0, 4), arguments), min_size=1, max_size=6),
})


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case)
def test_fuzz_out_of_scope_and_invalid_calls_never_run(c: dict[str, Any]) -> None:
    ran: list[int] = []

    def make(i: int, needs: list[str]) -> convoy.Tool:
        def fn(n: Annotated[int, Field(ge=0, le=9)], s: str = "") -> str:
            ran.append(i)
            return "ok"

        return convoy.tool(name=f"t{i}", scopes=needs)(fn)

    tools = [make(i, needs) for i, needs in enumerate(c["tools"])]
    # A call names a tool by index; index len(tools) and up name an unknown tool.
    calls = [(f"t{i}", a) for i, a in c["calls"]]
    agent = convoy.Agent(name="fuzz", tools=tools, scopes=c["grant"], model="sim:",
                         tool_failures=100, handoff_retries=100, max_turns=len(calls) + 2)
    script = [{"tool_calls": [{"name": name, "arguments": a}]} for name, a in calls]
    sim = convoy.SimModel({"fuzz": [*script, {"text": "done"}]})

    @convoy.workflow(name="scopes.fuzz")
    async def flow(ctx: convoy.Context, x: str) -> str:
        return await ctx.run(agent, x)

    cap = TENANTS[c["tenant"]]
    expected = []
    for name, a in calls:
        i = int(name[1:])
        if i >= len(tools) or not _valid(a):
            continue
        if all(_covers(c["grant"], s) and (cap is None or _covers(cap, s))
               for s in c["tools"][i]):
            expected.append(i)

    async def run() -> list[convoy.StepRecord]:
        with tempfile.TemporaryDirectory() as d:
            async with convoy.Engine(Path(d) / "f.db", models={"sim:": sim}, tenant_scopes={
                    t: g for t, g in TENANTS.items() if g is not None}) as eng:
                res = await eng.tenant(c["tenant"]).run(flow, "go", session_id="f")
                assert res.ok, res.error  # refusals never end the session
                return await eng.journal("f")

    journal = asyncio.run(run())
    assert ran == expected
    tool_steps = [r for r in journal if r.kind == "tool"]
    refused = [r for r in tool_steps if r.status == "failed"]
    assert all("ToolDenied" in (r.result or "") for r in refused)
    assert len(tool_steps) - len(refused) == len(expected)

