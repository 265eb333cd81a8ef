"""Store conformance, data subjects: subject keys, purges and their record, compaction.

Part of the store conformance suite (``tests/test_store_conformance.py``, whose fixtures it
uses): every backend of ``tests/store_backends.py`` runs it unchanged.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from convoy._errors import UserError
from convoy.stores import SubjectKeyGone
from convoy.stores._protocol import (
    AUDIT_CURSORS,
    COMPACTION_OWED,
    TOMBSTONE_S,
    TOMBSTONE_SWEEP_S,
    AuditSeal,
    Erasure,
    SessionOutcome,
    StateWrite,
    Store,
)
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
    # (falls back to its newest remaining value, under the erased version's number)
    assert cur is not None and (cur.version, cur.value) == (2, "1")
    assert await store.state_get("t1", "ns", "only") is None
    assert await store.state_get("t1", "ns", "made") is None
    assert await store.state_history("t1", "ns", "made") == []
    assert [e.version for e in await store.state_history("t1", "ns", "k")] == [1]
    assert await store.subject_key_get("t1", "p") is None
    assert await suite.must(store, "kept") and len(await store.journal("kept")) == 1
    assert not (await store.state_put(write("k", 5, 1, None))).written  # (stale)
    assert (await store.state_put(write("k", 5, 2, None))).entry.version == 3  # writes go on
    # (keys it deleted whole start again past the highest version deleted)
    assert (await store.state_put(write("only", 7, 0, None))).entry.version == 3
    assert [e.reason for e in await store.erasures()] == ["erasure", "erasure"]
    await store.compact()
    assert await suite.must(store, "kept")


async def test_a_retention_purge_deletes_only_the_state_versions_its_sessions_wrote(
        store: Store) -> None:
    """Unlike an erasure, a retention purge does not delete the keys its sessions created:
    the versions sessions it keeps wrote (and writes from outside any session) stay, and
    so does each key's current value, with a gap where a purged version was. A key whose
    current version it deletes is current again at its newest remaining value, under the
    same version number (a version number never goes back, so it never names two values:
    a compare-and-set against it and a watch past it mean what they meant); a key all of
    whose versions it deletes goes."""
    await ended(store, "old", "older")                 # purged
    await owned(store, "young")                        # kept (finished later, or running)
    await owned(store, "parked")                       # kept (waiting)
    for w in (write("n", 1, 0, "old"), write("n", 2, 1, "young"),      # created by a
              write("n", 3, 2, None), write("n", 4, 3, "young"),       # purged session
              write("mid", 10, 0, "young"), write("mid", 20, 1, "old"),
              write("mid", 30, 2, "parked"),
              write("tail", "kept", 0, "parked"), write("tail", "gone", 1, "old"),
              write("solo", 1, 0, "old"), write("solo", 2, 1, "older")):
        assert (await store.state_put(w)).written, w
    assert not await store.state_watch("t1", "ns", "tail", session_id="parked", name="w",
                                       after_version=2)  # (the parked session saw v2)
    event = await store.purge("t1", ["old", "older"], reason="retention")
    assert (event.sessions, event.state_versions, event.key) == (2, 5, False)

    async def versions(key: str) -> list[tuple[int, str]]:
        return [(e.version, e.value) for e in await store.state_history("t1", "ns", key)]

    n = await store.state_get("t1", "ns", "n")
    assert n is not None and (n.version, n.value, n.session_id) == (4, "4", "young")
    assert await versions("n") == [(2, "2"), (3, "3"), (4, "4")]
    mid = await store.state_get("t1", "ns", "mid")
    assert mid is not None and (mid.version, mid.value) == (3, "30")
    assert await versions("mid") == [(1, "10"), (3, "30")]
    tail = await store.state_get("t1", "ns", "tail")
    assert tail is not None and (tail.version, tail.value, tail.session_id) == \
        (2, '"kept"', "parked")  # the kept value, under the purged version's number
    assert await versions("tail") == [(1, '"kept"')]
    assert await store.state_get("t1", "ns", "solo") is None
    assert await versions("solo") == []
    # Compare-and-set against the current version goes on; against an older one it fails.
    stale = await store.state_put(write("n", 9, 1, None))
    assert not stale.written and stale.entry is not None and stale.entry.version == 4
    assert not (await store.state_put(write("tail", "x", 1, None))).written
    assert (await store.state_put(write("n", 5, 4, None))).entry.version == 5
    assert (await store.state_put(write("mid", 40, 3, None))).entry.version == 4
    put = await store.state_put(write("tail", "next", 2, None))
    assert put.written and put.entry.version == 3 and put.woken == 1  # the watch fired
    assert await store.next_signal("parked", "w") is not None
    assert await versions("tail") == [(1, '"kept"'), (3, '"next"')]
    # A key it deleted whole starts again past the highest version deleted.
    assert (await store.state_put(write("solo", 1, 0, None))).entry.version == 3
    assert (await store.purge("t1", ["old"], reason="retention")).state_versions == 0


@pytest.mark.parametrize("reason", ["retention", "erasure"])
async def test_a_key_deleted_whole_never_gives_a_version_number_again(
        stores: suite.Opener, reason: str) -> None:
    """A purge that deletes a key whole (every version of it its sessions wrote, or that
    one of them created, on an erasure) keeps its highest version as its tenant's floor:
    the key written again starts past it, so a writer that read the deleted key's version
    N gets a conflict, not a write against another value numbered N (as it would if the
    new key's versions restarted at 1 and came back to N). Keys already there, and other
    tenants, are numbered as before; a second store on the same database, which saw no
    purge, numbers past it too."""
    first, second = await stores(), await stores()
    for session in ("gone", "small"):
        await owned(first, session)
        await first.release(session, "A")
    for w in (write("doc", "a", 0, "gone"), write("doc", "b", 1, "gone"),
              write("doc", "c", 2, "gone"), write("kept", "x", 0, None),
              write("low", 1, 0, "small"),
              write("doc", "other tenant", 0, None, tenant="t2")):
        assert (await second.state_put(w)).written, w  # (the second store's cache: 0)
    read = await first.state_get("t1", "ns", "doc")  # a writer reads version 3
    assert read is not None and read.version == 3
    await first.purge("t1", ["gone"], reason=reason)  # type: ignore[arg-type]
    assert await second.state_get("t1", "ns", "doc") is None
    made = await second.state_put(write("doc", "new", 0, None))
    assert made.written and made.entry is not None and made.entry.version == 4
    stale = await second.state_put(write("doc", "lost update", 3, None))
    assert not stale.written and stale.entry is not None and stale.entry.value == '"new"'
    for version in (4, 5):
        assert (await first.state_put(write("doc", version, version, None))).written
    assert [e.version for e in await first.state_history("t1", "ns", "doc")] == [4, 5, 6]
    assert (await first.state_put(write("kept", "y", 1, None))).entry.version == 2
    assert (await second.state_put(write("fresh", 1, 0, None))).entry.version == 4
    assert (await first.state_put(write("new2", 1, 0, None, tenant="t2"))).entry.version == 1
    # A later purge that deletes a key at a lower version leaves the floor where it was.
    await first.purge("t1", ["small"], reason=reason)  # type: ignore[arg-type]
    assert await first.state_get("t1", "ns", "low") is None
    assert (await second.state_put(write("low", 1, 0, None))).entry.version == 4


@pytest.mark.parametrize("reason", ["retention", "erasure"])
async def test_a_key_created_past_the_floor_is_still_the_creators(
        store: Store, reason: str) -> None:
    """A review: a purge finds the keys a session created by their version 1, but a key
    created after a purge raised its tenant's floor starts past it (version 4): an erasure
    of its creator kept the versions others wrote (a person's decision on the subject's
    human task, personal data), and so did a retention purge of the session's own keys
    (its inbox task). Its creation is its oldest version, whatever its number."""
    for session in ("first", "maker"):
        await owned(store, session)
        await store.release(session, "A")
    for w in (write("old", "a", 0, "first"), write("old", "b", 1, "first"),
              write("old", "c", 2, "first")):
        assert (await store.state_put(w)).written
    await store.purge("t1", ["first"], reason=reason)  # type: ignore[arg-type]
    ns = "convoy.inbox" if reason == "retention" else "ns"
    made = await store.state_put(replace(write("maker:task", "q", 0, "maker"), namespace=ns))
    assert made.entry is not None and made.entry.version == 4  # (past the floor)
    decided = await store.state_put(replace(write("maker:task", "decided", 4, None),
                                            namespace=ns))
    assert decided.written
    event = await store.purge("t1", ["maker"], reason=reason)  # type: ignore[arg-type]
    assert await store.state_get("t1", ns, "maker:task") is None
    assert await store.state_history("t1", ns, "maker:task") == []
    assert event.state_versions == 2


async def test_a_key_whose_creation_a_retention_purge_deleted_has_no_creator(
        store: Store) -> None:
    """A retention purge deletes the version that created a shared key (the versions
    others wrote stay): the writer of the oldest version left did not create it, and its
    erasure deletes its own versions only, not the key with what others wrote since. A
    key deleted whole is created again by its next writer."""
    for session in ("maker", "second", "third", "again", "later"):
        await owned(store, session)
        await store.release(session, "A")
    for w in (write("shared", "a", 0, "maker"), write("shared", "b", 1, "second"),
              write("shared", "c", 2, "third")):
        assert (await store.state_put(w)).written
    await store.purge("t1", ["maker"], reason="retention")
    assert await store.state_created("t1", ["second", "third"]) == []
    event = await store.purge("t1", ["second"], reason="erasure")
    assert event.state_versions == 1
    assert [(e.version, e.session_id) for e in await store.state_history("t1", "ns", "shared")] \
        == [(3, "third")]
    cur = await store.state_get("t1", "ns", "shared")
    assert cur is not None and (cur.version, cur.value) == (3, json.dumps("c"))
    # Its last version goes: the key goes whole, and its next writer creates it.
    await store.purge("t1", ["third"], reason="retention")
    assert await store.state_get("t1", "ns", "shared") is None
    made = await store.state_put(write("shared", "d", 0, "again"))
    assert made.entry is not None and made.entry.version == 4
    assert (await store.state_put(write("shared", "e", 4, "later"))).written
    assert await store.state_created("t1", ["again", "later"]) == [("ns", "shared")]
    event = await store.purge("t1", ["again"], reason="erasure")
    assert event.state_versions == 2 and await store.state_history("t1", "ns", "shared") == []


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


async def test_a_subjects_session_is_created_only_while_the_store_holds_its_key(
        store: Store) -> None:
    """A creation names the key (wrapped) its sessions' values are sealed under: a key the
    store no longer holds (the subject erased by another process after the creator read
    it, perhaps made again since) creates none of them, with a transient error."""
    await store.subject_key_put("t1", "p", "k1")
    made = [replace(new("a"), subject="p", subject_key="k1"), new("plain")]
    assert await store.create_sessions(made, owner="A", lease_s=30) == 2
    await store.release("a", "A")
    await store.purge("t1", ["a"], reason="erasure", subject="p", subject_ref="r")
    for held in (None, "k2"):  # erased; erased and made again
        if held is not None:
            await store.subject_key_put("t1", "p", held)
        # (``SubjectKeyGone``, not any StoreError: the sealing store catches it to seal
        # the sessions again under the subject's new key)
        with pytest.raises(SubjectKeyGone) as gone:
            await store.create_sessions([new("other"), replace(new("b"), subject="p",
                                                                subject_key="k1")])
        assert gone.value.transient and "'b' was not created" in str(gone.value)
        assert await store.get_session("b") is None and \
            await store.get_session("other") is None  # (one transaction: nothing made)
    assert await store.create_sessions([replace(new("b"), subject="p",
                                                subject_key="k2")]) == 1


async def test_an_erasure_deletes_the_subjects_sessions_made_since_its_list_was_read(
        store: Store, clock: FakeClock) -> None:
    """An erasure's purge deletes every session that names its subject when it runs, not
    only those the caller listed (one another process made since would be left naming an
    erased subject under its destroyed key), and refuses one whose lease holds."""
    await store.subject_key_put("t1", "p", "k1")
    await store.create_sessions([replace(new(sid), subject="p") for sid in ("a", "b")] +
                                [replace(new("q1"), subject="q"), new("plain")])
    await owned(store, "busy", owner="A", lease_s=30)
    await store.create_sessions([replace(new("late"), subject="p")], owner="B", lease_s=30)
    with pytest.raises(UserError, match="'late' is running on engine 'B'"):
        await store.purge("t1", ["a"], reason="erasure", subject="p", subject_ref="r")
    await store.release("late", "B")
    event = await store.purge("t1", ["a"], reason="erasure", subject="p", subject_ref="r")
    assert (event.sessions, event.key) == (3, True)
    assert await store.subject_sessions("t1", "p") == []
    assert {sid for sid in ("q1", "plain", "busy") if await store.get_session(sid)} == \
        {"q1", "plain", "busy"}
    retention = await store.purge("t1", [], reason="retention")  # no subject: none named
    assert retention.sessions == 0


async def test_a_retention_purge_deletes_only_what_is_still_finished_before_its_cutoff(
        store: Store, clock: FakeClock) -> None:
    """The sessions a retention purge is given were listed finished before its cutoff; one
    reopened since (an answer to its escalation), or finished again after the cutoff, is
    kept."""
    for sid in ("old", "reopened", "again"):
        await owned(store, sid)
        await store.finish(sid, "A", SessionOutcome(status="escalated"))
    clock.advance(100)
    cutoff = clock() - 50
    assert sorted(await store.finished_before(cutoff)) == ["again", "old", "reopened"]
    assert await store.reopen("reopened") and await store.reopen("again")
    await store.claim("again", "B", 30)
    await store.finish("again", "B", SessionOutcome(status="completed"))
    event = await store.purge("t1", ["old", "reopened", "again"], reason="retention",
                              finished_before=cutoff)
    assert event.sessions == 1 and await store.get_session("old") is None
    assert (await suite.must(store, "reopened")).status == "pending"
    assert (await suite.must(store, "again")).status == "completed"


async def test_a_purge_appends_its_audit_entry_in_its_own_transaction(
        store: Store) -> None:
    """``audit``: the entry made of the recorded erasure (its number known only in the
    transaction) is appended to the tenant's log with the purge, after what it holds."""
    await store.audit_append("t1", [b"before"])
    await ended(store, "gone")
    made: list[Erasure] = []

    def entry(event: Erasure) -> bytes:
        made.append(event)
        return f"erasure {event.seq} of {event.sessions}".encode()

    event = await store.purge("t1", ["gone"], reason="retention", audit=entry)
    assert made == [event] and event.seq > 0
    assert [r.body for r in await store.audit_entries("t1", 0, 10)] == \
        [b"before", f"erasure {event.seq} of 1".encode()]
    assert await store.audit_size("t2") == 0


async def test_a_purge_owes_a_compaction_until_one_is_made(store: Store) -> None:
    """A purge records, in its transaction, that the store owes a compaction (what it
    deleted is still in the store's files until then); a compaction pays it, so that a
    process killed between the two leaves it owed, for the next erasure or purge."""
    assert await store.kv_get(*COMPACTION_OWED) is None
    await ended(store, "gone")
    event = await store.purge("t1", ["gone"], reason="retention")
    assert await store.kv_get(*COMPACTION_OWED) == str(event.seq)
    await store.compact()
    assert await store.kv_get(*COMPACTION_OWED) is None


def seal(sid: str, before: str | None, after: str, *bodies: bytes) -> AuditSeal:
    return AuditSeal(tenant="t1", session_id=sid, before=before, after=after,
                     bodies=list(bodies))


async def ended(store: Store, *sids: str) -> None:
    """Sessions whose runs ended (nothing holds them: a purge takes them)."""
    for sid in sids:
        await owned(store, sid)
        await store.release(sid, "A")


async def test_a_purged_sessions_cursor_is_kept_so_a_late_seal_appends_nothing_twice(
        store: Store, clock: FakeClock) -> None:
    """A purge keeps the audit cursor of each session it deletes (a tombstone, the value
    as it was): a seal queued before the purge, of records sealed already (``before`` is
    not the cursor), appends nothing, where it found no cursor and appended them again;
    one of records never sealed (``before`` is the cursor) still appends them. A session
    never sealed leaves no cursor; one an earlier release kept in kv keeps it."""
    x = repr(clock() - 5)
    await ended(store, "sealed", "never", "earlier")
    assert await store.audit_seal([seal("sealed", None, x, b"a")]) == [True]
    await store.kv_put(AUDIT_CURSORS, "earlier", repr(clock() - 7))
    await store.purge("t1", ["sealed", "never", "earlier"], reason="erasure")
    assert await store.get_session("sealed") is None
    assert await store.audit_cursor("sealed") == x
    assert await store.audit_cursor("never") is None
    assert await store.audit_cursor("earlier") == repr(clock() - 7)
    y = repr(clock() - 1)
    assert await store.audit_seal([seal("sealed", None, x, b"again"),  # sealed already
                                   seal("sealed", x, y, b"b"),  # never sealed: appended
                                   seal("never", None, y, b"c")]) == [False, True, True]
    assert [r.body for r in await store.audit_entries("t1", 0, 10)] == [b"a", b"b", b"c"]
    assert await store.audit_cursor("sealed") == y


async def test_a_purged_sessions_cursor_goes_once_it_is_a_week_old(
        store: Store, clock: FakeClock) -> None:
    """Tombstones do not pile up: a purge deletes the cursors of sessions that no longer
    exist once they are :data:`TOMBSTONE_S` old (the cursor's time by the store's clock),
    before it keeps its own: one it keeps is there until a later purge, however old (the
    seal of a session's last run after a park of more than a week needs it as much). A
    live session's cursor is never deleted, however old, and a value edited by hand to
    what is not a number is left, without failing a purge."""
    start = clock()
    await ended(store, "new", "stale", "live", "live-kv")
    assert await store.audit_seal([
        seal("new", None, repr(start)), seal("stale", None, repr(start - TOMBSTONE_S - 1)),
        seal("live", None, repr(start - 30 * 86400))]) == [True, True, True]
    await store.kv_put(AUDIT_CURSORS, "live-kv", repr(start - 30 * 86400))  # (an earlier
    # release's, in kv on SQLite too)
    edited = {"edited": "not a number", "huge": "1e+999", "long": "9" * 400, "odd": "12abc",
              "newline": "5\n"}
    for key, value in edited.items():
        await store.kv_put(AUDIT_CURSORS, key, value)
    await store.kv_put(AUDIT_CURSORS, "none-sealed", "-inf")  # (a cursor moved to none)
    await store.purge("t1", ["new", "stale"], reason="retention")
    assert await store.audit_cursor("none-sealed") is None
    assert await store.audit_cursor("new") == repr(start)
    assert await store.audit_cursor("stale") == repr(start - TOMBSTONE_S - 1)  # (kept)
    clock.advance(TOMBSTONE_S - 1)
    await ended(store, "later")
    later = repr(clock())
    assert await store.audit_seal([seal("later", None, later)]) == [True]
    await store.purge("t1", ["later"], reason="erasure")
    assert await store.audit_cursor("stale") is None  # (a week old at a later purge)
    assert await store.audit_cursor("new") == repr(start)  # not a week old yet
    clock.advance(TOMBSTONE_SWEEP_S)  # (a store looks for them once an hour at most)
    await store.purge("t2", [], reason="retention")  # (any purge, of any tenant)
    assert await store.audit_cursor("new") is None
    assert await store.audit_cursor("later") == later
    assert await store.audit_cursor("live") == repr(start - 30 * 86400)
    assert await store.audit_cursor("live-kv") == repr(start - 30 * 86400)
    for key, value in edited.items():
        assert await store.audit_cursor(key) == value


async def test_a_store_looks_for_old_cursors_once_an_hour_at_most(
        store: Store, clock: FakeClock) -> None:
    """The purges of one retention run (a batch each) read the cursors once: a store that
    looked for week-old ones looks again only :data:`TOMBSTONE_SWEEP_S` later."""
    old = repr(clock() - TOMBSTONE_S - 1)
    await store.kv_put(AUDIT_CURSORS, "gone-1", old)
    await store.purge("t1", [], reason="retention")
    assert await store.audit_cursor("gone-1") is None
    await store.kv_put(AUDIT_CURSORS, "gone-2", old)
    clock.advance(TOMBSTONE_SWEEP_S - 1)
    await store.purge("t1", [], reason="retention")
    assert await store.audit_cursor("gone-2") == old  # (not looked for yet)
    clock.advance(1)
    await store.purge("t1", [], reason="retention")
    assert await store.audit_cursor("gone-2") is None


async def test_a_tombstone_is_kept_by_the_purge_that_made_it_however_old_its_cursor(
        store: Store, clock: FakeClock) -> None:
    """Review repro: a session sealed, then parked for more than a week, resumed, and
    ended: its last run's seal (``before``: the cursor of a week ago) is queued when a
    retention purge deletes it. The purge keeps the cursor as a tombstone, but the same
    purge's sweep deletes it (its value is older than :data:`TOMBSTONE_S`), so the queued
    seal, of records never sealed, fails its compare-and-set and they are never sealed (the
    journal is gone): the loss the tombstone was meant to prevent."""
    await ended(store, "parked")
    old = repr(clock() - TOMBSTONE_S - 60)  # (its last record before the park)
    assert await store.audit_seal([seal("parked", None, old, b"before the park")]) == [True]
    await store.purge("t1", ["parked"], reason="retention")
    assert await store.audit_cursor("parked") == old  # fails: None
    assert await store.audit_seal([seal("parked", old, repr(clock()), b"after")]) == [True]
