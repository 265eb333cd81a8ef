"""The audit log of a data subject's session keeps keyed hashes: HMAC-SHA256 under a key
derived from the subject's key, so a guessable value (an e-mail address, a name) can be
checked against the log while the subject's key exists, and by nobody once the subject is
erased; the log still verifies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from convoy.audit import AuditEvent, AuditInterceptor, AuditLog
from convoy.audit._event import digest, keyed
from convoy.audit._verify import verify_log
from convoy.durability._executor import fingerprint

from .conftest import STORE_KINDS, store_db
from .test_privacy import IN_NAME, ask_refund, engine, serve, wait_a_day


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


async def entries(eng: object, audit: AuditInterceptor) -> list[AuditEvent]:
    await audit.sealed()
    size = await audit.log.store.audit_size("default")
    rows = await audit.log.store.audit_entries("default", 0, size)
    return [AuditEvent.decode(r.body) for r in rows]


async def test_a_subjects_audit_hashes_are_keyed_and_nobody_can_test_them_after_erasure(
        tmp_path: Path) -> None:
    audit = AuditInterceptor(key_path=tmp_path / "audit.key")
    async with engine(tmp_path / "convoy.db", interceptors=[audit]) as eng:
        mine = await eng.run(serve, {"name": IN_NAME}, subject="customer-42")
        other = await eng.run(serve, {"name": "Nobody In Particular"})
        asked = await eng.run(ask_refund, IN_NAME, subject="customer-42")
        assert mine.ok and other.ok and asked.status == "waiting"
        [task] = await eng.inbox.tasks()
        await eng.inbox.answer(task.id, {"approve": True, "note": "ok"}, by="alice")
        log = await entries(eng, audit)
        by_session: dict[str | None, list[AuditEvent]] = {}
        for e in log:
            by_session.setdefault(e.session_id, []).append(e)
        # (a workflow's version is no one's data: its config_change hash is not keyed)
        keyed_hashes = [h for e in by_session[mine.id] + by_session[asked.id]
                        if e.kind != "config_change" for h in e.hashes.values()]
        plain_hashes = [h for e in by_session[other.id] for h in e.hashes.values()]
        assert keyed_hashes and all(h.startswith("hmac-sha256:") for h in keyed_hashes)
        assert plain_hashes and not any(h.startswith("hmac-") for h in plain_hashes)
        assert any(e.kind == "human_decision" for e in by_session[asked.id])
        # While the key exists, whoever holds it can check a value against the log: the
        # model's output, and the prompt by the journal's fingerprint of it.
        assert eng.keys is not None
        key = await eng.keys.load("default", "customer-42", create=False)
        assert key is not None
        steps = {r.key: r for r in await eng.store.journal(mine.id)}
        model_entries = [e for e in by_session[mine.id] if e.kind == "model_call"]
        for e in model_entries:
            record = steps[e.step_key or ""]
            assert e.hashes["output"] == keyed(key.mac, digest(record.result or ""))
            assert e.hashes["prompt"] == keyed(key.mac, "blake2b:" + (record.input_hash or ""))
        assert all(IN_NAME not in json.dumps(e.refs) for e in log)
        before = await verify_log(audit.log, "default")
        await eng.erase("customer-42")
        after = await verify_log(audit.log, "default")
        assert after.size == before.size + 1  # the erasure's entry; nothing removed
        assert await eng.keys.load("default", "customer-42", create=False) is None
    # Without the key, a guess (the planted name, as the prompt held it) matches no hash.
    guess = fingerprint(IN_NAME)
    assert not any(guess in h for e in log for h in e.hashes.values())


async def test_sessions_started_together_know_their_subject(tmp_path: Path) -> None:
    """``run_many(subject=)`` (and ``convoy run --subject``, which calls it) starts
    sessions of a data subject: their hooks see the subject, so their audit hashes are
    keyed like those of a session ``run`` starts."""
    audit = AuditInterceptor()
    async with engine(tmp_path / "convoy.db", interceptors=[audit]) as eng:
        results = await eng.run_many(serve, [{"name": IN_NAME}, {"name": "Someone Else"}],
                                     subject="customer-42")
        assert all(r.ok for r in results), [r.error for r in results]
        ids = {r.id for r in results}
        log = [e for e in await entries(eng, audit) if e.session_id in ids]
        hashes = [h for e in log if e.kind != "config_change" for h in e.hashes.values()]
        assert hashes and all(h.startswith("hmac-sha256:") for h in hashes), hashes


@pytest.mark.parametrize("audited", [True, False], ids=["audit_interceptor", "log_only"])
async def test_an_erasure_seals_first_what_a_killed_run_left_unsealed(
        store: str | Path, tmp_path: Path, audited: bool) -> None:
    """A subject's session whose run was killed before its sealer sealed it (as an engine
    without the interceptor leaves it), in an audited tenant, then erased before any
    resume: its steps are sealed from the journal before the erasure deletes it, keyed
    with the subject's key, and the log verifies. (The erasure deleted the journal they
    would have been sealed from: those steps never reached the log.)"""
    db = store
    audit = AuditInterceptor(key_path=tmp_path / "audit.key")
    async with engine(db, interceptors=[audit]) as eng:  # (the tenant's log exists)
        assert (await eng.run(serve, {"name": "Nobody In Particular"})).ok
    async with engine(db) as eng:  # (its runs seal nothing: as if killed before)
        killed = await eng.run(serve, {"name": IN_NAME}, subject="customer-42")
        assert killed.ok
    erasing = AuditInterceptor(key_path=tmp_path / "audit.key")
    async with engine(db, interceptors=[erasing] if audited else []) as eng:
        await eng.erase("customer-42")
        size = await eng.store.audit_size("default")
        rows = await eng.store.audit_entries("default", 0, size)
        events = [AuditEvent.decode(r.body) for r in rows]
        sealed = [e for e in events if e.session_id == killed.id]
        assert any(e.kind == "model_call" for e in sealed), [e.kind for e in events]
        assert all(h.startswith("hmac-sha256:") for e in sealed if e.kind != "config_change"
                   for h in e.hashes.values())
        assert events[-1].kind == "erasure"
        assert all(IN_NAME not in r.body.decode() for r in rows)
        report = await verify_log(AuditLog(eng.store), "default")
        assert report.size == size


async def test_an_erasure_seals_what_a_stopped_engine_left_and_clears_its_marker(
        store: str | Path, tmp_path: Path) -> None:
    """An engine process that audited the store stopped before its seal (its sealer's
    marker left, as a SIGKILL leaves it; here written by hand for a process of this host
    that is gone): an erasure seals what it left, the subject's sessions and the others,
    as ``convoy audit seal`` does, and removes its marker, so ``convoy audit verify``
    stops saying entries are missing (a new user's trial: it kept saying so until
    ``convoy audit seal`` ran, which then said it sealed 0 sessions)."""
    import socket

    from convoy.audit._sealer import SEALERS

    db = store
    async with engine(db, interceptors=[AuditInterceptor()]) as eng:  # (the log exists)
        assert (await eng.run(serve, {"name": "Nobody In Particular"})).ok
    async with engine(db) as eng:  # (its runs seal nothing: as the stopped one left them)
        theirs = await eng.run(serve, {"name": IN_NAME}, subject="customer-42")
        other = await eng.run(serve, {"name": "Someone Else"})
        gone = f"{socket.gethostname()}:{2 ** 22 + 777}:deadbeef"
        await eng.store.kv_put(SEALERS, gone, json.dumps({"through": 0.0, "beat": 0.0}))
    async with engine(db) as eng:
        await eng.erase("customer-42")
        assert await eng.store.kv_all(SEALERS) == {}
        size = await eng.store.audit_size("default")
        events = [AuditEvent.decode(r.body)
                  for r in await eng.store.audit_entries("default", 0, size)]
        assert any(e.session_id == other.id and e.kind == "model_call" for e in events)
        assert any(e.session_id == theirs.id and e.kind == "model_call" for e in events)
        assert (await verify_log(AuditLog(eng.store), "default")).size == size


async def test_an_erasure_goes_through_a_damaged_audit_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A tenant's audit log whose count was lowered by hand (every append collides): the
    erasure does not depend on it. The subject's sessions are erased and the store
    compacted, then the erasure's own entry is refused as the damage it is (an
    ``AuditError`` that says so, and that the erasure happened); it stopped the erasure
    with nothing erased, and then (review) raised before the compaction, and warned once
    per session."""
    import logging
    import sqlite3

    import convoy

    db = tmp_path / "convoy.db"
    async with engine(db, interceptors=[AuditInterceptor()]) as eng:
        assert (await eng.run(serve, {"name": "Nobody In Particular"})).ok
    async with engine(db) as eng:  # (its runs seal nothing: as if killed before)
        killed = [await eng.run(serve, {"name": f"{IN_NAME} {i}"}, subject="customer-42")
                  for i in range(3)]
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit_head SET size = size - 1")
    conn.close()
    async with engine(db, interceptors=[AuditInterceptor()]) as eng:
        with caplog.at_level(logging.WARNING, logger="convoy.audit"), \
                pytest.raises(convoy.AuditError, match=r"erased \(erasure #1\), but the "
                              r"erasure could not be appended to the audit log: .* holds "
                              r"entries past its count"):
            await eng.erase("customer-42")
        for k in killed:
            assert await eng.store.get_session(k.id) is None
        assert [e.seq for e in await eng.store.erasures()] == [1]
    said = [r.getMessage() for r in caplog.records if "before the erasure" in r.getMessage()]
    assert len(said) == 1 and "3 sessions" in said[0], said
    with sqlite3.connect(db) as conn:
        [(free,)] = conn.execute("PRAGMA freelist_count").fetchall()
    conn.close()
    assert free == 0  # compacted: no deleted row left in the file


async def test_a_purge_across_tenants_names_every_damaged_log(tmp_path: Path) -> None:
    """Purging by age across tenants, two of whose audit logs had their count lowered: the
    third tenant's entry is appended, the store compacted, and one error names both
    damaged logs (it named the last one only)."""
    import sqlite3

    import convoy
    from convoy import Engine, MasterKey
    from convoy.stores import store_from_url

    from .conftest import FakeClock
    from .test_privacy import KEY

    db = tmp_path / "convoy.db"
    clock = FakeClock()

    def clocked() -> Engine:
        return Engine(store_from_url(db, clock=clock), master_key=MasterKey.from_text(KEY),
                      interceptors=[AuditInterceptor()])

    async with clocked() as eng:
        for t in ("t1", "t2", "t3"):
            assert (await eng.tenant(t).run(serve, {"name": "Nobody In Particular"})).ok
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit_head SET size = size - 1 WHERE tenant IN ('t1', 't3')")
    conn.close()
    clock.advance(31 * 86400)
    async with clocked() as eng:
        with pytest.raises(convoy.AuditError) as raised:
            await eng.purge(30 * 86400)
        said = str(raised.value)
        assert said.startswith("purged, but 2 purges could not be appended to their audit "
                               "log: ") and "tenant 't1'" in said and "tenant 't3'" in said
        size = await eng.store.audit_size("t2")
        [last] = await eng.store.audit_entries("t2", size - 1, 1)
        assert AuditEvent.decode(last.body).kind == "erasure"  # (t2's entry appended)


@pytest.mark.parametrize("end", ["completed", "cancelled"])
async def test_a_run_sealed_after_its_subject_was_erased_is_in_the_log_once(
        store: str | Path, tmp_path: Path, end: str) -> None:
    """Engine A runs a subject's session to its end (or parks it, then cancels it); its
    seal is still queued (a long seal interval) when engine B erases the subject, sealing
    the session's records from the journal first. A's seal then finds the erased session's
    cursor kept (a tombstone): it appends nothing twice (the purge deleted the cursor, so
    the seal took the session for one never sealed and appended every step again), loses
    nothing (how the run ended, which B could not seal: once), and the log verifies."""
    db = store
    a_audit = AuditInterceptor(key_path=tmp_path / "audit.key", seal_every=3600)
    async with engine(db, interceptors=[a_audit]) as a:
        if end == "completed":
            ran = await a.run(serve, {"name": IN_NAME}, subject="customer-42")
        else:
            ran = await a.run(wait_a_day, IN_NAME, subject="customer-42")
            assert ran.status == "waiting"
            await a.cancel(ran.id)
        assert (await a.store.get_session(ran.id)).status == end  # type: ignore[union-attr]
        steps = sorted(r.key for r in await a.journal(ran.id) if r.status != "started")
        assert steps
        async with engine(db, interceptors=[AuditInterceptor(
                key_path=tmp_path / "audit.key", seal_every=3600)]) as b:
            await b.erase("customer-42")
        assert await a.store.get_session(ran.id) is None
    async with engine(db) as eng:  # (A sealed what it queued as it closed)
        size = await eng.store.audit_size("default")
        events = [AuditEvent.decode(r.body)
                  for r in await eng.store.audit_entries("default", 0, size)]
        keys = [e.step_key for e in events if e.session_id == ran.id
                and e.kind not in ("config_change", "session")]
        assert sorted(keys) == steps, keys  # each step once: none twice, none lost
        ends = [e.status for e in events if e.session_id == ran.id and e.kind == "session"]
        assert ends == ([] if end == "completed" else ["cancelled"])
        assert (await verify_log(AuditLog(eng.store), "default")).size == size


async def test_a_new_session_under_a_purged_sessions_id_is_audited(
        store: str | Path, tmp_path: Path) -> None:
    """Review repro: a session purged, then a new session under the same id (``convoy
    run`` derives ids from the input: the same line run again) on an engine whose clock
    is a few seconds behind the first one's. The new session reads the purged one's
    tombstone as its cursor, and its records, stamped before that time, are never sealed
    (no warning, the log verifies); before the tombstones, its steps were appended."""
    import convoy

    from .conftest import FakeClock

    @convoy.workflow(name="steps")
    async def steps(ctx: convoy.Context, name: str) -> str:
        for i in range(3):
            await ctx.step(f"s{i}", lambda i=i: f"{name}-{i}")
        return name

    class Ticking(FakeClock):  # (every read a millisecond later)
        def __call__(self) -> float:
            self.now += 0.001
            return self.now

    clock = Ticking()
    key = tmp_path / "audit.key"
    no_limit = convoy.Limits(max_seconds=None)  # (a fake store clock ahead of the engine's)
    async with engine(store, clock, interceptors=[AuditInterceptor(key_path=key)],
                      limits=no_limit) as a:
        await a.run(steps, "x", session_id="same-line")
    clock.advance(2)
    async with engine(store, clock) as p:
        assert [e.sessions for e in await p.purge(1)] == [1]
    clock.advance(-5)  # another host's clock, 3 s behind
    async with engine(store, clock, interceptors=[AuditInterceptor(key_path=key)],
                      limits=no_limit) as b:
        await b.run(steps, "y", session_id="same-line")
    async with engine(store) as eng:
        size = await eng.store.audit_size("default")
        events = [AuditEvent.decode(r.body)
                  for r in await eng.store.audit_entries("default", 0, size)]
        keys = [e.step_key for e in events
                if e.session_id == "same-line" and e.kind == "effect"]
    assert keys == ["0", "1", "2", "0", "1", "2"], keys  # fails: ["0", "1", "2"]
