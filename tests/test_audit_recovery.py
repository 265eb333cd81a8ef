"""A session's audit entries are appended when its run ends, in the commit that records
how it ended; a run that dies first appends nothing, and the run that resumes the session
appends the entries of what the dead run journaled (after the session's audit cursor),
each once. In one process: the "death" is ``Crash``, a ``BaseException`` nothing catches,
raised inside a model call; the SIGKILL case with two processes is
tests/test_audit_engines_crash.py."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy import ModelRequest
from convoy.audit import AuditEvent, AuditInterceptor, AuditLog, verify_log
from convoy.stores import SQLiteStore, StepRecord, store_from_url

from .conftest import (
    STORE_KINDS,
    Classification,
    Crash,
    audit_sealed,
    later_engine,
    store_db,
)

OK = {"label": "billing", "confidence": 0.9}


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


class CrashAt(convoy.SimModel):
    """Crashes the process at the ``n``-th call of the model (once)."""

    def __init__(self, n: int) -> None:
        super().__init__({"*": {"output": OK}})
        self.n, self.seen = n, 0

    async def request(self, request: ModelRequest) -> convoy.ModelResponse:
        self.seen += 1
        if self.seen == self.n:
            raise Crash
        return await super().request(request)


def _flow(model: convoy.SimModel, version: str = "1") -> convoy.Workflow[Any, Any]:
    agents = [convoy.Agent(name=f"a{i}", output_type=Classification, model=model)
              for i in range(4)]

    @convoy.workflow(name="audit.recovery", version=version)
    async def flow(ctx: convoy.Context, text: str) -> str:
        first = await convoy.pipeline(ctx, agents[:2], text)
        note = await ctx.wait_for("go", str)  # parks: a clean end of the first run
        await ctx.state(f"c:{ctx.session_id}").set("n", note, expected_version=0)
        last = await convoy.pipeline(ctx, agents[2:], first.label)
        return f"{last.label} {note}"

    return flow


async def _entries(eng: convoy.Engine, tenant: str = "default") -> list[AuditEvent]:
    await audit_sealed(eng)
    return [AuditEvent.decode(r.body)
            for r in await eng.store.audit_entries(tenant, 0, 10_000)]


async def _check_one_entry_per_record(eng: convoy.Engine, sid: str) -> list[AuditEvent]:
    # (The steps' entries: not the workflow's config_change, nor a cancel's session entry.)
    events = [e for e in await _entries(eng) if e.session_id == sid
              and e.kind not in ("config_change", "session")]
    journal = [r for r in await eng.journal(sid) if r.status != "started"]
    keys = Counter(e.step_key for e in events)
    assert sorted(keys) == sorted(r.key for r in journal), (keys, journal)
    assert set(keys.values()) == {1}, keys  # none twice
    report = await verify_log(AuditLog(eng.store), "default")  # raises if it does not
    assert report.size == len(await _entries(eng))
    return events


@pytest.mark.parametrize("crash_at", [2, 3, 4])
async def test_a_killed_runs_steps_are_audited_once_by_the_run_that_resumes_it(
        db: str | Path, crash_at: int) -> None:
    """Killed in the first run (before the park: call 2), or in the second (calls 3, 4),
    after a clean end that set the session's cursor."""
    sim = CrashAt(crash_at)
    flow = _flow(sim)
    async with convoy.Engine(db, workflows=[flow], interceptors=[AuditInterceptor()]) as eng:
        if crash_at == 2:
            with pytest.raises(Crash):
                await eng.run(flow, "t", session_id="s1")
            assert await _entries(eng) == [] or all(
                e.kind == "config_change" for e in await _entries(eng))
        else:
            res = await eng.run(flow, "t", session_id="s1")
            assert res.status == "waiting"
            row = await eng.store.get_session("s1")
            assert row is not None
            await audit_sealed(eng)
            assert await eng.store.audit_cursor("s1") is not None
            before = await _entries(eng)
            await eng.signal("s1", "go", "now")
            with pytest.raises(Crash):  # (itself, not in resume's task group's group)
                await eng.resume()
            assert await _entries(eng) == before  # the dead run appended nothing
    async with later_engine(db, workflows=[flow], interceptors=[AuditInterceptor()]) as eng2:
        if crash_at == 2:
            [res] = await eng2.resume()
            assert res.status == "waiting"
            await eng2.signal("s1", "go", "now")
        [res] = await eng2.resume()
        assert res.ok, res
        events = await _check_one_entry_per_record(eng2, "s1")
    kinds = Counter(e.kind for e in events)
    assert kinds["model_call"] == 4 and kinds["signal"] == 1 and kinds["state_write"] == 1


async def test_a_resumed_session_after_a_clean_park_appends_nothing_twice(
        db: str | Path) -> None:
    sim = convoy.SimModel({"*": {"output": OK}})
    flow = _flow(sim)
    async with convoy.Engine(db, workflows=[flow], interceptors=[AuditInterceptor()]) as eng:
        assert (await eng.run(flow, "t", session_id="s1")).status == "waiting"
    async with later_engine(db, workflows=[flow], interceptors=[AuditInterceptor()]) as eng2:
        await eng2.signal("s1", "go", "now")
        [res] = await eng2.resume()
        assert res.ok
        await _check_one_entry_per_record(eng2, "s1")


async def test_entries_join_the_commit_that_ends_the_run(db: str | Path) -> None:
    """The log holds a run's entries once the store holds how it ended."""
    sim = convoy.SimModel({"*": {"output": OK}})
    flow = _flow(sim)
    store = store_from_url(str(db))
    async with convoy.Engine(store, workflows=[flow], interceptors=[AuditInterceptor()]) as eng:
        assert (await eng.run(flow, "t", session_id="s1")).status == "waiting"
        events = await _entries(eng)
        journal = [r for r in await eng.journal("s1") if r.status != "started"]
        assert {e.step_key for e in events if e.kind != "config_change"} == {
            r.key for r in journal}


class RefusesOneRecord(SQLiteStore):
    """A store whose ``n``-th journal write of a model step fails (a store error), once."""

    def __init__(self, path: Path, n: int) -> None:
        super().__init__(path)
        self.n, self.seen = n, 0

    def append(self, session_id: str, owner: str | None, record: StepRecord, *,
               consume_signal: int | None = None) -> asyncio.Future[None]:
        if record.kind == "model":
            self.seen += 1
            if self.seen == self.n:
                failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                failed.set_exception(convoy.StoreError("the disk is full"))
                return failed
        return super().append(session_id, owner, record, consume_signal=consume_signal)


async def test_a_record_whose_write_failed_has_no_entry(tmp_path: Path) -> None:
    """The run that met the store error ends without it: its entries are those of the
    records written, and the run that resumes the session audits the rest, once."""
    flow = _flow(convoy.SimModel({"*": {"output": OK}}))
    db = tmp_path / "refuses.db"
    async with convoy.Engine(RefusesOneRecord(db, 2), workflows=[flow],
                             interceptors=[AuditInterceptor()]) as eng:
        res = await eng.run(flow, "t", session_id="s1")
        assert res.status != "completed", res  # interrupted by the store error
        events = [e for e in await _entries(eng) if e.kind == "model_call"]
        journal = {r.key for r in await eng.journal("s1") if r.kind == "model"}
        assert {e.step_key for e in events} == journal and len(journal) == 1
    async with later_engine(db, workflows=[flow], interceptors=[AuditInterceptor()]) as eng2:
        [res] = await eng2.resume()
        assert res.status == "waiting", res
        await eng2.signal("s1", "go", "now")
        [res] = await eng2.resume()
        assert res.ok, res
        await _check_one_entry_per_record(eng2, "s1")


async def test_an_engine_whose_owner_id_is_set_after_it_opened_audits(tmp_path: Path) -> None:
    """The entries are fenced on the engine's owner id as it is when the run ends (an
    application may name its engine after opening it, as tests/crash_worker.py does)."""
    flow = _flow(convoy.SimModel({"*": {"output": OK}}))
    async with convoy.Engine(tmp_path / "o.db", workflows=[flow],
                             interceptors=[AuditInterceptor()]) as eng:
        eng.owner = "machine-b:1234"
        assert (await eng.run(flow, "t", session_id="s1")).status == "waiting"
        assert {e.step_key for e in await _entries(eng) if e.kind == "model_call"} == {
            r.key for r in await eng.journal("s1") if r.kind == "model"}


async def test_a_long_run_appends_what_it_holds_every_flush_every_entries(
        db: str | Path) -> None:
    """With ``flush_every=2``, a run appends its entries (and moves its cursor) with the
    commit after every second entry: killed later, only what it held since is left for
    the resume, and every step still has one entry."""
    flow = _flow(CrashAt(4))  # calls 1, 2 before the park; 3 journaled; killed in 4
    async with convoy.Engine(db, workflows=[flow],
                             interceptors=[AuditInterceptor(flush_every=2)]) as eng:
        assert (await eng.run(flow, "t", session_id="s1")).status == "waiting"
        await eng.signal("s1", "go", "now")
        with pytest.raises(Crash):
            await eng.resume()  # the signal and the state write: flushed; call 3: held
        logged = {e.step_key for e in await _entries(eng) if e.session_id == "s1"
                  and e.kind in ("signal", "state_write")}
        assert len(logged) == 2, logged  # appended before the run ended
    async with later_engine(db, workflows=[flow],
                            interceptors=[AuditInterceptor(flush_every=2)]) as eng2:
        [res] = await eng2.resume()
        assert res.ok, res
        await _check_one_entry_per_record(eng2, "s1")


def test_flush_every_must_be_positive() -> None:
    with pytest.raises(convoy.UserError, match="flush_every"):
        AuditInterceptor(flush_every=0)


async def test_a_cancel_on_an_engine_with_another_version_of_the_workflow_runs_nothing(
        tmp_path: Path) -> None:
    """Cancelling a killed session through a run needs the session's own workflow version:
    an engine that has only another one finishes it as before (and claims no version ran)."""
    db = tmp_path / "v.db"
    flow = _flow(CrashAt(1))
    async with convoy.Engine(db, workflows=[flow], interceptors=[AuditInterceptor()]) as eng:
        with pytest.raises(Crash):
            await eng.run(flow, "t", session_id="s1")
    newer = _flow(convoy.SimModel({"*": {"output": OK}}), version="2")
    async with later_engine(db, workflows=[newer], interceptors=[AuditInterceptor()]) as eng2:
        await eng2.cancel("s1")
        row = await eng2.store.get_session("s1")
        assert row is not None and row.status == "cancelled"
        versions = [e.refs.get("version") for e in await _entries(eng2)
                    if e.kind == "config_change"]
        assert versions == ["1"], versions
