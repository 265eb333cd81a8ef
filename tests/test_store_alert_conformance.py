"""Store conformance, alerts: baseline alerts and their durable webhook queue.

Part of the store conformance suite (``tests/test_store_conformance.py``, whose fixtures it
uses): every backend of ``tests/store_backends.py`` runs it unchanged.
"""

from __future__ import annotations

from pathlib import Path

from convoy.stores._protocol import NewAlert, StepRecord, Store
from tests import test_store_conformance as suite
from tests.store_backends import EPOCH, Backend, FakeClock
from tests.test_store_conformance import Opener, owned

backend, clock, store, stores = suite.backend, suite.clock, suite.store, suite.stores

HOOK_A, HOOK_B = "http://127.0.0.1:1/a", "http://127.0.0.1:1/b"
BOTH = [HOOK_A, HOOK_B]


def alert(tenant: str = "t1", metric: str = "latency", at: float = EPOCH) -> NewAlert:
    return NewAlert(tenant=tenant, scope="agent", subject="triage", metric=metric, value=9.0,
                    mean=1.0, deviation=0.5, threshold=2.5, opened=at,
                    detail='{"kinds": {"timeout": 2}}')


async def test_an_alert_opens_and_clears_once(store: Store) -> None:
    aid = (await store.alert_open(alert(), [])).id
    (row,) = await store.list_alerts()
    assert (row.id, row.status, row.metric, row.value, row.threshold, row.detail) == (
        aid, "open", "latency", 9.0, 2.5, '{"kinds": {"timeout": 2}}')
    assert await store.alert_clear(aid, EPOCH + 60, 1.1, []) is True
    assert await store.alert_clear(aid, EPOCH + 70, 1.0, []) is False  # not open any more
    (row,) = await store.list_alerts()
    assert (row.status, row.cleared, row.cleared_value) == ("cleared", EPOCH + 60, 1.1)
    assert await store.list_alerts(open_only=True) == []


async def test_an_open_alert_is_closed_by_hand_once_for_the_webhooks_it_fired_to(
        store: Store) -> None:
    aid = (await store.alert_open(alert(), [HOOK_A, HOOK_B])).id
    other = (await store.alert_open(alert(metric="tokens"), [HOOK_A])).id
    assert await store.alert_close(aid, EPOCH + 60, tenant="t2") is False  # t1's
    assert await store.alert_close(aid, EPOCH + 60, tenant="t1") is True
    assert await store.alert_close(aid, EPOCH + 70) is False  # not open any more
    assert await store.alert_close(other + 100, EPOCH + 70) is False  # no such alert
    rows = {a.id: a for a in await store.list_alerts()}
    assert (rows[aid].status, rows[aid].cleared, rows[aid].cleared_value) == (
        "cleared", EPOCH + 60, None)
    assert rows[other].status == "open"
    events = sorted((d.url, d.event, d.next_at) for d in await store.alert_deliveries([aid]))
    assert events == [(HOOK_A, "cleared", EPOCH + 60), (HOOK_A, "fired", EPOCH),
                      (HOOK_B, "cleared", EPOCH + 60), (HOOK_B, "fired", EPOCH)]
    assert await store.alert_close(other, EPOCH + 80) is True  # (any tenant's)


async def test_alerts_are_listed_newest_first_by_tenant(store: Store) -> None:
    a1 = (await store.alert_open(alert("t1", "latency"), [])).id
    a2 = (await store.alert_open(alert("t2", "tokens"), [])).id
    a3 = (await store.alert_open(alert("t1", "error_rate"), [])).id
    await store.alert_clear(a1, EPOCH + 1, 0.0, [])
    assert [a.id for a in await store.list_alerts()] == [a3, a2, a1]
    assert [a.id for a in await store.list_alerts(tenant="t1")] == [a3, a1]
    assert [a.id for a in await store.list_alerts(tenant="t1", open_only=True)] == [a3]
    assert [a.id for a in await store.list_alerts(limit=1)] == [a3]
    assert await store.list_alerts(tenant="nobody") == []


async def test_deliveries_are_queued_claimed_retried_and_finished(store: Store) -> None:
    aid = (await store.alert_open(alert(), [HOOK_A, HOOK_B])).id
    due = await store.due_deliveries(EPOCH, urls=BOTH, lease_s=30)
    assert sorted((d.url, d.event, d.attempts, d.alert.id) for d in due) == [
        (HOOK_A, "fired", 0, aid), (HOOK_B, "fired", 0, aid)]
    assert await store.due_deliveries(EPOCH + 10, urls=BOTH) == []  # claimed for 30 s
    a, b = sorted(due, key=lambda d: d.url)
    await store.delivery_result(a.id, attempts=1, delivered=EPOCH + 1)
    await store.delivery_result(b.id, attempts=1, next_at=EPOCH + 5, error="HTTP 503")
    (again,) = await store.due_deliveries(EPOCH + 5, urls=BOTH)
    assert (again.id, again.attempts) == (b.id, 1)
    await store.delivery_result(b.id, attempts=2, next_at=None, error="gave up")
    assert await store.due_deliveries(EPOCH + 10_000, urls=BOTH) == []
    await store.alert_clear(aid, EPOCH + 100, 1.0, [HOOK_A])  # (and HOOK_B, fired to)
    cleared = await store.due_deliveries(EPOCH + 100, urls=BOTH)
    assert sorted((d.url, d.event, d.alert.status) for d in cleared) == [
        (HOOK_A, "cleared", "cleared"), (HOOK_B, "cleared", "cleared")]


async def test_a_claim_that_was_never_finished_is_due_again(stores: Opener) -> None:
    """An engine that dies mid-delivery loses nothing: its claim runs out."""
    first = await stores()
    await first.alert_open(alert(), [HOOK_A])
    (d,) = await first.due_deliveries(EPOCH, urls=BOTH, lease_s=30)
    second = await stores()
    assert await second.due_deliveries(EPOCH + 29, urls=BOTH) == []
    (again,) = await second.due_deliveries(EPOCH + 31, urls=BOTH)
    assert again.id == d.id



async def test_a_result_is_recorded_only_by_the_claim_that_still_holds_the_event(
        stores: Opener) -> None:
    """A claim that ran out mid-delivery: its late result must not overwrite the result of
    the engine that claimed the event after it (the review, item 2)."""
    first = await stores()
    await first.alert_open(alert(), [HOOK_A])
    (late,) = await first.due_deliveries(EPOCH, urls=BOTH, lease_s=30)
    assert late.claimed_until == EPOCH + 30
    second = await stores()
    (now,) = await second.due_deliveries(EPOCH + 31, urls=BOTH, lease_s=30)
    assert now.claimed_until == EPOCH + 61
    assert await second.delivery_result(now.id, attempts=1, next_at=EPOCH + 40,
                                        error="HTTP 503", claimed_until=now.claimed_until)
    assert not await first.delivery_result(late.id, attempts=1, delivered=EPOCH + 41,
                                           claimed_until=late.claimed_until)
    (row,) = await second.alert_deliveries([late.alert.id])
    assert (row.status, row.attempts, row.next_at, row.last_error) == (
        "pending", 1, EPOCH + 40, "HTTP 503")


async def test_an_event_waits_for_the_earlier_events_of_its_alert_to_its_webhook(
        store: Store) -> None:
    """A cleared event was delivered before its alert's fired one, whose first attempts
    failed (the review, item 4): per webhook, an alert's events go out in order."""
    aid = (await store.alert_open(alert(), [HOOK_A, HOOK_B])).id
    due = {d.url: d for d in await store.due_deliveries(EPOCH, urls=BOTH, lease_s=30)}
    await store.delivery_result(due[HOOK_A].id, attempts=1, next_at=EPOCH + 5,
                                error="HTTP 503")
    await store.delivery_result(due[HOOK_B].id, attempts=1, delivered=EPOCH)
    await store.alert_clear(aid, EPOCH + 1, 1.0, BOTH)
    (cleared,) = await store.due_deliveries(EPOCH + 2, urls=BOTH)  # B's; A's waits
    assert (cleared.url, cleared.event) == (HOOK_B, "cleared")
    (fired,) = await store.due_deliveries(EPOCH + 5, urls=BOTH)
    assert (fired.url, fired.event) == (HOOK_A, "fired")
    await store.delivery_result(fired.id, attempts=2, delivered=EPOCH + 5)
    (last,) = await store.due_deliveries(EPOCH + 5, urls=BOTH)
    assert (last.url, last.event) == (HOOK_A, "cleared")

async def test_each_event_has_one_idempotency_key_kept_across_claims(store: Store) -> None:
    aid = (await store.alert_open(alert(), [HOOK_A, HOOK_B])).id
    other = (await store.alert_open(alert(metric="tokens"), [HOOK_A])).id
    due = await store.due_deliveries(EPOCH, urls=BOTH, lease_s=30)
    keys = {(d.alert.id, d.url): d.key for d in due}
    assert keys[(aid, HOOK_A)] == keys[(aid, HOOK_B)]  # one event, one key, whatever the URL
    assert keys[(aid, HOOK_A)].startswith(f"convoy-alert-{aid}-fired-")
    assert keys[(other, HOOK_A)] != keys[(aid, HOOK_A)]
    again = await store.due_deliveries(EPOCH + 31, urls=BOTH)  # the claim ran out: retried
    assert {(d.alert.id, d.url): d.key for d in again} == keys
    for d in again:  # (delivered: a cleared event waits for its alert's fired one)
        await store.delivery_result(d.id, attempts=2, delivered=EPOCH + 32)
    await store.alert_clear(aid, EPOCH + 100, 1.0, [HOOK_A])  # (and HOOK_B, fired to)
    cleared = [d for d in await store.due_deliveries(EPOCH + 100, urls=BOTH)
               if d.event == "cleared"]
    assert sorted(d.url for d in cleared) == BOTH
    assert cleared[0].key == cleared[1].key
    assert cleared[0].key.startswith(f"convoy-alert-{aid}-cleared-")
    assert cleared[0].key not in keys.values()


async def test_two_stores_never_give_their_events_the_same_key(
        backend: Backend, clock: FakeClock, tmp_path: Path) -> None:
    """Alert ids are the store's own (each store's first alert is 1): the key is not."""
    (tmp_path / "other").mkdir()
    other = type(backend)(tmp_path / "other")  # another file; another schema of one database
    seen: list[tuple[int, str]] = []
    try:
        for b in (backend, other):
            s = b.new(clock)
            await s.open()
            try:
                aid = (await s.alert_open(alert(), [HOOK_A])).id
                (d,) = await s.due_deliveries(EPOCH, urls=[HOOK_A])
                seen.append((aid, d.key))
            finally:
                await s.aclose()
    finally:
        other.cleanup()
    (id1, key1), (id2, key2) = seen
    assert id1 == id2 and key1 != key2


async def test_deliveries_are_claimed_only_for_the_urls_asked_for(store: Store) -> None:
    """An engine claims only the events of the webhooks it has: the others stay due, for an
    engine that has theirs, and never crowd its own out of a claim."""
    for i in range(60):
        await store.alert_open(alert(metric=f"m{i}"), [HOOK_A])
    late = (await store.alert_open(alert(at=EPOCH + 1), [HOOK_B])).id
    (d,) = await store.due_deliveries(EPOCH + 1, urls=[HOOK_B], limit=50)
    assert (d.url, d.alert.id) == (HOOK_B, late)
    assert await store.due_deliveries(EPOCH + 1, urls=[HOOK_B]) == []
    assert await store.due_deliveries(EPOCH + 1, urls=[]) == []
    due = await store.due_deliveries(EPOCH + 1, urls=[HOOK_A], limit=100)
    assert len(due) == 60 and {x.url for x in due} == {HOOK_A}


async def test_the_delivery_status_of_alerts_is_listed(store: Store) -> None:
    a1 = (await store.alert_open(alert(), [HOOK_A, HOOK_B])).id
    a2 = (await store.alert_open(alert(metric="tokens"), [HOOK_A])).id
    a3 = (await store.alert_open(alert(metric="error_rate"), [])).id
    due = {(d.alert.id, d.url): d for d in await store.due_deliveries(EPOCH, urls=BOTH)}
    await store.delivery_result(due[(a1, HOOK_A)].id, attempts=1, delivered=EPOCH + 1)
    await store.delivery_result(due[(a1, HOOK_B)].id, attempts=8, next_at=None,
                                error="HTTP 500")
    await store.delivery_result(due[(a2, HOOK_A)].id, attempts=1, next_at=EPOCH + 5,
                                error="ConnectError")
    await store.alert_clear(a1, EPOCH + 10, 1.0, [HOOK_A])
    rows = await store.alert_deliveries([a1, a2, a3])
    assert [(r.alert_id, r.url, r.event, r.status, r.attempts, r.delivered, r.last_error)
            for r in rows] == [
        (a1, HOOK_A, "fired", "delivered", 1, EPOCH + 1, None),
        (a1, HOOK_B, "fired", "given_up", 8, None, "HTTP 500"),
        (a2, HOOK_A, "fired", "pending", 1, None, "ConnectError"),
        (a1, HOOK_A, "cleared", "pending", 0, None, None),
        (a1, HOOK_B, "cleared", "pending", 0, None, None)]  # (its fired one went there)
    assert rows[0].key == due[(a1, HOOK_A)].key
    assert await store.alert_deliveries([a2]) == [rows[2]]
    assert await store.alert_deliveries([]) == []


async def test_given_up_deliveries_are_queued_again(store: Store) -> None:
    a1 = (await store.alert_open(alert("t1"), [HOOK_A, HOOK_B])).id
    a2 = (await store.alert_open(alert("t2"), [HOOK_A])).id
    due = {(d.alert.id, d.url): d for d in await store.due_deliveries(EPOCH, urls=BOTH)}
    await store.delivery_result(due[(a1, HOOK_A)].id, attempts=1, delivered=EPOCH + 1)
    for k in ((a1, HOOK_B), (a2, HOOK_A)):
        await store.delivery_result(due[k].id, attempts=8, next_at=None, error="HTTP 500")
    assert await store.redeliver(EPOCH + 100, tenant="t1") == 1
    (d,) = await store.due_deliveries(EPOCH + 100, urls=BOTH)
    assert (d.alert.id, d.url, d.attempts, d.key) == (a1, HOOK_B, 0, due[(a1, HOOK_B)].key)
    assert await store.redeliver(EPOCH + 100, tenant="nobody") == 0
    assert await store.redeliver(EPOCH + 100) == 1  # every tenant: t2's
    assert await store.redeliver(EPOCH + 100) == 0  # nothing is given up now
    assert [r.status for r in await store.alert_deliveries([a1, a2])] == [
        "delivered", "pending", "pending"]


async def test_the_undelivered_events_of_a_webhook_are_dropped(store: Store) -> None:
    """A webhook no engine has any more: its pending and given-up events are dropped (the
    delivered ones kept, as the other webhooks' events), by tenant or for every tenant."""
    a1 = (await store.alert_open(alert("t1"), [HOOK_A, HOOK_B])).id
    a2 = (await store.alert_open(alert("t1", "tokens"), [HOOK_A])).id
    a3 = (await store.alert_open(alert("t2"), [HOOK_A])).id
    a4 = (await store.alert_open(alert("t1", "error_rate"), [HOOK_A])).id
    due = {(d.alert.id, d.url): d for d in await store.due_deliveries(EPOCH, urls=BOTH)}
    await store.delivery_result(due[(a1, HOOK_A)].id, attempts=1, delivered=EPOCH + 1)
    await store.delivery_result(due[(a2, HOOK_A)].id, attempts=8, next_at=None,
                                error="HTTP 500")
    await store.delivery_result(due[(a4, HOOK_A)].id, attempts=1, next_at=EPOCH + 5,
                                error="HTTP 503")
    assert await store.undelivered_webhooks() == [HOOK_A, HOOK_B]
    assert await store.undelivered_webhooks(tenant="t2") == [HOOK_A]
    assert await store.undelivered_webhooks(tenant="nobody") == []
    assert await store.drop_deliveries(HOOK_A, tenant="t1") == 2  # a2's given up, a4's
    assert [(r.alert_id, r.url, r.status) for r in
            await store.alert_deliveries([a1, a2, a3, a4])] == [
        (a1, HOOK_A, "delivered"), (a1, HOOK_B, "pending"), (a3, HOOK_A, "pending")]
    assert await store.drop_deliveries(HOOK_A, tenant="t1") == 0
    assert await store.drop_deliveries(HOOK_A, tenant="nobody") == 0
    assert await store.drop_deliveries("http://127.0.0.1:1/\x00") == 0
    assert await store.drop_deliveries(HOOK_A) == 1  # every tenant: t2's
    assert await store.undelivered_webhooks() == [HOOK_B]
    assert await store.due_deliveries(EPOCH + 10_000, urls=[HOOK_A]) == []
    (left,) = await store.due_deliveries(EPOCH + 10_000, urls=BOTH)
    assert (left.alert.id, left.url) == (a1, HOOK_B)
    assert len(await store.list_alerts()) == 4  # the alerts themselves are kept


async def test_events_queued_before_their_keys_existed_keep_the_key_they_were_sent_with(
        backend: Backend, stores: Opener) -> None:
    first = await stores()
    aid = (await first.alert_open(alert(), [HOOK_A])).id
    await first.aclose()
    # The store as the Convoy before per-event keys left it.
    backend.damage("ALTER TABLE alert_outbox DROP COLUMN idem_key")
    backend.damage("DELETE FROM meta WHERE key='addon:alert_keys'")
    reader = await stores(read_only=True)
    (row,) = await reader.alert_deliveries([aid])
    assert (row.url, row.status, row.key) == (HOOK_A, "pending", None)
    await reader.aclose()
    again = await stores()
    (d,) = await again.due_deliveries(EPOCH, urls=[HOOK_A])
    assert d.key == f"convoy-alert-{aid}-fired"  # a retry keeps the key of earlier attempts


async def test_the_journal_keeps_each_steps_agent_config(store: Store) -> None:
    await owned(store, "s1")
    await store.append("s1", "A", StepRecord(key="0/0", kind="model", target="triage",
                                             status="completed", result='"x"', at=EPOCH,
                                             config="ab" * 32))
    await store.append("s1", "A", StepRecord(key="0/1", kind="effect", target="clock",
                                             status="completed", result="1", at=EPOCH))
    assert [(r.key, r.config) for r in await store.journal("s1")] == [
        ("0/0", "ab" * 32), ("0/1", None)]
    assert (await store.load_journal("s1"))["0/0"].config == "ab" * 32


async def test_a_store_without_the_alert_addons_reads_no_deliveries(
        backend: Backend, stores: Opener) -> None:
    await (await stores()).aclose()
    backend.drop_addons()  # the tables of both add-ons gone: stood in for, empty
    reader = await stores(read_only=True)
    assert await reader.list_alerts() == []
    assert await reader.alert_deliveries([1]) == []
    assert await reader.undelivered_webhooks() == []
