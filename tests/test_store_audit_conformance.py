"""Store conformance, audit log: appends ride the group commit, take consecutive indexes
per tenant (also from two store objects on one database), and the store's leaf hash is
:func:`convoy.audit.entry_leaf` of the index it gave. Every backend runs it unchanged."""

from __future__ import annotations

import asyncio

import pytest

from convoy.audit import entry_leaf
from convoy.stores._protocol import AUDIT_CURSORS, AuditSeal, Store
from tests import test_store_conformance as suite
from tests.store_backends import Backend
from tests.test_store_conformance import LEASE, Opener, new

backend, clock, store, stores = suite.backend, suite.clock, suite.store, suite.stores


async def test_an_empty_log(store: Store) -> None:
    assert await store.audit_size("acme") == 0
    assert await store.audit_tenants() == []
    assert await store.audit_entries("acme", 0, 10) == []
    assert await store.audit_entry("acme", 0) is None
    assert await store.audit_leaves("acme", 5) == []
    assert await store.audit_checkpoints("acme") == []


async def test_appends_take_consecutive_indexes_per_tenant(store: Store) -> None:
    await store.audit_append("acme", [b"a0", b"a1"])
    await store.audit_append("globex", [b"g0"])
    await store.audit_append("acme", [b"a2"])
    assert await store.audit_size("acme") == 3
    assert await store.audit_tenants() == ["acme", "globex"]
    rows = await store.audit_entries("acme", 0, 10)
    assert [(r.index, r.body) for r in rows] == [(0, b"a0"), (1, b"a1"), (2, b"a2")]
    assert [r.leaf for r in rows] == [entry_leaf("acme", i, r.body) for i, r in enumerate(rows)]
    assert await store.audit_leaves("acme", 2) == [rows[0].leaf, rows[1].leaf]
    assert await store.audit_entries("acme", 1, 1) == [rows[1]]
    assert await store.audit_entry("globex", 0) is not None
    # a tenant name that is not ASCII is hashed as UTF-8 on every store
    await store.audit_append("zoë", [b"\x00\xff"])
    row = await store.audit_entry("zoë", 0)
    assert row is not None and row.leaf == entry_leaf("zoë", 0, b"\x00\xff")


async def test_appends_dropped_unawaited_still_land_in_order(stores: Opener) -> None:
    s = await stores()
    for i in range(50):
        s.audit_append("acme", [str(i).encode()])  # nobody awaits: the group commit does
    await s.aclose()
    again = await stores()
    rows = await again.audit_entries("acme", 0, 100)
    assert [r.body for r in rows] == [str(i).encode() for i in range(50)]


async def test_appends_joining_the_next_batch_land_in_order_per_tenant(store: Store) -> None:
    # wait=False appends of two tenants interleaved, then one that commits: every entry is
    # in, at the index of its turn, with its leaf hash (the SQLite store writes the queued
    # ones in one go).
    futures = [store.audit_append(t, [f"{t}{i}".encode(), f"{t}{i}'".encode()], wait=False)
               for i in range(5) for t in ("acme", "globex")]
    await store.audit_append("acme", [b"last"])
    await asyncio.gather(*futures)
    for t in ("acme", "globex"):
        rows = await store.audit_entries(t, 0, 100)
        want = [f"{t}{i}{q}".encode() for i in range(5) for q in ("", "'")]
        assert [r.body for r in rows] == want + ([b"last"] if t == "acme" else [])
        assert [r.index for r in rows] == list(range(len(rows)))
        assert [r.leaf for r in rows] == [entry_leaf(t, r.index, r.body) for r in rows]


async def test_two_store_objects_appending_to_one_log_never_collide(stores: Opener) -> None:
    a, b = await stores(), await stores()

    async def write(s: Store, tag: str) -> None:
        for i in range(20):
            await s.audit_append("acme", [f"{tag}{i}".encode(), f"{tag}{i}'".encode()])

    await asyncio.gather(write(a, "a"), write(b, "b"))
    rows = await a.audit_entries("acme", 0, 1000)
    assert [r.index for r in rows] == list(range(80))
    bodies = [r.body.decode() for r in rows]
    assert sorted(bodies) == sorted([f"{t}{i}{q}" for t in "ab" for i in range(20)
                                     for q in ("", "'")])
    for t in "ab":  # each writer's entries keep their order, each pair stays together
        mine = [x for x in bodies if x.startswith(t)]
        assert mine == [f"{t}{i}{q}" for i in range(20) for q in ("", "'")]
    assert all(r.leaf == entry_leaf("acme", r.index, r.body) for r in rows)


async def test_appends_after_a_batch_that_failed_take_the_next_free_indexes(
        backend: Backend, stores: Opener) -> None:
    # The batch that carried appends failed (another write of it was refused by the
    # database): whatever the store believed the log's size to be, the next appends take
    # the indexes that are free.
    s = await stores()
    await s.audit_append("acme", [b"a0"])
    backend.refuse_sessions_of("refused")
    failed = [s.audit_append("acme", [b"lost?"], wait=False),
              s.create_session(new("x", workflow="refused"), owner=None, lease_s=LEASE)]
    await asyncio.gather(*failed, return_exceptions=True)
    await s.audit_append("acme", [b"a1", b"a2"])
    rows = await s.audit_entries("acme", 0, 10)
    assert [r.index for r in rows] == list(range(len(rows)))
    assert [r.body for r in rows][-2:] == [b"a1", b"a2"]
    assert all(r.leaf == entry_leaf("acme", r.index, r.body) for r in rows)
    assert await s.audit_size("acme") == len(rows)


async def test_checkpoints_are_kept_by_size(store: Store) -> None:
    await store.audit_put_checkpoint("acme", 5, "five")
    await store.audit_put_checkpoint("acme", 2, "two")
    await store.audit_put_checkpoint("globex", 1, "other")
    assert await store.audit_checkpoints("acme") == [(2, "two"), (5, "five")]


async def test_fenced_appends_land_only_while_their_engine_owns_the_session(
        store: Store) -> None:
    """A run's entries are fenced like its end: appended only if the engine still owns
    the session when the batch is written, waiting or joining the next batch."""
    await store.create_session(new("s1"), owner="me", lease_s=LEASE)
    await store.audit_append("acme", [b"mine"], fence=("s1", "me"))
    await store.audit_append("acme", [b"not mine"], fence=("s1", "other"))
    await store.audit_append("acme", [b"no session"], fence=("nope", "me"))
    await asyncio.gather(store.audit_append("acme", [b"late"], wait=False, fence=("s1", "other")),
                         store.audit_append("acme", [b"queued"], wait=False, fence=("s1", "me")),
                         store.audit_append("acme", [b"plain"]))
    rows = await store.audit_entries("acme", 0, 10)
    assert [r.body for r in rows] == [b"mine", b"queued", b"plain"]
    assert [r.index for r in rows] == [0, 1, 2] and await store.audit_size("acme") == 3


def _seal(session: str, before: str | None, after: str, *bodies: bytes,
          tenant: str = "acme") -> AuditSeal:
    return AuditSeal(tenant=tenant, session_id=session, before=before, after=after,
                     bodies=list(bodies))


async def _sessions(store: Store, held: bool) -> None:
    """Sessions s1 (of acme) and s2 (of globex) if ``held``; none if not (their rows
    purged as their runs ended: a seal still moves their cursors)."""
    if held:
        for sid, tenant in (("s1", "acme"), ("s2", "globex")):
            await store.create_session(new(sid, tenant=tenant), owner=None, lease_s=LEASE)


@pytest.mark.parametrize("held", [True, False], ids=["sessions", "rows_gone"])
async def test_a_seal_appends_only_if_it_moves_its_sessions_cursor(store: Store,
                                                                   held: bool) -> None:
    """``audit_seal`` is a compare-and-set of each session's cursor: the first seal of a
    session needs it to have none, the next one the value the last seal left; a seal that
    does not move it appends nothing, and the others of the call are not held back."""
    await _sessions(store, held)
    assert await store.audit_cursor("s1") is None
    assert await store.audit_seal([_seal("s1", None, "1.5", b"a", b"b"),
                                   _seal("s2", None, "7.0", b"c", tenant="globex")]) == [
        True, True]
    assert await store.audit_seal([_seal("s1", None, "2.0", b"x"),  # it has one now
                                   _seal("s1", "1.0", "2.0", b"y"),  # not that one
                                   _seal("s1", "1.5", "2.5", b"d"),
                                   _seal("s1", "2.5", "3.0")]) == [False, False, True, True]
    assert await store.audit_cursor("s1") == "3.0"
    assert await store.audit_cursor("s2") == "7.0"
    rows = await store.audit_entries("acme", 0, 10)
    assert [r.body for r in rows] == [b"a", b"b", b"d"]
    assert [r.leaf for r in rows] == [entry_leaf("acme", i, r.body) for i, r in enumerate(rows)]
    assert [r.body for r in await store.audit_entries("globex", 0, 10)] == [b"c"]
    assert await store.audit_seal([]) == []


@pytest.mark.parametrize("held", [True, False], ids=["sessions", "rows_gone"])
async def test_two_stores_sealing_one_session_at_once_append_it_once(stores: Opener,
                                                                     held: bool) -> None:
    """Two engines' sealers (two store objects on one database) seal the same records of
    one session at once: one seal moves the cursor and appends, the other does neither."""
    a, b = await stores(), await stores()
    await _sessions(a, held)
    results = await asyncio.gather(*(s.audit_seal([_seal("s1", None, "4.0", b"e0", b"e1")])
                                     for s in (a, b) for _ in range(3)))
    assert sorted(r[0] for r in results) == [False] * 5 + [True]
    assert [r.body for r in await a.audit_entries("acme", 0, 10)] == [b"e0", b"e1"]
    assert await b.audit_size("acme") == 2


async def test_a_sqlite_session_keeps_its_cursor_in_its_row(backend: Backend,
                                                           store: Store) -> None:
    """SQLite keeps a session's cursor in its row (store schema 9): a seal adds no row
    elsewhere, the one the session's run wrote is moved; PostgreSQL keeps it in kv. A
    session whose row is gone keeps it in kv on both."""
    await _sessions(store, True)
    assert await store.audit_seal([_seal("s1", None, "1.5", b"a"),
                                   _seal("gone", None, "2.5", b"b")]) == [True, True]
    in_kv = await store.kv_all(AUDIT_CURSORS)
    assert in_kv == ({"gone": "2.5"} if backend.name == "sqlite" else
                     {"s1": "1.5", "gone": "2.5"})
    assert (await store.audit_cursor("s1"), await store.audit_cursor("gone")) == ("1.5", "2.5")
