"""The command line audits where the store audits: the sessions ``convoy resume`` runs and
the killed session ``convoy cancel`` ends, of a tenant whose audit log the store holds, get
their entries as the application's ``AuditInterceptor`` would append them; a tenant with
no log gets none (the command line starts no log)."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import convoy
from convoy.audit import AuditEvent, AuditInterceptor, AuditLog, verify_log
from convoy.stores import SessionFilter, SQLiteStore
from tests.clikit import (  # noqa: F401  (workdir: a fixture)
    cli,
    journal,
    one_line_error,
    session,
    tamper,
    workdir,
)

from .conftest import STORE_KINDS, Crash, FakeClock, store_db
from .test_audit_recovery import CrashAt

OK = {"label": "billing"}


def _flows() -> ModuleType:
    return importlib.import_module("audited_flows")  # tests/fixtures, on the path


def _entries(db: Path, tenant: str = "acme") -> list[AuditEvent]:
    async def read() -> list[AuditEvent]:
        store = SQLiteStore(db)
        await store.open()
        try:
            if tenant not in await store.audit_tenants():
                return []
            return [AuditEvent.decode(r.body)
                    for r in await store.audit_entries(tenant, 0, 10_000)]
        finally:
            await store.aclose()

    return asyncio.run(read())


def _check_one_entry_per_record(db: Path, sid: str) -> None:
    events = [e for e in _entries(db) if e.session_id == sid
              and e.kind not in ("config_change", "session")]  # (the steps' entries)
    keys = Counter(e.step_key for e in events)
    records = [r for r in journal(sid, db) if r.status != "started"]
    assert sorted(keys) == sorted(r.key for r in records), (keys, records)
    assert set(keys.values()) == {1}, keys  # none twice

    async def verify() -> int:
        store = SQLiteStore(db)
        await store.open()
        try:
            return (await verify_log(AuditLog(store), "acme")).size
        finally:
            await store.aclose()

    assert asyncio.run(verify()) == len(_entries(db))


def _parked(db: Path, audited: bool, signal: bool = True) -> None:
    """The application runs session s1 of tenant acme up to its wait (and signals it)."""
    flows = _flows()

    async def run() -> None:
        async with convoy.Engine(SQLiteStore(db), models={"sim:": convoy.SimModel(
                {"*": {"output": OK}})}, interceptors=[AuditInterceptor()] if audited
                else []) as eng:
            acme = eng.tenant("acme")
            assert (await acme.run(flows.flow, "hi", session_id="s1")).status == "waiting"
            if signal:
                await acme.signal("s1", "go", "now")

    asyncio.run(run())


def test_convoy_resume_audits_the_sessions_of_an_audited_tenant(tmp_path: Path) -> None:
    db = tmp_path / "audited.db"
    _parked(db, audited=True)
    before = len(_entries(db))
    res = cli("resume", "--db", str(db), "--tenant", "acme", "--model", "sim:")
    assert res.code == 0, res.stderr
    assert session("s1", db).status == "completed"
    assert len(_entries(db)) > before  # the steps after the wait
    _check_one_entry_per_record(db, "s1")


def test_convoy_resume_starts_no_log_for_a_tenant_that_has_none(tmp_path: Path) -> None:
    db = tmp_path / "plain.db"
    _parked(db, audited=False)
    res = cli("resume", "--db", str(db), "--tenant", "acme", "--model", "sim:")
    assert res.code == 0, res.stderr
    assert session("s1", db).status == "completed"
    assert _entries(db) == []


def test_convoy_cancel_of_a_killed_session_audits_what_its_run_journaled(
        tmp_path: Path) -> None:
    """The run journals a model call and is killed; the operator cancels the session on
    the command line instead of resuming it: its journaled steps are in the log."""
    db = tmp_path / "killed.db"
    _killed(db)
    assert [r.kind for r in journal("s1", db)] == ["model"]  # killed in the second call
    res = cli("cancel", "s1", "--db", str(db), "--tenant", "acme",
              "--import", "audited_flows")
    assert res.code == 0, res.stderr
    assert session("s1", db).status == "cancelled"
    _check_one_entry_per_record(db, "s1")


def _killed(db: Path) -> None:
    """The application's run of s1 (tenant acme, audited) journals a model call and is
    killed; its engine is gone (its lease lapsed)."""
    flows = _flows()

    async def run() -> None:
        async with convoy.Engine(SQLiteStore(db), models={"sim:": CrashAt(2)},
                                 interceptors=[AuditInterceptor()]) as eng:
            with pytest.raises(Crash):
                await eng.tenant("acme").run(flows.flow, "hi", session_id="s1")

    asyncio.run(run())
    tamper("UPDATE sessions SET lease_until=0 WHERE id='s1'", db=db)


def test_convoy_cancel_audits_a_killed_runs_steps_without_its_workflow(
        tmp_path: Path) -> None:
    """The killed session's workflow cannot be loaded where the operator cancels it (its
    module's import fails): the session still ends in a run of its own, with the name and
    version it was started with, and the steps the killed run journaled get their
    entries. (--force, which an earlier version needed, is accepted.)"""
    db = tmp_path / "killed.db"
    _killed(db)
    tamper("UPDATE sessions SET workflow='boom_flows:flow' WHERE id='s1'", db=db)
    res = cli("cancel", "s1", "--db", str(db), "--tenant", "acme")
    assert res.code == 0 and res.stderr == "", res.stderr
    assert session("s1", db).status == "cancelled"
    _check_one_entry_per_record(db, "s1")
    assert cli("cancel", "--help").stdout.count("--force") == 0  # hidden


def test_convoy_cancel_of_a_waiting_session_imports_nothing(tmp_path: Path) -> None:
    """A parked session ends without a run: its workflow's module is not imported (an
    application whose import fails is when an operator cancels)."""
    db = tmp_path / "parked.db"
    _parked(db, audited=True, signal=False)
    tamper("UPDATE sessions SET workflow='boom_flows:flow' WHERE id='s1'", db=db)
    res = cli("cancel", "s1", "--db", str(db), "--tenant", "acme")
    assert res.code == 0 and res.stderr == "", res.stderr
    assert session("s1", db).status == "cancelled"


def test_a_module_whose_import_fails_is_one_line() -> None:
    one_line_error(cli("resume", "--import", "boom_flows"), 2,
                   "importing module 'boom_flows' failed: RuntimeError: config missing")


def test_an_engine_of_the_command_line_opened_before_the_log_audits_the_session(
        tmp_path: Path) -> None:
    """A long-running engine of the command line (say ``convoy worker``) opened before the
    application started the tenant's log: the session the application parked and the
    worker finishes gets its entries (no window in which its steps go unaudited)."""
    from convoy.cli._common import build_engine

    db = tmp_path / "later.db"
    flows = _flows()

    async def run() -> None:
        worker = build_engine(str(db), model="sim:")
        async with worker:  # the store has no audit log yet
            assert await worker.store.audit_tenants() == []
            async with convoy.Engine(SQLiteStore(db), models={"sim:": convoy.SimModel(
                    {"*": {"output": OK}})}, interceptors=[AuditInterceptor()]) as app:
                acme = app.tenant("acme")
                assert (await acme.run(flows.flow, "hi", session_id="s1")).status == \
                    "waiting"
                await acme.signal("s1", "go", "now")
            [res] = await worker.tenant("acme").resume()
            assert res.ok, res

    asyncio.run(run())
    _check_one_entry_per_record(db, "s1")


def test_convoy_cancel_of_a_session_whose_steps_are_all_audited_needs_no_workflow(
        tmp_path: Path) -> None:
    """Parked with every step audited, then signalled (runnable again): cancelling it loses
    no entry, so a workflow that does not import does not stop the cancel."""
    db = tmp_path / "signalled.db"
    _parked(db, audited=True)
    assert session("s1", db).status == "pending"
    tamper("UPDATE sessions SET workflow='boom_flows:flow' WHERE id='s1'", db=db)
    res = cli("cancel", "s1", "--db", str(db), "--tenant", "acme")
    assert res.code == 0 and res.stderr == "", res.stderr
    assert session("s1", db).status == "cancelled"


def test_convoy_cancel_audits_the_step_a_person_completed(tmp_path: Path) -> None:
    """A person completed an escalated step by hand: the session is runnable with that
    step journaled and not audited yet; cancelling it where its workflow does not load
    audits it like a killed run's steps."""
    db, flows = tmp_path / "completed.db", _flows()

    async def run() -> None:
        async with convoy.Engine(SQLiteStore(db), interceptors=[AuditInterceptor()]) as eng:
            acme = eng.tenant("acme")
            res = await acme.run(flows.escalating, 5, session_id="e1")
            assert res.status == "escalated"
            await acme.signal("e1", convoy.ESCALATION, {"action": "complete",
                                                        "result": "charged by hand"})

    asyncio.run(run())
    assert session("e1", db).status == "pending"
    tamper("UPDATE sessions SET workflow='boom_flows:flow' WHERE id='e1'", db=db)
    res = cli("cancel", "e1", "--db", str(db), "--tenant", "acme")
    assert res.code == 0, res.stderr
    assert session("e1", db).status == "cancelled"
    # The step as it escalated, the person's decision, and the step as they completed it.
    kinds = [(e.kind, e.status) for e in _entries(db) if e.session_id == "e1" and
             e.step_key == "0"]
    assert kinds == [("effect", "Escalated"), ("human_decision", "edit"), ("effect", "ok")], \
        kinds


@pytest.fixture(params=STORE_KINDS)
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


def test_sessions_of_an_audited_tenant_starting_together_share_one_audit(
        any_db: str | Path) -> None:
    """Sessions of an audited tenant that a command line engine starts together: one
    audit interceptor for them all, closed with the engine, so everything their runs
    queued is sealed and no sealer is left behind (on PostgreSQL, where starting a
    sealer awaits the store, each made its own, and only the last was closed); and one
    ``config_change`` for the workflow's version, not one per session."""
    from convoy.audit._sealer import SEALERS
    from convoy.cli._common import build_engine

    flows = _flows()

    async def run() -> None:
        async with convoy.Engine(any_db) as app:  # the application started the log
            await AuditLog(app.store).append("acme", [AuditEvent(
                kind="config_change", status="ok", at=1.0, actor="ops", target="tenant")])
        cli_engine = build_engine(str(any_db), model="sim:")
        async with cli_engine:
            acme = cli_engine.tenant("acme")
            results = await asyncio.gather(*(acme.run(flows.flow, "hi", session_id=f"t{i}")
                                             for i in range(3)))
            assert {r.status for r in results} == {"waiting"}, results
        async with convoy.Engine(any_db) as reader:
            assert await reader.store.kv_all(SEALERS) == {}  # every sealer closed
            log = AuditLog(reader.store)
            report = await verify_log(log, "acme")
            events = [AuditEvent.decode(r.body)
                      for r in await reader.store.audit_entries("acme", 0, report.size)]
            for sid in ("t0", "t1", "t2"):
                records = [r for r in await reader.journal(sid) if r.status != "started"]
                assert sorted(e.step_key for e in events if e.session_id == sid and
                              e.kind not in ("config_change", "session")) == \
                    sorted(r.key for r in records), sid
            assert [e.kind for e in events].count("config_change") == 2, events  # (+ ops')

    asyncio.run(run())


def test_a_tenant_whose_log_count_was_deleted_is_still_audited(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """New user's trial: the command line asked only the log's count whether a tenant is
    audited, so with the count's row deleted (the store edited) ``convoy run`` ran the
    tenant's new sessions unaudited, silently, and nothing sealed them later. A tenant
    whose log holds entries is audited: the seal collides with the entries (said), and
    once the count is repaired, the next engine seals the run's records."""
    from tests.clikit import write_jsonl

    db = tmp_path / "audited.db"
    _parked(db, audited=True, signal=False)
    count = len(_entries(db))
    tamper("DELETE FROM audit_head", db=db)
    write_jsonl(tmp_path / "in.jsonl", [json.dumps("hi")])
    with caplog.at_level(logging.WARNING, logger="convoy.audit"):
        res = cli("run", "audited_flows:flow", "--input", str(tmp_path / "in.jsonl"),
                  "--db", str(db), "--tenant", "acme", "--model", "sim:")
    assert res.code == 0, res.stderr
    assert any("holds entries past its count of 0" in r.getMessage()
               for r in caplog.records), caplog.records

    async def new_session() -> str:
        store = SQLiteStore(db)
        await store.open()
        try:
            rows = await store.list_sessions(SessionFilter(tenant="acme"), left_out=[])
            [sid] = [r.id for r in rows if r.id != "s1"]
            return sid
        finally:
            await store.aclose()

    sid = asyncio.run(new_session())
    tamper("INSERT INTO audit_head(tenant, size) VALUES('acme', ?)", count, db=db)

    async def sealed_later() -> None:  # (the next engine, once the command's is stopped:
        # a minute later by its clock, as this process, where the command ran, lives on)
        async with convoy.Engine(SQLiteStore(db, clock=FakeClock(4_000_000_000.0)),
                                 interceptors=[AuditInterceptor()]):
            pass

    asyncio.run(sealed_later())
    _check_one_entry_per_record(db, sid)
