"""The end of a session does not wait for the store's write of the alert its run fired or
cleared: a store that never answers (a lock held elsewhere, a hung connection) used to hold
that session's ``engine.run`` for good, and every later session's end behind it, and the
engine's close. The writes are recorded in the background, in the order the observations
were made (a fired alert gets its id before its clear is written); ``settled()`` waits for
them, and closing the engine waits a few seconds, then says what was not recorded."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import time
import warnings
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from convoy.alerts import _interceptor
from convoy.alerts._metrics import Tally
from convoy.models import Latency
from convoy.stores import NewAlert
from tests.fakeclock import FakeClock
from tests.test_alerts import Receiver, Rig, fired, make_rig


async def run(rig: Rig, count: int, tenant: str = "default") -> None:
    """``count`` sessions, each ended by ``engine.run`` returning: nothing waits for the
    alerts they record (``Rig.sessions`` does)."""
    for _ in range(count):
        rig.n += 1
        res = await rig.engine.run(rig.wf, f"ticket {rig.n}",
                                   session_id=f"{rig.prefix}{rig.n}", tenant=tenant)
        assert res.status == "completed", res
        rig.clock.advance(10.0)


def answered_in_a_turn(store: Any) -> Callable[[], None]:
    """Make ``store`` answer an alert's write one loop turn later; the function that puts
    it back."""
    opening = store.alert_open

    async def quick(alert: NewAlert, webhooks: Any) -> Any:
        await asyncio.sleep(0)  # (one loop turn)
        return await opening(alert, webhooks)

    store.alert_open = quick

    def restore() -> None:
        store.alert_open = opening

    return restore


async def test_a_store_that_never_records_an_alert_holds_no_session_end_nor_the_close(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The run that fires the alert ends, as do the sessions after it (of its tenant and
    of another); the close waits its bounded time and says once what was not recorded."""
    monkeypatch.setattr(_interceptor, "_CLOSE_WAIT_S", 1.0)
    r = make_rig(tmp_path / "a.db", FakeClock())
    await r.sessions(30)
    store = r.engine.store
    opening = store.alert_open
    writing = asyncio.Event()

    async def never(alert: NewAlert, webhooks: Any) -> Any:
        writing.set()
        await asyncio.Event().wait()  # (never set: the store never answers)

    store.alert_open = never  # type: ignore[method-assign]
    r.sim.latency = Latency(value=3.0)
    caplog.set_level(logging.WARNING, logger="convoy")
    try:
        async with asyncio.timeout(30):  # (a hang of the old code: a failure, not a hang)
            await run(r, 3)  # the third fires the latency alerts
            assert writing.is_set()
            await run(r, 2)
            await run(r, 2, tenant="other")
            t0 = time.monotonic()
            await r.alerts.close()
            assert time.monotonic() - t0 < 10.0
        warned = [m for m in fired(caplog) if "not recorded" in m]
        assert len(warned) == 1, fired(caplog)
        assert "the observations of" in warned[0] and "session runs" in warned[0], warned
        assert "within 1 s" in warned[0], warned
        assert await store.list_alerts(tenant=None) == []
    finally:
        store.alert_open = opening  # type: ignore[method-assign]
        await r.engine.aclose()


async def test_an_alert_cleared_while_the_store_records_its_firing_is_written_after_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A slow store that answers: the sessions go on while the alert's write waits; the
    runs that bring the metric back clear it once it has its id, in the order the
    observations were made, each at the time of the session's end that made it."""
    r = make_rig(tmp_path / "a.db", FakeClock())
    await r.sessions(30)
    store = r.engine.store
    opening, clearing = store.alert_open, store.alert_clear
    release = asyncio.Event()
    written: list[tuple[str, Any]] = []

    async def slow_open(alert: NewAlert, webhooks: Any) -> Any:
        await release.wait()
        got = await opening(alert, webhooks)
        written.append(("open", (alert.scope, got.id)))
        return got

    async def clear(alert_id: int, *args: Any) -> bool:
        written.append(("clear", alert_id))
        return await clearing(alert_id, *args)

    store.alert_open = slow_open  # type: ignore[method-assign]
    store.alert_clear = clear  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="convoy.alerts")
    try:
        async with asyncio.timeout(30):  # (a hang of the old code: a failure, not a hang)
            r.sim.latency = Latency(value=3.0)
            await run(r, 3)  # fires, at the third session's end
            fired_at = r.clock() - 10.0
            r.sim.latency = Latency(kind="uniform", low=0.4, high=0.6)
            await run(r, 3)  # clears, at the third's end, while the fire is not written
            cleared_at = r.clock() - 10.0
            assert written == []
            release.set()
            await r.alerts.settled()
        rows = sorted(await store.list_alerts(), key=lambda a: a.id)
        assert [(a.scope, a.status, a.opened, a.cleared) for a in rows] == [
            ("agent", "cleared", fired_at, cleared_at),
            ("tenant", "cleared", fired_at, cleared_at)]
        ids = [a.id for a in rows]
        assert written == [("open", ("agent", ids[0])), ("open", ("tenant", ids[1])),
                           ("clear", ids[0]), ("clear", ids[1])]
        said = [m.split(":")[0] for m in (rec.getMessage() for rec in caplog.records
                                          if rec.name == "convoy.alerts")]
        assert said == [f"alert {ids[0]} fired", f"alert {ids[1]} fired",
                        f"alert {ids[0]} cleared", f"alert {ids[1]} cleared"]
        for key in (("default", "agent", "triage", "latency"),
                    ("default", "tenant", "default", "latency")):
            assert r.alerts.baselines[key].alert_id is None
        # and the series fires again, as a new alert, once it leaves its band again
        r.sim.latency = Latency(value=3.0)
        await r.sessions(3)
        assert len(await store.list_alerts(open_only=True)) == 2
    finally:
        store.alert_open, store.alert_clear = opening, clearing  # type: ignore[method-assign]
        await r.engine.aclose()


async def test_observe_called_directly_is_recorded_by_settled(tmp_path: Path) -> None:
    """``observe()`` queues a run's observations; ``settled()`` waits until they are
    recorded (the public way a direct caller waits for an alert)."""
    r = make_rig(tmp_path / "a.db", FakeClock())
    await r.engine.open()
    try:
        for _ in range(30):
            await r.alerts.observe("acme", {"triage": Tally(calls=1, model_calls=1,
                                                            seconds=0.5, tokens=120)})
            r.clock.advance(10)
        for _ in range(3):
            await r.alerts.observe("acme", {"triage": Tally(calls=1, model_calls=1,
                                                            seconds=3.0, tokens=120)})
        await r.alerts.settled()
        assert {(a.scope, a.metric) for a in await r.engine.store.list_alerts(
            tenant="acme", open_only=True)} == {("agent", "latency"), ("tenant", "latency")}
    finally:
        await r.engine.aclose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()  # (a webhook on loopback)
    yield r
    r.close()


async def test_deliver_due_right_after_a_run_delivers_what_it_fired(
        tmp_path: Path, receiver: Receiver) -> None:
    """``BaselineAlerts(background=False)`` leaves delivery to ``deliver_due()``, "what is
    due now": right after the ``engine.run`` whose end fired an alert, that includes its
    ``fired`` events (it waits for the observations made so far to be recorded)."""
    r = make_rig(tmp_path / "a.db", FakeClock(), webhooks=[receiver.url], background=False)
    store = r.engine.store
    opening = store.alert_open
    release = asyncio.Event()

    async def slow_open(alert: NewAlert, webhooks: Any) -> Any:
        await release.wait()  # (a store that takes its time: answered once asked again)
        return await opening(alert, webhooks)

    try:
        await r.sessions(30)
        store.alert_open = slow_open  # type: ignore[method-assign]
        r.sim.latency = Latency(value=3.0)
        await run(r, 3)  # the third fires the latency alerts; nothing waited for them
        asyncio.get_running_loop().call_soon(release.set)  # (at deliver_due's first wait)
        assert await r.alerts.deliver_due() == 2
        assert sorted((b["event"], b["alert"]["scope"]) for b, _ in receiver.received) == [
            ("fired", "agent"), ("fired", "tenant")]
    finally:
        store.alert_open = opening  # type: ignore[method-assign]
        await r.engine.aclose()


async def test_settled_waits_for_the_observations_queued_before_it_not_after(
        tmp_path: Path) -> None:
    """``settled()`` waits for what was observed when it was called: observations queued
    after it (a busy engine queues them all the time, ``deliver_due()`` waits on it) do
    not hold it up, even while the store takes its time to record them."""
    r = make_rig(tmp_path / "a.db", FakeClock())
    await r.engine.open()
    store = r.engine.store
    opening = store.alert_open
    answer = {"acme": asyncio.Event(), "beta": asyncio.Event()}

    async def slow_open(alert: NewAlert, webhooks: Any) -> Any:
        await answer[alert.tenant].wait()
        return await opening(alert, webhooks)

    def slow(tenant: str, seconds: float) -> Coroutine[Any, Any, None]:
        return r.alerts.observe(tenant, {"triage": Tally(calls=1, model_calls=1,
                                                         seconds=seconds, tokens=120)})

    try:
        for _ in range(30):
            for tenant in answer:
                await slow(tenant, 0.5)
            r.clock.advance(10)
        await r.alerts.settled()
        store.alert_open = slow_open  # type: ignore[method-assign]
        for _ in range(3):
            await slow("acme", 3.0)  # the third fires acme's: its write waits
        settled = asyncio.ensure_future(r.alerts.settled())
        await asyncio.sleep(0)  # (a yield, no time: it is called, and waits)
        for _ in range(3):
            await slow("beta", 3.0)  # queued after settled() was called
        answer["acme"].set()
        async with asyncio.timeout(30):  # (a hang of the old code: a failure, not a hang)
            await settled
        assert {a.tenant for a in await store.list_alerts(tenant=None)} == {"acme"}
        answer["beta"].set()
        await r.alerts.settled()
        assert len(await store.list_alerts(tenant=None, open_only=True)) == 4
    finally:
        store.alert_open = opening  # type: ignore[method-assign]
        answer["beta"].set()
        await r.engine.aclose()


async def test_a_store_that_does_not_answer_holds_at_most_max_pending_observations(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """While the store does not answer, the observations waiting to be recorded stop at
    ``max_pending``: later ones are dropped (memory stays bounded), said once; once the
    store answers, one more warning counts what was dropped, and what waited is
    recorded."""
    r = make_rig(tmp_path / "a.db", FakeClock(), max_pending=3)
    await r.sessions(30)
    store = r.engine.store
    opening = store.alert_open
    release = asyncio.Event()

    async def hung(alert: NewAlert, webhooks: Any) -> Any:
        await release.wait()  # (the store answers once released)
        return await opening(alert, webhooks)

    store.alert_open = hung  # type: ignore[method-assign]
    r.sim.latency = Latency(value=3.0)
    caplog.set_level(logging.WARNING, logger="convoy")
    try:
        async with asyncio.timeout(30):  # (a hang: a failure, not a hang)
            await run(r, 3)  # the third fires the latency alerts: its write hangs
            await run(r, 7)
            assert len(r.alerts._waiting) == 3 and r.alerts.dropped > 0
            dropping = [m for m in fired(caplog) if "later ones are dropped" in m]
            assert len(dropping) == 1 and "3 session runs and windows" in dropping[0], \
                fired(caplog)
            release.set()
            await r.alerts.settled()
        counted = [m for m in fired(caplog) if "were dropped while" in m]
        assert len(counted) == 1, fired(caplog)
        # (10 runs, and the velocity windows they closed, past the 3 that wait)
        assert "(it answers again)" in counted[0] and re.search(
            r"the observations of [5-7] session runs( and [1-3] token-velocity windows?)? "
            "were dropped while the store did not answer", counted[0]), counted
        assert {(a.scope, a.metric) for a in await store.list_alerts(open_only=True)} == {
            ("agent", "latency"), ("tenant", "latency")}
        await run(r, 2)  # recorded again, nothing dropped
        await r.alerts.settled()
        assert len([m for m in fired(caplog) if "dropped" in m]) == 2
    finally:
        store.alert_open = opening  # type: ignore[method-assign]
        await r.engine.aclose()


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_max_pending_is_a_whole_number_of_at_least_one(bad: Any) -> None:
    from convoy import UserError
    from convoy.alerts import BaselineAlerts

    with pytest.raises(UserError, match=r"max_pending=.*whole number >= 1"):
        BaselineAlerts(max_pending=bad)


def _tally(latency: float) -> dict[str, Tally]:
    return {"triage": Tally(calls=1, model_calls=1, seconds=latency, tokens=120)}


async def test_observe_fed_by_hand_in_a_loop_drops_nothing_while_the_store_answers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``observe`` never yields, so a loop feeding it (a backfill) queues every
    observation before one is recorded: none is dropped while the store answers (review:
    past max_pending they were, and the warning blamed the store)."""
    r = make_rig(tmp_path / "a.db", FakeClock(), max_pending=50)
    await r.sessions(1)  # (started)
    caplog.set_level(logging.WARNING, logger="convoy")
    try:
        for _ in range(200):
            await r.alerts.observe("acme", _tally(0.5))
        await r.alerts.settled()
        assert not [m for m in fired(caplog) if "dropped" in m], fired(caplog)
    finally:
        await r.engine.aclose()


async def test_two_session_ends_a_loop_turn_drop_nothing_after_one_quick_alert_write(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The store answers an alert's write within one loop turn, and two observations are
    queued a turn: nothing is dropped (review: a task each behind one lock, let in one a
    turn, made a backlog that never drained, and it was dropped for as long as the load
    lasted)."""
    r = make_rig(tmp_path / "a.db", FakeClock(), max_pending=100)
    await r.sessions(30)
    store = r.engine.store
    restore = answered_in_a_turn(store)
    caplog.set_level(logging.WARNING, logger="convoy")
    try:
        for i in range(400):
            if i < 3:  # the third fires the latency alerts of 'default'
                await r.alerts.observe("default", _tally(3.0))
            await r.alerts.observe("other", _tally(0.5))
            await r.alerts.observe("other", _tally(0.5))
            await asyncio.sleep(0)
        await r.alerts.settled()
        assert len(await store.list_alerts(open_only=True)) == 2
        assert not [m for m in fired(caplog) if "dropped" in m], fired(caplog)
    finally:
        restore()
        await r.engine.aclose()


async def test_the_close_counts_each_observation_not_recorded_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that never answers, then the close: what was not recorded plus what was
    dropped is what was queued, per kind, each said once; no coroutine is left never
    awaited."""
    monkeypatch.setattr(_interceptor, "_CLOSE_WAIT_S", 0.5)
    r = make_rig(tmp_path / "a.db", FakeClock(), max_pending=3)
    await r.sessions(30)
    store = r.engine.store
    opening = store.alert_open

    async def never(alert: NewAlert, webhooks: Any) -> Any:
        await asyncio.Event().wait()

    queued: Counter[str] = Counter()
    enqueue = r.alerts._enqueue

    def counting(kind: Any, *args: Any) -> None:
        queued[kind] += 1
        enqueue(kind, *args)

    monkeypatch.setattr(r.alerts, "_enqueue", counting)
    store.alert_open = never  # type: ignore[method-assign]
    r.sim.latency = Latency(value=3.0)
    caplog.set_level(logging.WARNING, logger="convoy")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            await run(r, 3)  # the third's write never ends
            queued.clear()
            await run(r, 12)
            waiting = Counter(kind for kind, _ in r.alerts._waiting)
            dropped = Counter(r.alerts._dropped)
            assert sum(waiting.values()) == 3 and r.alerts._recording == "session-end"
            await r.alerts.close()
            gc.collect()
        said = fired(caplog)
        assert len([m for m in said if "later ones are dropped" in m]) == 1, said
        assert len([m for m in said if "were not recorded" in m]) == 1, said
        closing = [m for m in said if "(the engine closed)" in m]
        assert len(closing) == 1, said
        assert dropped + waiting == queued, (dropped, waiting, queued)
        assert r.alerts.dropped == sum(dropped.values())
        await asyncio.wait_for(r.alerts.settled(), 5)  # (nothing left to wait for)
    finally:
        store.alert_open = opening  # type: ignore[method-assign]
        await r.engine.aclose()


async def _warm(r: Any) -> None:
    await r.engine.open()
    for _ in range(30):
        await r.alerts.observe("acme", _tally(0.5))
        r.clock.advance(10)
    await r.alerts.settled()


async def test_a_record_that_raises_cancelled_error_does_not_strand_the_queue(
        tmp_path: Path) -> None:
    """A store write that raises CancelledError (its call cancelled by the store, not
    the task that records observations): what is queued behind it is recorded (review:
    that task ended, and settled() hung)."""
    r = make_rig(tmp_path / "a.db", FakeClock())
    await _warm(r)
    store = r.engine.store
    opening = store.alert_open
    calls = 0

    async def cancelled_once(alert: NewAlert, webhooks: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise asyncio.CancelledError  # (e.g. a pool's pending op cancelled)
        return await opening(alert, webhooks)

    store.alert_open = cancelled_once  # type: ignore[method-assign]
    try:
        for _ in range(3):
            await r.alerts.observe("acme", _tally(3.0))  # the third fires
        await r.alerts.observe("beta", _tally(0.5))
        await asyncio.wait_for(r.alerts.settled(), 5)
    finally:
        store.alert_open = opening  # type: ignore[method-assign]
        await r.engine.aclose()


async def test_an_observation_queued_right_after_the_close_cancelled_the_drain(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The close gives up on a write that hangs; an observation queued in the same loop
    turn is recorded (review: it joined the task about to end, and settled() hung)."""
    monkeypatch.setattr(_interceptor, "_CLOSE_WAIT_S", 0.2)
    r = make_rig(tmp_path / "a.db", FakeClock())
    await _warm(r)
    store = r.engine.store
    opening = store.alert_open
    hang = True

    writing = asyncio.Event()

    async def maybe_never(alert: NewAlert, webhooks: Any) -> Any:
        if hang:
            writing.set()
            await asyncio.Event().wait()
        return await opening(alert, webhooks)

    store.alert_open = maybe_never  # type: ignore[method-assign]
    try:
        for _ in range(3):
            await r.alerts.observe("acme", _tally(3.0))  # the third's write hangs
        await writing.wait()  # (the recording task is in the write that hangs)
        await r.alerts._settle_for(0.2)  # (what close() does first)
        hang = False
        await r.alerts.observe("beta", _tally(0.5))  # same turn as the cancel
        await asyncio.wait_for(r.alerts.settled(), 5)
    finally:
        store.alert_open = opening  # type: ignore[method-assign]
        await r.engine.aclose()


async def test_a_burst_while_a_write_is_one_loop_turn_from_its_answer_drops_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The store answers within one loop turn; a backfill reads a batch (a yield) and
    feeds it to observe() while that write is out: nothing is dropped (review: past
    max_pending they were, the warning blaming the store, which answered)."""
    r = make_rig(tmp_path / "a.db", FakeClock(), max_pending=50)
    await _warm(r)
    store = r.engine.store
    restore = answered_in_a_turn(store)
    caplog.set_level(logging.WARNING, logger="convoy")
    try:
        for _ in range(3):
            await r.alerts.observe("acme", _tally(3.0))  # the third fires
        await asyncio.sleep(0)  # (the next batch is read: the drain starts the write)
        for _ in range(60):
            await r.alerts.observe("other", _tally(0.5))
        await r.alerts.settled()
        assert r.alerts.dropped == 0, fired(caplog)
    finally:
        restore()
        await r.engine.aclose()
