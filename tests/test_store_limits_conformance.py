"""Store conformance, limits shared by engines: reservations against counted limits, token
buckets and the response cache.

Part of the store conformance suite (``tests/test_store_conformance.py``, whose fixtures it
uses): every backend of ``tests/store_backends.py`` runs it unchanged. The invariant under
test: a limit several engines share is decided atomically in the store, whichever store
object (process) asks, in whatever order.
"""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convoy.stores._protocol import Hold, Level, Spend, Store
from tests import test_store_conformance as suite
from tests.store_backends import EPOCH, Backend, FakeClock
from tests.test_store_conformance import Opener, model_step, owned

# The suite's fixtures: a fresh backend, its fake clock, and store objects opened on it.
backend, clock, store, stores = suite.backend, suite.clock, suite.store, suite.stores

LEASE = 30.0
DAY = "budget:tenant:t1:day"


def tokens(amount: float, limit: float, *, scope: str = DAY, start: float = 0.0) -> Hold:
    return Hold(scope=scope, unit="tokens", amount=amount, limit=limit, start=start)


async def level(store: Store, scope: str = DAY, unit: str = "tokens") -> tuple[float, float]:
    """``(used, held)`` of one scope and unit."""
    lv = (await store.levels(scope)).get(unit)
    return (0.0, 0.0) if lv is None else (lv.used, lv.held)


# -- reservations ---------------------------------------------------------------------------


async def test_a_scope_never_counted_has_no_levels(store: Store) -> None:
    assert await store.levels(DAY) == {}


async def test_reservations_are_granted_while_used_plus_held_is_under_the_limit(
        store: Store) -> None:
    first = await store.reserve("r1", "A", [tokens(60, 100)], lease_s=LEASE)
    assert first.granted
    assert first.levels == (Level(scope=DAY, unit="tokens", used=0.0, held=0.0),)
    # 60 held < 100: admitted, though it takes the scope past its limit
    second = await store.reserve("r2", "A", [tokens(60, 100)], lease_s=LEASE)
    assert second.granted and second.levels[0].held == 60
    third = await store.reserve("r3", "B", [tokens(1, 100)], lease_s=LEASE)
    assert not third.granted and (third.levels[0].used, third.levels[0].held) == (0, 120)
    assert await level(store) == (0, 120)  # a refused reservation holds nothing


async def test_settle_releases_the_hold_and_counts_what_was_spent(store: Store) -> None:
    await store.reserve("r1", "A", [tokens(60, 100)], lease_s=LEASE)
    await store.reserve("r2", "A", [tokens(30, 100)], lease_s=LEASE)
    await store.settle("r1", [Spend(scope=DAY, unit="tokens", amount=25)])
    assert await level(store) == (25, 30)
    await store.settle("r2", [Spend(scope=DAY, unit="tokens", amount=40)])  # more than held
    assert await level(store) == (65, 0)
    refused = await store.reserve("r3", "A", [tokens(10, 65)], lease_s=LEASE)
    assert not refused.granted and refused.levels[0].used == 65  # spent out


async def test_settle_of_a_failed_call_spends_nothing(store: Store) -> None:
    await store.reserve("r1", "A", [tokens(60, 100)], lease_s=LEASE)
    await store.settle("r1", [])
    assert await level(store) == (0, 0)


async def test_settle_can_release_part_of_a_reservation_and_keep_the_rest(
        store: Store) -> None:
    # One reservation for several calls: each call settles its share as it ends.
    await store.reserve("slab", "A", [tokens(100, 1000)], lease_s=LEASE)
    part = [Spend(scope=DAY, unit="tokens", amount=30)]
    await store.settle("slab", [Spend(scope=DAY, unit="tokens", amount=20)], release=part)
    assert await level(store) == (20, 70)
    await store.settle("slab", [], release=[Spend(scope=DAY, unit="tokens", amount=500)])
    assert await level(store) == (20, 0)  # never more than it held
    await store.settle("slab", [Spend(scope=DAY, unit="tokens", amount=5)])  # the last one
    assert await level(store) == (25, 0)
    await store.settle("slab", [], release=part)  # settled: nothing left to release
    assert await level(store) == (25, 0)


async def test_releasing_part_of_a_lapsed_reservation_still_counts_the_spend(
        store: Store, clock: FakeClock) -> None:
    await store.reserve("slab", "A", [tokens(100, 100)], lease_s=LEASE)
    clock.advance(LEASE + 1)
    assert (await store.reserve("other", "B", [tokens(10, 100)], lease_s=LEASE)).granted
    await store.settle("slab", [Spend(scope=DAY, unit="tokens", amount=40)],
                       release=[Spend(scope=DAY, unit="tokens", amount=50)])
    assert await level(store) == (40, 10)


async def test_a_reservation_holds_on_every_scope_or_on_none(store: Store) -> None:
    agent = "budget:agent:t1:writer:day"
    await store.reserve("r1", "A", [tokens(50, 50, scope=agent)], lease_s=LEASE)
    res = await store.reserve("r2", "A", [tokens(10, 100), tokens(10, 50, scope=agent)],
                              lease_s=LEASE)
    assert not res.granted
    assert [lv.scope for lv in res.levels] == [DAY, agent]
    assert await level(store) == (0, 0)  # the scope that had room holds nothing either
    assert await level(store, agent) == (0, 50)


async def test_units_of_a_scope_are_limited_apart(store: Store) -> None:
    usd = Hold(scope=DAY, unit="usd", amount=0.5, limit=1.0)
    assert (await store.reserve("r1", "A", [tokens(10, 1000), usd], lease_s=LEASE)).granted
    await store.settle("r1", [Spend(scope=DAY, unit="tokens", amount=8),
                              Spend(scope=DAY, unit="usd", amount=1.25)])
    levels = await store.levels(DAY)
    assert {u: (lv.used, lv.held) for u, lv in levels.items()} == {
        "tokens": (8, 0), "usd": (1.25, 0)}
    res = await store.reserve("r2", "A", [tokens(10, 1000), usd], lease_s=LEASE)
    assert not res.granted  # tokens have room; dollars are spent out


async def test_start_counts_only_for_a_scope_the_store_has_not_counted(store: Store) -> None:
    await store.reserve("r1", "A", [tokens(10, 1000, start=300)], lease_s=LEASE)
    assert await level(store) == (300, 10)
    await store.reserve("r2", "A", [tokens(10, 1000, start=999)], lease_s=LEASE)
    assert await level(store) == (300, 20)


async def test_scopes_are_kept_apart(store: Store) -> None:
    await store.reserve("r1", "A", [tokens(100, 100)], lease_s=LEASE)
    assert (await store.reserve("r2", "A", [tokens(100, 100, scope="other")],
                                lease_s=LEASE)).granted
    assert await level(store, "other") == (0, 100)


async def test_holds_lapse_with_their_lease_and_renewal_extends_them(
        store: Store, clock: FakeClock) -> None:
    await owned(store, "s", "A")  # renew extends the holds of an owner running sessions
    await store.reserve("a", "A", [tokens(100, 100)], lease_s=LEASE)
    await store.reserve("b", "B", [tokens(10, 1000, scope="other")], lease_s=LEASE)
    clock.advance(LEASE - 5)
    await store.renew("A", LEASE)
    clock.advance(10)  # past B's lease, within A's renewed one
    assert not (await store.reserve("x", "C", [tokens(1, 100)], lease_s=LEASE)).granted
    assert await level(store, "other") == (0, 0)
    clock.advance(LEASE)  # A stopped renewing (it died): its hold lapses
    assert (await store.reserve("y", "C", [tokens(1, 100)], lease_s=LEASE)).granted
    # a lapsed hold that settles late still counts what was spent
    await store.settle("a", [Spend(scope=DAY, unit="tokens", amount=70)])
    assert await level(store) == (70, 1)


async def test_expire_owner_drops_its_holds_at_once(store: Store) -> None:
    await store.reserve("a", "A", [tokens(60, 100)], lease_s=LEASE)
    await store.reserve("b", "B", [tokens(5, 100)], lease_s=LEASE)
    await store.expire_owner("A")
    assert await level(store) == (0, 5)


async def test_two_store_objects_share_one_limit(stores: Opener) -> None:
    a, b = await stores(), await stores()
    grants = await asyncio.gather(*(s.reserve(f"{name}{i}", name, [tokens(1, 40)],
                                              lease_s=LEASE)
                                    for i in range(50) for s, name in ((a, "A"), (b, "B"))))
    assert sum(r.granted for r in grants) == 40
    assert await level(b) == (0, 40)


_CHILD = """
import asyncio

async def main():
{build}
    from convoy.stores._protocol import Hold
    await store.open()
    granted = 0
    for i in range(60):
        res = await store.reserve(f"{{__import__('os').getpid()}}-{{i}}", "p", [Hold(
            scope="budget:tenant:t1:day", unit="tokens", amount=1, limit=100)], lease_s=1e9)
        granted += res.granted
    await store.aclose()
    print(granted)

asyncio.run(main())
"""


async def test_engine_processes_racing_for_one_limit_get_exactly_the_limit(
        backend: Backend, stores: Opener) -> None:
    # 4 processes x 60 reservations of 1 against a limit of 100: whatever the interleaving,
    # exactly 100 are granted.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (suite._convoy_src(), os.environ.get("PYTHONPATH")) if p)}
    build = textwrap.indent(backend.child_source(f"lambda: {EPOCH!r}"), "    ")
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD.format(build=build), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) for _ in range(4)]
    outs = [await p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), [err.decode()[-2000:] for _, err in outs]
    assert sum(int(out) for out, _ in outs) == 100
    assert await level(await stores()) == (0, 100)


# -- property: reservations under random interleavings ---------------------------------------


@dataclass
class Model:
    """What the spec says about one scope: what is used, and the live holds by id."""

    used: float = 0.0
    holds: dict[str, tuple[str, float, float]] = field(default_factory=dict)  # owner, amount, until

    def held(self, now: float) -> float:
        return sum(a for _, a, until in self.holds.values() if until > now)


_op = st.one_of(
    st.tuples(st.just("reserve"), st.integers(0, 1), st.integers(1, 40)),
    st.tuples(st.just("reserve"), st.integers(0, 1), st.integers(1, 40)),
    st.tuples(st.just("settle"), st.integers(0, 1), st.integers(0, 60)),
    st.tuples(st.just("advance"), st.just(0), st.sampled_from([1, 10, 29, 31])),
    st.tuples(st.just("advance"), st.just(0), st.sampled_from([31])),
    st.tuples(st.just("renew"), st.integers(0, 1), st.just(0)),
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(_op, max_size=30), limit=st.integers(20, 120))
def test_reservations_match_the_spec_under_random_interleavings(
        backend: Backend, ops: list[tuple[str, int, int]], limit: int) -> None:
    async def run() -> None:
        clock = FakeClock()
        scope = f"p:{os.urandom(6).hex()}"  # a fresh scope per example, on one backend
        objs = [backend.new(clock), backend.new(clock)]
        for s in objs:
            await s.open()
        try:
            await owned(objs[0], f"{scope}-s", "A")
            await owned(objs[0], f"{scope}-t", "B")
            m = Model()
            n = 0
            for op, who, x in ops:
                owner, s = "AB"[who], objs[who]
                now = clock.now
                if op == "reserve":
                    n += 1
                    rid = f"{scope}-{n}"
                    res = await s.reserve(rid, owner, [tokens(x, limit, scope=scope)],
                                          lease_s=LEASE)
                    want = m.used + m.held(now) < limit
                    assert res.granted == want, (ops, m)
                    lv = res.levels[0]
                    # a grant may still count holds that lapsed; a refusal counts live ones
                    assert lv.used == m.used and (lv.held >= m.held(now) if want
                                                  else lv.held == m.held(now)), (ops, m)
                    if want:
                        m.holds[rid] = (owner, x, now + LEASE)
                elif op == "settle":
                    mine = [r for r, (o, _, _) in m.holds.items() if o == owner]
                    if mine:
                        await s.settle(mine[0], [Spend(scope=scope, unit="tokens", amount=x)])
                        del m.holds[mine[0]]
                        m.used += x
                elif op == "advance":
                    clock.advance(x)
                else:
                    await s.renew(owner, LEASE)
                    m.holds = {r: (o, a, now + LEASE if o == owner and u > now else u)
                               for r, (o, a, u) in m.holds.items()}
                used, held = await level(objs[1 - who], scope)
                assert (used, held) == (m.used, m.held(clock.now)), (ops, m)
        finally:
            for s in objs:
                await s.aclose()

    asyncio.run(run())


# -- token buckets -----------------------------------------------------------------------------


NOW = (True, 0.0)  # taken, no wait


async def test_a_new_bucket_is_full_and_a_take_within_it_waits_nothing(store: Store) -> None:
    assert await store.take("rpm:m", 1, rate=1.0, capacity=3) == NOW
    assert await store.take("rpm:m", 2, rate=1.0, capacity=3) == NOW


async def test_a_take_past_the_balance_goes_into_debt_and_says_how_long_to_wait(
        store: Store) -> None:
    assert await store.take("b", 3, rate=2.0, capacity=3) == NOW
    assert await store.take("b", 1, rate=2.0, capacity=3) == (True, pytest.approx(0.5))
    # later takers wait behind the debt: -1 now, so 1 more is 1 s away at 2 a second
    assert await store.take("b", 1, rate=2.0, capacity=3) == (True, pytest.approx(1.0))


async def test_a_take_that_would_wait_past_max_wait_takes_nothing(store: Store) -> None:
    await store.take("b", 3, rate=1.0, capacity=3)
    assert await store.take("b", 1, rate=1.0, capacity=3, max_wait=0) == (False,
                                                                          pytest.approx(1.0))
    assert await store.take("b", 1, rate=1.0, capacity=3, max_wait=0.5) == (False,
                                                                            pytest.approx(1.0))
    assert await store.take("b", 1, rate=1.0, capacity=3, max_wait=1) == (True,
                                                                          pytest.approx(1.0))


async def test_a_take_larger_than_the_bucket_waits_for_a_full_one(store: Store) -> None:
    assert await store.take("b", 10, rate=1.0, capacity=4) == NOW  # full: 6 left as debt
    assert await store.take("b", 1, rate=1.0, capacity=4) == (True, pytest.approx(7.0))


async def test_buckets_refill_by_the_stores_clock_up_to_their_capacity(
        store: Store, clock: FakeClock) -> None:
    await store.take("b", 3, rate=1.0, capacity=3)
    clock.advance(2)
    assert await store.take("b", 2, rate=1.0, capacity=3, max_wait=0) == NOW
    assert (await store.take("b", 1, rate=1.0, capacity=3, max_wait=0))[0] is False
    clock.advance(100)  # never more than the capacity
    assert await store.take("b", 3, rate=1.0, capacity=3, max_wait=0) == NOW
    assert (await store.take("b", 1, rate=1.0, capacity=3, max_wait=0))[0] is False


async def test_give_puts_tokens_back_up_to_the_capacity_or_takes_more(store: Store) -> None:
    await store.take("b", 3, rate=1.0, capacity=3)
    await store.give("b", 2, rate=1.0, capacity=3)
    assert await store.take("b", 2, rate=1.0, capacity=3, max_wait=0) == NOW
    await store.give("b", 50, rate=1.0, capacity=3)
    assert await store.take("b", 3, rate=1.0, capacity=3, max_wait=0) == NOW
    await store.give("b", 3, rate=1.0, capacity=3)
    await store.give("b", -5, rate=1.0, capacity=3)  # a call that used more than it took
    assert await store.take("b", 1, rate=1.0, capacity=3) == (True, pytest.approx(3.0))


async def test_buckets_are_kept_apart(store: Store) -> None:
    await store.take("a", 3, rate=1.0, capacity=3)
    assert await store.take("b", 3, rate=1.0, capacity=3, max_wait=0) == NOW


async def test_two_store_objects_share_one_bucket(stores: Opener) -> None:
    a, b = await stores(), await stores()
    takes = await asyncio.gather(*(s.take("b", 1, rate=1.0, capacity=5, max_wait=0)
                                   for _ in range(10) for s in (a, b)))
    assert sum(taken for taken, _ in takes) == 5


# -- the response cache ------------------------------------------------------------------------


async def test_cache_put_get_and_overwrite(store: Store) -> None:
    assert await store.cache_get("t1", "k") is None
    await store.cache_put("t1", "k", "v1", ttl=60)
    assert await store.cache_get("t1", "k") == "v1"
    await store.cache_put("t1", "k", "v2", ttl=60)
    assert await store.cache_get("t1", "k") == "v2"


async def test_cache_entries_expire_by_the_stores_clock(store: Store, clock: FakeClock) -> None:
    await store.cache_put("t1", "k", "v", ttl=60)
    clock.advance(59)
    assert await store.cache_get("t1", "k") == "v"
    clock.advance(1)
    assert await store.cache_get("t1", "k") is None
    await store.cache_put("t1", "k", "again", ttl=60)  # an expired key is written anew
    assert await store.cache_get("t1", "k") == "again"


async def test_cache_entries_never_cross_tenants(store: Store) -> None:
    await store.cache_put("t1", "k", "mine", ttl=60)
    assert await store.cache_get("t2", "k") is None


async def test_a_cache_entry_one_store_object_wrote_is_read_by_another(stores: Opener) -> None:
    a, b = await stores(), await stores()
    await a.cache_put("t1", "k", "v", ttl=60)
    assert await b.cache_get("t1", "k") == "v"


# -- spend by agent ----------------------------------------------------------------------------


async def test_tenant_spend_of_one_agent(store: Store, clock: FakeClock) -> None:
    await owned(store, "s", "A")
    await store.append("s", "A", model_step("0", clock.now, "triage", (10, 5), 0.5))
    await store.append("s", "A", model_step("1", clock.now, "writer", (100, 50), 2.0))
    since, until = clock.now - 1, clock.now + 1
    assert await store.tenant_spend("t1", since, until, agent="writer") == (150, 2.0)
    assert await store.tenant_spend("t1", since, until, agent="nobody") == (0, 0.0)
    assert (await store.tenant_spend("t1", since, until))[0] == 165
