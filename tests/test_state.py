"""Versioned shared state through the workflow context: typed values, compare-and-set,
bounded update, history, tenants, and journaled reads and writes (a resumed or replayed
session sees what it saw and never writes twice)."""

from __future__ import annotations

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


class Account(BaseModel):
    credit: float = 0.0
    open_tickets: int = 0


def _engine(db: str | Path, clock: FakeClock | None = None, **kw: Any) -> convoy.Engine:
    return convoy.Engine(store_from_url(db, clock=clock or FakeClock()), **kw)


def _later(db: str | Path, clock: FakeClock, **kw: Any) -> convoy.Engine:
    """Another engine (process) on the store, once the first one's leases have expired."""
    clock.advance(3600)
    return _engine(db, clock, **kw)


WRITERS = 40


@convoy.workflow(name="state.open_ticket")
async def open_ticket(ctx: convoy.Context, customer: str) -> int:
    acct = ctx.state(f"customer:{customer}", type=Account)
    # Each failed attempt of a writer means another writer's write landed, and each of
    # the others writes once: WRITERS attempts succeed whatever the timing.
    done = await acct.update("account",
                             lambda a: a.model_copy(update={"open_tickets": a.open_tickets + 1}),
                             default=Account(), attempts=WRITERS)
    return done.version


async def test_values_and_versions_round_trip_typed(db: str | Path) -> None:
    @convoy.workflow(name="state.basics")
    async def wf(ctx: convoy.Context, x: int) -> list[Any]:
        acct = ctx.state("customer:42", type=Account)
        missing = await acct.get("account")
        first = await acct.set("account", Account(credit=5), expected_version=0)
        read = await acct.get("account")
        second = await acct.set("account", {"credit": 7.5, "open_tickets": 1},  # validated
                                expected_version=read.version)
        return [missing.value, missing.version, missing.exists, first.version,
                read.value.credit if read.value else None, second.value, second.version]

    async with _engine(db) as eng:
        res = await eng.run(wf, 1)
    assert res.ok and res.output == [None, 0, False, 1, 5.0,
                                     Account(credit=7.5, open_tickets=1), 2]


async def test_a_stale_write_raises_a_typed_conflict_with_the_current_value(db: str | Path) -> None:
    @convoy.workflow(name="state.stale")
    async def wf(ctx: convoy.Context, x: int) -> list[Any]:
        acct = ctx.state("customer:1", type=Account)
        try:
            await acct.set("account", Account(credit=1), expected_version=1)
        except convoy.StateConflict as e:
            return [e.namespace, e.key, e.expected_version, e.current_version,
                    e.current_value, e.retryable]
        return []

    async with _engine(db) as eng:
        admin = eng.state("customer:1", type=Account)
        await admin.set("account", Account(credit=3), expected_version=0)
        await admin.set("account", Account(credit=4), expected_version=1)
        res = await eng.run(wf, 1)
    assert res.ok and res.output == ["customer:1", "account", 1, 2, Account(credit=4), True]


async def test_values_that_do_not_match_the_type_are_refused(db: str | Path) -> None:
    async with _engine(db) as eng:
        acct = eng.state("customer:1", type=Account)
        with pytest.raises(convoy.UserError, match="open_tickets"):
            await acct.set("account", {"open_tickets": "many"}, expected_version=0)
        assert (await acct.get("account")).version == 0
        with pytest.raises(convoy.UserError, match="not JSON-able"):
            await eng.state("raw").set("k", object(), expected_version=0)
        for value in (float("nan"), {"a": [float("inf")]}, -float("inf")):  # not JSON
            with pytest.raises(convoy.UserError, match="NaN and infinite numbers are not JSON"):
                await eng.state("raw").set("k", value, expected_version=0)
        assert (await eng.state("raw").set("k", "NaN Infinity", expected_version=0)).version
        # more digits than Python reads back (a string of as many digits is a string)
        for value in (10 ** 5000, {"a": [-(10 ** 4300)]}, {"n": Account(open_tickets=10 ** 5000)}):
            with pytest.raises(convoy.UserError, match=r"^state raw/k: an integer with more "
                               "than 4300 digits"):
                await eng.state("raw").set("k", value, expected_version=1)
        with pytest.raises(convoy.UserError, match="an integer with more than 4300 digits"):
            await acct.set("account", Account(open_tickets=10 ** 5000), expected_version=0)
        assert (await eng.state("raw").set("k", "1" * 5000, expected_version=1)).version == 2


async def test_concurrent_sessions_updating_one_record_lose_no_update(db: str | Path) -> None:
    async with _engine(db, concurrency=50) as eng:
        results = await eng.run_many(open_ticket, ["c1"] * WRITERS)
        assert all(r.ok for r in results)
        acct = await eng.state("customer:c1", type=Account).get("account")
        assert acct.value is not None and acct.value.open_tickets == acct.version == WRITERS
        assert sorted(r.output for r in results) == list(range(1, WRITERS + 1))
        assert eng.state_stats.total.writes == WRITERS
        assert eng.state_stats.conflicts > 0  # they raced, and update re-applied
        assert eng.state_stats.by_kind["customer"].conflicts == eng.state_stats.conflicts


class Meddler(convoy.Interceptor):
    """Another writer that gets in before every write of the session."""

    def __init__(self, engine: Callable[[], convoy.Engine]) -> None:
        self.engine = engine

    async def state_op(self, input: convoy.StateInput,
                       next: Callable[[convoy.StateInput], Awaitable[Any]]) -> Any:
        if input.op == "set":
            admin = self.engine().state(input.namespace)
            cur = await admin.get(input.state_key, 0)
            await admin.set(input.state_key, cur.value + 100, expected_version=cur.version)
        return await next(input)


async def test_update_gives_up_after_its_attempts_with_the_last_conflict(db: str | Path) -> None:
    @convoy.workflow(name="state.contended")
    async def wf(ctx: convoy.Context, attempts: int) -> str:
        try:
            await ctx.state("c").update("n", lambda n: n + 1, default=0, attempts=attempts)
        except convoy.StateConflict as e:
            return f"gave up at version {e.current_version} with {e.current_value}"
        return "written"

    eng: convoy.Engine
    eng = _engine(db, interceptors=[Meddler(lambda: eng)])
    async with eng:
        res = await eng.run(wf, 3)
        assert res.ok and res.output == "gave up at version 3 with 300"
        assert eng.state_stats.conflicts == 3
        journal = await eng.store.journal(res.id)
        # a read, then each write; between two writes a randomised pause and a new read
        assert [(r.target, r.status) for r in journal] == [
            ("get c/n", "completed"), ("set c/n", "failed"),
            ("timer", "completed"), ("get c/n", "completed"), ("set c/n", "failed"),
            ("timer", "completed"), ("get c/n", "completed"), ("set c/n", "failed")]
        assert "StateConflict" in (journal[1].result or "")
        assert (await eng.replay(res.id)).matches


class MeddleTimes(Meddler):
    """A :class:`Meddler` that gets in before the first ``times`` writes only."""

    def __init__(self, engine: Callable[[], convoy.Engine], times: int) -> None:
        super().__init__(engine)
        self.left = times

    async def state_op(self, input: convoy.StateInput,
                       next: Callable[[convoy.StateInput], Awaitable[Any]]) -> Any:
        if input.op == "set" and self.left > 0:
            self.left -= 1
            return await super().state_op(input, next)
        return await next(input)


@pytest.mark.parametrize("conflicts", [0, 1, 3])
async def test_an_update_takes_one_step_position_however_many_attempts_it_took(
        db: str | Path, conflicts: int) -> None:
    # The steps after an update keep their keys (and so their idempotency keys) whether it
    # wrote at once or after conflicts: a run and its resume after a crash agree on them.
    async def after() -> str:
        return "done"

    @convoy.workflow(name="state.then_step")
    async def wf(ctx: convoy.Context, _: int) -> str:
        await ctx.state("c").update("n", lambda n: n + 1, default=0, attempts=5)
        return str(await ctx.step("after", after, idempotent=True))

    eng: convoy.Engine
    eng = _engine(db, interceptors=[MeddleTimes(lambda: eng, conflicts)])
    async with eng:
        res = await eng.run(wf, 0)
        assert res.ok, res.error
        keys = {r.target: r.key for r in await eng.store.journal(res.id)}
        assert keys["after"] == "1"
        assert eng.state_stats.conflicts == conflicts


async def test_history_and_keys(db: str | Path) -> None:
    clock = FakeClock()

    @convoy.workflow(name="state.history")
    async def wf(ctx: convoy.Context, x: int) -> list[Any]:
        s = ctx.state("inventory")
        await s.set("apples", 1, expected_version=0)
        await s.set("pears", 2, expected_version=0)
        await s.update("apples", lambda n: n * 10)
        hist = await s.history("apples")
        last = await s.history("apples", limit=1)
        return [await s.keys(), {k: v.value for k, v in (await s.items()).items()},
                [[h.version, h.value, h.session_id, h.step_key, h.agent] for h in hist],
                [h.version for h in last]]

    async with _engine(db, clock) as eng:
        res = await eng.run(wf, 1, session_id="h")
    assert res.ok and res.output == [
        ["apples", "pears"], {"apples": 10, "pears": 2},
        [[1, 1, "h", "0", None], [2, 10, "h", "2/1", None]], [2]]


async def test_the_default_namespace_is_the_sessions_own(db: str | Path) -> None:
    @convoy.workflow(name="state.own")
    async def wf(ctx: convoy.Context, x: int) -> str:
        own = ctx.state()
        await own.set("note", f"from {ctx.session_id}", expected_version=0)
        return own.namespace

    async with _engine(db) as eng:
        res = await eng.run(wf, 1, session_id="mine")
        assert res.output == "session:mine"
        assert (await eng.state("session:mine").get("note")).value == "from mine"


async def test_sessions_see_only_their_tenants_state(db: str | Path) -> None:
    @convoy.workflow(name="state.tenant")
    async def wf(ctx: convoy.Context, x: int) -> Any:
        return (await ctx.state("shared").get("k")).value

    async with _engine(db) as eng:
        await eng.state("shared", tenant="acme").set("k", "acme's", expected_version=0)
        await eng.state("shared", tenant="globex").set("k", "globex's", expected_version=0)
        assert (await eng.run(wf, 1, tenant="acme")).output == "acme's"
        assert (await eng.run(wf, 1, tenant="globex")).output == "globex's"
        assert (await eng.run(wf, 1, tenant="initech")).output is None


async def test_replay_sees_what_the_session_saw_not_what_the_store_holds_now(
        db: str | Path) -> None:
    async with _engine(db) as eng:
        res = await eng.run(open_ticket, "c9")
        admin = eng.state("customer:c9", type=Account)
        await admin.set("account", Account(open_tickets=50), expected_version=1)
        replay = await eng.replay(res.id)
        assert replay.matches and replay.output == "1"
        assert (await admin.get("account")).version == 2  # replay wrote nothing


class CrashAfter(convoy.Interceptor):
    """Crash the process right after a state operation of ``op`` took effect, before the
    journal records it (the first time only)."""

    def __init__(self, op: str) -> None:
        self.op = op
        self.crashed = False

    async def state_op(self, input: convoy.StateInput,
                       next: Callable[[convoy.StateInput], Awaitable[Any]]) -> Any:
        out = await next(input)
        if input.op == self.op and not self.crashed:
            self.crashed = True
            raise Crash
        return out


async def test_a_write_that_landed_before_a_crash_is_not_applied_again_on_resume(
        db: str | Path) -> None:
    clock = FakeClock()
    crash = CrashAfter("set")
    async with _engine(db, clock, interceptors=[crash]) as eng:
        with pytest.raises(Crash):
            await eng.run(open_ticket, "c2", session_id="s")
        assert crash.crashed
        assert [r.target for r in await eng.store.journal("s")] == ["get customer:c2/account"]
    async with _later(db, clock, workflows=[open_ticket]) as eng2:
        [res] = await eng2.resume()
        assert res.ok and res.output == 1
        hist = await eng2.state("customer:c2", type=Account).history("account")
        assert [(h.version, h.session_id, h.value.open_tickets) for h in hist] == [(1, "s", 1)]
        assert eng2.state_stats.conflicts == 0  # recognised as its own write, not a conflict
        assert (await eng2.replay("s")).matches


async def test_a_resumed_session_replays_its_read_even_after_the_key_moved_on(
        db: str | Path) -> None:
    """Crash after the read was journaled; another writer changes the key meanwhile. The
    resumed session sees the value it read, so its write against that version is refused
    (no lost update), and update then re-applies on the current value."""
    clock = FakeClock()
    crashes: list[int] = []

    async def crash_once() -> int:
        if not crashes:
            crashes.append(1)
            raise Crash
        return 1

    @convoy.workflow(name="state.read_then_crash")
    async def wf(ctx: convoy.Context, x: int) -> list[Any]:
        acct = ctx.state("customer:c3", type=Account)
        first = await acct.get("account", Account())
        await ctx.step("crash here", crash_once, idempotent=True)
        bumped = first.value.model_copy(update={"open_tickets": first.value.open_tickets + 1})
        try:
            await acct.set("account", bumped, expected_version=first.version)
            outcome = "written"
        except convoy.StateConflict as e:
            outcome = f"conflict: version {e.current_version}, {e.current_value!r}"
        done = await acct.update("account", lambda a: a.model_copy(
            update={"open_tickets": a.open_tickets + 1}), default=Account())
        return [first.value.open_tickets, outcome, done.value.open_tickets]

    async with _engine(db, clock) as eng:
        with pytest.raises(Crash):
            await eng.run(wf, 1, session_id="r")
        other = eng.state("customer:c3", type=Account)
        await other.set("account", Account(open_tickets=10), expected_version=0)
    async with _later(db, clock, workflows=[wf]) as eng2:
        [res] = await eng2.resume()
        assert res.ok and res.output == [
            0, "conflict: version 1, Account(credit=0.0, open_tickets=10)", 11]
        assert (await eng2.replay("r")).matches
