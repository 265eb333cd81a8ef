"""A session waiting for shared state, woken by a value of the wrong shape (an operator's
``convoy state set``, an untyped ``engine.state(...)`` handle, a session that reads the
key with another type). No shape is known where such a write is made (the type is the
waiting workflow's ``ctx.state(..., type=...)``, in its code; the store records none), so
the waiting side copes: the session does not fail, it goes on waiting for a valid
version, one warning line saying which version is wrong and how to write a good one;
past its timeout its ``WaitTimeout`` names that version."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

import convoy
from convoy.stores import store_from_url

from .clikit import cli, workdir
from .conftest import STORE_KINDS, FakeClock, store_db

__all__ = ["workdir"]


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    """Every test of this module runs on SQLite and on PostgreSQL."""
    yield from store_db(request.param, tmp_path)


class Shipment(BaseModel):
    status: Literal["packed", "shipped"]
    carrier: str = ""


@convoy.workflow(name="state_shape.until_shipped")
async def until_shipped(ctx: convoy.Context, order: str) -> str:
    orders = ctx.state(f"order:{order}", type=Shipment)
    try:
        got = await orders.wait("shipment", until=lambda v: v.value is not None and
                                v.value.status == "shipped", timeout=3600)
    except convoy.WaitTimeout as e:
        return f"gave up: {e}"
    assert got.value is not None
    return f"shipped by {got.value.carrier} at version {got.version}"


@convoy.workflow(name="state_shape.next_change")
async def next_change(ctx: convoy.Context, order: str) -> Any:
    got = await ctx.state(f"order:{order}", type=Shipment).wait("shipment")
    assert got.value is not None
    return [got.value.status, got.version]


def _engine(db: str | Path, clock: FakeClock) -> convoy.Engine:
    return convoy.Engine(store_from_url(db, clock=clock))


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "convoy" and r.levelno == logging.WARNING]


async def test_a_wrongly_shaped_value_does_not_fail_the_waiting_session(
        db: str | Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="convoy")
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        assert (await eng.run(until_shipped, "o1", session_id="o1")).status == "waiting"
        raw = eng.state("order:o1")  # untyped, as 'convoy state set' writes
        await raw.set("shipment", "shipped", expected_version=0)  # a string, not an object
        [res] = await eng.resume()
        assert res.status == "waiting", res.error  # woken, not failed: it waits on
        [line] = _warnings(caplog)
        assert "\n" not in line
        assert "session 'o1' waits for state order:o1/shipment: version 1 is not a valid " \
               "Shipment (" in line, line
        assert "it goes on waiting; write a valid one: convoy state set order:o1 shipment " \
               "JSON --expected-version 1 --tenant default" in line, line
        caplog.clear()
        await raw.set("shipment", {"status": "lost"}, expected_version=1)  # not a status
        [res] = await eng.resume()
        assert res.status == "waiting", res.error
        [line] = _warnings(caplog)
        assert "version 2 is not a valid Shipment (status: " in line, line
        caplog.clear()
        await raw.set("shipment", {"status": "shipped", "carrier": "UPS"}, expected_version=2)
        [res] = await eng.resume()
        assert res.ok and res.output == "shipped by UPS at version 3", res
        assert _warnings(caplog) == []  # the versions read before replay: not said again
        assert (await eng.replay("o1")).matches


async def test_a_wait_for_the_next_change_goes_past_a_wrong_version(db: str | Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        raw = eng.state("order:o2")
        await raw.set("shipment", {"status": "packed"}, expected_version=0)
        assert (await eng.run(next_change, "o2", session_id="o2")).status == "waiting"
        await raw.set("shipment", [1, 2], expected_version=1)
        assert [r.status for r in await eng.resume()] == ["waiting"]
        await raw.set("shipment", {"status": "shipped"}, expected_version=2)
        [res] = await eng.resume()
        assert res.ok and res.output == ["shipped", 3]
        assert (await eng.replay("o2")).matches


async def test_a_wrong_value_found_as_the_wait_starts_is_waited_past(
        db: str | Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        await eng.state("order:o3").set("shipment", 7, expected_version=0)
        assert (await eng.run(until_shipped, "o3", session_id="o3")).status == "waiting"
        await eng.state("order:o3").set("shipment", {"status": "shipped", "carrier": "DHL"},
                                        expected_version=1)
        [res] = await eng.resume()
        assert res.ok and res.output == "shipped by DHL at version 2"


async def test_past_its_timeout_the_wait_names_the_wrong_version(db: str | Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock) as eng:
        assert (await eng.run(until_shipped, "o4", session_id="o4")).status == "waiting"
        await eng.state("order:o4").set("shipment", "shipped", expected_version=0)
        assert [r.status for r in await eng.resume()] == ["waiting"]
        clock.advance(3601)
        [res] = await eng.resume()
        assert res.ok, res.error
        assert re.fullmatch(
            r"gave up: session 'o4' waited for state order:o4/shipment past its timeout of "
            r"3600\.0s \(step 0/\d+\); version 1 of it was written meanwhile, not a valid "
            r"Shipment", res.output or ""), res.output
        assert (await eng.replay("o4")).matches


def test_convoy_state_set_of_a_wrong_shape_wakes_a_session_that_goes_on_waiting(
        tmp_path: Path) -> None:
    """The reported case, on the command line: 'convoy state set' writes any JSON (it has
    no type to check against) and wakes the session; the session waits on, and the
    value written next finishes it."""
    import asyncio

    db = str(tmp_path / "c.db")

    async def start() -> str:
        async with convoy.Engine(db) as eng:
            return (await eng.run(until_shipped, "o5", session_id="o5")).status

    async def resume() -> list[convoy.SessionResult[Any]]:
        async with convoy.Engine(db, workflows=[until_shipped]) as eng:
            return await eng.resume()

    assert asyncio.run(start()) == "waiting"
    res = cli("state", "set", "order:o5", "shipment", '"shipped"', "--db", db)
    assert res.code == 0 and "woke 1 waiting session" in res.stdout, res
    [woken] = asyncio.run(resume())
    assert woken.status == "waiting", woken.error
    res = cli("state", "set", "order:o5", "shipment", '{"status": "shipped", "carrier": "x"}',
              "--db", db)
    assert res.code == 0 and "woke 1 waiting session" in res.stdout, res
    [done] = asyncio.run(resume())
    assert done.ok and done.output == "shipped by x at version 2"


async def test_a_data_subjects_session_warns_with_the_kinds_of_errors_alone(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A log line is kept beyond 'convoy erase''s reach: in a data subject's session it
    names what was wrong by the kinds of errors, never by a message that may quote the
    value."""
    from convoy.privacy import MasterKey

    caplog.set_level(logging.WARNING, logger="convoy")
    async with convoy.Engine(tmp_path / "p.db", master_key=MasterKey.from_text(
            MasterKey.generate())) as eng:
        res = await eng.run(until_shipped, "o6", session_id="o6", subject="customer-42")
        assert res.status == "waiting"
        await eng.state("order:o6").set("shipment", {"status": "Ms Jones"},
                                        expected_version=0)
        assert [r.status for r in await eng.resume()] == ["waiting"]
    [line] = _warnings(caplog)
    assert "version 1 is not a valid Shipment (1 error (literal_error)); it goes on " \
           "waiting" in line, line
    assert "Jones" not in line and "packed" not in line
