"""An erasure that runs while another engine is starting a session of the same subject
(two engines on one store, as two processes are; SQLite and PostgreSQL). Whichever way
the two interleave, the session is erased with the subject, or it is sealed under a key
the store still holds: never left naming an erased subject, its data sealed under the
destroyed key (which no other process can open: it read back as the raw envelope, as
the session's output)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.stores import NewSession

from .conftest import STORE_KINDS, store_db
from .test_privacy import IN_NAME, MODEL_PHONE, Customer, clerk, engine, serve


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


async def _kept_and_readable(db: str | Path, result: convoy.SessionResult[Any]) -> None:
    """The session ``during`` reads back, and exports, in an engine that never held a key
    of the subject."""
    async with engine(db) as other:
        shown = await other.result("during")
        assert shown.ok and shown.output == result.output, shown
        [session] = (await other.export("s-7"))["sessions"]
        assert session["id"] == "during" and MODEL_PHONE in json.dumps(session)


async def test_a_subject_erased_after_its_session_read_the_key_gets_a_new_key(
        db: str | Path) -> None:
    """The erasure lands after the starting engine read the subject's key and before it
    created the session: the session is sealed under a new key."""
    async with engine(db) as runner, engine(db) as eraser:
        assert (await runner.run(serve, Customer(name=IN_NAME), subject="s-7",
                                 session_id="before")).ok
        checked = runner._subject_key
        erased: list[Any] = []

        async def then_erased(tenant: str, subject: str | None) -> Any:
            key = await checked(tenant, subject)  # the key is the store's here...
            erased.append(await eraser.erase("s-7"))  # ...and erased by another process
            return key

        runner._subject_key = then_erased  # type: ignore[method-assign]
        result = await runner.run(serve, Customer(name=IN_NAME), subject="s-7",
                                  session_id="during")
        [event] = erased
        assert event.sessions == 1 and event.key and result.ok
    await _kept_and_readable(db, result)


async def test_a_subject_erased_as_its_session_is_written_gets_a_new_key(
        db: str | Path) -> None:
    """The erasure commits between the sealing of a new session's input (under the key
    the store held a moment before) and the transaction that writes its row (``run_many``
    here; ``run`` writes it the same way): the row is not written under the destroyed key;
    the session is sealed again under a new one."""
    async with engine(db) as runner, engine(db) as eraser:
        assert (await runner.run(serve, Customer(name=IN_NAME), subject="s-7",
                                 session_id="before")).ok
        inner: Any = runner.store.inner  # type: ignore[attr-defined]
        create = inner.create_sessions
        erased: list[Any] = []

        async def erased_first(sessions: Sequence[NewSession], **kw: Any) -> int:
            if not erased and any(s.subject == "s-7" for s in sessions):
                erased.append(await eraser.erase("s-7"))
            return int(await create(sessions, **kw))

        inner.create_sessions = erased_first
        [result] = await runner.run_many(serve, [Customer(name=IN_NAME)], subject="s-7",
                                         ids=["during"])
        [event] = erased
        assert event.sessions == 1 and event.key and result.ok
    await _kept_and_readable(db, result)


@convoy.workflow(name="privacy.erase-race.ask")
async def ask(ctx: convoy.Context, c: Customer) -> str:
    return (await ctx.run(clerk, c)).text


async def test_a_session_made_after_the_erasure_read_its_list_is_erased_too(
        db: str | Path) -> None:
    """Another engine runs a whole session of the subject after the erasure read which
    sessions name it and before it deletes them: that session is deleted too, not left
    naming the erased subject under its destroyed key."""
    async with engine(db) as runner, engine(db) as eraser:
        assert (await runner.run(serve, Customer(name=IN_NAME), subject="s-7",
                                 session_id="before")).ok
        plain: Any = eraser.keys.store  # type: ignore[union-attr]
        purge = plain.purge
        ran: list[convoy.SessionResult[Any]] = []

        async def another_first(tenant: str, ids: Sequence[str], **kw: Any) -> Any:
            if not ran:
                ran.append(await runner.run(ask, Customer(name=IN_NAME), subject="s-7",
                                            session_id="during"))
            return await purge(tenant, ids, **kw)

        plain.purge = another_first
        event = await eraser.erase("s-7")
        [during] = ran
        assert during.ok and event.key
        assert event.sessions == 2
        assert await plain.subject_sessions("default", "s-7") == []
        assert await plain.get_session("during") is None
