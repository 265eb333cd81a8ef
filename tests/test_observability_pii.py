"""Structured logs (issue 11, item 4) and no personal data in telemetry (item 8): personal
values planted in a session's input, a tool's output and the model's output, and in the
errors and log lines they cause, appear in no span attribute, log line or metric label,
with message content captured (and redacted) or not. Every log record of a step carries
the tenant, session, agent, step key, trace id and span id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

import convoy
from convoy.observability import Metrics, Tracing, json_logging, observe
from convoy.resilience import RetryPolicy, protections

from .obs_flows import EMAIL, IBAN, PHONE, PLANTED_FORMS, TICKET, agents, desk_workflow, script

app_log = logging.getLogger("obs.app")


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    handler = json_logging(logging.DEBUG, stream=buf)
    try:
        yield buf
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)


def leaks(text: str) -> list[str]:
    return [p for p in PLANTED_FORMS if p in text]


@convoy.tool
def lookup_account(query: str) -> str:
    """Look the customer up; logs what it found, as careless code does."""
    found = f"account of {EMAIL}, IBAN {IBAN}"
    app_log.info("found %s for %s", found, query, extra={"phone": PHONE})
    return found


@convoy.tool
def refund(account: str) -> str:
    """Refund the customer; fails, naming them, as careless code does."""
    raise convoy.ToolError(f"refund to {IBAN} for {EMAIL} refused by the bank")


@pytest.mark.parametrize("capture", [False, True])
async def test_no_planted_value_reaches_spans_logs_or_metric_labels(
        capture: bool, tmp_path: Path, log_lines: io.StringIO) -> None:
    mem = InMemorySpanExporter()
    tracing = Tracing(exporters=["store", SimpleSpanProcessor(mem)], capture_content=capture)
    metrics = Metrics()
    sim = convoy.SimModel({
        **script(),
        "auditor": [
            {"tool_calls": [{"name": "lookup_account", "arguments": {"query": EMAIL}}]},
            {"tool_calls": [{"name": "refund", "arguments": {"account": IBAN}}]},
            {"output": f"could not refund {EMAIL} ({PHONE})"}]})
    triage = agents(sim)
    auditor = convoy.Agent(name="auditor", tools=[lookup_account, refund], model=sim,
                           tool_failures=1)
    desk = desk_workflow(triage, name=f"obs.pii{capture}")

    @convoy.workflow(name=f"obs.pii.audit{capture}")
    async def audit(ctx: convoy.Context, ticket: Any) -> str:
        out: str = await ctx.run(auditor, f"audit {ticket['text']}")
        await ctx.step(f"notify {EMAIL}", _fails, idempotent=True)
        return out

    chain = protections(before=observe(tracing, metrics, logs=True),
                        retry=RetryPolicy(initial_delay=0, max_delay=0))
    async with convoy.Engine(tmp_path / "pii.db", interceptors=chain) as engine:
        ok = await engine.run(desk, TICKET, session_id=f"{EMAIL}-session")
        failed = await engine.run(audit, TICKET)
        await tracing.flush()
        spans_json = json.dumps(list((await engine.store.kv_all(
            f"trace:{EMAIL}-session")).values()))
    assert ok.ok and failed.status == "failed"
    # the personal values were really there: in the input, outputs and errors
    assert EMAIL in json.dumps(failed.error) and IBAN in ok.output.note  # type: ignore[union-attr]
    # spans: attributes, names, events and status messages, as exported and as stored
    exported = [(s.name, dict(s.attributes or {}), s.status.description,
                 [(e.name, dict(e.attributes or {})) for e in s.events])
                for s in mem.get_finished_spans()]
    assert len(exported) > 20
    assert leaks(repr(exported)) == [], "span attributes"
    assert leaks(spans_json) == [], "spans in the store"
    assert "[EMAIL]-session" in spans_json  # the session id itself was redacted
    # logs: every line JSON, nothing planted
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    assert any(r["message"].startswith("found account of [EMAIL]") for r in lines)
    assert any("refused by the bank" in r["message"] for r in lines)
    assert leaks(log_lines.getvalue()) == [], "log lines"
    # metric labels
    labels = [dict(s.labels) for fam in text_string_to_metric_families(metrics.text())
              for s in fam.samples]
    assert leaks(repr(labels)) == [], "metric labels"
    if capture:  # content was recorded, redacted
        assert any("gen_ai.output.messages" in a and "[IBAN]" in a["gen_ai.output.messages"]
                   for _, a, _, _ in exported)


async def _fails() -> None:
    raise RuntimeError(f"mail to {EMAIL} bounced")


async def test_every_log_record_of_a_step_carries_its_context(
        engine_factory: Any, log_lines: io.StringIO) -> None:
    mem = InMemorySpanExporter()
    tracing = Tracing(exporters=[SimpleSpanProcessor(mem)])
    sim = convoy.SimModel({"clerk": [
        {"tool_calls": [{"name": "lookup_account", "arguments": {"query": "42"}}]},
        {"output": "done"}]})
    clerk = convoy.Agent(name="clerk", tools=[lookup_account], model=sim)

    @convoy.workflow(name="obs.logctx")
    async def wf(ctx: convoy.Context, t: str) -> str:
        app_log.info("workflow starts")
        out: str = await ctx.run(clerk, t)
        return out

    res = await engine_factory(interceptors=observe(tracing, logs=True)).tenant("acme").run(
        wf, "t", session_id="ctx-1")
    assert res.ok
    records = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    keys = {"time", "level", "logger", "message", "tenant", "session_id", "agent", "step_key",
            "trace_id", "span_id"}
    assert all(keys <= set(r) for r in records)
    [found] = [r for r in records if r["message"].startswith("found")]
    [tool] = [s for s in mem.get_finished_spans() if s.name == "execute_tool lookup_account"]
    assert found["tenant"] == "acme" and found["session_id"] == "ctx-1"
    assert found["agent"] == "clerk" and found["step_key"] == "0/1"
    assert found["trace_id"] == f"{tool.context.trace_id:032x}"
    assert found["span_id"] == f"{tool.context.span_id:016x}"
    assert found["phone"] == "[PHONE]" and found["logger"] == "obs.app"
    [start] = [r for r in records if r["message"] == "workflow starts"]
    assert start["session_id"] == "ctx-1" and start["agent"] is None
    [end] = [r for r in records if r["message"] == "session run ended completed"]
    assert end["logger"] == "convoy" and end["workflow"] == "obs.logctx"
    # a session sampling leaves untraced: no ids, but still whose the records are
    unsampled = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"}
    before = len(log_lines.getvalue().splitlines())
    res = await engine_factory(interceptors=observe(tracing, logs=True)).tenant("acme").run(
        wf, "u", session_id="ctx-2", headers=unsampled)
    assert res.ok
    later = [json.loads(line) for line in log_lines.getvalue().splitlines()[before:]]
    assert later and all(r["tenant"] == "acme" and r["session_id"] == "ctx-2"
                         and r["trace_id"] is None for r in later), later
    assert any(r["message"] == "session run ended completed" for r in later)
    outside = logging.LogRecord("x", logging.INFO, __file__, 1, "no session", (), None)
    from convoy.observability import JsonFormatter
    line = json.loads(JsonFormatter().format(outside))
    assert line["session_id"] is None and line["trace_id"] is None

