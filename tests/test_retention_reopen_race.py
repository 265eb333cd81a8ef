"""A retention purge that meets a session another engine reopens as it runs: a person
answered the old escalated session ("retry"), so it is pending again between the purge's
list of old finished sessions and its delete. The purge deletes only what is still
finished before its cutoff when it commits: the reopened session is kept, and runs
(SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.stores import store_from_url

from .conftest import STORE_KINDS, FakeClock, store_db

DAY = 86400.0
ATTEMPTS: list[int] = []


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


@convoy.workflow(name="retention-race.charge")
async def charge_once(ctx: convoy.Context, x: int) -> Any:
    async def charge() -> str:
        ATTEMPTS.append(x)
        if len(ATTEMPTS) == 1:
            raise convoy.Escalated("the card processor needs a person to look")
        return "charged"

    return await ctx.step("charge", charge)


async def test_a_session_reopened_as_the_purge_runs_is_kept_and_runs(db: str | Path) -> None:
    ATTEMPTS.clear()
    clock = FakeClock()
    purger, answerer = (convoy.Engine(store_from_url(db, clock=clock),
                                      workflows=[charge_once]) for _ in range(2))
    async with purger, answerer:
        assert (await answerer.run(charge_once, 1, session_id="old")).status == "escalated"
        assert (await answerer.run(charge_once, 2, session_id="done")).ok
        clock.advance(40 * DAY)
        store: Any = purger.store
        purge = store.purge
        answered: list[str] = []

        async def answered_first(tenant: str, ids: Sequence[str], **kw: Any) -> Any:
            if not answered:  # (the purge has listed "old": a person answers it now)
                assert "old" in ids
                await answerer.signal("old", convoy.ESCALATION, {"action": "retry"})
                answered.append("old")
            return await purge(tenant, ids, **kw)

        store.purge = answered_first
        events = await purger.purge(30 * DAY)
        assert answered == ["old"]
        assert sum(e.sessions for e in events) == 1  # "done" only
        assert await answerer.store.get_session("done") is None
        row = await answerer.store.get_session("old")
        assert row is not None and row.status == "pending", row
        [res] = await answerer.resume()
        assert res.id == "old" and res.ok and res.output == "charged"
