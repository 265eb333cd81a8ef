"""An error's message may quote a data subject's data (a tool's exception naming the person
it looked up), and no redactor finds a name. In a session that names a data subject, spans
(to every exporter) and Convoy's log lines keep the error's type and kind but withhold its
message: nothing written outside the store can be erased. The message stays in the
session's journal, sealed. Other sessions are unchanged."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import convoy
from convoy.observability import Tracing, json_logging, observe
from convoy.observability._spans import load_chunks
from convoy.observability._tracing import SPANS_NAMESPACE
from convoy.privacy._seal import is_sealed
from convoy.privacy._withheld import WITHHELD

from .test_privacy import engine

NAME = "Zebediah Quarrington"


@convoy.tool
def lookup(customer: str) -> str:
    """Find a customer's account."""
    raise ValueError(f"no account for {NAME}")


def _script(req: convoy.ModelRequest) -> Any:
    if req.messages[-1].role == "tool":
        return {"text": "could not find it"}
    return {"tool_calls": [{"name": "lookup", "arguments": {"customer": "c-1"}}]}


clerk = convoy.Agent(name="clerk", tools=[lookup], model=convoy.SimModel(_script))


@convoy.workflow(name="privacy.errors")
async def ask(ctx: convoy.Context, text: str) -> str:
    return str(await ctx.run(clerk, text))


@convoy.workflow(name="privacy.errors.fail")
async def fail(ctx: convoy.Context, text: str) -> str:
    raise convoy.UserError(f"cannot serve {NAME}")


async def test_a_subjects_error_messages_stay_out_of_spans_and_logs(tmp_path: Path) -> None:
    memory = InMemorySpanExporter()
    log = io.StringIO()
    handler = json_logging(logging.INFO, stream=log, logger_name="convoy")
    try:
        async with engine(tmp_path / "convoy.db", interceptors=observe(
                Tracing(["store", SimpleSpanProcessor(memory)]), logs=True)) as eng:
            mine = [await eng.run(ask, "hi", subject="c-1"),
                    await eng.run(fail, "hi", subject="c-1")]
            other = [await eng.run(ask, "hi"), await eng.run(fail, "hi")]
            assert [r.status for r in mine + other] == ["completed", "failed"] * 2
            stored = {r.id: json.dumps(load_chunks((await eng.store.kv_all(
                SPANS_NAMESPACE + r.id)).values())) for r in mine + other}
            # The journal keeps the message (sealed for the subject, opened by the engine).
            assert any(NAME in str(r.result) for r in await eng.journal(mine[0].id))
    finally:
        logging.getLogger("convoy").removeHandler(handler)
    spans = memory.get_finished_spans()
    session_of = {s.context.trace_id: (s.attributes or {}).get("convoy.session.id")
                  for s in spans if (s.attributes or {}).get("convoy.session.id")}
    exported: dict[str, str] = {}
    for span in spans:  # every span of a session's trace: status and event attributes
        sid = str(session_of[span.context.trace_id])
        exported[sid] = exported.get(sid, "") + json.dumps(
            [span.status.description, [dict(e.attributes or {}) for e in span.events]])
    lines = log.getvalue().splitlines()
    for r in mine:
        assert NAME not in stored[r.id] and WITHHELD in stored[r.id], stored[r.id]
    assert set(exported) == {r.id for r in mine + other}
    assert all(NAME not in exported[r.id] for r in mine), exported
    assert all(NAME in exported[r.id] for r in other), exported
    assert NAME not in "".join(line for line in lines
                               if json.loads(line)["session_id"] in {r.id for r in mine})
    # Other sessions' spans and logs keep their messages (what the withholding changes).
    for r in other:
        assert NAME in stored[r.id], stored[r.id]
    assert any(NAME in line for line in lines)
    assert any(WITHHELD in line and json.loads(line).get("error_type") == "ToolError"
               for line in lines), lines
    # a failed session's end keeps its error's type and kind, its message withheld
    ends = [json.loads(line) for line in lines
            if json.loads(line)["message"].startswith("session run ended failed")]
    assert ends and all(e.get("error_type") and e.get("error_kind") for e in ends), ends
    assert any(WITHHELD in e["message"] for e in ends), ends


async def test_a_subjects_retried_steps_keep_attempt_spans_without_their_messages(
        tmp_path: Path) -> None:
    """Tracing that derives spans when read keeps a retried step's attempts as they run:
    in a data subject's session their error messages are withheld too, and their chunks
    are sealed like the session's other data (no byte of the message in the files)."""
    from convoy.resilience import Retry, RetryPolicy

    class Flaky(convoy.SimModel):
        async def request(self, request: convoy.ModelRequest) -> convoy.ModelResponse:
            if request.attempt == 0:
                raise convoy.ModelError(f"upstream 503 for {NAME}", retryable=True,
                                        status_code=503)
            return await super().request(request)

    solo = convoy.Agent(name="solo", model=Flaky({"*": {"output": "ok"}}))

    @convoy.workflow(name="privacy.errors.retried")
    async def retried(ctx: convoy.Context, text: str) -> str:
        return str(await ctx.run(solo, text))

    db = tmp_path / "convoy.db"
    chain = [*observe(Tracing(["store"])), Retry(RetryPolicy(initial_delay=0, max_delay=0))]
    async with engine(db, interceptors=chain) as eng:
        mine = await eng.run(retried, "hi", subject="c-1")
        other = await eng.run(retried, "hi")
        assert mine.ok and other.ok
        stored = {r.id: json.dumps(load_chunks((await eng.store.kv_all(
            SPANS_NAMESPACE + r.id)).values())) for r in (mine, other)}
    assert "attempt 1" in stored[mine.id] and WITHHELD in stored[mine.id]
    assert NAME not in stored[mine.id]
    assert NAME in stored[other.id]  # (what the withholding changes)
    async with convoy.Engine(db) as raw:  # no master key: the store's text as kept
        chunks = await raw.store.kv_all(SPANS_NAMESPACE + mine.id)
    assert chunks and all(is_sealed(v) for v in chunks.values()), chunks


@convoy.workflow(name="privacy.errors.writes")
async def keep(ctx: convoy.Context, text: str) -> None:
    await ctx.state("contacts").set("c-1", {"name": NAME}, expected_version=0)


@convoy.workflow(name="privacy.errors.reads")
async def reach(ctx: convoy.Context, text: str) -> str:
    entry = await ctx.state("contacts").get("c-1")
    name = (entry.value if entry is not None else {}).get("name")

    async def call() -> str:
        raise RuntimeError(f"cannot reach {name}")

    return await ctx.step("reach", call)


async def test_a_session_that_read_a_subjects_data_keeps_its_messages_out_too(
        tmp_path: Path) -> None:
    """A session of no subject that reads a subject's shared state holds that subject's
    data from then on (the store seals what it journals after the read): an error
    message then may quote it, so spans and log lines withhold it as in the subject's own
    session (review of stop 44: the name reached the JSON log and the console's spans,
    where no erasure reaches)."""
    memory = InMemorySpanExporter()
    log = io.StringIO()
    handler = json_logging(logging.INFO, stream=log, logger_name="convoy")
    try:
        async with engine(tmp_path / "convoy.db", interceptors=observe(
                Tracing(["store", SimpleSpanProcessor(memory)]), logs=True)) as eng:
            assert (await eng.run(keep, "hi", subject="c-1")).ok
            read = await eng.run(reach, "hi")
            assert read.status == "failed"
            row = await eng.store.inner.get_session(read.id)  # (the store's: sealed)
            assert row is not None and NAME not in json.dumps(row.error), row.error
    finally:
        logging.getLogger("convoy").removeHandler(handler)
    exported = json.dumps([[s.status.description, [dict(e.attributes or {})
                                                   for e in s.events]]
                           for s in memory.get_finished_spans()])
    assert NAME not in exported and WITHHELD in exported, exported
    lines = log.getvalue()
    assert NAME not in lines and WITHHELD in lines, lines
