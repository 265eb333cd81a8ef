"""A step's outcome the store failed to journal with a transient error (a database
restarting, a lost connection, a lock) is written again, backing off, for up to the
engine's ``lease_seconds``: the step ran, and a run that stopped there would leave a
non-idempotent step (a payment) to be escalated, an idempotent one to run again."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.stores import SQLiteStore
from convoy.stores._protocol import StepRecord

from .fakeclock import FakeClock

CHARGED: list[str] = []


@convoy.workflow(name="again.charge")
async def charge(ctx: convoy.Context, order: str) -> str:
    async def pay() -> str:
        CHARGED.append(order)
        if order.startswith("declined"):
            raise ValueError("card declined")
        return "paid"

    paid: str = await ctx.step("pay", pay)  # (not idempotent)
    return f"{order}: {paid}"


class Outage(SQLiteStore):
    """Fails the first ``failures`` writes of a step's outcome (``completed`` or
    ``failed``), with ``transient`` errors, each taking ``each`` seconds of the clock."""

    def __init__(self, path: Path, clock: FakeClock, *, failures: int,
                 transient: bool = True, each: float = 0.0) -> None:
        super().__init__(path, clock=clock)
        self.fake = clock
        self.failures = failures
        self.transient = transient
        self.each = each
        self.tried = 0

    async def append(self, session_id: str, owner: str, record: StepRecord,
                     *a: Any, **kw: Any) -> Any:
        if record.status != "started" and self.tried < self.failures:
            self.tried += 1
            self.fake.advance(self.each)
            raise convoy.StoreError("could not reach the store", transient=self.transient)
        return await super().append(session_id, owner, record, *a, **kw)


@pytest.fixture(autouse=True)
def _charged() -> None:
    CHARGED.clear()


async def test_an_outcome_written_again_completes_the_session_with_one_payment(
        tmp_path: Path) -> None:
    store = Outage(tmp_path / "s.db", FakeClock(), failures=3)
    async with convoy.Engine(store) as engine:
        res = await engine.run(charge, "o-1", session_id="s")
        journal = await engine.store.journal("s")
    assert res.status == "completed" and res.output == "o-1: paid"
    assert CHARGED == ["o-1"] and store.tried == 3
    assert [(r.key, r.status) for r in journal] == [("0", "completed")]


async def test_a_failure_written_again_is_the_steps_failure_not_an_unknown_outcome(
        tmp_path: Path) -> None:
    store = Outage(tmp_path / "s.db", FakeClock(), failures=2)
    async with convoy.Engine(store) as engine:
        res = await engine.run(charge, "declined-1", session_id="s")
    assert res.status == "failed" and res.error is not None
    assert res.error["type"] == "ValueError" and CHARGED == ["declined-1"]


@pytest.mark.parametrize("transient", [False, True])
async def test_a_lasting_or_permanent_failure_stops_the_run(
        tmp_path: Path, transient: bool, caplog: pytest.LogCaptureFixture) -> None:
    # Transient: each try takes 4 s of the clock; the engine's patience is its 10 s lease.
    clock = FakeClock()
    store = Outage(tmp_path / "s.db", clock, failures=1000, transient=transient, each=4.0)
    async with convoy.Engine(store, lease_seconds=10.0) as engine:
        with caplog.at_level(logging.WARNING, logger="convoy"):
            res = await engine.run(charge, "o-2", session_id="s")
        assert res.status not in ("completed", "failed"), res
    # (an operator learns that a step ran and its outcome is lost, and what comes next)
    [said] = [r.getMessage() for r in caplog.records if "could not be journaled" in
              r.getMessage()]
    assert said == ("session s step 0: the effect step 'pay' ran, and its outcome could "
                    "not be journaled (could not reach the store): the session stops "
                    "unfinished; its next run runs the step again, or escalates the "
                    "session if the step is not idempotent"), said
    assert CHARGED == ["o-2"]
    assert store.tried == (4 if transient else 1)  # (0, 4, 8 s: tried again; 12: not)
    # The next run cannot tell whether it paid: a person decides (as before this change).
    store.failures = 0
    async with convoy.Engine(store, workflows=[charge]) as engine:
        [res] = await engine.resume()
    assert res.status == "escalated" and CHARGED == ["o-2"]


@pytest.mark.parametrize("lease", [float("inf"), float("nan"), 0.0, -1.0])
def test_a_lease_that_is_no_number_of_seconds_is_refused(tmp_path: Path, lease: float) -> None:
    with pytest.raises(convoy.UserError, match="lease_seconds must be a number of seconds"):
        convoy.Engine(tmp_path / "s.db", lease_seconds=lease)


class LapsingOutage(Outage):
    """An outage that outlasts the session's lease: lease renewals fail too, and at the
    ``takeover``-th failed write of the outcome another engine on the same store (the
    same clock) resumes what it finds runnable, as a second worker would."""

    def __init__(self, path: Path, clock: FakeClock, *, takeover: int, **kw: Any) -> None:
        super().__init__(path, clock, **kw)
        self.takeover = takeover
        self.taken: list[Any] = []

    async def renew(self, owner: str, lease_s: float) -> int:
        if self.tried < self.failures:
            raise convoy.StoreError("could not reach the store", transient=True)
        return await super().renew(owner, lease_s)

    async def append(self, session_id: str, owner: str, record: StepRecord,
                     *a: Any, **kw: Any) -> Any:
        if record.status != "started" and self.tried == self.takeover - 1:
            async with convoy.Engine(SQLiteStore(self.path, clock=self.fake),
                                     workflows=[charge], lease_seconds=10.0) as other:
                self.taken = await other.resume()
        return await super().append(session_id, owner, record, *a, **kw)


async def test_an_outcome_written_after_another_engine_took_the_session_is_refused(
        tmp_path: Path) -> None:
    """The race the retry is fenced against: the outage outlasts the lease (claimed at 0,
    10 s), the step ran at 5 s, its outcome fails at 5, 7 and 9 s (2 s each); at 11 s a
    second engine takes the session over and escalates it (it cannot tell whether the
    payment was made); the first engine's next write, still within its patience (5 s +
    10 s), is refused by the fence: the session stays escalated, paid once, decided by a
    person, and nothing of the first engine's lands in its journal."""
    clock = FakeClock()

    @convoy.workflow(name="again.slow_charge")
    async def slow_charge(ctx: convoy.Context, order: str) -> str:
        async def pay() -> str:
            CHARGED.append(order)
            clock.advance(5.0)
            return "paid"

        return await ctx.step("pay", pay)

    store = LapsingOutage(tmp_path / "s.db", clock, failures=3, each=2.0, takeover=4)
    async with convoy.Engine(store, lease_seconds=10.0) as engine:
        res = await engine.run(slow_charge, "o-3", session_id="s")
        journal = await engine.store.journal("s")
        row = await engine.store.get_session("s")
    assert [r.status for r in store.taken] == ["escalated"], store.taken
    assert CHARGED == ["o-3"]
    assert row is not None and row.status == "escalated"
    # (the second engine's record: the outcome it could not know, for a person)
    assert [(r.key, r.status) for r in journal] == [("0", "failed")]
    assert journal[0].result is not None and "UnknownOutcomeError" in journal[0].result
    assert res.error is not None and res.error["type"] == "LeaseLost", res
