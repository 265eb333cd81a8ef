"""Store conformance, data subjects: subject keys, purges and their record, compaction.

Part of the store conformance suite (``tests/test_store_conformance.py``, whose fixtures it
uses): every backend of ``tests/store_backends.py`` runs it unchanged.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from convoy._errors import UserError
from convoy.stores._protocol import SessionOutcome, StateWrite, Store
from tests import test_store_conformance as suite
from tests.store_backends import FakeClock
from tests.test_store_conformance import new, owned, step

backend, clock, store, stores = suite.backend, suite.clock, suite.store, suite.stores


def write(key: str, value: object, expected: int, session: str | None,
          tenant: str = "t1") -> StateWrite:
    return StateWrite(tenant=tenant, namespace="ns", key=key, value=json.dumps(value),
                      expected_version=expected, session_id=session,
                      step_key=None if session is None else f"s/{key}/{expected}")


async def test_a_subject_key_is_kept_once_and_the_first_one_wins(store: Store) -> None:
    assert await store.subject_key_get("t1", "p") is None
    assert await store.subject_key_put("t1", "p", "k1") == "k1"
    assert await store.subject_key_put("t1", "p", "k2") == "k1"
    assert await store.subject_key_get("t2", "p") is None


async def test_the_oldest_subject_key_of_any_tenant_is_found(
        store: Store, clock: FakeClock) -> None:
    assert await store.subject_key_oldest() is None
    await store.subject_key_put("t2", "q", "k-q")
    clock.advance(1)
    await store.subject_key_put("t1", "p", "k-p")
    assert await store.subject_key_oldest() == ("t2", "q", "k-q")
    await store.purge("t2", [], reason="erasure", subject="q", subject_ref="r")
    assert await store.subject_key_oldest() == ("t1", "p", "k-p")


async def test_kv_setdefault_keeps_the_first_value(store: Store) -> None:
    assert await store.kv_setdefault("ns", "k", "v1") == "v1"
    assert await store.kv_setdefault("ns", "k", "v2") == "v1"
    assert await store.kv_get("ns", "k") == "v1"
    await store.kv_put("ns", "k", None)
    assert await store.kv_setdefault("ns", "k", "v3") == "v3"


async def test_sessions_remember_their_subject_per_tenant(store: Store) -> None:
    await store.create_sessions([replace(new("a"), subject="p"), replace(new("b"), subject="q"),
                                 replace(new("c", tenant="t2"), subject="p")])
    assert [r.id for r in await store.subject_sessions("t1", "p")] == ["a"]
    assert (await suite.must(store, "a")).subject == "p"


async def test_purge_deletes_sessions_with_all_they_wrote_and_records_it(
        store: Store, clock: FakeClock) -> None:
    await owned(store, "gone")
    await owned(store, "kept")
    await store.append("gone", "A", step("0", clock()))
    await store.append("kept", "A", step("0", clock()))
    await store.send_signal("gone", "go", "1")
    assert (await store.state_put(write("k", 1, 0, None))).written       # v1: no session
    assert (await store.state_put(write("k", 2, 1, "gone"))).written     # v2: purged
    assert (await store.state_put(write("only", 3, 0, "gone"))).written  # removed
    assert (await store.state_put(write("other", 4, 0, "kept"))).written
    assert (await store.state_put(write("made", 5, 0, "gone"))).written    # created by it:
    assert (await store.state_put(write("made", 6, 1, None))).written      # every version
    await store.subject_key_put("t1", "p", "wrapped")
    await store.release("gone", "A")  # (a session held by a live lease is not purged)
    assert await store.purge("t2", ["gone"], reason="erasure") == \
        (await store.erasures(tenant="t2"))[0]  # another tenant's purge deletes nothing
    assert await suite.must(store, "gone")
    event = await store.purge("t1", ["gone"], reason="erasure", subject="p", subject_ref="r")
    assert (event.sessions, event.state_versions, event.key, event.subject_ref) == \
        (1, 4, True, "r")
    assert await store.get_session("gone") is None
    assert await store.journal("gone") == [] and await store.next_signal("gone", "go") is None
    cur = await store.state_get("t1", "ns", "k")
    assert cur is not None and (cur.version, cur.value) == (1, "1")  # falls back
    assert await store.state_get("t1", "ns", "only") is None
    assert await store.state_get("t1", "ns", "made") is None
    assert await store.state_history("t1", "ns", "made") == []
    assert [e.version for e in await store.state_history("t1", "ns", "k")] == [1]
    assert await store.subject_key_get("t1", "p") is None
    assert await suite.must(store, "kept") and len(await store.journal("kept")) == 1
    assert (await store.state_put(write("k", 5, 1, None))).written  # writes go on
    assert [e.reason for e in await store.erasures()] == ["erasure", "erasure"]
    await store.compact()
    assert await suite.must(store, "kept")


async def test_finished_before_lists_old_finished_sessions_only(
        store: Store, clock: FakeClock) -> None:
    await owned(store, "old")
    await store.finish("old", "A", SessionOutcome(status="completed"))
    await owned(store, "running")
    clock.advance(100)
    await owned(store, "new")
    await store.finish("new", "A", SessionOutcome(status="failed"))
    assert await store.finished_before(clock() - 50) == ["old"]
    assert await store.finished_before(clock() + 1, tenant="t2") == []
    assert await store.state_written_by("t1", ["old"]) == []


async def test_a_purge_that_destroys_a_key_deletes_the_labels_that_name_its_subject(
        store: Store) -> None:
    from convoy.stores._protocol import SUBJECT_REFS

    await store.kv_put(SUBJECT_REFS + "t1", "label-1", "p")
    await store.kv_put(SUBJECT_REFS + "t1", "label-0", "p")  # an older key's (a crash)
    await store.kv_put(SUBJECT_REFS + "t1", "label-2", "q")
    await store.kv_put(SUBJECT_REFS + "t2", "label-3", "p")  # another tenant's "p"
    await store.subject_key_put("t1", "p", "wrapped")
    await store.purge("t1", [], reason="erasure", subject="p", subject_ref="ref")
    assert await store.kv_all(SUBJECT_REFS + "t1") == {"label-2": "q"}
    assert await store.kv_all(SUBJECT_REFS + "t2") == {"label-3": "p"}
    await store.purge("t1", [], reason="retention")  # no subject: no label goes
    assert await store.kv_all(SUBJECT_REFS + "t1") == {"label-2": "q"}


async def test_a_session_held_by_a_live_lease_is_not_purged(
        store: Store, clock: FakeClock) -> None:
    """A purge (an erasure) of a session another engine runs would leave that engine
    writing rows for a session that no longer exists, which no later purge finds: it is
    refused, and nothing is deleted, until the session ends or its lease lapses."""
    await owned(store, "busy", owner="A", lease_s=30)
    await owned(store, "idle", owner="A", lease_s=30)
    await store.release("idle", "A")
    await store.subject_key_put("t1", "p", "wrapped")
    with pytest.raises(UserError, match="'busy' is running on engine 'A'"):
        await store.purge("t1", ["idle", "busy"], reason="erasure", subject="p")
    assert await suite.must(store, "idle") and await suite.must(store, "busy")
    assert await store.subject_key_get("t1", "p") == "wrapped"
    assert await store.erasures(tenant="t1") == []
    clock.advance(31)  # its lease lapsed: its engine's writes are fenced from now on
    event = await store.purge("t1", ["idle", "busy"], reason="erasure", subject="p")
    assert (event.sessions, event.key) == (2, True)
