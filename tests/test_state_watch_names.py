"""The signal of a watch on shared state names its key unambiguously: the namespace is
percent-encoded (``%`` and ``/``), so namespace ``a/b`` with key ``c`` and namespace ``a``
with key ``b/c`` are two signals, and a write to one never wakes a session waiting on the
other. A session journaled by a Convoy that did not encode the namespace resumes its wait
under the name it recorded: an upgrade never re-runs nor loses a wait."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.state import _access
from convoy.state._access import watch_signal, watched
from convoy.stores import store_from_url

from .conftest import STORE_KINDS, FakeClock, store_db

#: Two keys whose signals an unencoded namespace would make one.
AB_C = ("a/b", "c")
A_BC = ("a", "b/c")
OTHER = {AB_C: A_BC, A_BC: AB_C}


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


def _engine(db: str | Path, clock: FakeClock) -> convoy.Engine:
    return convoy.Engine(store_from_url(db, clock=clock),
                         workflows=[after_a_timeout, one_wait])


def _old_name(namespace: str, key: str) -> str:
    """The signal name a Convoy before the encoding gave a watch."""
    return f"convoy.state:{namespace}/{key}"


@convoy.workflow(name="state.names.after_a_timeout")
async def after_a_timeout(ctx: convoy.Context, first: list[str]) -> Any:
    """Wait on ``first`` until the wait times out (its watch stays: a watch fires once, at
    the next write), then on the other key."""
    ns, key = first
    with contextlib.suppress(convoy.WaitTimeout):
        await ctx.state(ns).wait(key, timeout=60)
    ns2, key2 = OTHER[(ns, key)]
    got = await ctx.state(ns2).wait(key2)
    return got.value


@convoy.workflow(name="state.names.one_wait")
async def one_wait(ctx: convoy.Context, where: list[str]) -> Any:
    got = await ctx.state(where[0]).wait(where[1], until=lambda v: v.value == "done")
    return [got.value, got.version]


def test_the_names_differ_and_read_back() -> None:
    assert watch_signal(*AB_C) != watch_signal(*A_BC)
    assert watch_signal("order:1", "status") == "convoy.state:order:1/status"  # as before
    assert watch_signal("50%/x", "k/y") == "convoy.state:50%25%2Fx/k/y"
    for ns, key in [AB_C, A_BC, ("50%/x", "k/y"), ("%2F", "%25"), ("order:1", "status")]:
        assert watched(watch_signal(ns, key)) == (ns, key)
    assert watched("approve") is None


@pytest.mark.parametrize("first", [AB_C, A_BC], ids=["a/b+c-then-a+b/c", "a+b/c-then-a/b+c"])
async def test_a_write_to_one_key_does_not_wake_a_wait_on_the_other(
        db: str | Path, first: tuple[str, str]) -> None:
    clock = FakeClock()
    second = OTHER[first]
    async with _engine(db, clock) as eng:
        assert (await eng.run(after_a_timeout, list(first), session_id="s")).status == \
            "waiting"
        clock.advance(61)
        [res] = await eng.resume()  # timed out; now waits on the other key
        assert res.status == "waiting"
        row = await eng.store.get_session("s")
        assert row is not None and row.wait_name == watch_signal(*second)
        steps = len(await eng.store.journal("s"))

        # The key it waited on before changes: its leftover watch fires, but with the
        # signal of that key, which is not the one the session waits for.
        await eng.state(first[0]).set(first[1], "not this", expected_version=0)
        row = await eng.store.get_session("s")
        assert row is not None and row.status == "waiting", row
        assert row.wait_name == watch_signal(*second)
        assert [r.status for r in await eng.resume()] == ["waiting"]
        assert len(await eng.store.journal("s")) == steps  # it did not run

        await eng.state(second[0]).set(second[1], "this", expected_version=0)
        [res] = await eng.resume()
        assert res.ok and res.output == "this"
        assert (await eng.replay("s")).matches


async def _journaled_the_old_way(eng: convoy.Engine, where: tuple[str, str], sid: str,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``one_wait`` until it parks as a Convoy that did not encode namespaces would
    have: its wait record, its watch and its session's wait all under the old name."""
    with monkeypatch.context() as mp:
        mp.setattr(_access, "watch_signal", _old_name)
        assert (await eng.run(one_wait, list(where), session_id=sid)).status == "waiting"
    row = await eng.store.get_session(sid)
    assert row is not None and row.wait_name == _old_name(*where) != watch_signal(*where)
    waits = [r for r in await eng.store.journal(sid) if r.kind == "wait"]
    assert [(r.target, r.status) for r in waits] == [(_old_name(*where), "started")]


@pytest.mark.parametrize("where", [AB_C, ("50%", "k")], ids=["slash", "percent"])
async def test_a_wait_journaled_under_the_old_name_completes_after_the_upgrade(
        db: str | Path, where: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        await _journaled_the_old_way(eng, where, "old", monkeypatch)
    async with _engine(db, clock) as eng:  # this Convoy, as after an upgrade
        await eng.state(where[0]).set(where[1], "not yet", expected_version=0)
        [res] = await eng.resume()  # woken by its old watch, waits again (new name)
        assert res.status == "waiting"
        row = await eng.store.get_session("old")
        assert row is not None and row.wait_name == watch_signal(*where)
        await eng.state(where[0]).set(where[1], "done", expected_version=1)
        [res] = await eng.resume()
        assert res.ok and res.output == ["done", 2]
        waits = {r.key: r.target for r in await eng.store.journal("old") if r.kind == "wait"}
        assert list(waits.values()) == [_old_name(*where), watch_signal(*where)]
        assert (await eng.replay("old")).matches


async def test_an_old_wait_completed_before_the_upgrade_replays(
        db: str | Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        await _journaled_the_old_way(eng, AB_C, "s", monkeypatch)
        with monkeypatch.context() as mp:
            mp.setattr(_access, "watch_signal", _old_name)
            await eng.state("a/b").set("c", "done", expected_version=0)
            [res] = await eng.resume()
            assert res.ok
    async with _engine(db, clock) as eng:
        replayed = await eng.replay("s")
        assert replayed.matches, replayed


def _lose_the_wait_record(db: str | Path, sid: str) -> None:
    """What a crash between the watch's record and the wait's leaves (SQLite): the
    watch journaled, no wait record, the session runnable."""
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM journal WHERE session_id=? AND kind='wait'", (sid,))
        conn.execute("UPDATE sessions SET status='pending', wait_name=NULL, wake_at=NULL "
                     "WHERE id=?", (sid,))
    conn.close()


@pytest.mark.parametrize("written", ["before", "after"])
async def test_a_crash_between_the_old_watch_and_its_wait_loses_nothing(
        tmp_path: Path, written: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "convoy.db"
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        await _journaled_the_old_way(eng, AB_C, "s", monkeypatch)
    _lose_the_wait_record(db, "s")
    async with _engine(db, clock) as eng:  # this Convoy, as after an upgrade
        if written == "before":  # the old watch fired before the session was resumed
            await eng.state("a/b").set("c", "done", expected_version=0)
        [res] = await eng.resume()
        if written == "after":
            assert res.status == "waiting"
            await eng.state("a/b").set("c", "done", expected_version=0)
            [res] = await eng.resume()
        assert res.ok and res.output == ["done", 1]
        assert (await eng.replay("s")).matches


def test_the_command_line_shows_the_key_decoded(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.clikit import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONVOY_DB", raising=False)
    monkeypatch.delenv("CONVOY_TENANT", raising=False)

    async def start() -> None:
        async with _engine(tmp_path / "x.db", FakeClock()) as eng:
            assert (await eng.run(one_wait, list(AB_C), session_id="s")).status == "waiting"

    asyncio.run(start())
    listed = cli("sessions", "list", "--db", "x.db", env={"COLUMNS": "250"})
    assert "a change of a/b/c" in listed.stdout, listed.stdout
    shown = cli("sessions", "show", "s", "--db", "x.db")
    assert "waits for a change of  state a/b/c" in shown.stdout, shown.stdout
    assert "%2F" not in listed.stdout  # (the journal in 'show' has the step as it is)
    line = next(ln for ln in shown.stdout.splitlines() if ln.startswith("waiting for"))
    argv = shlex.split(line[line.index("convoy"):line.index(", then")])
    assert argv == ["convoy", "state", "set", "a/b", "c", "JSON", "--db", "x.db"]
    said = cli(*[('"done"' if w == "JSON" else w) for w in argv[1:]])
    assert said.code == 0 and "woke 1 waiting session" in said.stdout, said
