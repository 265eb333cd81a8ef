"""Traces proven on a real backend (issue 11, item 2): a multi-agent session with a
handoff, a tool and a worker is exported over OTLP/HTTP to Arize Phoenix, started on
loopback from the project's own files, and its spans are read back through Phoenix's REST
API: names, parentage, the handoff's link and the GenAI attributes.

Phoenix (20.x) does not keep OTLP span links (its span model has no links yet), so the
link is checked through the attributes Convoy mirrors it in (``convoy.handoff.*``); the
native links are checked through the SDK in tests/test_tracing.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

import convoy
from convoy.observability import Tracing, observe
from convoy.resilience import RetryPolicy, protections

from .obs_flows import PLANTED_FORMS, TICKET, agents, desk_workflow, script
from .telemetry_servers import Phoenix, phoenix, wait_until  # noqa: F401

pytestmark = pytest.mark.backend


async def test_spans_read_back_from_phoenix(phoenix: Phoenix, tmp_path: Path) -> None:  # noqa: F811
    project = "convoy-test"
    tracing = Tracing(exporters=["store", OTLPSpanExporter(endpoint=phoenix.otlp)],
                      resource_attributes={"openinference.project.name": project})
    sim = convoy.SimModel(script())
    wf = desk_workflow(agents(sim), name="obs.phoenix")
    chain = protections(before=observe(tracing), retry=RetryPolicy(initial_delay=0))
    async with convoy.Engine(tmp_path / "phoenix.db", interceptors=chain) as engine:
        res = await engine.run(wf, TICKET, session_id="phoenix-1")
    assert res.ok, res.error
    expected = 13  # session, state get+set, 3 agents, 5 model calls, tool, handoff
    spans: list[dict[str, Any]] = []

    def arrived() -> bool:
        spans[:] = phoenix.spans(project)
        return len(spans) >= expected

    await asyncio.to_thread(wait_until, "the spans in Phoenix", arrived, None, None, 60.0)
    assert len(spans) == expected
    by_id = {s["context"]["span_id"]: s for s in spans}
    names = sorted(s["name"] for s in spans)
    assert names == sorted([
        "invoke_workflow obs.phoenix", "state.get customer", "state.set customer",
        "invoke_agent triage", "handoff triage -> billing", "invoke_agent billing",
        "execute_tool find_customer", "invoke_agent plans", *["chat default"] * 5])
    assert len({s["context"]["trace_id"] for s in spans}) == 1

    def one(name: str) -> dict[str, Any]:
        [found] = [s for s in spans if s["name"] == name]
        return found

    def parent(span: dict[str, Any]) -> str:
        return str(by_id[span["parent_id"]]["name"])

    root = one("invoke_workflow obs.phoenix")
    assert root["parent_id"] is None
    assert parent(one("invoke_agent triage")) == root["name"]
    assert parent(one("invoke_agent billing")) == root["name"]
    assert parent(one("handoff triage -> billing")) == "invoke_agent triage"
    assert parent(one("execute_tool find_customer")) == "invoke_agent billing"
    assert parent(one("invoke_agent plans")) == "invoke_agent billing"
    assert sorted(parent(s) for s in spans if s["name"] == "chat default") == sorted(
        ["invoke_agent triage", "invoke_agent plans"] + ["invoke_agent billing"] * 3)
    # the handoff links both agents (mirrored as attributes: Phoenix drops span links)
    billing = one("invoke_agent billing")["attributes"]
    assert billing["convoy.handoff.source_span_id"] == \
        one("invoke_agent triage")["context"]["span_id"]
    assert billing["convoy.handoff.span_id"] == \
        one("handoff triage -> billing")["context"]["span_id"]
    assert billing["convoy.handoff.from"] == "triage"
    # GenAI semantic-convention attributes
    attrs = root["attributes"]
    assert attrs["gen_ai.operation.name"] == "invoke_workflow"
    assert attrs["gen_ai.conversation.id"] == "phoenix-1"
    chat = next(s for s in spans if s["name"] == "chat default"
                and parent(s) == "invoke_agent triage")["attributes"]
    assert chat["gen_ai.operation.name"] == "chat"
    assert chat["gen_ai.request.model"] == "default"
    assert chat["gen_ai.agent.name"] == "triage"
    assert chat["gen_ai.usage.input_tokens"] > 0 and chat["gen_ai.usage.output_tokens"] > 0
    tool = one("execute_tool find_customer")["attributes"]
    assert tool["gen_ai.tool.name"] == "find_customer"
    assert tool["gen_ai.operation.name"] == "execute_tool"
    # nothing personal reached the backend
    text = repr(spans)
    assert not [p for p in PLANTED_FORMS if p in text]
