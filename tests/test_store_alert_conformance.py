"""Store conformance, alerts: baseline alerts and their durable webhook queue.

Part of the store conformance suite (``tests/test_store_conformance.py``, whose fixtures it
uses): every backend of ``tests/store_backends.py`` runs it unchanged.
"""

from __future__ import annotations

from convoy.stores._protocol import NewAlert, StepRecord, Store
from tests import test_store_conformance as suite
from tests.store_backends import EPOCH
from tests.test_store_conformance import Opener, owned

backend, clock, store, stores = suite.backend, suite.clock, suite.store, suite.stores

HOOK_A, HOOK_B = "http://127.0.0.1:1/a", "http://127.0.0.1:1/b"


def alert(tenant: str = "t1", metric: str = "latency", at: float = EPOCH) -> NewAlert:
    return NewAlert(tenant=tenant, scope="agent", subject="triage", metric=metric, value=9.0,
                    mean=1.0, deviation=0.5, threshold=2.5, opened=at,
                    detail='{"kinds": {"timeout": 2}}')


async def test_an_alert_opens_and_clears_once(store: Store) -> None:
    aid = await store.alert_open(alert(), [])
    (row,) = await store.list_alerts()
    assert (row.id, row.status, row.metric, row.value, row.threshold, row.detail) == (
        aid, "open", "latency", 9.0, 2.5, '{"kinds": {"timeout": 2}}')
    assert await store.alert_clear(aid, EPOCH + 60, 1.1, []) is True
    assert await store.alert_clear(aid, EPOCH + 70, 1.0, []) is False  # not open any more
    (row,) = await store.list_alerts()
    assert (row.status, row.cleared, row.cleared_value) == ("cleared", EPOCH + 60, 1.1)
    assert await store.list_alerts(open_only=True) == []


async def test_alerts_are_listed_newest_first_by_tenant(store: Store) -> None:
    a1 = await store.alert_open(alert("t1", "latency"), [])
    a2 = await store.alert_open(alert("t2", "tokens"), [])
    a3 = await store.alert_open(alert("t1", "error_rate"), [])
    await store.alert_clear(a1, EPOCH + 1, 0.0, [])
    assert [a.id for a in await store.list_alerts()] == [a3, a2, a1]
    assert [a.id for a in await store.list_alerts(tenant="t1")] == [a3, a1]
    assert [a.id for a in await store.list_alerts(tenant="t1", open_only=True)] == [a3]
    assert [a.id for a in await store.list_alerts(limit=1)] == [a3]
    assert await store.list_alerts(tenant="nobody") == []


async def test_deliveries_are_queued_claimed_retried_and_finished(store: Store) -> None:
    aid = await store.alert_open(alert(), [HOOK_A, HOOK_B])
    due = await store.due_deliveries(EPOCH, lease_s=30)
    assert sorted((d.url, d.event, d.attempts, d.alert.id) for d in due) == [
        (HOOK_A, "fired", 0, aid), (HOOK_B, "fired", 0, aid)]
    assert await store.due_deliveries(EPOCH + 10) == []  # claimed for 30 s
    a, b = sorted(due, key=lambda d: d.url)
    await store.delivery_result(a.id, attempts=1, delivered=EPOCH + 1)
    await store.delivery_result(b.id, attempts=1, next_at=EPOCH + 5, error="HTTP 503")
    (again,) = await store.due_deliveries(EPOCH + 5)
    assert (again.id, again.attempts) == (b.id, 1)
    await store.delivery_result(b.id, attempts=2, next_at=None, error="gave up")
    assert await store.due_deliveries(EPOCH + 10_000) == []
    await store.alert_clear(aid, EPOCH + 100, 1.0, [HOOK_A])
    (cleared,) = await store.due_deliveries(EPOCH + 100)
    assert (cleared.event, cleared.alert.status) == ("cleared", "cleared")


async def test_a_claim_that_was_never_finished_is_due_again(stores: Opener) -> None:
    """An engine that dies mid-delivery loses nothing: its claim runs out."""
    first = await stores()
    await first.alert_open(alert(), [HOOK_A])
    (d,) = await first.due_deliveries(EPOCH, lease_s=30)
    second = await stores()
    assert await second.due_deliveries(EPOCH + 29) == []
    (again,) = await second.due_deliveries(EPOCH + 31)
    assert again.id == d.id


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
