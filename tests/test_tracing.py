"""Tracing (issue 11, item 1): one OpenTelemetry trace per session, spans per agent
invocation, model call, tool call, handoff, state operation and retry attempt with GenAI
semantic-convention attributes; a handoff links both agents; a resumed session continues
its trace; replayed agents are marked; the store keeps the spans for ``convoy trace``.

The SDK's own ``InMemorySpanExporter`` (behind a ``SimpleSpanProcessor``) receives exactly
what an OTLP exporter would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import convoy
from convoy.observability import SEMCONV_VERSION, TRACE_HEADER, Tracing, observe
from convoy.observability._spans import load_chunks, traceparent_sampled
from convoy.observability._tracing import SPANS_NAMESPACE
from convoy.resilience import Fallback, Retry, RetryPolicy

from .clikit import cli
from .conftest import STORE_KINDS, Crash, CrashOnce, later_engine, store_db
from .obs_flows import TICKET, agents, desk_workflow, down_workflow, script


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    """Spans go through the store protocol: every test here runs on SQLite and on
    PostgreSQL."""
    yield from store_db(request.param, tmp_path)


def traced(**kw: Any) -> tuple[Tracing, InMemorySpanExporter]:
    mem = InMemorySpanExporter()
    return Tracing(exporters=["store", SimpleSpanProcessor(mem)], **kw), mem


def by_name(spans: list[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for s in spans:
        out.setdefault(s.name, []).append(s)
    return out


def parent_of(s: ReadableSpan) -> int | None:
    return s.parent.span_id if s.parent is not None else None


async def stored(engine: convoy.Engine, session_id: str) -> list[dict[str, Any]]:
    for ic in engine.runtime.interceptors:
        if isinstance(ic, Tracing):
            await ic.flush()
    chunks = await engine.store.kv_all(SPANS_NAMESPACE + session_id)
    return load_chunks(chunks[k] for k in sorted(chunks))


async def test_one_trace_per_session_with_genai_spans_and_a_linked_handoff(db: str) -> None:
    tracing, mem = traced()
    sim = convoy.SimModel(script())
    wf = desk_workflow(agents(sim))
    async with convoy.Engine(db, interceptors=observe(tracing)) as engine:
        res = await engine.run(wf, TICKET, session_id="t1")
        row = await engine.store.get_session("t1")
        kept = await stored(engine, "t1")
    assert res.ok, res.error
    spans = mem.get_finished_spans()
    assert len({s.context.trace_id for s in spans}) == 1  # one trace
    names = by_name(list(spans))
    [root] = names["invoke_workflow obs.desk"]
    [triage] = names["invoke_agent triage"]
    [billing] = names["invoke_agent billing"]
    [plans] = names["invoke_agent plans"]
    [handoff] = names["handoff triage -> billing"]
    [tool] = names["execute_tool find_customer"]
    [state] = names["state.set customer"]
    chats = names["chat default"]
    assert len(chats) == 5  # triage 1, billing 3, plans 1
    # parentage
    assert root.parent is None
    assert parent_of(triage) == parent_of(billing) == parent_of(state) == root.context.span_id
    assert parent_of(handoff) == triage.context.span_id
    assert parent_of(tool) == billing.context.span_id
    assert parent_of(plans) == billing.context.span_id  # a worker runs inside its supervisor
    assert sorted(parent_of(c) or 0 for c in chats) == sorted(
        [triage.context.span_id] + [billing.context.span_id] * 3 + [plans.context.span_id])
    # the handoff links the spans of both agents
    assert {(link.context.span_id, link.attributes["convoy.link"])
            for link in billing.links} == {(triage.context.span_id, "handoff_source"),
                                           (handoff.context.span_id, "handoff")}
    assert billing.attributes["convoy.handoff.from"] == "triage"
    assert triage.attributes["convoy.handoff.to"] == "billing"
    # GenAI semantic conventions
    assert root.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert root.attributes["gen_ai.conversation.id"] == "t1"
    assert root.attributes["convoy.session.status"] == "completed"
    assert triage.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert triage.attributes["gen_ai.agent.name"] == "triage"
    chat = chats[0]
    assert chat.kind == otel_trace.SpanKind.CLIENT
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.provider.name"] == "sim"
    assert chat.attributes["gen_ai.request.model"] == "default"
    assert chat.attributes["gen_ai.usage.input_tokens"] > 0
    assert chat.attributes["gen_ai.usage.output_tokens"] > 0
    assert chat.attributes["convoy.step.key"] == "1/0"  # after the state update (one position)
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "find_customer"
    assert tool.attributes["gen_ai.agent.name"] == "billing"
    assert state.attributes["convoy.state.op"] == "set"
    assert state.attributes["convoy.state.version"] == 1
    assert chat.instrumentation_scope is not None
    assert chat.instrumentation_scope.name == "convoy"
    assert chat.instrumentation_scope.schema_url.endswith(SEMCONV_VERSION)
    assert chat.resource.attributes["service.name"] == "convoy"
    # the trace id is kept with the session; the store has the same spans
    assert row is not None
    assert row.header_map[TRACE_HEADER] == \
        f"00-{root.context.trace_id:032x}-{root.context.span_id:016x}-01"
    assert {(s["name"], s["span_id"], s["parent_id"]) for s in kept} == {
        (s.name, f"{s.context.span_id:016x}",
         f"{s.parent.span_id:016x}" if s.parent else None) for s in spans}
    [kept_billing] = [s for s in kept if s["name"] == "invoke_agent billing"]
    assert {link["span_id"] for link in kept_billing["links"]} == {
        f"{triage.context.span_id:016x}", f"{handoff.context.span_id:016x}"}


async def test_a_resumed_session_continues_its_trace_and_marks_what_it_replays(
        db: str) -> None:
    sim = CrashOnce(script(), agent="billing")
    wf = desk_workflow(agents(sim))
    first, mem1 = traced()
    eng = convoy.Engine(db, interceptors=observe(first))
    with pytest.raises(Crash):
        await eng.run(wf, TICKET, session_id="t2")
    await first.flush()  # as its flusher would have, before the crash
    second, mem2 = traced()
    async with later_engine(db, workflows=[wf], interceptors=observe(second)) as eng2:
        [res] = await eng2.resume()
        kept = await stored(eng2, "t2")
    await eng.aclose()
    assert res.ok
    run1, run2 = by_name(list(mem1.get_finished_spans())), by_name(list(mem2.get_finished_spans()))
    [root1] = run1["invoke_workflow obs.desk"]
    [root2] = run2["invoke_workflow obs.desk"]
    assert root2.context.trace_id == root1.context.trace_id  # the trace goes on
    assert parent_of(root2) == root1.context.span_id
    assert root1.attributes["convoy.interrupted"] == "Crash"
    assert root2.attributes["convoy.session.resumed"] is True
    # triage's step was journaled before the crash: replayed, not traced again
    [triage2] = run2["invoke_agent triage"]
    assert triage2.attributes["convoy.replay"] is True
    assert not any(parent_of(c) == triage2.context.span_id for c in run2["chat default"])
    assert "handoff triage -> billing" not in run2
    [billing2] = run2["invoke_agent billing"]
    assert "convoy.replay" not in billing2.attributes
    assert [link.context.span_id for link in billing2.links] == [triage2.context.span_id]
    # both runs are in the store, under one trace
    assert {s["trace_id"] for s in kept} == {f"{root1.context.trace_id:032x}"}
    assert sum(s["name"] == "invoke_workflow obs.desk" for s in kept) == 2


CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize("caller", [None, CALLER], ids=["own_trace", "caller_trace"])
async def test_a_session_first_run_untraced_keeps_its_trace_id_and_an_exported_parent(
        db: str, caller: str | None) -> None:
    """A session whose first run was not traced, resumed by an engine that traces live to
    an exporter: its spans go on in the trace its steps were derived in (a new user's
    trial: the resume gave it a new trace id), and the run's span is under a span the
    exporter has (a review: under the derived session span, never exported, Jaeger
    showed it orphaned): its caller's span, or none (a root)."""
    from convoy._trace_context import trace_id_of

    sim = CrashOnce(script(), agent="billing")
    wf = desk_workflow(agents(sim))
    headers = {} if caller is None else {"traceparent": caller}
    eng = convoy.Engine(db)  # (no tracing)
    with pytest.raises(Crash):
        await eng.run(wf, TICKET, session_id="u1", headers=headers)
    live, mem = traced()
    async with later_engine(db, workflows=[wf], interceptors=observe(live)) as eng2:
        [res] = await eng2.resume()
    await eng.aclose()
    assert res.ok, res
    [root] = by_name(list(mem.get_finished_spans()))["invoke_workflow obs.desk"]
    assert f"{root.context.trace_id:032x}" == trace_id_of(headers, "u1")
    assert parent_of(root) == (None if caller is None else 0xb7ad6b7169203331)


async def test_retry_attempts_get_their_own_spans(engine_factory: Any) -> None:
    class Flaky(convoy.SimModel):
        async def request(self, request: convoy.ModelRequest) -> convoy.ModelResponse:
            if request.attempt < 2:
                raise convoy.ModelError("upstream 503", retryable=True, status_code=503)
            return await super().request(request)

    tracing, mem = traced()
    sim = Flaky({"*": {"output": {"action": "ok", "note": "-"}}})
    agent = convoy.Agent(name="solo", output_type=dict[str, str], model=sim)

    @convoy.workflow(name="obs.flaky")
    async def wf(ctx: convoy.Context, t: str) -> Any:
        return await ctx.run(agent, t)

    retry = Retry(RetryPolicy(initial_delay=0, max_delay=0))
    res = await engine_factory(interceptors=[*observe(tracing), retry]).run(wf, "t")
    assert res.ok
    names = by_name(list(mem.get_finished_spans()))
    [chat] = names["chat default"]
    attempts = sorted(names["attempt 1"] + names["attempt 2"] + names["attempt 3"],
                      key=lambda s: s.attributes["convoy.attempt"])
    assert [a.attributes["convoy.attempt"] for a in attempts] == [1, 2, 3]
    assert all(parent_of(a) == chat.context.span_id for a in attempts)
    assert [a.attributes.get("error.type") for a in attempts] == \
        ["server_error", "server_error", None]
    assert chat.attributes["convoy.attempts"] == 3
    assert chat.status.is_ok


@pytest.mark.parametrize("live", [True, False], ids=["live", "derived"])
async def test_a_retry_the_budget_refused_is_marked_on_the_failed_spans(
        engine_factory: Any, live: bool) -> None:
    """A failure the retry budget refused to retry says so in the trace, live or derived
    from the journal (it was in the journal's error and the metrics only: the span read
    as any failure, though the failure itself was retryable)."""
    from convoy.resilience import RetryBudget

    class Down(convoy.SimModel):
        async def request(self, request: convoy.ModelRequest) -> convoy.ModelResponse:
            raise convoy.ModelError("upstream 503", retryable=True, status_code=503)

    agent = convoy.Agent(name="solo", output_type=dict[str, str], model=Down({}))

    @convoy.workflow(name="obs.budget")
    async def wf(ctx: convoy.Context, t: str) -> Any:
        return await ctx.run(agent, t)

    retry = Retry(RetryPolicy(initial_delay=0, max_delay=0),
                  budget=RetryBudget(ratio=0, min_retries=0))
    if live:
        tracing, mem = traced()
    else:
        tracing = Tracing(exporters=["store"])
    engine = engine_factory(interceptors=[*observe(tracing), retry])
    res = await engine.run(wf, "t")
    assert res.status == "failed" and retry.denied == 1
    if live:
        spans = [(s.name, dict(s.attributes or {})) for s in mem.get_finished_spans()]
    else:
        from convoy.observability._derived import journal_spans

        row = await engine.store.get_session(res.id)
        assert row is not None
        spans = [(s["name"], s["attrs"])
                 for s in journal_spans(row, await engine.store.journal(res.id))]
    marked = {name for name, attrs in spans if attrs.get("convoy.retry_budget.exhausted")}
    assert marked == {"chat default", "invoke_agent solo", "invoke_workflow obs.budget"}, \
        spans
    assert all(attrs.get("error.type") == "server_error" for name, attrs in spans
               if name in marked), spans


async def test_a_fallbacks_answer_is_the_chat_spans_response_model(engine_factory: Any
                                                                     ) -> None:
    """The span names the model the agent asked for; the model that answered after a
    fallback is its ``gen_ai.response.model`` (the fallback changes ``input.model``)."""
    class Down(convoy.SimModel):
        async def request(self, request: convoy.ModelRequest) -> convoy.ModelResponse:
            raise convoy.ModelError("upstream 503", retryable=True, status_code=503)

    tracing, mem = traced()
    backup = convoy.SimModel({"*": {"output": {"action": "ok"}}}, name="sim:backup")
    agent = convoy.Agent(name="solo", output_type=dict[str, str],
                         model=Down({}, name="acme:primary"))

    @convoy.workflow(name="obs.fallback")
    async def wf(ctx: convoy.Context, t: str) -> Any:
        return await ctx.run(agent, t)

    eng = engine_factory(models={"sim:backup": backup},
                         interceptors=[*observe(tracing), Fallback({"*": ["sim:backup"]})])
    assert (await eng.run(wf, "t")).ok
    [chat] = by_name(list(mem.get_finished_spans()))["chat primary"]
    assert chat.attributes["gen_ai.request.model"] == "primary"
    assert chat.attributes["gen_ai.provider.name"] == "acme"
    assert chat.attributes["gen_ai.response.model"] == "sim:backup"


async def test_content_is_off_by_default_and_redacted_when_on(engine_factory: Any) -> None:
    from .obs_flows import CARD, EMAIL

    for capture in (False, True):
        tracing, mem = traced(capture_content=capture)
        wf = desk_workflow(agents(convoy.SimModel(script())), name=f"obs.content{capture}")
        res = await engine_factory(interceptors=observe(tracing)).run(wf, TICKET)
        assert res.ok
        spans = mem.get_finished_spans()
        chats = [s for s in spans if s.name == "chat default"]
        if not capture:
            assert not any("gen_ai.input.messages" in s.attributes for s in spans)
            continue
        text = chats[0].attributes["gen_ai.input.messages"]
        assert "[EMAIL]" in text and "[CARD]" in text and EMAIL not in text and CARD not in text
        [tool] = [s for s in spans if s.name == "execute_tool find_customer"]
        assert "[IP]" in tool.attributes["gen_ai.tool.call.result"]


async def test_captured_messages_follow_the_genai_conventions_shape(
        engine_factory: Any) -> None:
    """``{"role", "parts": [{"type": "text" | "tool_call" | "tool_call_response", ...}]}``
    and an output message's ``finish_reason`` (semantic conventions 1.37 and later)."""
    tracing, mem = traced(capture_content=True)
    wf = desk_workflow(agents(convoy.SimModel(script())), name="obs.shape")
    assert (await engine_factory(interceptors=observe(tracing)).run(wf, TICKET)).ok
    spans = mem.get_finished_spans()
    chats = [s for s in spans if s.name == "chat default"]
    inputs = [json.loads(str(s.attributes["gen_ai.input.messages"])) for s in chats]
    outputs = [json.loads(str(s.attributes["gen_ai.output.messages"])) for s in chats]
    for messages in (*inputs, *outputs):
        assert messages and all(set(m) >= {"role", "parts"} for m in messages)
        for m in messages:
            for part in m["parts"]:
                assert part["type"] in ("text", "tool_call", "tool_call_response"), part
    assert all(len(o) == 1 and o[0]["role"] == "assistant" and o[0]["finish_reason"]
               for o in outputs)
    parts = [p for o in outputs for p in o[0]["parts"]]
    calls = [p for p in parts if p["type"] == "tool_call"]
    assert calls and all(isinstance(c["arguments"], dict) and c["name"] and c["id"]
                         for c in calls)
    answered = {p["id"] for m in inputs for msg in m if msg["role"] == "tool"
                for p in msg["parts"] if p["type"] == "tool_call_response"}
    assert answered and answered <= {c["id"] for c in calls}
    agent_spans = [s for s in spans if s.name.startswith("invoke_agent")
                   and "gen_ai.output.messages" in s.attributes]
    assert agent_spans
    for s in agent_spans:
        [out] = json.loads(str(s.attributes["gen_ai.output.messages"]))
        assert out["role"] == "assistant" and out["parts"][0]["type"] == "text"


async def test_spans_a_tool_makes_nest_under_its_span(engine_factory: Any) -> None:
    provider = TracerProvider()
    mine = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(mine))
    tracer = provider.get_tracer("my-app")

    @convoy.tool
    def lookup(query: str) -> str:
        """Look it up."""
        with tracer.start_as_current_span("crm.query"):
            return "found"

    sim = convoy.SimModel({"a": [{"tool_calls": [{"name": "lookup",
                                                   "arguments": {"query": "x"}}]},
                                 {"output": "done"}]})
    agent = convoy.Agent(name="a", tools=[lookup], model=sim)

    @convoy.workflow(name="obs.nested")
    async def wf(ctx: convoy.Context, t: str) -> str:
        out: str = await ctx.run(agent, t)
        return out

    tracing, mem = traced()
    res = await engine_factory(interceptors=observe(tracing)).run(wf, "t")
    assert res.ok
    [tool] = [s for s in mem.get_finished_spans() if s.name == "execute_tool lookup"]
    [crm] = mine.get_finished_spans()
    assert crm.context.trace_id == tool.context.trace_id
    assert parent_of(crm) == tool.context.span_id


async def test_a_caller_traceparent_becomes_the_sessions_parent(engine_factory: Any) -> None:
    tracing, mem = traced()
    sim = convoy.SimModel({"*": {"output": "ok"}})
    agent = convoy.Agent(name="a", model=sim)

    @convoy.workflow(name="obs.parented")
    async def wf(ctx: convoy.Context, t: str) -> str:
        out: str = await ctx.run(agent, t)
        return out

    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    res = await engine_factory(interceptors=observe(tracing)).run(
        wf, "t", headers={"traceparent": caller})
    assert res.ok
    [root] = [s for s in mem.get_finished_spans() if s.parent is None or
              s.name.startswith("invoke_workflow")]
    assert f"{root.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert parent_of(root) == 0xB7AD6B7169203331


async def test_replay_writes_no_spans_and_tracing_off_changes_nothing(db: str) -> None:
    tracing, mem = traced()
    wf = desk_workflow(agents(convoy.SimModel(script())), name="obs.replayed")
    async with convoy.Engine(db, interceptors=observe(tracing)) as engine:
        res = await engine.run(wf, TICKET, session_id="r1")
        before = len(mem.get_finished_spans())
        replayed = await engine.replay("r1")
        assert replayed.status == "completed"
        assert len(mem.get_finished_spans()) == before
        assert len(await stored(engine, "r1")) == before
    assert res.ok
    async with convoy.Engine(db, workflows=[wf]) as plain:
        again = await plain.run(wf, TICKET, session_id="r2")
        assert again.ok and await stored(plain, "r2") == []


def test_bad_exporters_are_refused_in_one_line() -> None:
    with pytest.raises(convoy.UserError, match="unknown exporter 'jaeger'"):
        Tracing(exporters=["jaeger"])
    # not an exporter at all: refused now, not an AttributeError at exit
    with pytest.raises(convoy.UserError, match=r"Tracing: exporter 42 \(int\) is not 'store', "
                       "'otlp', 'console', an OpenTelemetry SpanExporter or SpanProcessor"):
        Tracing(exporters=[42])  # type: ignore[list-item]
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    with pytest.raises(convoy.UserError, match=r"\(type\) is not 'store'"):  # the class
        Tracing(exporters=[ConsoleSpanExporter])  # type: ignore[list-item]


def test_convoy_trace_prints_the_waterfall(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    tracing = Tracing(exporters=["store"], live=True)
    wf = desk_workflow(agents(convoy.SimModel(script())), name="obs.cli")

    async def run() -> None:
        async with convoy.Engine(db, interceptors=observe(tracing)) as engine:
            await engine.tenant("acme").run(wf, TICKET, session_id="w1")

    asyncio.run(run())
    res = cli("trace", "w1", "--db", str(db), "--tenant", "acme")
    assert res.code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[1].startswith("invoke_workflow obs.cli")
    assert any(line.startswith("  invoke_agent billing") for line in lines)
    assert any(line.startswith("    execute_tool find_customer") for line in lines)
    assert any("handed over by triage" in line for line in lines)
    assert "tokens" in res.stdout and lines[-1].startswith("trace ")
    as_json = cli("trace", "w1", "--db", str(db), "--tenant", "acme", "--json")
    spans = json.loads(as_json.stdout)
    assert {s["name"] for s in spans} >= {"invoke_agent triage", "handoff triage -> billing"}
    # another tenant's session is an unknown id
    other = cli("trace", "w1", "--db", str(db))
    assert other.code == 2 and "no session 'w1' of tenant 'default'" in other.stderr


async def test_sampling_decides_per_session_and_keeps_to_it(engine_factory: Any) -> None:
    tracing, mem = traced(sample_rate=0.5)
    sim = convoy.SimModel({"*": {"output": "ok"}})
    agent = convoy.Agent(name="a", model=sim)

    @convoy.workflow(name="obs.sampled")
    async def wf(ctx: convoy.Context, t: str) -> str:
        out: str = await ctx.run(agent, t)
        return out

    eng = engine_factory(interceptors=observe(tracing))
    results = [await eng.run(wf, str(i)) for i in range(200)]
    assert all(r.ok for r in results)
    traced_ids = {s.attributes["convoy.session.id"] for s in mem.get_finished_spans()
                  if s.name == "invoke_workflow obs.sampled"}
    assert 60 < len(traced_ids) < 140  # about half, drawn by trace id
    for r in results:  # a traced session has all its spans, an untraced one none
        row = await eng.store.get_session(r.id)
        assert traceparent_sampled(row.header_map[TRACE_HEADER]) == (r.id in traced_ids)
    assert len(mem.get_finished_spans()) == 3 * len(traced_ids)
    unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    before = len(mem.get_finished_spans())
    assert (await eng.run(wf, "x", headers={"traceparent": unsampled})).ok
    assert len(mem.get_finished_spans()) == before  # the caller said: not sampled
    with pytest.raises(convoy.UserError, match="sample_rate"):
        Tracing(sample_rate=2.0)


@pytest.mark.parametrize(("flags", "sampled"), [("01", True), ("03", True), ("00", False),
                                                ("02", False)])
async def test_a_callers_sampling_decision_holds_for_every_run_of_the_session(
        db: str, flags: str, sampled: bool) -> None:
    """The sampled bit of the caller's traceparent (not the last character of the header)
    decides, and the session's later runs keep to it whatever the resuming engine's
    sample_rate says."""
    sim = convoy.SimModel({"*": {"output": "ok"}})
    agent = convoy.Agent(name="a", model=sim)

    @convoy.workflow(name="obs.waits")
    async def wf(ctx: convoy.Context, t: str) -> str:
        first: str = await ctx.run(agent, t)
        await ctx.wait_for("go")
        second: str = await ctx.run(agent, first)
        return second

    caller = f"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-{flags}"
    first, mem1 = traced(sample_rate=0.0 if sampled else 1.0)
    async with convoy.Engine(db, workflows=[wf], interceptors=observe(first)) as eng:
        res = await eng.run(wf, "x", session_id="s1", headers={"traceparent": caller})
        assert res.status == "waiting"
        await eng.signal("s1", "go", {})
    second, mem2 = traced(sample_rate=1.0 if sampled else 0.0)
    async with convoy.Engine(db, workflows=[wf], interceptors=observe(second)) as eng2:
        [done] = await eng2.resume()
        assert done.ok
        row = await eng2.store.get_session("s1")
        kept = await stored(eng2, "s1")
    assert traceparent_sampled(row.header_map[TRACE_HEADER]) is sampled
    runs = [[s for s in mem.get_finished_spans() if s.name == "invoke_workflow obs.waits"]
            for mem in (mem1, mem2)]
    if sampled:
        assert [len(r) for r in runs] == [1, 1]
        assert {f"{r[0].context.trace_id:032x}" for r in runs} == \
            {"0af7651916cd43dd8448eb211c80319c"}
        assert sum(s["name"] == "invoke_workflow obs.waits" for s in kept) == 2
    else:
        assert runs == [[], []] and kept == []
        assert not mem1.get_finished_spans() and not mem2.get_finished_spans()


async def test_concurrent_sessions_keep_their_spans_apart(engine_factory: Any) -> None:
    tracing, mem = traced()
    sim = convoy.SimModel({"*": {"output": "ok"}}, latency=0.002)
    a = convoy.Agent(name="a", model=sim)
    b = convoy.Agent(name="b", model=sim)

    @convoy.workflow(name="obs.concurrent")
    async def wf(ctx: convoy.Context, t: str) -> list[str]:
        return await ctx.gather(lambda c: c.run(a, t), lambda c: c.run(b, t + "!"))

    results = await engine_factory(interceptors=observe(tracing)).run_many(
        wf, [str(i) for i in range(20)])
    assert all(r.ok for r in results)
    spans = mem.get_finished_spans()
    roots = {s.context.trace_id: s for s in spans if s.parent is None}
    assert len(roots) == 20
    by_id = {s.context.span_id: s for s in spans}
    for s in spans:  # every span's chain of parents ends at its own trace's root
        top = s
        while top.parent is not None:
            parent = by_id[top.parent.span_id]
            assert parent.context.trace_id == s.context.trace_id
            top = parent
        assert top is roots[s.context.trace_id]
    assert sum(s.name.startswith("chat") for s in spans) == 40


def test_spans_stored_by_an_earlier_convoy_still_read() -> None:
    """Format 1 (a name, kind and shared-attribute index per span, absolute times) is read
    as format 2 is; a format this Convoy does not know is refused in one line."""
    v1 = json.dumps({"v": 1, "trace_id": "ab" * 16, "bases": [
        {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "a"}], "spans": [
        ["invoke_agent a", "1" * 16, "2" * 16, 1_000, 5_000, "internal", "ok", 0,
         {"convoy.step.key": "0/0"}, None, None, None],
        ["handoff a -> b", "3" * 16, "1" * 16, 2_000, 3_000, "internal", "error", None,
         {"convoy.step.key": "0/1"}, "handoff_invalid: no", [["4" * 16, {"k": 1}]],
         [["exception", 2_500, {"exception.type": "HandoffError"}]]]]})
    agent, handoff = load_chunks([v1])
    assert agent["name"] == "invoke_agent a" and agent["parent_id"] == "2" * 16
    assert agent["attrs"] == {"gen_ai.operation.name": "invoke_agent",
                              "gen_ai.agent.name": "a", "convoy.step.key": "0/0"}
    assert (agent["start"], agent["end"], agent["trace_id"]) == (1_000, 5_000, "ab" * 16)
    assert handoff["message"] == "handoff_invalid: no"
    assert handoff["links"] == [{"trace_id": "ab" * 16, "span_id": "4" * 16, "attrs": {"k": 1}}]
    assert handoff["events"] == [{"name": "exception", "time": 2_500,
                                  "attrs": {"exception.type": "HandoffError"}}]
    with pytest.raises(convoy.JournalError, match="format 9"):
        load_chunks(['{"v": 9}'])


async def test_failed_spans_keep_their_message_links_and_events_in_the_store(
        engine_factory: Any) -> None:
    sim = convoy.SimModel({"a": {"handoff": "b", "payload": {"task": "x"}},
                           "b": {"output": "done"}})
    b = convoy.Agent(name="b", model=sim)
    a = convoy.Agent(name="a", handoffs=[b], model=sim)
    boom = convoy.Agent(name="boom", model=convoy.SimModel({"*": {"error": {
        "message": "bad key", "status_code": 401, "retryable": False}}}))

    @convoy.workflow(name="obs.stored")
    async def wf(ctx: convoy.Context, t: str) -> str:
        out: str = await ctx.run(a, t)
        with contextlib.suppress(Exception):
            await ctx.run(boom, t)
        return out

    tracing = Tracing(exporters=["store"], live=True)
    engine = engine_factory(interceptors=observe(tracing))
    res = await engine.run(wf, "t")
    assert res.ok, res.error
    spans = {s["name"]: s for s in await stored(engine, res.id)}
    handoff = spans["handoff a -> b"]
    assert [link["span_id"] for link in spans["invoke_agent b"]["links"]] == [
        spans["invoke_agent a"]["span_id"], handoff["span_id"]]
    failed = spans["invoke_agent boom"]
    assert failed["status"] == "error" and "bad key" in failed["message"]
    assert failed["events"][0]["name"] == "exception"
    assert spans["invoke_workflow obs.stored"]["end"] >= failed["end"] > failed["start"]
    # Each agent's step names its configuration, as an audit entry and a derived span do.
    configs = {s["attrs"]["gen_ai.agent.name"]: s["attrs"]["convoy.agent.config"]
               for s in await stored(engine, res.id)
               if s["name"].startswith(("chat ", "handoff "))}
    assert configs == {"a": a.config_id, "b": b.config_id, "boom": boom.config_id}


async def test_a_failed_sessions_span_has_the_exception_that_ended_it(
        engine_factory: Any) -> None:
    from .obs_flows import down_workflow

    wf = down_workflow("obs.live.down")
    engine = engine_factory(interceptors=observe(Tracing(exporters=["store"], live=True)))
    res = await engine.run(wf, "x")
    assert res.status == "failed"
    spans = {s["name"]: s for s in await stored(engine, res.id)}
    root = spans["invoke_workflow obs.live.down"]
    assert root["status"] == "error" and root["attrs"]["error.type"] == "server_error"
    [event] = root["events"]
    assert event["name"] == "exception" and event["attrs"]["exception.type"] == "ModelError"
    assert event["attrs"]["exception.message"] in root["message"]
    [record] = [r for r in await engine.store.journal(res.id) if r.kind == "model"]
    assert spans["chat default"]["attrs"]["convoy.agent.config"] == record.config


async def test_attempt_spans_where_something_can_retry(engine_factory: Any) -> None:
    """With nothing in the chain that can call a step again, a step is one attempt and
    its span says it all; a custom interceptor may retry, so attempts are traced."""
    wf = down_workflow("obs.attempts")

    class Twice(convoy.Interceptor):
        async def model_call(self, input: convoy.ModelCallInput, next: Any) -> Any:
            try:
                return await next(input)
            except convoy.ModelError:
                return await next(input)

    alone, mem = traced()
    assert (await engine_factory(interceptors=observe(alone)).run(wf, "t")).status == "failed"
    names = by_name(list(mem.get_finished_spans()))
    assert not [n for n in names if n.startswith("attempt")]
    [chat] = names["chat default"]
    assert chat.attributes["error.type"] == "server_error" and not chat.status.is_ok
    retried, mem2 = traced()
    eng = engine_factory(interceptors=[*observe(retried), Twice()])
    assert (await eng.run(wf, "t")).status == "failed"
    names = by_name(list(mem2.get_finished_spans()))
    assert len(names["attempt 1"]) == len(names["attempt 2"]) == 1
    assert names["chat default"][0].attributes["convoy.attempts"] == 2


def test_which_chains_can_make_more_than_one_attempt() -> None:
    from convoy.observability._attempts import attempts_vary
    from convoy.resilience import protections

    class Mine(convoy.Interceptor):  # stage "custom": it may call a tool again
        async def tool_call(self, input: convoy.ToolCallInput, next: Any) -> Any:
            return await next(input)

    assert not attempts_vary(observe(Tracing(exporters=())))
    assert attempts_vary([*observe(Tracing(exporters=())), *protections()])
    assert attempts_vary([Mine()])
    assert not attempts_vary([convoy.Interceptor()])  # passes everything through


@pytest.mark.parametrize(("env", "given", "name"), [
    ({}, None, "convoy"),
    ({"OTEL_SERVICE_NAME": "desk"}, None, "desk"),
    ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=crm,team=ops"}, None, "crm"),
    ({"OTEL_SERVICE_NAME": "desk"}, "billing", "billing"),
])
async def test_the_service_name_comes_from_the_environment_unless_given(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
        given: str | None, name: str) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    mem = InMemorySpanExporter()
    tracing = Tracing(exporters=[SimpleSpanProcessor(mem)], service_name=given)
    agent = convoy.Agent(name="a", model=convoy.SimModel({"*": {"output": "ok"}}))

    @convoy.workflow(name="obs.named")
    async def wf(ctx: convoy.Context, t: str) -> str:
        out: str = await ctx.run(agent, t)
        return out

    assert (await engine_factory(interceptors=observe(tracing)).run(wf, "x")).ok
    spans = mem.get_finished_spans()
    assert spans and {s.resource.attributes["service.name"] for s in spans} == {name}
    if "team" in env.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        assert {s.resource.attributes["team"] for s in spans} == {"ops"}


@pytest.mark.parametrize("value", [",,=,", "team", "team=ops,=x", "service.name crm"])
def test_resource_attributes_that_cannot_be_read_are_one_line(
        monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """The SDK drops such an item with lines of its own on stderr, and the spans go out
    without it: refused in one line, naming the item by its place."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", value)
    with pytest.raises(convoy.UserError, match=r"^Tracing: OTEL_RESOURCE_ATTRIBUTES: its "
                                               r"item \d is not KEY=VALUE"):
        Tracing(exporters=[SimpleSpanProcessor(InMemorySpanExporter())])
    Tracing(exporters=["store"])  # (the store's spans carry no resource)


def test_convoy_trace_of_a_session_sampling_left_out_says_so(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    wf = desk_workflow(agents(convoy.SimModel(script())), name="obs.unsampled")
    unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"

    async def run() -> None:
        async with convoy.Engine(db, interceptors=observe(Tracing(["store"], live=True))
                                 ) as engine:
            await engine.run(wf, TICKET, session_id="u1", headers={"traceparent": unsampled})

    asyncio.run(run())
    res = cli("trace", "u1", "--db", str(db))
    assert res.code == 0, res.stderr
    assert "sampling left it untraced" in " ".join(res.stdout.split())
    assert "as its journal records them" in " ".join(res.stdout.split())
    # derived from the journal, in the trace its caller gave
    as_json = cli("trace", "u1", "--db", str(db), "--json")
    spans = json.loads(as_json.stdout)
    assert spans and all(s["attrs"]["convoy.derived"] for s in spans)
    assert "sampling left it untraced" in as_json.stderr  # (it said nothing with --json)
    assert {s["trace_id"] for s in spans} == {"0af7651916cd43dd8448eb211c80319c"}


@convoy.workflow(name="obs.drawn")
async def _drawn_and_waits(ctx: convoy.Context, x: int) -> str:
    await ctx.now()
    await ctx.random()
    await ctx.uuid()
    await ctx.sleep(0)
    await ctx.step("clock", _seven)  # a user's step with a drawn value's name
    first = await ctx.wait_for("go", bool)
    with contextlib.suppress(convoy.WaitTimeout):
        await ctx.wait_for("never", timeout=0)
    return f"{x}:{first}"


async def _seven() -> int:
    return 7


async def test_drawn_values_and_waits_have_their_spans(db: str) -> None:
    """The steps the engine journals without a hook (the values it draws for the
    workflow, its waits for signals) have a span each, as they have an audit entry: a
    drawn value's is an instant, a wait's runs from the wait to its signal (in the run that
    ends it: from that run's start when the session parked, with the time waited as
    ``convoy.wait.seconds``), one that timed out is an ERROR span."""
    tracing, mem = traced()
    async with convoy.Engine(db, interceptors=observe(tracing)) as engine:
        parked = await engine.run(_drawn_and_waits, 1, session_id="d1")
        assert parked.status == "waiting"
        await engine.signal("d1", "go", True)
        [res] = await engine.resume()
        assert res.ok and res.output == "1:True"
        journal = {r.key: r for r in await engine.journal("d1")}
        kept = await stored(engine, "d1")
    spans = list(mem.get_finished_spans())
    first_run, second_run = sorted(
        (s for s in spans if s.name == "invoke_workflow obs.drawn"),
        key=lambda s: s.start_time or 0)
    keyed = {str((s.attributes or {})["convoy.step.key"]): s for s in spans
             if "convoy.step.key" in (s.attributes or {})}
    assert set(keyed) == set(journal)  # every journaled step, one span each
    assert sorted(str((s.attributes or {})["convoy.step.key"]) for s in spans
                  if "convoy.step.key" in (s.attributes or {})) == sorted(journal), \
        [(s.name, dict(s.attributes or {})) for s in spans]
    for key, record in journal.items():
        span = keyed[key]
        attrs = dict(span.attributes or {})
        if record.kind == "effect" and key != "4":
            assert span.name == f"step {record.target}" and attrs["convoy.step.drawn"]
            assert span.parent is not None and span.parent.span_id == \
                first_run.context.span_id
        elif record.kind == "effect":
            assert span.name == "step clock" and "convoy.step.drawn" not in attrs
    go, never = keyed["5"], keyed["6"]
    assert go.name == "wait go" and go.status.is_ok
    assert go.parent is not None and go.parent.span_id == second_run.context.span_id
    assert (go.start_time or 0) >= (second_run.start_time or 0)
    assert isinstance(go.attributes["convoy.wait.seconds"], float)  # type: ignore[index]
    assert never.name == "wait never" and not never.status.is_ok
    assert (never.attributes or {})["error.type"] == "wait_timeout"
    assert {s["name"] for s in kept} >= {"wait go", "wait never", "step clock",
                                          "step random", "step uuid", "step timer"}


@pytest.mark.parametrize("how", ["same", "two", "observe_and_own"])
async def test_two_tracings_in_one_engine_are_refused(engine_factory: Any, how: str) -> None:
    """A new user's trial: ``[tracing, tracing]`` (or two ``Tracing``, or ``observe(
    metrics=..., logs=True)``, which adds one, beside one's own) recorded every span twice,
    each nested in its double, the inner session span marked ``resumed``, and ``convoy
    trace`` counted each error twice. The engine refuses to open, as it does for metrics
    added twice."""
    one = Tracing(["store"], live=True)
    chain: list[Any] = {
        "same": [one, one],
        "two": [one, Tracing(["store"], live=True)],
        "observe_and_own": [*observe(metrics=None, logs=True), one],
    }[how]
    eng = engine_factory(interceptors=chain)
    with pytest.raises(convoy.UserError, match="would be recorded twice"):
        await eng.open()


@pytest.mark.parametrize(("kw", "said"), [
    ({"sample_rate": "0.5"}, "sample_rate must be a number in [0, 1], got '0.5'"),
    ({"sample_rate": None}, "sample_rate must be a number in [0, 1], got None"),
    ({"flush_every": "10"}, "flush_every must be a whole number >= 1, got '10'"),
    ({"flush_every": 1.5}, "flush_every must be a whole number >= 1, got 1.5"),
    ({"flush_interval": "1"}, "flush_interval must be a number of seconds > 0, got '1'"),
    ({"flush_interval": float("nan")}, "flush_interval must be a number of seconds > 0"),
    ({"exporters": None}, "exporters=None: give a list of exporters"),
])
def test_settings_of_the_wrong_type_are_refused_in_one_line(kw: dict[str, Any],
                                                            said: str) -> None:
    """A new user's trial: ``Tracing(sample_rate="0.5")`` (read from an environment
    variable) raised ``TypeError: '<=' not supported between instances of 'float' and
    'str'``, ``exporters=None`` ``'NoneType' object is not iterable``, and ``flush_every=1.5``
    was taken."""
    with pytest.raises(convoy.UserError, match=re.escape(said)):
        Tracing(**kw)
