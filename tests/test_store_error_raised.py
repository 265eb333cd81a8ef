"""A store error that stops a call reaches its caller as itself, the error a library user
catches (``except convoy.StoreError``), not wrapped in an ``ExceptionGroup`` by the task
group that ran the sessions (``run_many``; ``serve``: ``tests/test_worker_backoff.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.engine._raised import raised_of
from convoy.stores import SQLiteStore


@convoy.workflow(name="raised.double")
async def double(ctx: convoy.Context, n: int) -> int:
    got: int = await ctx.step("double", lambda: n * 2)
    return got


class NoClaims(SQLiteStore):
    """A store that cannot claim a session (an operator's problem: not transient)."""

    async def claim(self, *a: Any, **kw: Any) -> Any:
        raise convoy.StoreError("attempt to write a readonly database", transient=False)


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_run_many_raises_the_store_error_itself(tmp_path: Path,
                                                      concurrency: int) -> None:
    async with convoy.Engine(tmp_path / "c.db") as e:
        e.drain()  # (three pending sessions to take up)
        await e.run_many(double, [1, 2, 3], ids=["a", "b", "c"])
    async with convoy.Engine(NoClaims(tmp_path / "c.db"), workflows=[double],
                             concurrency=concurrency) as e:
        with pytest.raises(convoy.StoreError, match="readonly database"):
            await e.run_many(double, [1, 2, 3], ids=["a", "b", "c"])


class Abort(BaseException):
    """What a step raises to stop the process (as a crash would): not an ``Exception``."""


def test_of_errors_at_once_the_one_that_explains_the_rest_is_raised_and_names_them() -> None:
    store, bug = convoy.StoreError("disk full"), ValueError("a bug")
    chosen = raised_of(ExceptionGroup("g", [bug, ExceptionGroup("inner", [store])]))
    assert chosen is store  # (a store that failed fails every session that used it)
    assert chosen.__notes__ == ["1 other error at the same time: ValueError: a bug"]
    user = convoy.UserError("wrong key")
    assert raised_of(ExceptionGroup("g", [bug, user])) is user
    abort = Abort("stop")
    crash = raised_of(BaseExceptionGroup("g", [convoy.StoreError("x"), abort]))
    assert crash is abort  # (nothing hides what stops the process)
    alone = ValueError("alone")
    assert raised_of(ExceptionGroup("g", [alone])) is alone
    assert not hasattr(alone, "__notes__")
    many = [ValueError(f"v{i}\nsecond line") for i in range(5)]
    [note] = raised_of(ExceptionGroup("g", many)).__notes__
    assert note == ("4 other errors at the same time: ValueError: v1; ValueError: v2; "
                    "ValueError: v3; and 1 more")


@convoy.workflow(name="raised.stops")
async def stops(ctx: convoy.Context, n: int) -> int:
    async def act() -> int:
        if n == 0:
            raise Abort("stop")
        return n

    got: int = await ctx.step("act", act)
    return got


class NoJournal(SQLiteStore):
    """A store that cannot read session ``s1``'s journal (not transient)."""

    async def load_journal(self, session_id: str, *a: Any, **kw: Any) -> Any:
        if session_id == "s1":
            raise convoy.StoreError("journal of s1 unreadable", transient=False)
        return await super().load_journal(session_id, *a, **kw)


async def test_a_step_that_raises_a_base_exception_is_not_hidden_by_a_store_error(
        tmp_path: Path) -> None:
    """Review: one session's step raised a ``BaseException`` and another's journal could
    not be read: ``run_many`` raised the ``StoreError`` (the step's exception only in the
    group, as its context)."""
    async with convoy.Engine(tmp_path / "c.db") as e:
        e.drain()
        await e.run_many(stops, [0, 1], ids=["s0", "s1"])
    async with convoy.Engine(NoJournal(tmp_path / "c.db"), workflows=[stops],
                             concurrency=2) as e:
        with pytest.raises(Abort) as caught:
            await e.run_many(stops, [0, 1], ids=["s0", "s1"])
    assert caught.value.__notes__ == [
        "1 other error at the same time: StoreError: journal of s1 unreadable"]


class DownOnceCreated(SQLiteStore):
    """A store that goes down once ``run_many`` created its sessions."""

    down = False

    async def create_sessions(self, *a: Any, **kw: Any) -> Any:
        got = await super().create_sessions(*a, **kw)
        self.down = True
        return got

    async def release(self, *a: Any, **kw: Any) -> Any:
        if self.down:
            raise convoy.StoreError("could not reach the store", transient=True)
        return await super().release(*a, **kw)

    async def get_session(self, *a: Any, **kw: Any) -> Any:
        if self.down:
            raise convoy.StoreError("could not reach the store", transient=True)
        return await super().get_session(*a, **kw)


async def test_run_many_stopped_while_the_store_is_down_returns_its_sessions_unfinished(
        tmp_path: Path) -> None:
    """A stop (a drain) leaves the sessions ``run_many`` has not started for a later run;
    with the store down it returns them ``pending`` (review: it raised the store's error,
    so ``convoy run`` stopped with Ctrl-C ended with it, exit 1)."""
    store = DownOnceCreated(tmp_path / "c.db")
    async with convoy.Engine(store, workflows=[double]) as e:
        e.drain()
        res = await e.run_many(double, [1, 2], ids=["a", "b"])
    assert [(r.id, r.status) for r in res] == [("a", "pending"), ("b", "pending")]


@pytest.mark.parametrize(("what", "session"), [("write", True), ("read", False),
                                                ("compact", False)])
def test_a_lost_postgresql_connection_says_to_try_again_and_what_a_session_does(
        what: str, session: bool) -> None:
    """``convoy erase`` or ``audit seal`` losing its connection said "the session is left
    unfinished: resume it", though they run no session: the line says to try again, and
    what becomes of a session only for a write (a session's step may be one)."""
    import psycopg

    from convoy.stores._postgres_sql import store_error

    said = str(store_error(psycopg.OperationalError("server closed the connection "
                                                    "unexpectedly"), "'pg'", what))
    assert said.startswith(f"the store 'pg' failed to {what}: server closed the connection "
                           "unexpectedly; try again once the server is reachable"), said
    assert ("session is left unfinished" in said) is session, said
