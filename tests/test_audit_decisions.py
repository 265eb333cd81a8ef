"""A person's decision is audited and traced when it is made (the ``human_decision`` hook
of the interceptor chain, run by the inbox around the write), not when the session reads
it: a question answered and never resumed has its entry, an escalated session's answer
too, the session's later read is an ordinary ``state_read``, a decision that loses the
race writes no entry, and ``convoy inbox`` decisions are audited on an audited store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import convoy
from convoy import DecisionInput, Interceptor, Next
from convoy.audit import AuditEvent, AuditInterceptor, AuditLog, digest, verify_log
from convoy.observability import Metrics, Tracing, observe
from convoy.observability._spans import load_chunks
from convoy.observability._tracing import SPANS_NAMESPACE
from convoy.stores import store_from_url

from .clikit import cli, workdir  # noqa: F401 - the fixture
from .conftest import STORE_KINDS, FakeClock, store_db


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


class Refund(BaseModel):
    approve: bool
    cents: int


@convoy.workflow(name="decisions.ask")
async def ask(ctx: convoy.Context, customer: str) -> str:
    got = await ctx.ask_human(f"Refund {customer}?", Refund, queue="billing")
    return f"{got.value.approve} {got.value.cents} by {got.by}"


ATTEMPTS: list[int] = []


@convoy.workflow(name="decisions.escalate")
async def escalate(ctx: convoy.Context, x: int) -> str:
    async def charge() -> str:
        ATTEMPTS.append(x)
        if len(ATTEMPTS) == 1:
            raise convoy.Escalated("the card processor needs a person")
        return "charged"

    return await ctx.step("charge", charge)


def _engine(db: str | Path, clock: FakeClock, *interceptors: Interceptor) -> convoy.Engine:
    return convoy.Engine(store_from_url(db, clock=clock), interceptors=list(interceptors))


async def _events(log: AuditLog, tenant: str) -> list[AuditEvent]:
    await log.sealed()  # what this process's runs queued for the log
    rows = await log.store.audit_entries(tenant, 0, 1000)
    return [AuditEvent.decode(r.body) for r in rows]


def _decisions(events: list[AuditEvent]) -> list[AuditEvent]:
    return [e for e in events if e.kind in ("human_decision", "approval")
            and e.status != "required"]


async def test_an_answer_never_resumed_is_audited_when_it_is_made(db: str | Path) -> None:
    clock = FakeClock()
    audit = AuditInterceptor()
    async with _engine(db, clock, audit) as eng:
        acme = eng.tenant("acme")
        assert (await acme.run(ask, "c-1", session_id="q1")).status == "waiting"
        [task] = await acme.inbox.tasks()
        clock.advance(600)  # the person decides ten minutes later
        done = await acme.inbox.answer(task.id, {"approve": True, "cents": 500}, by="ann")
        events = await _events(audit.log, "acme")
        report = await verify_log(audit.log, "acme")
    [entry] = _decisions(events)
    assert entry.kind == "human_decision" and entry.status == "answer"
    assert entry.actor == "ann" and entry.target == task.id
    assert entry.refs["task_id"] == task.id and entry.refs["task_kind"] == "question"
    assert entry.session_id == "q1" and entry.step_key == task.id.split(":")[1]
    assert entry.at == clock.now  # decide time, not a later read's
    assert done.decision is not None
    assert entry.hashes["decision"] == digest(done.decision.model_dump(mode="json"))
    assert report.size == len(events)


async def test_a_resumed_session_reads_it_as_state_not_as_a_second_decision(
        db: str | Path) -> None:
    clock = FakeClock()
    audit = AuditInterceptor()
    async with _engine(db, clock, audit) as eng:
        acme = eng.tenant("acme")
        await acme.run(ask, "c-1", session_id="q2")
        [task] = await acme.inbox.tasks()
        await acme.inbox.answer(task.id, {"approve": False, "cents": 0}, by="ann")
        decided = len(await _events(audit.log, "acme"))
        [res] = await acme.resume()
        assert res.ok and res.output == "False 0 by ann"
        events = await _events(audit.log, "acme")
        assert (await verify_log(audit.log, "acme")).size == len(events)
    assert len(_decisions(events)) == 1
    later = events[decided:]
    reads = [e for e in later if e.kind == "state_read" and
             e.target == f"get convoy.inbox/{task.id}"]
    assert reads and not _decisions(later)


async def test_an_escalated_sessions_answer_is_audited(db: str | Path) -> None:
    ATTEMPTS.clear()
    audit = AuditInterceptor()
    async with _engine(db, FakeClock(), audit) as eng:
        assert (await eng.run(escalate, 1, session_id="e1")).status == "escalated"
        await eng.inbox.edit("e1:escalated", "charged by hand", by="ops")
        [res] = await eng.resume()
        assert res.ok and res.output == "charged by hand"
        events = await _events(audit.log, "default")
    [entry] = _decisions(events)
    assert (entry.kind, entry.status, entry.actor) == ("human_decision", "edit", "ops")
    assert entry.refs["task_kind"] == "escalation" and entry.target == "e1:escalated"
    assert entry.step_key == "0"  # the step that escalated


class Racer(Interceptor):
    """Lets another reviewer decide first, the first time a decision passes: the outer
    write then loses the compare-and-set, as when two people decide at once."""

    def __init__(self) -> None:
        self.engine: convoy.Engine | None = None
        self.raced = False
        self.seen: list[tuple[str, str]] = []

    async def start(self, engine: convoy.Engine) -> None:
        self.engine = engine

    async def human_decision(self, input: DecisionInput,
                             next: Next[DecisionInput, convoy.HumanTask]) -> convoy.HumanTask:
        if not self.raced:
            self.raced = True
            assert self.engine is not None
            await self.engine.tenant(input.tenant).inbox.answer(
                input.task_id, {"approve": True, "cents": 1}, by="bob")
        try:
            return await next(input)
        except convoy.UserError as e:
            self.seen.append((input.by, str(e)))
            raise


async def _spans(eng: convoy.Engine, tracing: Tracing, sid: str) -> list[dict[str, Any]]:
    await tracing.flush()
    chunks = await eng.store.kv_all(SPANS_NAMESPACE + sid)
    return load_chunks(chunks[k] for k in sorted(chunks))


async def test_a_decision_that_loses_the_race_audits_nothing(db: str | Path) -> None:
    audit, racer, tracing = AuditInterceptor(), Racer(), Tracing(exporters=["store"],
                                                                   live=True)
    async with _engine(db, FakeClock(), audit, racer, tracing) as eng:
        acme = eng.tenant("acme")
        await acme.run(ask, "c-1", session_id="q3")
        [task] = await acme.inbox.tasks()
        with pytest.raises(convoy.UserError, match="changed while you decided"):
            await acme.inbox.answer(task.id, {"approve": False, "cents": 0}, by="ann")
        with pytest.raises(convoy.UserError, match="already answered by 'bob'"):
            await acme.inbox.answer(task.id, {"approve": False, "cents": 0}, by="ann")
        events = await _events(audit.log, "acme")
        assert (await verify_log(audit.log, "acme")).size == len(events)
        spans = await _spans(eng, tracing, "q3")
    [entry] = _decisions(events)  # bob's, who came first; ann's refusals are not decisions
    assert entry.actor == "bob"
    assert [who for who, _ in racer.seen] == ["ann"]  # the write's error reached the hook
    # bob's decision, and ann's write that failed (an already decided task is refused
    # before any write: no span)
    assert sorted(s["status"] for s in spans if s["name"] == "human_decision") == \
        ["error", "ok"]


async def test_the_decision_span_is_in_the_sessions_trace(db: str | Path) -> None:
    tracing, metrics = Tracing(exporters=["store"], live=True), Metrics()
    async with _engine(db, FakeClock(), *observe(tracing, metrics)) as eng:
        acme = eng.tenant("acme")
        await acme.run(ask, "ann@example.com", session_id="q4")
        [task] = await acme.inbox.tasks()
        await acme.inbox.answer(task.id, {"approve": True, "cents": 7}, by="ann@example.com")
        spans = await _spans(eng, tracing, "q4")
        text = metrics.text()
    [root] = [s for s in spans if s["name"] == "invoke_workflow decisions.ask"]
    [span] = [s for s in spans if s["name"] == "human_decision"]
    assert span["trace_id"] == root["trace_id"] and span["parent_id"] == root["span_id"]
    attrs = span["attrs"]
    assert attrs["convoy.task.id"] == task.id and attrs["convoy.decision.action"] == "answer"
    assert attrs["convoy.task.kind"] == "question" and span["status"] == "ok"
    assert attrs["convoy.step.key"] == task.id.split(":")[1]
    assert "ann@example.com" not in json.dumps(span)  # neither who decided nor the value
    assert 'convoy_human_decisions_total{action="answer",kind="question"} 1.0' in text


async def test_with_content_who_decided_is_a_redacted_attribute(db: str | Path) -> None:
    tracing = Tracing(exporters=["store"], capture_content=True)
    async with _engine(db, FakeClock(), tracing) as eng:
        await eng.run(ask, "c-9", session_id="q5")
        [task] = await eng.inbox.tasks()
        await eng.inbox.answer(task.id, {"approve": True, "cents": 9}, by="ann@example.com")
        [span] = [s for s in await _spans(eng, tracing, "q5") if s["name"] == "human_decision"]
    assert "ann@example.com" not in json.dumps(span)
    assert span["attrs"]["convoy.decision.by"] != "ann@example.com"
    assert json.loads(span["attrs"]["convoy.decision.value"]) == {"approve": True, "cents": 9}


def test_convoy_inbox_answer_is_audited_on_an_audited_store(tmp_path: Path) -> None:
    db = tmp_path / "convoy.db"

    async def start(audited: bool, sid: str) -> str:
        ics: list[Interceptor] = [AuditInterceptor()] if audited else []
        async with convoy.Engine(db, interceptors=ics) as eng:
            tenant = "acme" if audited else "other"
            await eng.tenant(tenant).run(ask, "c-1", session_id=sid)
            [task] = await eng.tenant(tenant).inbox.tasks()
            return task.id

    audited = asyncio.run(start(True, "c1"))
    res = cli("inbox", "answer", audited, "--db", str(db), "-t", "acme", "--by", "ann",
              "--value", '{"approve": true, "cents": 3}')
    assert res.code == 0, res.stderr
    plain = asyncio.run(start(False, "c2"))  # a tenant nobody audits stays unaudited
    res = cli("inbox", "answer", plain, "--db", str(db), "-t", "other", "--by", "bob",
              "--value", '{"approve": true, "cents": 4}')
    assert res.code == 0, res.stderr

    async def read() -> tuple[list[AuditEvent], list[str]]:
        async with convoy.Engine(db) as eng:
            log = AuditLog(eng.store)
            return await _events(log, "acme"), await eng.store.audit_tenants()

    events, tenants = asyncio.run(read())
    [entry] = _decisions(events)
    assert (entry.actor, entry.target, entry.status) == ("ann", audited, "answer")
    assert tenants == ["acme"]
    verified = cli("audit", "verify", "--db", str(db), "-t", "acme")
    assert verified.code == 0 and f"{len(events)} entries verified" in verified.stdout


def test_convoy_inbox_answer_is_traced_where_the_store_keeps_the_trace(
        tmp_path: Path) -> None:
    """A session traced to the store gets the span of a decision made on the command line,
    in its trace; one traced nowhere the command line can see gets none."""
    db = tmp_path / "convoy.db"

    async def start(traced: bool, sid: str) -> str:
        ics: list[Interceptor] = [Tracing(exporters=["store"], live=True)] if traced else []
        async with convoy.Engine(db, interceptors=ics) as eng:
            await eng.run(ask, "c-1", session_id=sid)
            [task] = [t for t in await eng.inbox.tasks() if t.session_id == sid]
            return task.id

    traced, plain = asyncio.run(start(True, "t1")), asyncio.run(start(False, "t2"))
    for task, who in ((traced, "ann"), (plain, "bob")):
        res = cli("inbox", "answer", task, "--db", str(db), "--by", who,
                  "--value", '{"approve": true, "cents": 3}')
        assert res.code == 0, res.stderr

    async def read(sid: str) -> list[dict[str, Any]]:
        async with convoy.Engine(db) as eng:
            chunks = await eng.store.kv_all(SPANS_NAMESPACE + sid)
            return load_chunks(chunks[k] for k in sorted(chunks))

    spans = asyncio.run(read("t1"))
    [root] = [s for s in spans if s["name"] == "invoke_workflow decisions.ask"]
    [span] = [s for s in spans if s["name"] == "human_decision"]
    assert span["trace_id"] == root["trace_id"] and span["parent_id"] == root["span_id"]
    assert span["attrs"]["convoy.task.id"] == traced and span["status"] == "ok"
    assert asyncio.run(read("t2")) == []
    shown = cli("trace", "t1", "--db", str(db))
    assert shown.code == 0 and "human_decision" in shown.stdout, shown.stderr


async def test_an_escalation_answered_by_signal_is_a_decision_of_its_sender(
        db: str | Path) -> None:
    """``engine.signal(sid, ESCALATION, ...)`` answers through the inbox: the decision is
    audited (who: the payload's ``by``, else the signal) and kept in the task's history."""
    ATTEMPTS.clear()
    audit = AuditInterceptor()
    async with _engine(db, FakeClock(), audit) as eng:
        assert (await eng.run(escalate, 1, session_id="e2")).status == "escalated"
        await eng.signal("e2", convoy.ESCALATION, {"action": "complete",
                                                  "result": "charged by hand", "by": "ops"})
        [res] = await eng.resume()
        assert res.ok and res.output == "charged by hand"
        ATTEMPTS.clear()
        assert (await eng.run(escalate, 2, session_id="e3")).status == "escalated"
        await eng.signal("e3", convoy.ESCALATION, {"action": "fail", "reason": "fraud"})
        row = await eng.store.get_session("e3")
        assert row is not None and row.status == "failed"
        [*_, last] = await eng.inbox.history("e3:escalated")
        events = await _events(audit.log, "default")
    first, second = _decisions(events)
    assert (first.kind, first.status, first.actor, first.target) == (
        "human_decision", "edit", "ops", "e2:escalated")
    assert (second.status, second.actor) == ("reject", convoy.ESCALATION + " signal")
    assert last.decision is not None and last.decision.by == second.actor


def test_convoy_signal_escalation_is_audited_with_by(tmp_path: Path) -> None:
    db = tmp_path / "convoy.db"
    ATTEMPTS.clear()

    async def start() -> None:
        async with convoy.Engine(db, interceptors=[AuditInterceptor()]) as eng:
            assert (await eng.run(escalate, 1, session_id="e4")).status == "escalated"

    asyncio.run(start())
    res = cli("signal", "e4", convoy.ESCALATION, "--db", str(db), "--by", "ann",
              "--payload", '{"action": "retry"}')
    assert res.code == 0, res.stderr

    async def read() -> list[AuditEvent]:
        async with convoy.Engine(db) as eng:
            return await _events(AuditLog(eng.store), "default")

    [entry] = _decisions(asyncio.run(read()))
    assert (entry.actor, entry.status, entry.target) == ("ann", "approve", "e4:escalated")


def _sql(db: str | Path, text: str, params: tuple[object, ...] = ()) -> list[Any]:
    """Rows of a query on the test's store (outside it: what the database holds)."""
    if isinstance(db, Path) or "://" not in str(db):
        import sqlite3

        with sqlite3.connect(str(db)) as conn:  # (commits on leaving)
            return conn.execute(text, params).fetchall()
    import psycopg

    base, _, schema = str(db).partition("?schema=")
    with psycopg.connect(base) as pg:
        pg.execute(f'SET search_path TO "{schema}"')  # type: ignore[arg-type]
        cur = pg.execute(text.replace("?", "%s"), params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


async def test_a_decision_and_its_entry_land_together_or_not_at_all(db: str | Path) -> None:
    """A person's decision and its audit entry are written by one transaction: a crash
    can never leave a decision without its entry. Shown by an entry that cannot be
    appended (a stray row holds its index): the decision is not written either."""
    audit = AuditInterceptor()
    async with _engine(db, FakeClock(), audit) as eng:
        acme = eng.tenant("acme")
        await acme.run(ask, "c-1", session_id="q9")
        [task] = await acme.inbox.tasks()
        size = await eng.store.audit_size("acme")
        _sql(db, "INSERT INTO audit_log(tenant, idx, body, leaf) VALUES(?,?,?,?)",
             ("acme", size, b"stray", b"\0" * 32))
        # (the store's error, or the audit's: an entry stored past the log's count,
        # where the engine's own seal of the run's records collides first)
        with pytest.raises((convoy.StoreError, convoy.AuditError)):
            await acme.inbox.answer(task.id, {"approve": True, "cents": 5}, by="ann")
        [still] = await acme.inbox.tasks()
        assert still.is_open and still.decision is None
