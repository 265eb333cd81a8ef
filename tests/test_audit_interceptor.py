"""The audit interceptor on a real engine: one entry per step that passes the chain
(model calls with the agent's decision, a handoff, a state write, an approval asked for,
the person's decision as it is made, the approved tool call, a workflow version seen),
sharing the session id and step key; no raw prompt, output or argument in any entry; a
resumed session appends nothing twice; and the log verifies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path

import pytest
from pydantic import BaseModel

import convoy
from convoy.audit import AuditEvent, AuditInterceptor, AuditLog, digest, verify_log
from convoy.durability._executor import fingerprint
from convoy.stores import SQLiteStore, store_from_url

from .conftest import STORE_KINDS, FakeClock, store_db

SECRET = "alice@example.com"


@convoy.tool(writes=True, idempotent=True, requires_approval=convoy.Approval(queue="finance"))
def refund(customer: str, cents: int) -> str:
    """Refund a customer."""
    return f"refunded {cents} to {customer}"


class Ticket(BaseModel):
    text: str


billing = convoy.Agent(name="billing", input_type=Ticket, tools=[refund], model="sim:")
triage = convoy.Agent(name="triage", input_type=Ticket, handoffs=[billing], model="sim:")


def _sim() -> convoy.SimModel:
    return convoy.SimModel({
        "triage": {"handoff": "billing", "payload": {"text": f"refund {SECRET}"}},
        "billing": [
            {"tool_calls": [{"name": "refund", "arguments": {"customer": SECRET,
                                                             "cents": 500}}]},
            lambda req: {"text": f"done for {SECRET}"}]})


@convoy.workflow(name="audit.desk", version="v1")
async def desk(ctx: convoy.Context, text: str) -> str:
    notes = ctx.state("customer:1")
    await notes.set("last", {"email": SECRET}, expected_version=0)
    return str(await ctx.run(triage, Ticket(text=text)))


def _engine(db: Path, clock: FakeClock, audit: AuditInterceptor) -> convoy.Engine:
    return convoy.Engine(SQLiteStore(db, clock=clock), models={"sim:": _sim()},
                         interceptors=[audit])


async def _events(log: AuditLog, tenant: str) -> list[AuditEvent]:
    await log.sealed()  # what this process's runs queued for the log
    rows = await log.store.audit_entries(tenant, 0, 1000)
    return [AuditEvent.decode(r.body) for r in rows]


async def test_every_step_of_a_multi_agent_session_has_one_entry(db: Path,
                                                                 tmp_path: Path) -> None:
    clock = FakeClock()
    audit = AuditInterceptor(key_path=tmp_path / "audit.key")
    async with _engine(db, clock, audit) as eng:
        res = await eng.tenant("acme").run(desk, f"help {SECRET}", session_id="s1")
        assert res.status == "waiting"
        [task] = await eng.tenant("acme").inbox.tasks()
        await eng.tenant("acme").inbox.approve(task.id, by="fin")
        [res] = await eng.tenant("acme").resume()
        assert res.ok, res
        events = await _events(audit.log, "acme")
        journal = await eng.journal("s1")
        raw = b"".join(r.body for r in await eng.store.audit_entries("acme", 0, 1000))
        report = await verify_log(audit.log, "acme")
        stored = await eng.store.state_get("acme", "customer:1", "last")
    kinds = [(e.kind, e.status) for e in events]
    assert kinds[0] == ("config_change", "ok")
    assert ("state_write", "ok") in kinds and ("handoff", "ok") in kinds
    assert ("approval", "required") in kinds and ("approval", "approve") in kinds
    assert ("tool_call", "ok") in kinds
    decisions = [e.refs["decision"] for e in events if e.kind == "model_call"]
    assert decisions == ["transfer_to_billing", "refund", "answer"]
    assert all(e.session_id == "s1" for e in events)
    # one entry per step journaled, keyed by the journal's step key
    stepped = [(e.kind, e.step_key) for e in events if e.kind != "config_change"]
    assert len(stepped) == len(set(stepped))
    records = {r.key: r for r in journal if r.status != "started"}
    assert sorted(k for _, k in stepped if k is not None) == sorted(
        [*records, task.id.rpartition(":")[2]])  # the steps, and the person's decision
    for e in events:
        r = records.get(e.step_key or "")
        if r is not None:
            assert e.refs.get("config") == r.config
            if r.status == "completed" and "result" in e.hashes:
                assert e.hashes["result"] == "sha256:" + sha256(
                    (r.result or "").encode()).hexdigest()
    # hashes, never the raw values
    assert SECRET.encode() not in raw
    tool = next(e for e in events if e.kind == "tool_call")
    args = refund.args_model(customer=SECRET, cents=500).model_dump_json()
    assert tool.hashes["args"] == "blake2b:" + fingerprint(args)
    model = next(e for e in events if e.kind == "model_call")
    assert model.actor == "triage" and model.target == "sim:default"  # as the model said
    assert model.refs["tokens"] == f"{records[model.step_key or ''].input_tokens}+" \
        f"{records[model.step_key or ''].output_tokens}"
    write = next(e for e in events if e.kind == "state_write")
    assert stored is not None and json.loads(stored.value) == {"email": SECRET}
    assert write.hashes["input"] == "blake2b:" + fingerprint(f"0\x1f{stored.value}")
    assert report.size == len(events)


async def test_a_resumed_session_appends_nothing_twice(db: Path) -> None:
    clock = FakeClock()
    async with _engine(db, clock, AuditInterceptor()) as eng:
        await eng.tenant("acme").run(desk, "x", session_id="s1")
        before = await eng.store.audit_size("acme")
    again = AuditInterceptor()  # a new process: the steps journaled so far replay
    async with _engine(db, clock, again) as eng:
        [task] = await eng.tenant("acme").inbox.tasks()
        await eng.tenant("acme").inbox.approve(task.id, by="fin")
        [res] = await eng.tenant("acme").resume()
        assert res.ok
        events = await _events(again.log, "acme")
    assert before > 0
    keys = [(e.kind, e.step_key) for e in events if e.step_key is not None]
    assert len(keys) == len(set(keys))  # no step audited twice
    # the workflow version was recorded once, by the first process
    assert [e.kind for e in events].count("config_change") == 1


async def test_without_the_interceptor_nothing_is_audited(db: Path) -> None:
    async with convoy.Engine(SQLiteStore(db, clock=FakeClock()),
                             models={"sim:": _sim()}) as eng:
        await eng.tenant("acme").run(desk, "x", session_id="s1")
        assert await eng.store.audit_tenants() == []


def test_an_event_round_trips_and_holds_only_what_it_was_given() -> None:
    e = AuditEvent(kind="tool_call", status="ok", at=1.5, session_id="s", step_key="0/1",
                   actor="a", target="t", hashes={"args": digest({"x": 1})}, refs={"k": "v"})
    assert AuditEvent.decode(e.encode()) == e
    assert e.encode() == AuditEvent.decode(e.encode()).encode()
    assert digest("abc") == digest(b"abc") != digest({"abc": 1})
    assert isinstance(digest([1, 2]), str) and digest([1, 2]).startswith("sha256:")




async def test_every_step_has_one_span_and_one_entry_sharing_trace_id_and_key(
        db: Path) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from convoy.observability import Tracing

    mem = InMemorySpanExporter()
    audit = AuditInterceptor()
    eng = convoy.Engine(SQLiteStore(db, clock=FakeClock()), models={"sim:": _sim()},
                        interceptors=[Tracing(exporters=[SimpleSpanProcessor(mem)]), audit])
    async with eng:
        await eng.tenant("acme").run(desk, "x", session_id="s1")
        [task] = await eng.tenant("acme").inbox.tasks()
        await eng.tenant("acme").inbox.approve(task.id, by="fin")
        [res] = await eng.tenant("acme").resume()
        assert res.ok
        events = await _events(audit.log, "acme")
    spans: dict[tuple[str, str], list[str]] = {}
    for span in mem.get_finished_spans():
        attrs = dict(span.attributes or {})
        key = attrs.get("convoy.step.key")
        if key is None or attrs.get("convoy.replay"):
            continue
        kind = str(attrs.get("gen_ai.operation.name") or span.name.split(" ")[0])
        if kind == "invoke_agent":  # an agent's run is its steps, not a step of its own
            continue
        spans.setdefault((_family(kind), str(key)), []).append(
            f"{span.context.trace_id:032x}")
    entries: dict[tuple[str, str], list[str]] = {}
    for e in events:
        if e.step_key is None:
            continue
        # an approval asked for is the tool step's; the person's decision has its own
        # entry and span, at the task's key, made when the person decided
        family = "tool" if (e.kind, e.status) == ("approval", "required") else \
            _family(e.kind)
        entries.setdefault((family, e.step_key), []).append(e.refs.get("trace_id", ""))
    assert spans and set(spans) == set(entries)
    assert ("decision", task.id.rpartition(":")[2]) in spans
    # the steps no hook sees have theirs too: the time ask_human drew, its wait
    assert {"wait", "step"} <= {family for family, _ in spans}
    for k, traces in spans.items():
        assert len(traces) == 1 and entries[k] == traces, k  # one each, one trace id



async def test_each_step_shares_trace_id_and_key_with_its_derived_span(db: Path) -> None:
    """With tracing that derives spans when read (the default for the store alone), and
    with no tracing at all, each step's entry has the trace id of the trace
    ``convoy trace`` derives (the caller's, from a ``traceparent`` header, else the
    session's own), and its step key."""
    from convoy.observability import Tracing, observe

    from .clikit import cli

    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    for chain, sid, headers in (([*observe(Tracing(["store"]))], "d1", {}),
                                ([], "d2", {}), ([], "d3", {"traceparent": caller})):
        audit = AuditInterceptor()
        here = db.with_name(f"{sid}.db")  # (each its own: the workflow writes version 1)
        eng = convoy.Engine(SQLiteStore(here, clock=FakeClock()), models={"sim:": _sim()},
                            interceptors=[*chain, audit])
        async with eng:
            await eng.tenant("acme").run(desk, "x", session_id=sid, headers=headers)
            [task] = await eng.tenant("acme").inbox.tasks()
            await eng.tenant("acme").inbox.approve(task.id, by="fin")
            [res] = await eng.tenant("acme").resume()
            assert res.ok
            events = [e for e in await _events(audit.log, "acme") if e.session_id == sid]
        shown = await asyncio.to_thread(cli, "trace", sid, "--db", str(here), "--tenant",
                                        "acme", "--json")
        assert shown.code == 0, shown.stderr
        spans = {s["attrs"]["convoy.step.key"]: s["trace_id"] for s in json.loads(shown.stdout)
                 if "convoy.step.key" in s["attrs"] and not s["name"].startswith("invoke_")}
        [trace] = set(spans.values())
        assert trace != caller.split("-")[1] or sid == "d3"
        keyed = [e for e in events if e.step_key is not None]
        assert keyed and {e.step_key for e in keyed} >= set(spans) - {None}
        assert all(e.refs.get("trace_id") == trace for e in keyed), (sid, keyed)
        assert all(e.refs.get("trace_id") == trace for e in events)  # (a config change's too)


def _family(kind: str) -> str:
    """What a span's operation and an audit entry's kind are both about."""
    return {"invoke_agent": "agent", "agent_decision": "agent", "chat": "model",
            "model_call": "model", "execute_tool": "tool", "tool_call": "tool",
            "policy_refusal": "tool", "handoff": "handoff",
            "effect": "step", "step": "step", "signal": "wait", "wait": "wait",
            "human_decision": "decision",
            "approval": "decision"}.get(kind, "state" if "state" in kind else kind)


async def test_entries_are_sealed_in_commits_of_their_own(tmp_path: Path) -> None:
    """Auditing adds no commit to a session's: the same sessions take as many commits of
    the store with the interceptor as without it, and the sealer appends their entries
    in one commit of its own."""
    sim = convoy.SimModel({"triage": {"handoff": "billing", "payload": {"text": "t"}},
                           "billing": {"text": "done"}})
    bill = convoy.Agent(name="billing", input_type=Ticket, model=sim)
    tri = convoy.Agent(name="triage", input_type=Ticket, handoffs=[bill], model=sim)

    @convoy.workflow(name="audit.commits")
    async def flow(ctx: convoy.Context, text: str) -> str:
        await ctx.state(f"customer:{ctx.session_id}").set("n", 1, expected_version=0)
        return str(await ctx.run(tri, Ticket(text=text)))

    commits = []
    for audited in (False, True):
        store = SQLiteStore(tmp_path / f"{audited}.db", clock=FakeClock())

        audit = AuditInterceptor(seal_every=3600)  # sealed when asked, not by the timer
        async with convoy.Engine(store, interceptors=[audit] if audited else []) as eng:
            for i in range(5):
                assert (await eng.tenant("acme").run(flow, "x", session_id=f"s{i}")).ok
            await audit.sealed()
            before = store.commits
            for i in range(5, 10):
                assert (await eng.tenant("acme").run(flow, "x", session_id=f"s{i}")).ok
            commits.append(store.commits - before)
            if audited:
                sealed = await store.audit_size("acme")
                await audit.sealed()
                assert store.commits - before - commits[-1] == 1
                assert await store.audit_size("acme") - sealed == 5 * 4  # 4 steps each
    assert commits[1] == commits[0], commits



class _Gate:
    """Holds ``n`` sessions until all of them have begun."""

    def __init__(self, n: int) -> None:
        self.n, self.began, self.open = n, asyncio.Event(), asyncio.Event()

    async def wait(self) -> None:
        self.n -= 1
        if self.n == 0:
            self.began.set()
        await self.open.wait()


_gates: list[_Gate] = []  # (the test's, made in its event loop)


@convoy.workflow(name="audit.gated", version="v2")
async def gated(ctx: convoy.Context, text: str) -> str:
    await _gates[-1].wait()  # (every engine's session has begun before any goes on)
    return text


@pytest.fixture(params=STORE_KINDS)
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


async def test_engines_that_start_a_new_version_at_once_record_one_config_change(
        any_db: str | Path) -> None:
    """Engines on one store (workers after a deploy) see a workflow's new version at
    once: each read the version before it, and the log records the change once."""
    clock = FakeClock()
    audits = [AuditInterceptor() for _ in range(3)]
    engines = [convoy.Engine(store_from_url(any_db, clock=clock), models={"sim:": _sim()},
                             interceptors=[a]) for a in audits]
    for e in engines:
        await e.open()
    try:
        gate = _Gate(len(engines))
        _gates.append(gate)
        runs = [asyncio.ensure_future(e.tenant("acme").run(gated, "x")) for e in engines]
        began = asyncio.ensure_future(gate.began.wait())
        await asyncio.wait([began, *runs], return_when=asyncio.FIRST_COMPLETED)
        began.cancel()  # (a run that ended first: the test fails below, not here)
        gate.open.set()
        results = await asyncio.gather(*runs)
        assert all(r.ok for r in results), [(r.status, r.error) for r in results]
        for a in audits:
            await a.log.sealed()
        events = await _events(audits[0].log, "acme")
    finally:
        for e in engines:
            await e.aclose()
    changes = [e for e in events if e.kind == "config_change"]
    assert [(e.actor, e.refs["version"]) for e in changes] == [("audit.gated", "v2")]
