"""What engines must agree on is kept in the store: two engine *processes* on one store
(a SQLite file, or one PostgreSQL database) share a tenant's and an agent's daily budget, a
circuit breaker and a rate limit.

Each engine is a real process (``tests/limits_worker.py``). They read one clock from a
file the test writes, so the test moves time for both and no assertion depends on how
fast the machine is.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.resilience import BreakerPolicy, Breakers, Rate, RateLimit, RateLimited
from convoy.stores import Level, SQLiteStore, store_from_url
from tests.conftest import store_db
from tests.fakeclock import FakeClock
from tests.limits_worker import AGENT_LIMIT, BURST, CALL_TOKENS, TENANT_LIMIT

WORKER = Path(__file__).with_name("limits_worker.py")
NOON = 1_800_000_000.0 // 86400 * 86400 + 43200  # a fixed noon (UTC), never today's date


class Worker:
    """One engine process, driven line by line."""

    def __init__(self, db: str | Path, clock: Path, scenario: str) -> None:
        src = str(Path(__file__).resolve().parents[1] / "src")
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, root])}
        self.proc = subprocess.Popen([sys.executable, str(WORKER), str(db), str(clock),
                                      scenario], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        assert self._line() == "ready"

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"the engine process died: {err[-3000:]}")
        return line.strip()

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self._line())
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.send("quit")
            try:
                self.proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()


@pytest.fixture(params=["sqlite", "postgres"])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    """One store the engine processes share: a SQLite file, or a PostgreSQL schema."""
    yield from store_db(request.param, tmp_path)


@pytest.fixture
def clock(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "clock"
    set_clock(path, NOON)
    yield path


def set_clock(path: Path, now: float) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(repr(now))
    os.replace(tmp, path)  # readers see the old time or the new one, never half of it


def both(db: str | Path, clock: Path, scenario: str) -> tuple[Worker, Worker]:
    a = Worker(db, clock, scenario)
    try:
        b = Worker(db, clock, scenario)
    except BaseException:
        a.close()
        raise
    return a, b


def run_both(a: Worker, b: Worker, command: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Send ``command`` to both engines before reading either result: they run at once."""
    a.send(command)
    b.send(command)
    return a.result(), b.result()


@pytest.mark.parametrize("scenario,limit", [("tenant", TENANT_LIMIT), ("agent", AGENT_LIMIT)])
def test_two_engines_together_stay_within_one_daily_budget(shared_db: str | Path, clock: Path,
                                                           scenario: str, limit: int) -> None:
    # Each engine alone would spend the whole budget (40 sessions of one call each want
    # 4,000 tokens); with a ledger per process, the two spent twice the budget together.
    a, b = both(shared_db, clock, scenario)
    try:
        ra, rb = run_both(a, b, "run 40")
    finally:
        a.close()
        b.close()
    spent = (ra["calls"] + rb["calls"]) * CALL_TOKENS
    # Every call reserves at least what it costs, so the budget is exceeded by less than
    # the one call admitted last.
    assert spent <= limit + CALL_TOKENS, (spent, ra, rb)
    assert spent >= limit - CALL_TOKENS, (spent, ra, rb)  # and it is used, not refused
    assert set(ra["statuses"]) | set(rb["statuses"]) == {"completed", "budget_exhausted"}


def test_a_breaker_opened_on_one_engine_rejects_calls_on_another(shared_db: str | Path,
                                                                 clock: Path) -> None:
    a, b = both(shared_db, clock, "breaker")
    try:
        a.send("seq 8")
        ra = a.result()
        # A's breaker opened after the minimum 4 failed calls and rejected the rest.
        assert ra["calls"] == 4 and ra["errors"]["CircuitOpenError"] == 4, ra
        set_clock(clock, NOON + 5)  # well within the 30 s the circuit stays open
        b.send("seq 3")
        rb = b.result()
    finally:
        a.close()
        b.close()
    # B, running all along, rejects at once: the failing endpoint is not called again.
    assert rb["calls"] == 0 and rb["errors"] == {"CircuitOpenError": 3}, rb


def test_a_rate_limit_holds_across_engines(shared_db: str | Path, clock: Path) -> None:
    # rpm=60 with a burst of 3, and calls refuse rather than wait: while time stands still
    # the two engines together get the 3 requests of the bucket, not 3 each.
    a, b = both(shared_db, clock, "rpm")
    try:
        ra, rb = run_both(a, b, "run 5")
        assert ra["calls"] + rb["calls"] == BURST, (ra, rb)
        set_clock(clock, NOON + 60)  # a minute refills the bucket (to its burst of 3)
        ra, rb = run_both(a, b, "run 5")
        assert ra["calls"] + rb["calls"] == BURST, (ra, rb)
    finally:
        a.close()
        b.close()


# -- engines in one process, each with a store object of its own on one file (as two
# processes would have), on one fake clock -------------------------------------------------


def one_call() -> convoy.Workflow[str, str]:
    agent = convoy.Agent(name="writer", model="sim:")

    @convoy.workflow(name="one-call")
    async def wf(ctx: convoy.Context, text: str) -> str:
        out: str = await ctx.run(agent, text)
        return out

    return wf


def engine_on(db: str | Path, clock: FakeClock, model: convoy.Model,
              interceptor: convoy.Interceptor) -> convoy.Engine:
    return convoy.Engine(store_from_url(db, clock=clock), models={"sim:": model},
                         interceptors=[interceptor])


async def test_a_tokens_per_minute_limit_holds_across_engines(shared_db: str | Path) -> None:
    # Each call is estimated at a few hundred tokens and uses 1,000; the bucket holds 2,000
    # and time stands still: two calls in all, not two per engine.
    clock = FakeClock(NOON)
    sim = convoy.SimModel({"*": {"output": {"label": "ok"}}}, usage=(0, 1000))
    wf = one_call()

    def engine() -> convoy.Engine:
        return engine_on(shared_db, clock, sim, RateLimit(
            Rate(tpm=60_000, tpm_burst=2_000, max_wait=0), clock=clock, sleep=clock.sleep))

    async with engine() as a, engine() as b:
        results = [await e.run(wf, f"ticket {i}") for i, e in enumerate((a, b, a, b))]
    assert [r.status for r in results] == ["completed", "completed", "failed", "failed"]
    assert {(r.error or {}).get("type") for r in results[2:]} == {RateLimited.__name__}
    assert sim.calls == 2


async def test_failures_engines_see_apart_open_their_breakers_together(
        shared_db: str | Path) -> None:
    # A breaker opens at 6 calls with half of them failed. Each engine sees 3 failures:
    # neither opens alone, but once they have exchanged what they saw, both do.
    clock = FakeClock(NOON)
    down = convoy.SimModel(faults=convoy.Faults(server_error=1.0))
    wf = one_call()
    policy = BreakerPolicy(window_type="count", window=20, minimum_calls=6, wait_in_open=30)

    def engine() -> convoy.Engine:
        return engine_on(shared_db, clock, down,
                         Breakers(policy, clock=clock, sync_interval=1.0))

    async def errors(e: convoy.Engine, n: int) -> list[str]:
        return [((await e.run(wf, "t")).error or {}).get("type", "") for _ in range(n)]

    async with engine() as a, engine() as b:
        assert await errors(a, 3) + await errors(b, 3) == ["ModelError"] * 6
        clock.advance(1.5)
        assert await errors(a, 1) == ["ModelError"]  # A hears nothing yet: B has not told
        assert await errors(b, 1) == ["CircuitOpenError"]  # B hears of A's 3 and opens
        assert down.calls == 7
        clock.advance(1.5)
        assert await errors(a, 1) == ["CircuitOpenError"]  # A adopts B's open circuit
    assert down.calls == 7


async def test_an_answer_one_engine_cached_is_served_by_another(
        shared_db: str | Path) -> None:
    from convoy.cost import ResponseCache

    clock = FakeClock(NOON)
    sim = convoy.SimModel({"*": {"output": {"label": "ok"}}}, usage=(100, 20))
    wf = one_call()

    def engine() -> tuple[convoy.Engine, ResponseCache]:
        cache = ResponseCache(ttl=60, clock=clock)
        return engine_on(shared_db, clock, sim, cache), cache

    (a, cache_a), (b, cache_b) = engine(), engine()
    async with b:
        async with a:  # answers reach the store within 50 ms, or as the engine closes
            assert (await a.run(wf, "same question", tenant="acme")).usage.total_tokens == 120
        hit = await b.run(wf, "same question", tenant="acme")
        assert hit.ok and hit.usage.total_tokens == 0 and hit.cost == 0
        assert (await b.run(wf, "same question", tenant="globex")).ok  # not across tenants
        assert sim.calls == 2 and cache_b.shared_hits == 1 and cache_b.misses == 1
        clock.advance(61)  # expired for every engine
        assert (await b.run(wf, "same question", tenant="acme")).usage.total_tokens == 120
    assert sim.calls == 3 and cache_a.hits == 0


def day_scope(now: float) -> str:
    import datetime as dt

    return f"budget:tenant:acme:{dt.datetime.fromtimestamp(now, dt.UTC).date().isoformat()}"


async def eventually(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait until ``condition()`` holds (polling; the bound is a safety net, not a wait)."""
    for _ in range(6000):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def test_what_a_killed_engine_held_of_a_budget_lapses_with_its_lease(
        shared_db: str | Path, clock: Path) -> None:
    from convoy.cost import Budget, Budgets
    from tests.limits_worker import FileClock

    db = shared_db
    a = Worker(db, clock, "hang")  # its calls never return: they hold the whole budget
    try:
        a.send("run 40")
        watch = store_from_url(db, clock=FileClock(clock))
        await watch.open()

        async def held() -> bool:
            lv = (await watch.levels(day_scope(NOON))).get("tokens")
            return lv is not None and lv.held >= TENANT_LIMIT

        try:
            await eventually(held, "the engine held the whole budget")
        finally:
            await watch.aclose()
    finally:
        a.proc.kill()  # SIGKILL: nothing is settled or released
        a.proc.communicate()
    sim = convoy.SimModel({"*": {"output": {"label": "ok"}}}, usage=(1, 99))
    budgets = Budgets(tenant_daily=Budget(tokens=TENANT_LIMIT))
    async with convoy.Engine(store_from_url(db, clock=FileClock(clock)), models={"sim:": sim},
                             interceptors=[budgets]) as b:
        run = asyncio.create_task(b.run(one_call(), "after the crash", tenant="acme"))

        async def waiting() -> bool:  # held, not spent: the call waits
            return any(led.waited for led in budgets.ledgers.values())

        await eventually(waiting, "the call waited for the budget")
        assert not run.done() and sim.calls == 0
        set_clock(clock, NOON + 31)  # past the dead engine's 30 s lease
        res = await asyncio.wait_for(run, 120)  # a safety net: the lapse frees it at once
    assert res.ok and sim.calls == 1


async def test_a_read_decide_write_that_fails_fails_its_batch_instead_of_hanging_it(
        tmp_path: Path) -> None:
    # SQLite's group commit runs reservations as calls inside a batch's transaction; one
    # that raises must fail its batch (rolled back) and leave no write waiting forever.
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    try:
        bad = store._batched(lambda conn: 1 // 0, wait=False)
        other = store.kv_put("ns", "k", "v")  # joins the same batch
        with pytest.raises(ZeroDivisionError):
            await asyncio.wait_for(bad, 10)
        with pytest.raises(ZeroDivisionError):
            await asyncio.wait_for(other, 10)
        assert await store.kv_get("ns", "k") is None  # rolled back with it
        await store.kv_put("ns", "k", "v")  # and the store goes on
        assert await store.kv_get("ns", "k") == "v"
    finally:
        await store.aclose()


async def test_far_from_its_limit_a_shared_budget_reserves_for_many_calls_at_once(
        shared_db: str | Path) -> None:
    from convoy.cost import Budget, Budgets

    clock = FakeClock(NOON)
    sim = convoy.SimModel({"*": {"output": {"label": "ok"}}}, usage=(1, 99))
    budgets = Budgets(tenant_daily=Budget(tokens=10**9))
    db = shared_db
    async with engine_on(db, clock, sim, budgets) as eng:
        for i in range(50):
            assert (await eng.run(one_call(), f"t{i}", tenant="acme")).ok
    # one reservation (a slab) holds room for up to 16 calls, reused as they settle
    assert budgets.store_reserves <= 5
    store = store_from_url(db, clock=clock)  # and what they spent is counted once they end
    await store.open()
    try:
        assert (await store.levels(day_scope(NOON)))["tokens"] == Level(
            scope=day_scope(NOON), unit="tokens", used=50 * CALL_TOKENS, held=0)
    finally:
        await store.aclose()
