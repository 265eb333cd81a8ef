"""A retention purge and shared state: it deletes the state versions the sessions it purges
wrote, never those of the sessions it keeps, so no update is lost (the shared-state
invariant), and readers, compare-and-set writers and waiters go on across the gaps it
leaves (docs/how-to/privacy.md, retention)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.stores import store_from_url

from .conftest import STORE_KINDS, FakeClock, store_db

DAY = 86400.0


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    """Every test of this module runs on SQLite and on PostgreSQL."""
    yield from store_db(request.param, tmp_path)


def _engine(db: str | Path, clock: FakeClock) -> convoy.Engine:
    return convoy.Engine(store_from_url(db, clock=clock))


@convoy.workflow(name="retention.inc")
async def inc(ctx: convoy.Context, who: str) -> int:
    return (await ctx.state("acct").update("counter", lambda v: v + 1, default=0)).value


@convoy.workflow(name="retention.set_mode")
async def set_mode(ctx: convoy.Context, mode: str) -> int:
    modes = ctx.state("config")
    current = await modes.get("mode")
    return (await modes.set("mode", mode, expected_version=current.version)).version


@convoy.workflow(name="retention.ask")
async def ask(ctx: convoy.Context, amount: int) -> bool:
    await ctx.state().set("asked", amount, expected_version=0)  # its private namespace
    got = await ctx.ask_human(f"Refund {amount}?", bool)
    await ctx.state("acct").update("refunds", lambda v: v + 1, default=0)
    return bool(got.value)


@convoy.workflow(name="retention.note_then_wait")
async def note_then_wait(ctx: convoy.Context, note: str) -> Any:
    config = ctx.state("config")
    await config.set("mode", note, expected_version=0)
    got = await config.wait("mode", until=lambda v: v.value == "done")
    return [got.value, got.version]


@convoy.workflow(name="retention.any_change")
async def any_change(ctx: convoy.Context, x: int) -> Any:
    got = await ctx.state("config").wait("mode")
    return [got.value, got.version]


async def test_a_purge_keeps_the_versions_that_kept_sessions_wrote(db: str | Path) -> None:
    """The session that created a key is purged; the versions younger sessions wrote stay,
    the key's value stays, and the next update counts on from it (it restarted from the
    default, a lost update of every kept session's)."""
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        old = await eng.run(inc, "old")  # creates the key: version 1
        clock.advance(31 * DAY)
        assert [(await eng.run(inc, f"new{i}")).output for i in range(4)] == [2, 3, 4, 5]
        acct = eng.state("acct")
        [event] = await eng.purge(30 * DAY)
        assert (event.reason, event.sessions, event.state_versions) == ("retention", 1, 1)
        assert await eng.store.get_session(old.id) is None
        now = await acct.get("counter")
        assert (now.value, now.version) == (5, 5)
        history = await acct.history("counter")
        assert [(v.version, v.value) for v in history] == [(2, 2), (3, 3), (4, 4), (5, 5)]
        assert old.id not in {v.session_id for v in history}
        assert (await eng.run(inc, "later")).output == 6
        with pytest.raises(convoy.StateConflict) as stale:  # (the purged version's number)
            await acct.set("counter", 0, expected_version=1)
        assert (stale.value.current_version, stale.value.current_value) == (6, 6)
        assert (await acct.set("counter", 7, expected_version=6)).version == 7
        assert await eng.purge(30 * DAY) == []


async def test_a_key_whose_current_version_is_purged_keeps_its_number(db: str | Path) -> None:
    """The newest version of a key is the purged session's: the key's value is its newest
    remaining version's again, under the purged version's number, so a session parked on
    the key, waiting past that version, wakes at the next write, and a writer that read
    it writes against it (were the number to go back, the next write would be given it
    again: the waiter would sleep through it, and a stale writer's compare-and-set would
    land on a value it never read)."""
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        config = eng.state("config")
        await config.set("mode", "kept", expected_version=0)       # no session's: stays
        assert (await eng.run(set_mode, "purged")).output == 2     # a session's: purged
        waiting = await eng.run(any_change, 1)                     # waits past version 2
        assert waiting.status == "waiting"
        clock.advance(31 * DAY)
        [event] = await eng.purge(30 * DAY)
        assert (event.sessions, event.state_versions) == (1, 1)
        assert await eng.store.get_session(waiting.id) is not None  # (parked: kept)
        now = await config.get("mode")
        assert (now.value, now.version) == ("kept", 2)
        assert [(v.version, v.value) for v in await config.history("mode")] == [(1, "kept")]
        with pytest.raises(convoy.StateConflict):
            await config.set("mode", "stale", expected_version=1)
        assert (await eng.run(set_mode, "next")).output == 3       # against version 2
        [woken] = await eng.resume()
        assert woken.id == waiting.id and woken.ok and woken.output == ["next", 3]
        assert [v.version for v in await config.history("mode")] == [1, 3]


async def test_a_key_only_purged_sessions_wrote_goes(db: str | Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        for i in range(2):
            await eng.run(inc, f"old{i}")
        clock.advance(31 * DAY)
        [event] = await eng.purge(30 * DAY)
        assert (event.sessions, event.state_versions) == (2, 2)
        acct = eng.state("acct")
        assert (await acct.get("counter")).version == 0
        assert await acct.history("counter") == [] and await acct.keys() == []
        assert (await eng.run(inc, "new")).output == 1


async def test_a_session_waiting_on_a_key_that_goes_wakes_at_its_next_write(
        db: str | Path) -> None:
    """A review: a kept session waiting for a key past version 3, whose every version
    purged sessions wrote: the key went, its next write was version 1, and the watch,
    waiting past 3, never fired. The watch now waits past what the key is after the purge
    (0: gone), so the next write wakes the session; that write is version 4, past the
    versions the purge deleted (a number never names two values)."""
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        for mode in ("a", "b", "c"):
            await eng.run(set_mode, mode)                           # versions 1 to 3
        clock.advance(31 * DAY)
        waiting = await eng.run(note_waiter, 1)                     # waits past version 3
        assert waiting.status == "waiting", waiting
        [event] = await eng.purge(30 * DAY)
        assert (event.sessions, event.state_versions) == (3, 3)
        config = eng.state("config")
        assert (await config.get("mode")).version == 0
        await config.set("mode", "done", expected_version=0)       # a new key, version 4
        [woken] = await eng.resume()
        assert woken.id == waiting.id and woken.ok and woken.output == ["done", 4], woken


@convoy.workflow(name="retention.note_waiter")
async def note_waiter(ctx: convoy.Context, x: int) -> Any:
    got = await ctx.state("config").wait("mode", until=lambda v: v.value == "done")
    return [got.value, got.version]


async def test_a_purged_sessions_own_keys_go_whole(db: str | Path) -> None:
    """A session's human task (a person's decision on it is a version of the task) and its
    private namespace are its own: they go whole, whoever wrote them, as before; only in
    shared namespaces are the versions others wrote kept."""
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        asked = await eng.run(ask, 10, session_id="r-1")
        assert asked.status == "waiting"
        await eng.inbox.answer("r-1:1", True, by="bob")     # (written by no session)
        [done] = await eng.resume()
        assert done.ok and done.output is True
        clock.advance(31 * DAY)
        assert (await eng.run(inc, "young")).ok              # another key of "acct"
        await eng.state("acct").update("refunds", lambda v: v + 1, default=0)
        [event] = await eng.purge(30 * DAY)
        assert event.sessions == 1
        assert await eng.inbox.tasks(status="all") == []
        assert await eng.store.state_history("default", "convoy.inbox", "r-1:1") == []
        assert await eng.state("session:r-1").keys() == []
        refunds = await eng.state("acct").get("refunds")
        assert (refunds.value, refunds.version) == (2, 2)  # v1 was the purged session's
        assert [v.version for v in await eng.state("acct").history("refunds")] == [2]


async def test_a_sealed_version_falls_back_and_still_opens(db: str | Path) -> None:
    """With a master key: the remaining version a key falls back to is a data subject's,
    sealed under the subject's key and bound to its writer: it opens as it did, under the
    purged version's number, and a write from outside any session is sealed under the
    same subject's key."""
    clock = FakeClock()
    key = convoy.MasterKey.from_text(convoy.MasterKey.generate())
    async with convoy.Engine(store_from_url(db, clock=clock), master_key=key) as eng:
        parked = await eng.run(note_then_wait, "ada@example.org", subject="c-1")
        assert parked.status == "waiting"
        assert (await eng.run(set_mode, "purged")).output == 2
        clock.advance(31 * DAY)
        [event] = await eng.purge(30 * DAY)
        assert (event.sessions, event.state_versions) == (1, 1)
        config = eng.state("config")
        now = await config.get("mode")
        assert (now.value, now.version) == ("ada@example.org", 2)
        inner = eng.store.inner  # type: ignore[attr-defined]  # (the store under the seal)
        raw = await inner.state_get("default", "config", "mode")
        assert raw is not None and "ada@example.org" not in raw.value  # (sealed)
        assert (await config.set("mode", "done", expected_version=2)).version == 3
        raw = await inner.state_get("default", "config", "mode")
        assert raw is not None and '"done"' not in raw.value  # sealed as the subject's
        [woken] = await eng.resume()
        assert woken.id == parked.id and woken.ok and woken.output == ["done", 3]
