"""Two alerting engines on one store that fire one series at the same instant open one
alert: the store opens it or adopts the one already open, atomically, and only the engine
that opened it logs "fired"; its webhook events are queued once per webhook, the adopter's
included (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from convoy.models import Latency
from convoy.stores._protocol import NewAlert
from tests.conftest import STORE_KINDS, store_db
from tests.fakeclock import FakeClock
from tests.test_alerts import Rig, make_rig

HOOK = "http://127.0.0.1:1/hook"
HOOK_TWO = "http://127.0.0.1:1/two"


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


def gate_latency_fires(rig: Rig, barrier: asyncio.Barrier) -> None:
    """Hold each latency alert the engine fires until the other engine fires it too, so
    both have looked for an open alert of the series before either records one."""
    store: Any = rig.engine.store
    alert_open = store.alert_open

    async def gated(alert: NewAlert, webhooks: Any) -> Any:
        if alert.metric == "latency":
            await barrier.wait()
        return await alert_open(alert, webhooks)

    store.alert_open = gated


@asynccontextmanager
async def racing(db: str | Path, two_hooks: list[str]) -> AsyncIterator[tuple[Rig, Rig]]:
    """Two alerting engines on the store ``db`` (the first with webhook :data:`HOOK`, the
    second with ``two_hooks``), their baselines learned on a steady latency (30 sessions
    each, in turn), each latency alert they fire held until the other fires it too
    (:func:`gate_latency_fires`); closed after."""
    clock = FakeClock()
    kw: dict[str, Any] = {"background": False, "redact": False}
    one = make_rig(db, clock, [HOOK], **kw)
    two = make_rig(db, clock, two_hooks, **kw)
    two.prefix = "two-"
    barrier = asyncio.Barrier(2)
    gate_latency_fires(one, barrier)
    gate_latency_fires(two, barrier)
    try:
        await one.engine.open()
        await two.engine.open()
        for _ in range(30):
            await one.sessions(1)
            await two.sessions(1)
        yield one, two
    finally:
        await one.engine.aclose()
        await two.engine.aclose()


async def test_two_engines_firing_one_series_at_once_open_one_alert_and_fire_it_once(
        db: str | Path, caplog: pytest.LogCaptureFixture) -> None:
    async with racing(db, [HOOK]) as (one, two):
        one.sim.latency = two.sim.latency = Latency(value=3.0)
        caplog.set_level(logging.INFO, logger="convoy.alerts")
        async with asyncio.timeout(120):  # (a guard against a hang, not a measure)
            await asyncio.gather(one.sessions(3), two.sessions(3))
        assert await one.alerts_in_store() == [("agent", "triage", "latency", "open"),
                                               ("tenant", "default", "latency", "open")]
        fired = [r.getMessage() for r in caplog.records
                 if r.name == "convoy.alerts" and " fired: " in r.getMessage()]
        assert len(fired) == 2, fired
        ids = [a.id for a in await one.engine.store.list_alerts()]
        events = [(d.alert_id, d.event) for d in await one.engine.store.alert_deliveries(ids)]
        assert sorted(events) == sorted((i, "fired") for i in ids)
        for key in (("default", "agent", "triage", "latency"),
                    ("default", "tenant", "default", "latency")):
            assert one.alerts.baselines[key].alert_id == two.alerts.baselines[key].alert_id
        one.sim.latency = two.sim.latency = Latency(kind="uniform", low=0.4, high=0.6)
        await two.sessions(3)  # either engine clears them, once
        assert await one.alerts_in_store(open_only=True) == []
        events = [(d.alert_id, d.event) for d in await one.engine.store.alert_deliveries(ids)]
        assert sorted(events) == sorted([(i, e) for i in ids for e in ("fired", "cleared")])


async def test_an_engine_adopting_an_alert_gets_it_to_the_webhooks_only_it_has(
        db: str | Path) -> None:
    """Two engines fire one series at once, one of them with a webhook the other has not:
    whichever opens the alert, each webhook gets its ``fired`` event once, and its
    ``cleared`` one when the engine without that webhook clears it."""
    async with racing(db, [HOOK, HOOK_TWO]) as (one, two):
        one.sim.latency = two.sim.latency = Latency(value=3.0)
        async with asyncio.timeout(120):  # (a guard against a hang, not a measure)
            await asyncio.gather(one.sessions(3), two.sessions(3))
        ids = [a.id for a in await one.engine.store.list_alerts()]
        assert len(ids) == 2
        events = [(d.alert_id, d.url, d.event)
                  for d in await one.engine.store.alert_deliveries(ids)]
        assert sorted(events) == sorted((i, url, "fired") for i in ids
                                        for url in (HOOK, HOOK_TWO))
        one.sim.latency = Latency(kind="uniform", low=0.4, high=0.6)
        await one.sessions(3)  # the engine without HOOK_TWO clears them
        assert await one.alerts_in_store(open_only=True) == []
        events = [(d.alert_id, d.url, d.event)
                  for d in await one.engine.store.alert_deliveries(ids)]
        assert sorted(events) == sorted((i, url, e) for i in ids for url in (HOOK, HOOK_TWO)
                                        for e in ("fired", "cleared"))


async def test_an_engine_that_linked_an_alert_at_start_gets_it_to_its_webhooks_whole(
        db: str | Path) -> None:
    """An engine started after another opened an alert links it (it adopts it at start,
    not by firing it) and clears it when the metric is back: its webhook, which the opener
    had not, gets the alert's ``fired`` event and then its ``cleared`` one (it got the
    ``cleared`` event alone, of an alert it never heard of)."""
    clock = FakeClock()
    kw: dict[str, Any] = {"background": False, "redact": False}
    one = make_rig(db, clock, [HOOK], **kw)
    two = make_rig(db, clock, [HOOK_TWO], **kw)
    two.prefix = "two-"
    try:
        await one.engine.open()
        await one.sessions(30)
        one.sim.latency = Latency(value=3.0)
        await one.sessions(3)
        ids = [a.id for a in await one.engine.store.list_alerts(open_only=True)]
        assert len(ids) == 2
        await two.engine.open()  # (it links the open alerts)
        await two.sessions(3)  # back in the band: this engine clears them
        assert await two.alerts_in_store(open_only=True) == []
        events = [(d.alert_id, d.url, d.event)
                  for d in await two.engine.store.alert_deliveries(ids)]
        assert sorted(events) == sorted((i, url, e) for i in ids for url in (HOOK, HOOK_TWO)
                                        for e in ("fired", "cleared"))
        for i in ids:  # (the fired event first: the cleared one waits for it)
            two_events = [e for a, url, e in events if a == i and url == HOOK_TWO]
            assert two_events == ["fired", "cleared"], events
    finally:
        await one.engine.aclose()
        await two.engine.aclose()
