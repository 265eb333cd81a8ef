"""Who cancelled a session is recorded with it and audited: ``cancel(ID, by=...)`` (``convoy
cancel --by``, by default the login name) keeps the name in the cancelled session's error
record (``by``, and the message ``cancelled by NAME``) whichever engine ends it (this one,
the one that runs it and honours the request, or one that takes it over), and an audited
engine appends a ``session`` entry (status ``cancelled``, the name as actor) when it ends,
a waiting session's too. Both stores."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.audit import AuditEvent, AuditInterceptor, AuditLog, verify_log
from convoy.stores import store_from_url

from .clikit import cli, workdir  # noqa: F401 - the fixture
from .conftest import STORE_KINDS, FakeClock, audit_sealed, store_db

PATIENCE = 60.0


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


class Gate:
    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def blocked(self) -> str:
        self.entered.set()
        await self.release.wait()
        return "done"


def _flow(gate: Gate, name: str) -> convoy.Workflow[Any, Any]:
    @convoy.workflow(name=name)
    async def wf(ctx: convoy.Context, x: int) -> str:
        out: str = await ctx.step("blocked", gate.blocked, idempotent=True)
        return out

    return wf


@convoy.workflow(name="cancel-by.waits")
async def waits(ctx: convoy.Context, x: int) -> str:
    return await ctx.wait_for("go", str)


def _engine(db: str | Path, clock: FakeClock, *interceptors: convoy.Interceptor,
            **kw: Any) -> convoy.Engine:
    return convoy.Engine(store_from_url(db, clock=clock), interceptors=list(interceptors),
                         **kw)


async def _entered(gate: Gate, engine: convoy.Engine, sid: str) -> None:
    async with asyncio.timeout(PATIENCE):
        await gate.entered.wait()
        while await engine.store.get_session(sid) is None:  # noqa: ASYNC110 - its commit
            await asyncio.sleep(0.01)


async def _session_entries(engine: convoy.Engine, tenant: str = "default"
                           ) -> list[AuditEvent]:
    await audit_sealed(engine)
    rows = await engine.store.audit_entries(tenant, 0, 10_000)
    return [e for e in (AuditEvent.decode(r.body) for r in rows) if e.kind == "session"]


async def test_a_session_this_engine_runs_records_and_audits_who_cancelled_it(
        db: str | Path) -> None:
    gate = Gate()
    wf = _flow(gate, "cancel-by.local")
    e = _engine(db, FakeClock(), AuditInterceptor(), workflows=[wf])
    async with e:
        run = asyncio.create_task(e.run(wf, 1, session_id="s"))
        await _entered(gate, e, "s")
        assert await e.cancel("s", by="alice") == "cancelled"
        async with asyncio.timeout(PATIENCE):
            res = await run
        row = await e.session("s")
        entries = await _session_entries(e)
        report = await verify_log(AuditLog(e.store), "default")
    assert res.status == "cancelled"
    assert res.error is not None and res.error["by"] == "alice"
    assert res.error["message"] == "cancelled by alice"
    assert row.error_record is not None and row.error_record["by"] == "alice"
    assert [(x.status, x.actor, x.session_id, x.target) for x in entries] == [
        ("cancelled", "alice", "s", "cancel-by.local")]
    assert report.size >= 2  # verify_log raises if the log does not verify


async def test_a_waiting_session_cancelled_by_an_audited_engine_is_audited(
        db: str | Path) -> None:
    clock = FakeClock()
    e = _engine(db, clock, AuditInterceptor(), workflows=[waits])
    async with e:
        res = await e.run(waits, 1, session_id="w")
        assert res.status == "waiting"
        assert await e.cancel("w", by="bob") == "cancelled"
        row = await e.session("w")
        entries = await _session_entries(e)
    assert row.status == "cancelled"
    assert row.error_record is not None and row.error_record["by"] == "bob"
    assert [(x.status, x.actor, x.session_id) for x in entries] == [("cancelled", "bob", "w")]


async def test_the_engine_that_honours_a_request_records_who_asked(db: str | Path) -> None:
    gate = Gate()
    wf = _flow(gate, "cancel-by.remote")
    clock = FakeClock()
    a = _engine(db, clock, AuditInterceptor(), lease_seconds=0.03, workflows=[wf])
    b = _engine(db, clock, workflows=[wf])
    async with a, b:
        run = asyncio.create_task(a.run(wf, 1, session_id="r"))
        await _entered(gate, b, "r")
        assert await b.cancel("r", by="carol") in ("requested", "cancelled")
        async with asyncio.timeout(PATIENCE):
            res = await run
        entries = await _session_entries(a)
    assert res.status == "cancelled"
    assert res.error is not None and res.error["by"] == "carol"
    assert [(x.status, x.actor) for x in entries] == [("cancelled", "carol")]


async def test_an_api_cancel_without_a_name_is_recorded_as_the_engines(
        db: str | Path) -> None:
    e = _engine(db, FakeClock(), workflows=[waits])
    async with e:
        await e.run(waits, 1, session_id="n")
        await e.cancel("n")
        row = await e.session("n")
    assert row.error_record is not None
    assert row.error_record["by"] == f"engine {e.owner}"


@pytest.mark.parametrize("name", ["", "a\x1b[2Jb", "x\u202ey", "n" * 201])
async def test_a_name_that_cannot_be_shown_is_refused_and_nothing_is_cancelled(
        db: str | Path, name: str) -> None:
    e = _engine(db, FakeClock(), workflows=[waits])
    async with e:
        await e.run(waits, 1, session_id="q")
        with pytest.raises(convoy.UserError, match="by") as caught:
            await e.cancel("q", by=name)
        assert len(str(caught.value)) < 300
        row = await e.session("q")
    assert row.status == "waiting"


def test_convoy_cancel_by_records_the_name_and_sessions_show_prints_it(
        workdir: Path) -> None:  # noqa: F811 - the fixture
    async def setup() -> None:
        e = convoy.Engine(workdir / "c.db", workflows=[waits],
                          interceptors=[AuditInterceptor(key_path=workdir / "k.pem")])
        async with e:
            await e.run(waits, 1, session_id="cli-1")
            await e.run(waits, 2, session_id="cli-2")

    asyncio.run(setup())
    r = cli("cancel", "cli-1", "--by", "dora", "--db", str(workdir / "c.db"),
            "--import", "tests.test_cancel_by")
    assert r.code == 0, r.stderr
    shown = cli("sessions", "show", "cli-1", "--db", str(workdir / "c.db"))
    assert "cancelled by dora" in shown.stdout
    listed = cli("audit", "list", "--kind", "session", "--db", str(workdir / "c.db"))
    assert "dora" in listed.stdout and "cli-1" in listed.stdout
    # Without --by: the login name ($CONVOY_USER here).
    r = cli("cancel", "cli-2", "--db", str(workdir / "c.db"), env={"CONVOY_USER": "erin"})
    assert r.code == 0, r.stderr
    assert "cancelled by erin" in cli("sessions", "show", "cli-2", "--db",
                                      str(workdir / "c.db")).stdout

