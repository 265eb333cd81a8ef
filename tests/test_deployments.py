"""Deployments, not model names (issue 8, item 10): two deployments of one model (two
fault servers on two loopback ports) keep their own breakers, rate limits, cooldowns and
metrics, and calls are routed among them."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import convoy
from convoy.resilience import (
    BreakerPolicy,
    Breakers,
    Deployment,
    Deployments,
    Retry,
    RetryPolicy,
    protections,
)

from .fakeclock import FakeClock
from .fault_servers import OK, Action, FaultServer, error, held


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


# -- named deployments, routed ------------------------------------------------------------

MODEL = "openai:gpt-4o-mini"


def two(east: FaultServer, west: FaultServer, **kw: Any) -> list[Deployment]:
    return [Deployment(name="east", model=MODEL, base_url=east.base_url(), **kw),
            Deployment(name="west", model=MODEL, base_url=west.base_url())]


def sessions(server: FaultServer) -> list[int | None]:
    return [e.session for e in server.log]


async def test_in_order_fails_over_and_skips_a_deployment_whose_breaker_is_open(
        engine_factory: Any, servers: Any) -> None:
    east, west = servers(lambda now: error(503)), servers(lambda now: OK)
    deployments = Deployments(two(east, west), strategy="in_order")
    chain = protections(retry=RetryPolicy(max_attempts=1), breaker=STRICT,
                        deployments=deployments)
    agent = convoy.Agent(name="extract", output_type=Label, model=MODEL)  # the model name
    eng = engine_factory(interceptors=chain)
    results = [await eng.run(flow(agent), f"sess-{i}") for i in range(20)]
    assert [r.status for r in results] == ["completed"] * 20
    assert sessions(east) == [0, 1, 2, 3, 4]  # then its own breaker opened: skipped
    assert west.served == set(range(20))
    stats = deployments.stats()
    assert stats[f"{MODEL}@east"].failures == 5 and stats[f"{MODEL}@east"].rejected == 15
    assert stats[f"{MODEL}@west"].calls == 20 and stats[f"{MODEL}@west"].failures == 0
    breakers = next(i for i in chain if isinstance(i, Breakers))
    assert breakers.breakers[f"model:{MODEL}@east"].state == "open"
    assert breakers.breakers[f"model:{MODEL}@west"].state == "closed"
    assert f"agent:extract@{MODEL}@east" in breakers.breakers
    assert set(eng.accounting.by_deployment) == {f"{MODEL}@west"}  # metrics per deployment
    assert deployments.failovers == 20


async def test_least_busy_sends_a_call_to_the_deployment_with_fewer_in_flight(
        engine_factory: Any, servers: Any) -> None:
    arrived, release = threading.Event(), threading.Event()

    def hold_the_first(now: float) -> Action:
        if not arrived.is_set():
            arrived.set()
            return held(release)
        return OK

    east, west = servers(hold_the_first), servers(lambda now: OK)
    agent = convoy.Agent(name="extract", output_type=Label, model=MODEL)
    eng = engine_factory(interceptors=protections(
        deployments=Deployments(two(east, west), strategy={MODEL: "least_busy"})))
    wf = flow(agent)
    busy = asyncio.create_task(eng.run(wf, "sess-0"))
    assert await asyncio.to_thread(arrived.wait, 30)  # sess-0 is in flight on east
    assert (await eng.run(wf, "sess-1")).ok
    release.set()
    assert (await busy).ok
    assert (await eng.run(wf, "sess-2")).ok  # both idle again: the first in order
    assert sessions(east) == [0, 2] and sessions(west) == [1]


async def test_lowest_latency_prefers_the_faster_deployment(
        engine_factory: Any, servers: Any) -> None:
    # The servers move the router's clock while a request is in flight: east takes 1 s,
    # west 10 ms, measured without any real waiting.
    clock = FakeClock()

    def taking(seconds: float) -> Any:
        def script(now: float) -> Action:
            clock.advance(seconds)
            return OK
        return script

    east, west = servers(taking(1.0)), servers(taking(0.01))
    deployments = Deployments(two(east, west), strategy="lowest_latency", clock=clock)
    agent = convoy.Agent(name="extract", output_type=Label, model=MODEL)
    eng = engine_factory(interceptors=protections(deployments=deployments))
    for i in range(6):
        assert (await eng.run(flow(agent), f"sess-{i}")).ok
    # Each is measured once (east first: neither was), then the faster one takes the rest.
    assert sessions(east) == [0] and sessions(west) == [1, 2, 3, 4, 5]
    stats = deployments.stats()
    assert stats[f"{MODEL}@east"].latency == pytest.approx(1.0, abs=0.01)
    assert stats[f"{MODEL}@west"].latency == pytest.approx(0.01, abs=0.005)


async def test_a_rate_limited_deployment_cools_down_for_its_retry_after(
        engine_factory: Any, servers: Any) -> None:
    clock = FakeClock()
    first = [True]

    def limited_once(now: float) -> Action:
        if first[0]:
            first[0] = False
            return error(429, retry_after=30)
        return OK

    east, west = servers(limited_once), servers(lambda now: OK)
    deployments = Deployments(two(east, west), clock=clock)
    retry = Retry(RetryPolicy(), sleep=clock.sleep)
    agent = convoy.Agent(name="extract", output_type=Label, model=MODEL)
    eng = engine_factory(interceptors=[retry, deployments])
    for i in range(4):
        assert (await eng.run(flow(agent), f"sess-{i}")).ok
    # sess-0 was answered 429 by east and went on to west at once: no retry, no waiting.
    assert retry.retries == 0 and clock.slept == []
    assert sessions(east) == [0] and sessions(west) == [0, 1, 2, 3]
    assert deployments.stats()[f"{MODEL}@east"].cooldown == 30
    clock.advance(30)
    assert (await eng.run(flow(agent), "sess-4")).ok
    assert sessions(east) == [0, 4]


async def test_a_deployment_out_of_its_rpm_is_passed_over(
        engine_factory: Any, servers: Any) -> None:
    clock = FakeClock()
    east, west = servers(lambda now: OK), servers(lambda now: OK)
    deployments = Deployments(two(east, west, rpm=60), clock=clock, sleep=clock.sleep)
    agent = convoy.Agent(name="extract", output_type=Label, model=MODEL)
    eng = engine_factory(interceptors=[deployments])
    for i in range(3):
        assert (await eng.run(flow(agent), f"sess-{i}")).ok
    assert sessions(east) == [0] and sessions(west) == [1, 2]  # one a second on east
    clock.advance(1.0)
    assert (await eng.run(flow(agent), "sess-3")).ok
    assert sessions(east) == [0, 3] and clock.slept == []


async def test_every_deployment_has_its_own_price(engine_factory: Any, servers: Any,
                                                  tmp_path: Path) -> None:
    east, west = servers(lambda now: OK), servers(lambda now: OK)
    deployments = Deployments([
        Deployment(name="east", model=MODEL, base_url=east.base_url(),
                   price=convoy.Price(input_per_mtok=100.0, output_per_mtok=100.0)),
        Deployment(name="west", model=MODEL, base_url=west.base_url())],
        strategy="least_busy")
    agent = convoy.Agent(name="extract", output_type=Label, model=MODEL)
    eng = engine_factory(interceptors=[deployments])
    await eng.run(flow(agent), "sess-0")  # east (first in order when both are idle)
    west_only = Deployments([Deployment(name="west", model=MODEL, base_url=west.base_url())])
    other = engine_factory(db=tmp_path / "other.db", interceptors=[west_only])
    await other.run(flow(agent), "sess-1")
    east_spend = eng.accounting.by_deployment[f"{MODEL}@east"]
    west_spend = other.accounting.by_deployment[f"{MODEL}@west"]
    assert east_spend.usage == west_spend.usage
    assert east_spend.cost == pytest.approx(east_spend.usage.total_tokens * 100 / 1e6)
    assert west_spend.cost == pytest.approx(
        convoy.PriceTable().cost(MODEL, west_spend.usage))  # the model's own price


async def test_credentials_come_from_the_named_environment_variable(
        engine_factory: Any, servers: Any, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    east = servers(lambda now: OK)
    d = Deployment(name="east", model=MODEL, base_url=east.base_url(),
                   api_key_env="CONVOY_TEST_EAST_KEY")
    agent = convoy.Agent(name="extract", output_type=Label, model=MODEL)
    monkeypatch.delenv("CONVOY_TEST_EAST_KEY", raising=False)
    res = await engine_factory(interceptors=[Deployments([d])]).run(flow(agent), "sess-0")
    assert res.status == "failed" and res.error is not None
    assert res.error["type"] == "UserError" and "CONVOY_TEST_EAST_KEY" in res.error["message"]
    assert east.log == []
    monkeypatch.setenv("CONVOY_TEST_EAST_KEY", "sk-east-secret")
    chain = protections(deployments=[d])
    eng = engine_factory(db=tmp_path / "again.db", interceptors=chain)
    assert (await eng.run(flow(agent), "sess-1")).ok
    assert east.log[-1].auth == "Bearer sk-east-secret"  # the key the variable holds ...
    breakers = next(i for i in chain if isinstance(i, Breakers))
    where = [repr(d), *breakers.breakers, *eng.accounting.by_deployment]
    assert not any("sk-east-secret" in w for w in where)  # ... never in config or keys


def test_deployments_are_checked_when_they_are_defined() -> None:
    with pytest.raises(convoy.UserError, match="given twice"):
        Deployments([Deployment(name="a", model=MODEL), Deployment(name="a", model=MODEL)])
    with pytest.raises(convoy.UserError, match="unknown routing strategy 'fastest'"):
        Deployments([Deployment(name="a", model=MODEL)], strategy="fastest")  # type: ignore[arg-type]
    with pytest.raises(convoy.UserError, match="which have no deployments"):
        Deployments([Deployment(name="a", model=MODEL)], strategy={"openai:gpt-4o": "in_order"})
    with pytest.raises(convoy.UserError, match="'openai:' models"):
        Deployment(name="a", model="sim:x", base_url="http://127.0.0.1:1/v1")
    with pytest.raises(convoy.UserError, match="without spaces"):
        Deployment(name="east 1", model=MODEL)


async def test_settings_are_keyed_by_model_name_or_by_deployment(
        engine_factory: Any, servers: Any) -> None:
    # No breaker for east (by deployment), a strict one for every other deployment of the
    # model (by model name): east keeps being called, west opens.
    east, west = servers(lambda now: error(503)), servers(lambda now: error(503))
    breakers = Breakers(BreakerPolicy(), models={f"{MODEL}@east": None, MODEL: STRICT},
                        per_agent=False)
    agent = convoy.Agent(name="extract", output_type=Label, model=MODEL)
    eng = engine_factory(interceptors=[Deployments(two(east, west)), breakers])
    for i in range(10):
        await eng.run(flow(agent), f"sess-{i}")
    assert len(east.log) == 10 and len(west.log) == 5
    assert set(breakers.breakers) == {f"model:{MODEL}@west"}


async def test_failover_on_says_which_failures_move_a_call_to_the_next_deployment(
        engine_factory: Any, servers: Any) -> None:
    east, west = servers(lambda now: error(503)), servers(lambda now: OK)
    deployments = Deployments(two(east, west), failover_on="rate_limited")  # not a 503
    agent = convoy.Agent(name="extract", output_type=Label, model=MODEL)
    res = await engine_factory(interceptors=[deployments]).run(flow(agent), "sess-0")
    assert res.status == "failed" and res.error is not None
    assert res.error["status_code"] == 503 and west.log == []
    assert deployments.stats()[f"{MODEL}@east"].failures == 1
