"""Budgets, the per-tenant response cache and token velocity."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convoy
from convoy.cost import Budget, Budgets, ResponseCache, TokenVelocity
from convoy.stores import SQLiteStore

from .conftest import Classification, Ticket
from .fakeclock import FakeClock

OK = {"label": "billing", "confidence": 0.9}


def chain(n: int, sim: convoy.Model, name: str = "cost") -> convoy.Workflow[Any, Any]:
    agents = [convoy.Agent(name=f"a{i}", output_type=Classification, model=sim) for i in range(n)]

    @convoy.workflow(name=name)
    async def wf(ctx: convoy.Context, t: str) -> Classification:
        out: Classification = await convoy.pipeline(ctx, agents, t)
        return out

    return wf


async def test_session_budget_stops_the_session(engine_factory: Any) -> None:
    sim = convoy.SimModel({"*": {"output": OK}}, usage=(100, 20))
    eng = engine_factory(interceptors=[Budgets(session=Budget(tokens=250))])
    res = await eng.run(chain(5, sim), "t")
    assert res.status == "budget_exhausted"
    assert res.usage.total_tokens == 360 and sim.calls == 3  # 3rd call admitted at 240 < 250
    assert res.error is not None and "exhausted" in res.error["message"]


async def test_budget_escalates_or_downgrades_per_policy(engine_factory: Any) -> None:
    sim = convoy.SimModel({"*": {"output": OK}}, usage=(100, 20))
    esc = engine_factory(interceptors=[Budgets(session=Budget(tokens=100),
                                               on_exhausted="escalate")])
    res = await esc.run(chain(3, sim, "esc"), "t")
    assert res.status == "escalated"

    cheap = convoy.SimModel({"*": {"output": OK}}, usage=(10, 2), name="sim:cheap")
    down = Budgets(session=Budget(tokens=200), on_exhausted="downgrade", downgrade_to="sim:cheap",
                   hard_factor=10)
    eng = engine_factory(db=esc.store.path.with_name("d.db"), models={"sim:cheap": cheap},
                         interceptors=[down])
    res = await eng.run(chain(4, convoy.SimModel({"*": {"output": OK}}, usage=(100, 20)), "dn"),
                        "t")
    assert res.ok and cheap.calls == 2 and down.downgraded == 2


DAY = 86400.0


@pytest.mark.parametrize("start", [time.time(), 1e9, 4e9], ids=["today", "2001", "2096"])
async def test_tenant_daily_budget_is_per_tenant_and_per_day(tmp_path: Path,
                                                            start: float) -> None:
    # Day D is the UTC day of ``start`` (today's real date, or one far away); every engine
    # below runs on a store whose clock is a fake one, so the budgets' day, the journal's
    # record times and the leases agree whatever the real date is.
    d = start // DAY * DAY  # midnight (UTC) that starts day D
    sim = convoy.SimModel({"*": {"output": OK}}, usage=(100, 0))
    wf = chain(2, sim)  # 200 tokens a session
    path = tmp_path / "tenants.db"

    def engine(clock: FakeClock) -> tuple[convoy.Engine, Budgets]:
        budgets = Budgets(tenant_daily=Budget(tokens=400))
        return convoy.Engine(SQLiteStore(path, clock=clock), interceptors=[budgets]), budgets

    async def statuses(eng: convoy.Engine, tenant: str, n: int) -> list[str]:
        return [(await eng.run(wf, f"{tenant}-{uuid.uuid4().hex}", tenant=tenant)).status
                for _ in range(n)]

    clock = FakeClock(d + DAY - 1)  # D, 23:59:59
    first, budgets = engine(clock)
    async with first:
        assert await statuses(first, "acme", 3) == ["completed", "completed",
                                                     "budget_exhausted"]
        assert await statuses(first, "globex", 1) == ["completed"]  # a tenant of its own
        clock.advance(1)  # D+1, 00:00:00: a new day starts empty, though the store holds
        assert await statuses(first, "acme", 1) == ["completed"]  # D's 400 tokens
    day = dt.datetime.fromtimestamp(d, dt.UTC).date()
    assert {k: led.tokens for k, led in budgets.ledgers.items()} == {
        f"tenant:acme:{day}": 400, f"tenant:globex:{day}": 200,
        f"tenant:acme:{day + dt.timedelta(days=1)}": 200}

    clock.advance(3600)  # a restart later that day picks up the day's 200 tokens
    again, _ = engine(clock)
    async with again:
        assert await statuses(again, "acme", 2) == ["completed", "budget_exhausted"]
        assert await statuses(again, "globex", 1) == ["completed"]

    # The day's spend is read bounded on both ends: an engine whose clock says D-1 sees
    # none of D's or D+1's spend (a query bounded only below would see all 1,000 tokens)
    # and one on D+2 none of the days before.
    for other_day in (d - DAY, d + 2 * DAY):
        other, _ = engine(FakeClock(other_day + 12 * 3600))
        async with other:
            assert await statuses(other, "acme", 3) == ["completed", "completed",
                                                         "budget_exhausted"]
    assert sim.calls == 2 * (2 + 1 + 1 + 1 + 1 + 2 + 2)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 300), limit=st.integers(1, 5000), latency=st.floats(0, 0.003),
       tokens=st.integers(1, 200))
def test_shared_budget_overshoots_by_at_most_the_calls_in_flight(
        n: int, limit: int, latency: float, tokens: int) -> None:
    async def scenario() -> None:
        import tempfile

        sim = convoy.SimModel({"*": {"output": OK}}, usage=(tokens, 0), latency=latency)
        budgets = Budgets(tenant_daily=Budget(tokens=limit))
        with tempfile.TemporaryDirectory() as d:
            # One fake clock: a run that crosses midnight still has one day (one ledger).
            store = SQLiteStore(Path(d) / "b.db", clock=FakeClock())
            async with convoy.Engine(store, interceptors=[budgets], concurrency=10_000) as eng:
                await asyncio.gather(*(eng.run(chain(3, sim), f"t{i}") for i in range(n)))
        [led] = budgets.ledgers.values()
        assert led.tokens == sim.calls * tokens
        if led.reached:
            assert led.in_flight_at_limit is not None
            assert led.overshoot_tokens <= led.in_flight_at_limit * tokens + tokens
            assert led.in_flight == 0 and led.reserved_tokens == 0

    asyncio.run(scenario())


async def test_cache_hits_are_free_and_never_cross_tenants(engine_factory: Any) -> None:
    sim = convoy.SimModel({"*": {"output": OK}}, usage=(100, 20))
    cache = ResponseCache(ttl=60)
    eng = engine_factory(interceptors=[cache])
    wf = chain(1, sim)
    first = await eng.run(wf, "same question", tenant="acme")
    second = await eng.run(wf, "same question", tenant="acme")
    other = await eng.run(wf, "same question", tenant="globex")
    assert first.ok and second.ok and other.ok
    assert sim.calls == 2 and cache.hits == 1 and cache.misses == 2
    assert second.usage.total_tokens == 0 and second.cost == 0
    assert cache.saved_usage.total_tokens == 120
    assert '"cached":true' in ((await eng.store.journal(second.id))[0].result or "")


@pytest.mark.parametrize("shared", [True, False], ids=["in the store", "in memory"])
async def test_cache_entries_expire(engine_factory: Any, db: Path, shared: bool) -> None:
    clock = FakeClock(NOON)  # the cache's and the store's
    sim = convoy.SimModel({"*": {"output": OK}})
    cache = ResponseCache(ttl=10, clock=clock, shared=shared)
    eng = engine_factory(db=SQLiteStore(db, clock=clock), interceptors=[cache])
    wf = chain(1, sim)
    await eng.run(wf, "q")
    clock.advance(9)
    await eng.run(wf, "q")
    clock.advance(2)
    await eng.run(wf, "q")
    assert sim.calls == 2 and cache.hits == 1


def test_velocity_learns_a_baseline_and_alerts_on_a_spike() -> None:
    clock = FakeClock(0.0)
    alerts: list[Any] = []
    v = TokenVelocity(interval=60, warmup=5, k=4, min_rate=100, clock=clock,
                      on_alert=alerts.append)
    for minute in range(20):
        clock.t = minute * 60
        v.record("agent:a", 1000 + (minute % 3) * 50)
    assert not alerts
    clock.t = 20 * 60
    v.record("agent:a", 12_000)  # a verbose chain: 10x its usual rate
    clock.t = 21 * 60
    v.flush()
    assert len(alerts) == 1 and alerts[0].key == "agent:a"
    assert "12,000/min" in str(alerts[0])


def test_budget_config_errors() -> None:
    with pytest.raises(convoy.UserError, match="needs tokens"):
        Budget()
    with pytest.raises(convoy.UserError, match="downgrade_to"):
        Budgets(session=Budget(tokens=1), on_exhausted="downgrade")


# -- budgets across a crash and a resume (hole 4) -----------------------------------------

class Crash(BaseException):
    """The process dies in the middle of a model call: nothing after it gets to run, so the
    session is left ``running`` and owned by the dead engine."""


def alternating(sim: convoy.Model, name: str) -> convoy.Workflow[Any, Any]:
    """Agents ``a`` and ``b`` take turns (eight calls): ``a`` spends its own budget while
    the session spends more."""
    a = convoy.Agent(name="a", output_type=Classification, model=sim)
    b = convoy.Agent(name="b", output_type=Classification, model=sim)

    @convoy.workflow(name=name)
    async def wf(ctx: convoy.Context, t: str) -> Classification:
        out: Classification | None = None
        for i in range(4):
            await ctx.run(a, f"{t} {i}")
            out = await ctx.run(b, f"{t} {i}")
        assert out is not None
        return out

    return wf


CALL = 120  # tokens a call: usage=(100, 20)
SCENARIOS = {
    # budgets, the workflow, and the ledger that must stop the session
    "session": (lambda: Budgets(session=Budget(tokens=250)), lambda sim: chain(5, sim, "h4s"),
                None),
    "agent": (lambda: Budgets(agents={"a": Budget(tokens=250)}),
              lambda sim: alternating(sim, "h4a"), "a"),
    "tenant": (lambda: Budgets(tenant_daily=Budget(tokens=250)),
               lambda sim: chain(5, sim, "h4t"), None),
}
NOON = 20_000 * DAY + 12 * 3600  # any day: the resume, an hour later, is the same day


def crashing(crash_at: int | None) -> convoy.SimModel:
    calls = {"n": 0}

    def script(req: convoy.ModelRequest) -> Any:
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise Crash
        return {"output": OK}

    return convoy.SimModel(script, usage=(100, 20))


@pytest.mark.parametrize("crash_at", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_a_resumed_session_keeps_its_budget(tmp_path: Path, scenario: str,
                                                  crash_at: int) -> None:
    make_budgets, make_wf, agent = SCENARIOS[scenario]

    # The reference: the same session, never interrupted.
    ref_sim = crashing(None)
    async with convoy.Engine(SQLiteStore(tmp_path / "ref.db", clock=FakeClock(NOON)),
                             interceptors=[make_budgets()]) as eng:
        ref = await eng.run(make_wf(ref_sim), "t", session_id="s")
        ref_spend = await eng.store.session_spend("s")
    assert ref.status == "budget_exhausted"

    sim = crashing(crash_at)
    wf = make_wf(sim)
    path = tmp_path / "crash.db"
    clock = FakeClock(NOON)
    first = convoy.Engine(SQLiteStore(path, clock=clock), interceptors=[make_budgets()])
    try:
        res = await first.run(wf, "t", session_id="s")
    except Crash:
        crashed = True
    else:  # the budget stopped the session before the call that would have crashed
        crashed = False
        assert res.status == "budget_exhausted"
    finally:
        await first.aclose()  # commits what was journaled; the session stays owned
    if crashed:
        row = await _row(path, "s")
        assert row.status == "running" and row.owner == first.owner
        # Another engine, an hour later (the dead engine's lease has run out), takes it over.
        clock.advance(3600)
        later = convoy.Engine(SQLiteStore(path, clock=clock),
                              interceptors=[make_budgets()], workflows=[wf])
        async with later:
            [res] = await later.resume()
            spend = await later.store.session_spend("s")
    else:
        async with convoy.Engine(path) as eng:
            spend = await eng.store.session_spend("s")

    # It stops where the uninterrupted session stopped: same calls, same spend.
    assert res.status == "budget_exhausted", res.error
    assert res.usage == ref.usage and spend == ref_spend
    assert sim.calls - crashed == ref_sim.calls
    limited = res.usage.total_tokens if agent is None else spend[agent][0]
    assert limited <= 250 + CALL  # the budget, plus the one call in flight when reached


async def _row(path: Path, sid: str) -> Any:
    store = SQLiteStore(path)
    await store.open()
    try:
        return await store.get_session(sid)
    finally:
        await store.aclose()


class SlowSpendStore(SQLiteStore):
    """A store whose spend query takes a while, as a networked one's does."""

    async def tenant_spend(self, tenant: str, since: float, until: float) -> tuple[int, float]:
        await asyncio.sleep(0.05)
        return await super().tenant_spend(tenant, since, until)


async def test_calls_wait_for_the_days_spend_to_be_read(tmp_path: Path) -> None:
    sim = convoy.SimModel({"*": {"output": OK}}, usage=(100, 0))
    wf = chain(2, sim)
    clock = FakeClock(NOON)
    path = tmp_path / "slow.db"
    async with convoy.Engine(SQLiteStore(path, clock=clock), interceptors=[
            Budgets(tenant_daily=Budget(tokens=400))]) as eng:
        assert [(await eng.run(wf, f"t{i}")).ok for i in range(2)] == [True, True]
    calls = sim.calls
    # A restart, and a burst of sessions while the day's 400 tokens are still being read:
    # none of them may spend as if nothing had been.
    async with convoy.Engine(SlowSpendStore(path, clock=clock), interceptors=[
            Budgets(tenant_daily=Budget(tokens=400))], concurrency=100) as eng:
        results = await asyncio.gather(*(eng.run(wf, f"burst {i}") for i in range(20)))
    assert {r.status for r in results} == {"budget_exhausted"} and sim.calls == calls


@convoy.tool
def lookup(id: int) -> dict[str, int]:
    """Look an order up."""
    return {"id": id}


_GOOD_AFTER_BAD = {
    # answers that break the step's contract: never cached
    "unknown tool": ({"tool_calls": [{"name": "nope", "arguments": {}}]}, False),
    "invalid tool arguments": ({"tool_calls": [{"name": "lookup",
                                                "arguments": {"id": "seven"}}]}, False),
    "arguments not JSON": ({"tool_calls": [{"name": "lookup", "arguments": "{id: 7"}]}, False),
    "invalid worker input": ({"delegate": "w", "payload": {"subject": 1}}, False),
    "invalid handoff payload": ({"handoff": "h", "payload": {}}, False),
    "undeclared handoff": ({"handoff": "elsewhere", "payload": {"text": "x"}}, False),
    "handoff beside another call": ({"tool_calls": [
        {"name": "transfer_to_h", "arguments": {"text": "x"}},
        {"name": "lookup", "arguments": {"id": 1}}]}, False),
    "half valid": ({"tool_calls": [{"name": "lookup", "arguments": {"id": 1}},
                                   {"name": "nope", "arguments": {}}]}, False),
    # answers that pass it: cached
    "valid tool call": ({"tool_calls": [{"name": "lookup", "arguments": {"id": 1}}]}, True),
    "valid delegation": ({"delegate": "w", "payload": {"text": "x"}}, True),
    "valid handoff": ({"handoff": "h", "payload": {"text": "x"}}, True),
}


@pytest.mark.parametrize("case", sorted(_GOOD_AFTER_BAD))
async def test_cache_keeps_only_answers_that_pass_the_steps_contract(
        engine_factory: Any, case: str) -> None:
    # An invalid tool call, delegation or handoff must not be served again from the cache
    # for the whole TTL: the next session with the same input asks the model again.
    first, cacheable = _GOOD_AFTER_BAD[case]
    sim = convoy.SimModel({"a": [first, {"output": OK}], "*": {"output": OK}})
    w = convoy.Agent(name="w", input_type=Ticket, output_type=Classification,
                     model=sim)
    h = convoy.Agent(name="h", input_type=Ticket, output_type=Classification,
                     model=sim)
    a = convoy.Agent(name="a", output_type=Classification, model=sim, tools=[lookup],
                     workers=[w], handoffs=[h], handoff_retries=5)
    cache = ResponseCache(ttl=60)
    eng = engine_factory(interceptors=[cache])

    @convoy.workflow(name="cached-calls", agents=[a])
    async def wf(ctx: convoy.Context, t: str) -> Classification:
        out: Classification = await ctx.run(a, t)
        return out

    r1 = await eng.run(wf, "same question")
    n1 = sim.calls_by_agent["a"]
    r2 = await eng.run(wf, "same question")
    assert r1.ok and r2.ok, (r1.error, r2.error)
    assert sim.calls_by_agent["a"] == (n1 if cacheable else n1 + 1)
async def test_budgets_reserve_the_models_output_ceiling_when_max_tokens_is_unset(
        engine_factory: Any) -> None:
    # Reserving 256 output tokens for answers of 1,000 let a shared budget overshoot by half
    # (issue 8, bug 7). The reservation is max_tokens, else the model's output ceiling.
    seen: list[int] = []
    budgets = Budgets(session=Budget(tokens=10**9))

    class Capped(convoy.Model):
        name = "capped:model"
        max_output_tokens = 1_000

        async def request(self, request: convoy.ModelRequest) -> convoy.ModelResponse:
            [led] = budgets.ledgers.values() or [
                x for s in list(budgets._per_session) for x in
                budgets.session_ledgers(s).values()]
            seen.append(led.reserved_tokens)
            return convoy.ModelResponse(text='{"label": "x", "confidence": 1}',
                                        usage=convoy.Usage(10, 900))

    eng = engine_factory(interceptors=[budgets])
    assert (await eng.run(chain(1, Capped()), "t")).ok
    assert seen and 1_000 < seen[0] < 1_000 + 200  # its ceiling plus the input estimate
    assert convoy.resilience.output_ceiling(None) == convoy.resilience.DEFAULT_OUTPUT_CEILING
    assert convoy.resilience.output_ceiling(convoy.SimModel(name="openai:gpt-4o")) == 16_384


async def test_a_shared_budget_with_long_answers_stays_within_one_call(
        engine_factory: Any, db: Path) -> None:
    # 100 sessions at once, answers of 2,000 tokens and no max_tokens, one tenant budget of
    # 20,000 tokens: reserving the ceiling, at most one call's ceiling over.
    sim = convoy.SimModel({"*": {"output": OK}}, usage=(20, 2_000), latency=0.01)
    sim.max_output_tokens = 2_000
    budgets = Budgets(tenant_daily=Budget(tokens=20_000))
    # One fake clock: a run that crosses midnight still has one day (one ledger).
    eng = engine_factory(db=SQLiteStore(db, clock=FakeClock()), interceptors=[budgets],
                         concurrency=1000)
    await asyncio.gather(*(eng.run(chain(1, sim), f"t{i}") for i in range(100)))
    [led] = budgets.ledgers.values()
    assert led.reached and led.tokens <= 20_000 + 2_020


async def test_calls_waiting_for_room_are_woken_in_turn_and_all_when_it_is_spent() -> None:
    from convoy.cost import BudgetLedger

    led = BudgetLedger("t", Budget(tokens=100))
    led.reserve(100, 0.0)  # one call in flight holds the whole budget
    woken: list[int] = []

    async def waiter(i: int) -> None:
        await led.wait_settled()
        woken.append(i)
        if i == 1:  # the first one woken takes the room it was woken for
            led.reserve(60, 0.0)
            led.pass_turn()

    tasks = [asyncio.create_task(waiter(i)) for i in range(1, 5)]
    cancelled = asyncio.create_task(waiter(99))
    await asyncio.sleep(0)
    led.settle(100, 0.0, convoy.Usage(10, 0), 0.0)  # 10 spent: room for one call
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert woken == [1, 2]  # 1 took 60 and passed the turn (30 left): 2 was woken
    cancelled.cancel()  # a waiter that gives up loses nothing for the others
    led.settle(60, 0.0, convoy.Usage(95, 0), 0.0)  # 105 spent: the budget is spent
    await asyncio.gather(*tasks)
    assert sorted(woken) == [1, 2, 3, 4] and led.spent_out()


async def test_calls_of_sessions_under_way_get_the_room_first() -> None:
    from convoy.cost import BudgetLedger

    led = BudgetLedger("t", Budget(tokens=100))
    led.reserve(100, 0.0)
    woken: list[str] = []

    async def waiter(name: str, under_way: bool) -> None:
        await led.wait_settled(under_way=under_way)
        woken.append(name)
        led.reserve(90, 0.0)  # takes the room: nobody else fits

    starting = asyncio.create_task(waiter("starting", False))
    await asyncio.sleep(0)
    going_on = asyncio.create_task(waiter("under way", True))  # came later, goes first
    await asyncio.sleep(0)
    led.settle(100, 0.0, convoy.Usage(5, 0), 0.0)
    await asyncio.sleep(0)
    assert woken == ["under way"]
    starting.cancel()
    await asyncio.gather(going_on, starting, return_exceptions=True)


def test_a_model_with_no_price_is_warned_of_once(caplog: pytest.LogCaptureFixture) -> None:
    """Its calls cost $0: a budget in USD never counts them, so it must not go unsaid."""
    table = convoy.PriceTable()
    with caplog.at_level("WARNING", logger="convoy.cost"):
        for _ in range(3):
            assert table.cost("openai:gpt-4o-2099-01-01", convoy.Usage(input_tokens=10,
                                                                       output_tokens=10)) == 0
        assert table.cost("openai:gpt-4o-mini", convoy.Usage(input_tokens=10,
                                                             output_tokens=10)) > 0
    said = [r.getMessage() for r in caplog.records if r.name == "convoy.cost"]
    assert len(said) == 1 and "no price for model 'openai:gpt-4o-2099-01-01'" in said[0]
    assert "budgets in USD do not count them" in said[0]
    assert table.unknown == {"openai:gpt-4o-2099-01-01"}
