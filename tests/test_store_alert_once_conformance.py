"""Store conformance, alerts: one open alert per series (tenant, scope, subject, metric),
whatever opens it and whenever. Opening one is atomic: a series already open has its alert
adopted, its ``fired`` event queued only for the webhooks it lacked. A store whose older
Convoy left duplicates open migrates.

Part of the store conformance suite (``tests/test_store_conformance.py``, whose fixtures it
uses): every backend of ``tests/store_backends.py`` runs it unchanged.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import replace

from convoy.stores._protocol import FiredAlert, Store
from tests import test_store_conformance as suite
from tests.store_backends import EPOCH, Backend, FakeClock
from tests.test_store_alert_conformance import HOOK_A, HOOK_B, alert
from tests.test_store_conformance import Opener

backend, clock, store, stores = suite.backend, suite.clock, suite.store, suite.stores


async def at_once(backend: Backend, clock: FakeClock,
                  call: Callable[[Store], Awaitable[FiredAlert]]) -> list[FiredAlert]:
    """``call`` on four stores, each on a thread and a connection of its own, as engine
    processes are: all open, then all call at once (released together by a barrier)."""
    barrier = threading.Barrier(4, timeout=120)  # (a guard against a hang, not a measure)

    async def one() -> FiredAlert:
        s = backend.new(clock)
        await s.open()
        try:
            barrier.wait()
            return await call(s)
        finally:
            await s.aclose()

    return list(await asyncio.gather(*(asyncio.to_thread(asyncio.run, one())
                                       for _ in range(4))))


async def test_a_store_firing_a_series_another_opened_adopts_its_alert(
        stores: Opener) -> None:
    first, second = await stores(), await stores()
    opened = await first.alert_open(alert(), [HOOK_A])
    adopted = await second.alert_open(alert(at=EPOCH + 1), [HOOK_A])
    assert len(await first.list_alerts(open_only=True)) == 1
    assert (opened.opened, adopted.opened, adopted.id) == (True, False, opened.id)
    (row,) = await second.list_alerts()
    assert (row.id, row.opened) == (opened.id, EPOCH)  # the first one, as it was
    assert [(d.url, d.event) for d in await second.alert_deliveries([opened.id])] == [
        (HOOK_A, "fired")]  # queued once, by the store that opened it


async def test_adopting_an_alert_queues_its_fired_event_for_the_webhooks_it_lacks(
        stores: Opener) -> None:
    """An engine with a webhook the opener had not: that webhook gets the ``fired`` event
    (the same event: its key), due when the adopter fired, and so the ``cleared`` one
    whichever engine clears the alert; a webhook queued already gets no second one."""
    first, second = await stores(), await stores()
    opened = await first.alert_open(alert(), [HOOK_A])
    adopted = await second.alert_open(alert(at=EPOCH + 1), [HOOK_B, HOOK_A])
    assert (adopted.id, adopted.opened) == (opened.id, False)
    again = await first.alert_open(alert(at=EPOCH + 2), [HOOK_A, HOOK_B])
    assert (again.id, again.opened) == (opened.id, False)
    rows = await second.alert_deliveries([opened.id])
    assert [(d.url, d.event) for d in rows] == [(HOOK_A, "fired"), (HOOK_B, "fired")]
    assert rows[0].key == rows[1].key  # one event, one key, whichever webhook
    assert (rows[1].status, rows[1].next_at) == ("pending", EPOCH + 1)
    # The opener, which has only HOOK_A, clears it: HOOK_B, which got the fired event,
    # gets the cleared one too.
    assert await first.alert_clear(opened.id, EPOCH + 60, 1.0, [HOOK_A])
    assert sorted((d.url, d.event) for d in await second.alert_deliveries([opened.id])) == [
        (HOOK_A, "cleared"), (HOOK_A, "fired"), (HOOK_B, "cleared"), (HOOK_B, "fired")]


async def test_clearing_an_alert_gives_its_fired_event_first_to_a_webhook_that_lacks_it(
        stores: Opener) -> None:
    """An engine that linked the series' open alert when it started (another engine opened
    it, with other webhooks) clears it: its webhook gets the ``fired`` event (its key)
    before the ``cleared`` one, never a ``cleared`` event of an alert it never heard of."""
    first, second = await stores(), await stores()
    opened = await first.alert_open(alert(), [HOOK_A])
    assert await second.alert_clear(opened.id, EPOCH + 60, 1.0, [HOOK_B])
    rows = await second.alert_deliveries([opened.id])
    assert sorted((d.url, d.event) for d in rows) == [
        (HOOK_A, "cleared"), (HOOK_A, "fired"), (HOOK_B, "cleared"), (HOOK_B, "fired")]
    fired = {d.url: d for d in rows if d.event == "fired"}
    assert fired[HOOK_B].key == fired[HOOK_A].key  # one event, one key
    assert fired[HOOK_B].next_at == EPOCH + 60
    (due,) = await second.due_deliveries(EPOCH + 60, urls=[HOOK_B])
    assert due.event == "fired"  # (its cleared one waits for it)


async def test_an_alert_opened_with_no_webhook_is_adopted_with_a_fired_event_of_its_own(
        stores: Opener) -> None:
    first, second = await stores(), await stores()
    opened = await first.alert_open(alert(), [])
    await second.alert_open(alert(at=EPOCH + 1), [HOOK_A, HOOK_B])
    rows = await second.alert_deliveries([opened.id])
    assert [(d.url, d.event) for d in rows] == [(HOOK_A, "fired"), (HOOK_B, "fired")]
    assert rows[0].key == rows[1].key


async def test_stores_adopting_one_alert_at_once_queue_each_webhook_once(
        backend: Backend, clock: FakeClock, stores: Opener) -> None:
    """Each adopter on a thread and a connection of its own, all with a webhook the opener
    had not, released together: one ``fired`` event per webhook, of one key."""
    opened = await (await stores()).alert_open(alert(), [HOOK_A])
    results = await at_once(backend, clock, lambda s: s.alert_open(alert(at=EPOCH + 1),
                                                                    [HOOK_A, HOOK_B]))
    assert {(r.id, r.opened) for r in results} == {(opened.id, False)}
    rows = await (await stores()).alert_deliveries([opened.id])
    assert [(d.url, d.event) for d in rows] == [(HOOK_A, "fired"), (HOOK_B, "fired")]
    assert len({d.key for d in rows}) == 1


async def test_only_an_open_alert_of_the_same_series_is_adopted(store: Store) -> None:
    first = await store.alert_open(alert(), [])
    others = [await store.alert_open(a, []) for a in (
        alert(tenant="t2"), alert(metric="tokens"), replace(alert(), scope="tenant"),
        replace(alert(), subject="billing"))]
    assert all(o.opened for o in others)
    assert len({first.id, *(o.id for o in others)}) == 5
    await store.alert_clear(first.id, EPOCH + 60, 1.0, [])
    again = await store.alert_open(alert(at=EPOCH + 120), [HOOK_A])  # cleared: a new one
    assert again.opened and again.id not in (first.id, *(o.id for o in others))
    assert (await store.alert_open(alert(at=EPOCH + 130), [])).id == again.id


async def test_stores_firing_one_series_at_once_open_one_alert(stores: Opener) -> None:
    many = [await stores() for _ in range(4)]
    results = await asyncio.gather(*(s.alert_open(alert(), [HOOK_A]) for s in many))
    assert sorted(r.opened for r in results) == [False, False, False, True]
    assert len({r.id for r in results}) == 1
    assert len(await many[0].list_alerts()) == 1
    assert len(await many[0].alert_deliveries([results[0].id])) == 1


async def test_stores_in_threads_firing_one_series_at_once_open_one_alert(
        backend: Backend, clock: FakeClock) -> None:
    """Each store on a thread and a connection of its own, as engine processes are: all
    open, then all fire the series at once (released together by a barrier)."""
    results = await at_once(backend, clock, lambda s: s.alert_open(alert(), [HOOK_A]))
    assert sorted(r.opened for r in results) == [False, False, False, True]
    assert len({r.id for r in results}) == 1
    check = backend.new(clock)
    await check.open()
    try:
        assert [a.id for a in await check.list_alerts()] == [results[0].id]
        assert len(await check.alert_deliveries([results[0].id])) == 1
    finally:
        await check.aclose()


async def test_duplicates_an_older_convoy_left_open_are_closed_when_it_migrates(
        backend: Backend, clock: FakeClock, stores: Opener) -> None:
    """Before an alert was opened atomically, two engines could each open one of a series:
    the migration keeps the oldest open, closes the others (cleared at the migration's
    time, by the store's clock, with no value, ``duplicate_of`` in their detail; a detail
    that is not a JSON object kept as it is) and queues their ``cleared`` event for the
    webhooks their ``fired`` one went to."""
    first = await stores()
    keep = (await first.alert_open(alert(), [HOOK_A])).id
    other = (await first.alert_open(alert(metric="tokens"), [])).id
    await first.aclose()
    # The store as the Convoy before the add-on left it, with duplicates it let in.
    backend.damage("DROP INDEX alerts_open_series")
    backend.damage("DELETE FROM meta WHERE key='addon:alerts_open_once'")
    for detail, hooks in (('{"above": 3}', (HOOK_A, HOOK_B)), ("not JSON", ())):
        backend.damage(
            "INSERT INTO alerts(tenant,scope,subject,metric,status,value,mean,deviation,"
            f"threshold,opened,detail) VALUES('t1','agent','triage','latency','open',9,1,"
            f"0.5,2.5,{EPOCH + 1},'{detail}')")
        for url in hooks:
            backend.damage("INSERT INTO alert_outbox(alert_id,url,event,next_at,idem_key) "
                           f"SELECT MAX(id),'{url}','fired',{EPOCH + 1},'k' FROM alerts")
    migrated_at = clock.advance(3600.25)
    again = await stores()
    rows = {a.id: a for a in await again.list_alerts()}
    dup, damaged = sorted(set(rows) - {keep, other})
    assert [a.id for a in await again.list_alerts(open_only=True)] == [other, keep]
    for i in (dup, damaged):
        assert (rows[i].status, rows[i].cleared, rows[i].cleared_value) == (
            "cleared", migrated_at, None)
    assert rows[keep].cleared is None and rows[other].cleared is None
    assert json.loads(rows[dup].detail) == {"above": 3, "duplicate_of": keep}
    assert rows[damaged].detail == "not JSON"
    assert [(d.url, d.event) for d in await again.alert_deliveries([dup, damaged])] == [
        (HOOK_A, "fired"), (HOOK_B, "fired"), (HOOK_A, "cleared"), (HOOK_B, "cleared")]
    due = await again.due_deliveries(EPOCH + 2, urls=[HOOK_A, HOOK_B])
    assert {(d.alert.id, d.event) for d in due} == {(keep, "fired"), (dup, "fired")}
    adopted = await again.alert_open(alert(at=EPOCH + 2), [HOOK_A])
    assert (adopted.id, adopted.opened) == (keep, False)
