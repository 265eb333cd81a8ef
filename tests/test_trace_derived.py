"""``convoy trace`` of a session whose spans were not kept derives them from its journal:
one span per journal record, with its key, under its agent's span or the session's, a
handoff's target agent linked to the handoff and its source; the same spans at every
reading; marked ``convoy.derived``."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy._trace_context import trace_id_of
from convoy.interceptors._base import Chain
from convoy.observability import Tracing, observe

from .clikit import cli
from .conftest import STORE_KINDS, later_engine, store_db
from .obs_flows import TICKET, agents, desk_workflow, down_workflow, script


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


def _run(db: str | Path, session_id: str, **kw: Any) -> list[convoy.StepRecord]:
    wf = desk_workflow(agents(convoy.SimModel(script())), name="obs.derived")

    async def run() -> list[convoy.StepRecord]:
        async with convoy.Engine(db, **kw) as engine:
            assert (await engine.run(wf, TICKET, session_id=session_id)).ok
            return list(await engine.journal(session_id))

    return asyncio.run(run())


async def _end(input: Any) -> Any:
    return input


def _derived_and_live(db: str | Path, wf: convoy.Workflow[Any, Any], derived: str,
                      live: str) -> None:
    """``wf`` run to its end twice: as session ``derived`` by an engine that derives its
    spans when read, and as ``live`` by one that traces live to the store."""
    async def run() -> None:
        async with convoy.Engine(db) as engine:
            assert (await engine.run(wf, "x", session_id=derived)).ok
        async with convoy.Engine(db, interceptors=observe(Tracing(["store"], live=True))
                                 ) as engine:
            assert (await engine.run(wf, "x", session_id=live)).ok

    asyncio.run(run())


def _spans(db: str | Path, session_id: str) -> list[dict[str, Any]]:
    res = cli("trace", session_id, "--db", str(db), "--json")
    assert res.code == 0, res.stderr
    spans: list[dict[str, Any]] = json.loads(res.stdout)
    return spans


def test_a_session_run_without_tracing_has_its_spans_derived_from_its_journal(
        db: str | Path) -> None:
    records = _run(db, "d1")
    spans = _spans(db, "d1")
    assert spans == _spans(db, "d1")  # the same ids at every reading
    assert all(s["attrs"]["convoy.derived"] is True for s in spans)
    assert len({s["trace_id"] for s in spans}) == 1
    ids = {s["span_id"]: s for s in spans}
    assert len(ids) == len(spans)
    [root] = [s for s in spans if s["parent_id"] is None]
    assert root["name"] == "invoke_workflow obs.derived" and root["status"] == "ok"
    # one span per journal record, with its key
    steps = {s["attrs"]["convoy.step.key"]: s for s in spans if "convoy.step.key" in s["attrs"]
             and not s["name"].startswith("invoke_")}
    assert sorted(steps) == sorted(r.key for r in records)
    for r in records:
        span = steps[r.key]
        assert span["start"] == round(r.began * 1e9) and span["end"] == round(r.at * 1e9)
        assert root["start"] <= span["start"] <= span["end"] <= root["end"]
        parent = ids[span["parent_id"]]
        assert parent["start"] <= span["start"] and span["end"] <= parent["end"]
        if r.kind == "model":
            assert parent["name"] == f"invoke_agent {r.target}"
            assert span["name"].startswith("chat") and span["kind"] == "client"
            assert span["attrs"]["gen_ai.usage.input_tokens"] == r.input_tokens
        elif r.kind in ("tool", "handoff"):
            assert parent["name"] == f"invoke_agent {r.agent}"
        else:
            assert parent is root, (r, parent)
    names = [s["name"] for s in spans]
    for name in ("invoke_agent triage", "handoff triage -> billing", "invoke_agent billing",
                 "execute_tool find_customer", "state.set customer", "invoke_agent plans"):
        assert name in names, names
    [billing] = [s for s in spans if s["name"] == "invoke_agent billing"]
    [handoff] = [s for s in spans if s["name"] == "handoff triage -> billing"]
    [triage] = [s for s in spans if s["name"] == "invoke_agent triage"]
    assert {link["span_id"] for link in billing["links"]} == {handoff["span_id"],
                                                              triage["span_id"]}
    assert billing["attrs"]["convoy.handoff.from"] == "triage"
    # the waterfall says where its spans come from
    shown = cli("trace", "d1", "--db", str(db))
    assert shown.code == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert "(derived from the journal" in text and "no spans kept" not in text
    assert "handed over by triage" in text and "invoke_agent billing" in text


def test_a_session_traced_live_to_the_store_shows_its_kept_spans_not_derived_ones(
        db: str | Path) -> None:
    _run(db, "k1", interceptors=observe(Tracing(["store"], live=True)))
    spans = _spans(db, "k1")
    assert spans and not any(s["attrs"].get("convoy.derived") for s in spans)
    assert "derived from the journal" not in cli("trace", "k1", "--db", str(db)).stdout


def test_tracing_to_the_store_derives_spans_when_read_and_hooks_nothing(
        db: str | Path) -> None:
    tracing = Tracing(["store"])
    assert tracing.derived and Tracing(["store"], capture_content=True).derived is False
    assert not Tracing(["store", "console"]).derived
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    async def run() -> None:
        wf = desk_workflow(agents(convoy.SimModel(script())), name="obs.derived")
        async with convoy.Engine(db, interceptors=observe(tracing)) as engine:
            # no hook in any chain but a person's decision's: sessions run as untraced
            for hook in ("session_run", "agent_run", "model_call", "tool_call", "handoff",
                         "effect", "state_op"):
                assert Chain(hook, [tracing, tracing.attempts], _end).call is _end, hook
            assert Chain("human_decision", [tracing], _end).call is not _end
            assert (await engine.run(wf, TICKET, session_id="t1")).ok
            assert (await engine.run(wf, TICKET, session_id="t2",
                                     headers={"traceparent": caller})).ok
            assert await engine.store.kv_all("trace:t1") == {}  # nothing written

    asyncio.run(run())
    for sid in ("t1", "t2"):
        shown = cli("sessions", "show", sid, "--db", str(db), "--json")
        assert "convoy.trace" not in json.loads(shown.stdout)["headers"]  # nor a header
        text = cli("trace", sid, "--db", str(db)).stdout
        assert "derived from the journal" in " ".join(text.split()), text
        assert "invoke_agent billing" in text
    spans = _spans(db, "t2")
    [root] = [s for s in spans if s["name"].startswith("invoke_workflow")]
    # in its caller's trace, under its caller's span
    assert {s["trace_id"] for s in spans} == {"0af7651916cd43dd8448eb211c80319c"}
    assert root["parent_id"] == "b7ad6b7169203331"
    assert all(s["attrs"]["convoy.derived"] for s in spans)


def test_tracing_live_false_needs_the_store_alone_without_content() -> None:
    for kw in ({"exporters": ["store", "console"]}, {"capture_content": True}):
        with pytest.raises(convoy.UserError, match=r"live=False"):
            Tracing(**kw, live=False)  # type: ignore[arg-type]


def test_a_failed_session_has_its_error_kind_on_its_span_and_its_failed_steps(
        db: str | Path) -> None:
    wf = down_workflow("obs.derived.down")

    async def run() -> None:
        async with convoy.Engine(db) as engine:
            assert (await engine.run(wf, "x", session_id="f1")).status == "failed"

    asyncio.run(run())
    spans = _spans(db, "f1")
    [root] = [s for s in spans if s["parent_id"] is None]
    assert root["status"] == "error" and root["attrs"]["error.type"] == "server_error"
    assert root["message"].startswith("server_error: ")
    [chat] = [s for s in spans if s["name"].startswith("chat")]
    assert chat["status"] == "error" and chat["attrs"]["error.type"] == "server_error"
    # named by the model that failed, as a live span is (no response: no response model)
    assert chat["name"] == "chat default" and chat["attrs"]["gen_ai.provider.name"] == "sim"
    assert chat["attrs"]["gen_ai.request.model"] == "default"
    assert "gen_ai.response.model" not in chat["attrs"]
    [agent] = [s for s in spans if s["name"] == "invoke_agent solo"]
    assert agent["status"] == "error" and chat["parent_id"] == agent["span_id"]
    # (as live spans: the exception that failed the step, the run and the session it ended)
    for failed in (chat, agent, root):
        [event] = failed["events"]
        assert event["name"] == "exception" and event["attrs"]["exception.type"] == "ModelError"
        assert event["attrs"]["exception.message"] in failed["message"]
    shown = cli("trace", "f1", "--db", str(db))
    assert shown.code == 0 and "1 error" not in shown.stdout and "errors" in shown.stdout


def test_a_persons_decision_joins_the_derived_trace_under_the_session_span(
        db: str | Path) -> None:
    from .test_audit_decisions import ask

    async def run() -> None:
        async with convoy.Engine(db, interceptors=observe(Tracing(["store"]))) as engine:
            await engine.run(ask, "c-1", session_id="h1")
            [task] = await engine.inbox.tasks()
            await engine.inbox.answer(task.id, {"approve": True, "cents": 5}, by="ann")
            assert (await engine.resume())[0].ok

    asyncio.run(run())
    spans = _spans(db, "h1")
    [root] = [s for s in spans if s["parent_id"] is None]
    [decision] = [s for s in spans if s["name"] == "human_decision"]
    assert decision["parent_id"] == root["span_id"]
    assert decision["trace_id"] == root["trace_id"] and root["attrs"]["convoy.derived"]
    assert "convoy.derived" not in decision["attrs"]  # recorded when the person decided
    [wait] = [s for s in spans if s["name"].startswith("wait ")]
    assert wait["status"] == "ok" and wait["start"] < wait["end"] <= root["end"]


def _parked_between_runs(name: str) -> convoy.Workflow[Any, Any]:
    """An agent's run, a wait for signal ``go``, the agent's run again."""
    solo = convoy.Agent(name="solo", model=convoy.SimModel({"*": {"output": "ok"}}))

    @convoy.workflow(name=name)
    async def wf(ctx: convoy.Context, t: str) -> str:
        first: str = await ctx.run(solo, t)
        await ctx.wait_for("go")
        second: str = await ctx.run(solo, t)
        return first + second

    return wf


def test_a_live_traced_session_waiting_shows_its_open_wait_under_its_run(
        db: str | Path) -> None:
    """A session traced live that parked in a wait: the wait, open (its span is kept by
    the run that ends it), is derived under the kept run's span; no second, derived run
    row stands for it (there is no other run)."""
    wf = _parked_between_runs("obs.derived.parked")

    async def run() -> None:
        async with convoy.Engine(db, interceptors=observe(Tracing(["store"], live=True))
                                 ) as engine:
            assert (await engine.run(wf, "x", session_id="p1")).status == "waiting"

    asyncio.run(run())
    spans = _spans(db, "p1")
    runs = [s for s in spans if s["name"].startswith("invoke_workflow")]
    assert len(runs) == 1 and not runs[0]["attrs"].get("convoy.derived"), runs
    [wait] = [s for s in spans if s["name"] == "wait go"]
    assert wait["parent_id"] == runs[0]["span_id"] and wait["status"] == "unset", wait

    # Cancelled meanwhile by an engine that does not trace: the trace still says so (a
    # derived run row, the open wait in it), not "waiting" alone.
    async def cancel() -> None:
        async with convoy.Engine(db, workflows=[wf]) as engine:
            await engine.cancel("p1")

    asyncio.run(cancel())
    statuses = {s["attrs"].get("convoy.session.status") for s in _spans(db, "p1")
                if s["name"].startswith("invoke_workflow")}
    assert "cancelled" in statuses, statuses


def test_a_session_run_untraced_then_parked_live_has_its_open_wait_under_the_live_run(
        db: str | Path) -> None:
    """The first run not traced (derived), the second traced live and parked again: the
    first run's steps under a derived run row, the open wait under the live run that
    parked in it."""
    solo = convoy.Agent(name="solo", model=convoy.SimModel({"*": {"output": "ok"}}))

    @convoy.workflow(name="obs.derived.twice")
    async def wf(ctx: convoy.Context, t: str) -> str:
        first: str = await ctx.run(solo, t)
        await ctx.wait_for("go")
        await ctx.wait_for("go2")
        return first

    res, _ = asyncio.run(_derived_then_live(db, wf, "p2", "null"))
    assert res.status == "waiting", res
    spans = _spans(db, "p2")
    live = [s for s in spans if s["name"].startswith("invoke_workflow")
            and not s["attrs"].get("convoy.derived")]
    [wait] = [s for s in spans if s["name"] == "wait go2"]
    assert wait["parent_id"] in {s["span_id"] for s in live}, (wait, live)


async def _derived_then_live(db: str | Path, wf: convoy.Workflow[Any, Any], sid: str,
                             payload: str) -> tuple[convoy.SessionResult[Any], list[str]]:
    """Session ``sid`` run by an engine that derives its spans until it waits for ``go``,
    signalled ``payload``, then resumed by one that traces live: the resumed run's result
    and the session's journaled step keys."""
    async with convoy.Engine(db, interceptors=observe(Tracing(["store"]))) as engine:
        assert (await engine.run(wf, "x", session_id=sid)).status == "waiting"
        await engine.signal(sid, "go", payload)
    async with convoy.Engine(db, interceptors=observe(Tracing(["store"], live=True))
                             ) as engine:
        [res] = await engine.resume()
        return res, sorted(r.key for r in await engine.journal(sid))


def test_a_wait_begun_after_the_live_run_ended_is_not_put_under_it(db: str | Path) -> None:
    """Traced live until it parks in ``go``, then resumed by an engine that derives and
    parked in ``go2``: the open ``go2`` began after the live run ended, so it is under the
    derived run row, not under the live run (review: the newest kept run before it was
    taken, ended or not)."""
    @convoy.workflow(name="obs.derived.later")
    async def wf(ctx: convoy.Context, t: str) -> str:
        await ctx.wait_for("go")
        await ctx.wait_for("go2")
        return t

    async def run() -> None:
        async with convoy.Engine(db, interceptors=observe(Tracing(["store"], live=True))
                                 ) as engine:
            assert (await engine.run(wf, "x", session_id="p3")).status == "waiting"
            await engine.signal("p3", "go", "null")
        async with later_engine(db, workflows=[wf],
                                interceptors=observe(Tracing(["store"]))) as engine:
            [res] = await engine.resume()
            assert res.status == "waiting", res

    asyncio.run(run())
    spans = _spans(db, "p3")
    live = {s["span_id"] for s in spans if s["name"].startswith("invoke_workflow")
            and not s["attrs"].get("convoy.derived")}
    [wait] = [s for s in spans if s["name"] == "wait go2"]
    assert wait["parent_id"] not in live, (wait, spans)


def test_a_session_traced_live_then_resumed_by_an_engine_that_derives_has_every_step(
        db: str | Path) -> None:
    """As after an upgrade: a session parked under live tracing, resumed by an engine
    whose tracing derives spans when read, shows its kept spans and the steps of its
    resumed run, derived, in the same trace."""
    wf = _parked_between_runs("obs.derived.upgrade")

    async def run() -> None:
        async with convoy.Engine(db, interceptors=observe(Tracing(["store"], live=True))
                                 ) as engine:
            assert (await engine.run(wf, "x", session_id="u1")).status == "waiting"
            await engine.signal("u1", "go", '"now"')
        async with convoy.Engine(db, interceptors=observe(Tracing(["store"]))) as engine:
            [res] = await engine.resume()
            assert res.ok, res
            journal = await engine.journal("u1")
        assert len(journal) == 3

    asyncio.run(run())
    spans = _spans(db, "u1")
    assert len({s["trace_id"] for s in spans}) == 1
    keys = [s["attrs"]["convoy.step.key"] for s in spans
            if "convoy.step.key" in s["attrs"] and not s["name"].startswith("invoke_")]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 3, spans  # each step once
    [late] = [s for s in spans if s["attrs"].get("convoy.derived")
              and s["name"].startswith("chat")]
    [first_run] = [s for s in spans if s["name"].startswith("invoke_workflow")
                   and not s["attrs"].get("convoy.derived")]
    [later] = [s for s in spans if s["name"].startswith("invoke_workflow")
               and s["attrs"].get("convoy.derived")]
    ids = {s["span_id"]: s for s in spans}
    # the resumed run's steps, derived, in a run span of their own under the first run's
    # (as live tracing puts a resumed run's), which holds them
    assert ids[late["parent_id"]]["parent_id"] == later["span_id"]
    assert later["parent_id"] == first_run["span_id"]
    assert later["start"] <= late["start"] <= late["end"] <= later["end"]
    assert later["status"] == "ok" and first_run["attrs"]["convoy.session.status"] == "waiting"


def test_a_step_cut_short_in_a_live_run_and_taken_again_in_a_derived_one_shows_both(
        db: str | Path) -> None:
    """A model call killed under live tracing (its kept span interrupted) and made again
    by the run that resumed the session with derived tracing: the call that completed is
    in the trace too (the interrupted span does not stand for it)."""
    from .conftest import Crash, CrashOnce

    solo = convoy.Agent(name="solo", model=CrashOnce({"*": {"text": "done"}}))

    @convoy.workflow(name="obs.derived.cut")
    async def wf(ctx: convoy.Context, t: str) -> str:
        out: str = await ctx.run(solo, t)
        return out

    async def run() -> None:
        async with convoy.Engine(db, interceptors=observe(Tracing(["store"], live=True))
                                 ) as engine:
            with pytest.raises(Crash):
                await engine.run(wf, "x", session_id="cut")
        async with later_engine(db, workflows=[wf],
                                interceptors=observe(Tracing(["store"]))) as engine:
            [res] = await engine.resume()
            assert res.ok, res

    asyncio.run(run())
    chats = [s for s in _spans(db, "cut") if s["name"].startswith("chat")]
    assert sorted((s["attrs"]["convoy.step.key"], s["status"], bool(
        s["attrs"].get("convoy.derived"))) for s in chats) == [
        ("0/0", "ok", True), ("0/0", "unset", False)]


def test_a_session_run_derived_then_resumed_live_has_every_step(db: str | Path) -> None:
    """The other way round: a first run whose spans were not kept (derived, or no
    tracing), resumed by an engine that traces live: the first run's steps, derived,
    next to the kept ones, although the kept replayed agent span has the first step's
    key."""
    wf = _parked_between_runs("obs.derived.mixed")

    res, keys = asyncio.run(_derived_then_live(db, wf, "m1", '"now"'))
    assert res.ok, res
    spans = _spans(db, "m1")
    stepped = sorted(s["attrs"]["convoy.step.key"] for s in spans
                     if "convoy.step.key" in s["attrs"] and not s["name"].startswith("invoke_"))
    assert stepped == keys, (stepped, keys)  # each step once, the first run's too
    # in the trace the first run's were derived in, which ``convoy trace`` showed before
    # the resume (a new user's trial: the live run gave the session another trace id)
    assert {s["trace_id"] for s in spans} == {trace_id_of({}, "m1")}
    # The first run's span does not say it completed the session, which a later run did
    # (it parked; a run killed is the same: nothing kept says how it ended).
    [first] = [s for s in spans if s["name"].startswith("invoke_workflow") and
               s["attrs"].get("convoy.derived") and s["parent_id"]]
    assert first["status"] == "unset" and first["message"] is None, first
    assert "convoy.session.status" not in first["attrs"] and not first["events"], first


def test_per_attempt_hooks_are_skipped_where_nothing_retries() -> None:
    """A step is one attempt unless something in the chain can call it again: the
    per-attempt hooks of tracing and metrics are then not in the chains at all."""
    from convoy.observability import Metrics
    from convoy.resilience import Retry, RetryPolicy

    metrics, tracing, live = Metrics(), Tracing(["store"]), Tracing(["store"], live=True)
    retry = Retry(RetryPolicy(initial_delay=0, max_delay=0))
    for per_attempt in (metrics.attempts, tracing.attempts, live.attempts):
        for hook in ("model_call", "tool_call"):
            assert Chain(hook, [per_attempt], _end).call is _end, (per_attempt, hook)
            assert Chain(hook, [per_attempt, retry], _end).call is not _end, (per_attempt,
                                                                               hook)


def test_retry_attempts_join_a_derived_trace_under_their_steps_span(
        db: str | Path) -> None:
    """Tracing that derives spans when read keeps a span for each attempt of a retried
    step (each failed one, and the one that succeeded after them), under the step's
    derived span: the trace shows the retries. A step that succeeds at once keeps
    nothing."""
    from convoy.resilience import Retry, RetryPolicy

    class Flaky(convoy.SimModel):
        async def request(self, request: convoy.ModelRequest) -> convoy.ModelResponse:
            if request.attempt < 2 and request.agent == "solo":
                raise convoy.ModelError("upstream 503", retryable=True, status_code=503)
            return await super().request(request)

    sim = Flaky({"*": {"output": "ok"}})
    solo, calm = convoy.Agent(name="solo", model=sim), convoy.Agent(name="calm", model=sim)

    @convoy.workflow(name="obs.derived.retried")
    async def wf(ctx: convoy.Context, t: str) -> str:
        out: str = await ctx.run(calm, t)
        return out + await ctx.run(solo, t)

    retry = Retry(RetryPolicy(initial_delay=0, max_delay=0))

    async def run() -> None:
        async with convoy.Engine(db, interceptors=[*observe(Tracing(["store"])), retry]
                                 ) as engine:
            assert (await engine.run(wf, "x", session_id="r1")).ok

    asyncio.run(run())
    spans = _spans(db, "r1")
    attempts = sorted((s for s in spans if s["name"].startswith("attempt ")),
                      key=lambda s: s["attrs"]["convoy.attempt"])
    assert [a["attrs"]["convoy.attempt"] for a in attempts] == [1, 2, 3]
    assert [a["status"] for a in attempts] == ["error", "error", "ok"]
    assert [a["attrs"].get("error.type") for a in attempts] == \
        ["server_error", "server_error", None]
    chats = {s["attrs"]["gen_ai.agent.name"]: s for s in spans if s["name"].startswith("chat")}
    assert chats["solo"]["attrs"]["convoy.derived"]
    assert {a["parent_id"] for a in attempts} == {chats["solo"]["span_id"]}
    assert {a["trace_id"] for a in attempts} == {chats["solo"]["trace_id"]}
    assert all("convoy.derived" not in a["attrs"] for a in attempts)  # recorded as they ran
    assert all(a["attrs"]["convoy.step.key"] == chats["solo"]["attrs"]["convoy.step.key"]
               for a in attempts)
    text = " ".join(cli("trace", "r1", "--db", str(db)).stdout.split())
    assert "attempt 2" in text and "no retry attempts" not in text, text


def test_derived_spans_are_redacted_like_live_ones(db: str | Path) -> None:
    """What live tracing redacts (a session id, a workflow's, a step's or a signal's name,
    a state namespace, an error's message) is redacted in derived spans too, and a span's name
    is redacted as its attributes are: personal data in the journal does not reach a
    span, derived or live."""
    from .obs_flows import EMAIL, PHONE

    @convoy.tool
    def lookup(query: str) -> str:
        """Find the customer."""
        raise ValueError(f"no account for {EMAIL}")

    def scripted(req: convoy.ModelRequest) -> Any:
        return {"tool_calls": [{"name": "lookup", "arguments": {"query": "c-1"}}]}

    clerk = convoy.Agent(name="clerk", tools=[lookup], tool_failures=0,
                         model=convoy.SimModel(scripted))

    # (a workflow's name is the user's, and may hold a value: the review of 2026-12-03, D2)
    @convoy.workflow(name=f"obs-pii-for-{EMAIL}")
    async def wf(ctx: convoy.Context, t: str) -> str:
        await ctx.step(f"call {PHONE}", lambda: 1)
        await ctx.state(EMAIL).get("k")
        with contextlib.suppress(convoy.WaitTimeout):
            await ctx.wait_for(f"reply from {EMAIL}", timeout=0)
        return str(await ctx.run(clerk, t))

    async def run() -> None:
        async with convoy.Engine(db) as engine:
            res = await engine.run(wf, "x", session_id=f"s-{EMAIL}")
            assert res.status == "failed", res
        async with convoy.Engine(db, interceptors=observe(Tracing(["store"], live=True))
                                 ) as engine:
            res = await engine.run(wf, "x", session_id=f"l-{EMAIL}")
            assert res.status == "failed", res

    asyncio.run(run())
    for sid in (f"s-{EMAIL}", f"l-{EMAIL}"):
        res = cli("trace", sid, "--db", str(db), "--json")
        assert res.code == 0, res.stderr
        spans = json.loads(res.stdout)
        names = " ".join(s["name"] for s in spans)
        assert "step call" in names and "wait reply from" in names and "execute_tool" in names
        assert "state.get [EMAIL]" in names and "invoke_workflow [EMAIL]" in names, names
        assert any(s["status"] == "error" for s in spans)
        for value in (EMAIL, PHONE, "jane.doe", "7946 0958"):
            assert value not in res.stdout, (sid, value)
        assert "[EMAIL]" in res.stdout and "[PHONE]" in res.stdout


@pytest.mark.parametrize("finish", ["stop", "length", "end_turn", "stop: Jane {EMAIL}",
                                    "Jane-Doe", "x" * 100],
                         ids=["stop", "length", "end_turn", "email", "name", "long"])
def test_a_finish_reason_a_server_made_up_is_other_in_live_and_derived_spans(
        db: str | Path, finish: str) -> None:
    """``gen_ai.response.finish_reasons`` is what the model's server said, passed on by
    the adapters as it came: a value no provider documents (a server's, or a hostile
    one's, which may hold anything) is ``other`` in every span, the known ones are kept."""
    from .obs_flows import EMAIL

    finish = finish.format(EMAIL=EMAIL)
    said = finish if finish in ("stop", "length", "end_turn") else "other"
    model = convoy.SimModel(lambda req: convoy.ModelResponse(text="done",
                                                            finish_reason=finish))
    clerk = convoy.Agent(name="clerk", model=model)

    @convoy.workflow(name="obs.finish")
    async def wf(ctx: convoy.Context, t: str) -> str:
        return str(await ctx.run(clerk, t))

    _derived_and_live(db, wf, "d", "l")
    for sid in ("d", "l"):
        [chat] = [s for s in _spans(db, sid) if s["name"].startswith("chat")]
        assert chat["attrs"]["gen_ai.response.finish_reasons"] == [said], (sid, chat)


def test_derived_spans_without_the_pii_extra_redact_what_needs_no_package(
        db: str | Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from .obs_flows import EMAIL

    monkeypatch.setitem(sys.modules, "phonenumbers", None)  # (not installed)
    _run(db, f"n-{EMAIL}")
    res = cli("trace", f"n-{EMAIL}", "--db", str(db), "--json")
    assert res.code == 0 and EMAIL not in res.stdout and "[EMAIL]" in res.stdout
    assert "not redacted: pip install 'convoy[pii]'" in res.stderr


@pytest.mark.parametrize("headers", [
    {}, {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    {"convoy.trace": "00-1af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-00"},
    {"traceparent": "junk"}, {"convoy.trace": ""}])
def test_an_audit_entrys_trace_id_is_the_derived_traces(headers: dict[str, str]) -> None:
    from convoy._trace_context import trace_id_of, trace_ids

    assert trace_id_of(headers, "s-1") == trace_ids(headers, "s-1")[0]
    assert len(trace_id_of(headers, "s-1")) == 32


#: What a derived span has as its live twin has it (with no failover, the model that
#: answered is the one requested).
_SAME = ("gen_ai.operation.name", "gen_ai.agent.name", "gen_ai.provider.name",
         "gen_ai.request.model", "gen_ai.response.finish_reasons", "convoy.agent.depth",
         "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "error.type")


def _shape(spans: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Each span as ``(name, its parent's name, status, step key, the attributes in
    _SAME, its events' names and exception types)``, sorted."""
    names = {s["span_id"]: s["name"] for s in spans}
    return sorted((names[s["span_id"]], names.get(s["parent_id"] or "", "-"), s["status"],
                   str(s["attrs"].get("convoy.step.key", "")),
                   *(repr(s["attrs"].get(a)) for a in _SAME),
                   repr([(e["name"], e["attrs"].get("exception.type")) for e in s["events"]]))
                  for s in spans)


def test_derived_agent_spans_are_the_agent_runs_live_tracing_records(db: str | Path) -> None:
    """Agents run concurrently (``ctx.gather``), the same agent run twice in a row, a
    tool's failure the agent recovers from: the derived trace has the agent spans, the
    parents and the statuses the live trace has."""
    @convoy.tool
    def lookup(query: str) -> str:
        """Look it up."""
        if query == "bad":
            raise ValueError("no such thing")
        return "found"

    def scripted(req: convoy.ModelRequest) -> Any:
        tools = [m for m in req.messages if m.role == "tool"]
        if len(tools) < 2:
            return {"tool_calls": [{"name": "lookup", "arguments": {
                "query": "bad" if req.agent == "b" and not tools else "x"}}]}
        return {"text": "done"}

    def scripted_lead(req: convoy.ModelRequest) -> Any:
        if req.agent == "helper":
            return {"text": "helped"}
        if not [m for m in req.messages if m.role == "tool"]:
            return {"tool_calls": [{"name": "helper", "arguments": {"input": "x"}}]}
        return {"text": "led"}

    sim = convoy.SimModel(scripted)
    a = convoy.Agent(name="a", tools=[lookup], model=sim, tool_failures=3)
    b = convoy.Agent(name="b", tools=[lookup], model=sim, tool_failures=3)
    helper = convoy.Agent(name="helper", model=convoy.SimModel(scripted_lead))
    lead = convoy.Agent(name="lead", workers=[helper], model=convoy.SimModel(scripted_lead))

    @convoy.workflow(name="obs.derived.runs")
    async def wf(ctx: convoy.Context, t: str) -> str:
        both = await ctx.gather(lambda c: c.run(a, t), lambda c: c.run(b, t))
        again = [await ctx.run(a, t), await ctx.run(a, t)]
        return str(both + again) + str(await ctx.run(lead, t))

    _derived_and_live(db, wf, "g-derived", "g-live")
    derived, live = _spans(db, "g-derived"), _spans(db, "g-live")
    assert all(s["attrs"].get("convoy.derived") for s in derived)
    assert not any(s["attrs"].get("convoy.derived") for s in live)
    assert [s["name"] for s in derived].count("invoke_agent a") == 3
    assert [s["name"] for s in derived].count("invoke_agent b") == 1
    ids = {s["span_id"]: s for s in derived}
    [worker] = [s for s in derived if s["name"] == "invoke_agent helper"]
    assert ids[worker["parent_id"]]["name"] == "invoke_agent lead"  # under its caller
    assert _shape(derived) == _shape(live)


@pytest.mark.parametrize(("table", "column", "value"), [
    ("journal", "began", 1e300), ("journal", "at", 1e300), ("journal", "began", -1e300),
    ("journal", "began", 9e15), ("sessions", "created", 1e300)])
def test_a_time_out_of_range_in_the_store_is_one_line(tmp_path: Path, table: str,
                                                      column: str, value: float) -> None:
    import sqlite3

    db = tmp_path / "convoy.db"
    _run(db, "o1")
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE {table} SET {column}=?", (value,))
    res = cli("trace", "o1", "--db", str(db))
    assert res.code != 0 and "out of range" in res.stderr, (res.stdout, res.stderr)
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


@pytest.mark.parametrize(("signal", "family"), [
    ("convoy.state:convoy.inbox/s-1:6", "convoy.state:convoy.inbox"),
    ("convoy.state:a%2Fb/c", "convoy.state:a/b"), ("convoy.state:a%25b/c", "convoy.state:a%b"),
    ("convoy.state:old/style/key", "convoy.state:old"), ("go", "go"), ("a/b", "a/b")])
def test_a_waits_span_is_named_by_its_watchs_namespace_decoded(signal: str,
                                                                family: str) -> None:
    from convoy.observability._unhooked import wait_family

    assert wait_family(signal) == family


@pytest.mark.parametrize(("tracing", "resumed"), [
    ("none", True), ("none", False), ("derived", True), ("live", True),
    ("live, decided untraced", True)])
def test_a_decision_made_anywhere_has_one_human_decision_span(db: str | Path, tracing: str,
                                                              resumed: bool) -> None:
    """A decision made on the command line (no tracing) is derived from the task's stored
    versions (whether the session resumed and read it back or not); one made through an
    engine that traces (derived or live) is recorded as it is made, with the same span id:
    the trace has it once either way, under the session's first span."""
    @convoy.tool(requires_approval=convoy.Approval())
    def refund(amount: float) -> str:
        """Refund the customer."""
        return "refunded"

    def scripted(req: convoy.ModelRequest) -> Any:
        if not [m for m in req.messages if m.role == "tool"]:
            return {"tool_calls": [{"name": "refund", "arguments": {"amount": 5}}]}
        return {"text": "done"}

    clerk = convoy.Agent(name="clerk", tools=[refund], model=convoy.SimModel(scripted))

    @convoy.workflow(name="obs.derived.decision")
    async def wf(ctx: convoy.Context, t: str) -> str:
        return str(await ctx.run(clerk, t))

    chain = {"none": list, "derived": lambda: observe(Tracing(["store"]))}.get(
        tracing, lambda: observe(Tracing(["store"], live=True)))

    async def run() -> float:
        async with convoy.Engine(db, interceptors=chain()) as engine:
            assert (await engine.run(wf, "x", session_id="h-1")).status == "waiting"
            [task] = await engine.inbox.tasks()
            if tracing == "live, decided untraced":  # (an inbox UI's engine, say)
                async with convoy.Engine(db) as plain:
                    decided = await plain.inbox.approve(task.id, by="ann")
            else:
                decided = await engine.inbox.approve(task.id, by="ann")
            if resumed:
                [res] = await engine.resume()
                assert res.ok
            assert decided.decision is not None
            return decided.decision.at

    at = asyncio.run(run())
    spans = _spans(db, "h-1")
    [decision] = [s for s in spans if s["name"] == "human_decision"]
    root = next(s for s in spans if s["name"] == "invoke_workflow obs.derived.decision")
    assert decision["parent_id"] == root["span_id"]
    assert decision["attrs"]["convoy.task.kind"] == "approval"
    assert decision["attrs"]["convoy.decision.action"] == "approve"
    assert decision["attrs"]["convoy.task.id"] == "h-1:0/2"
    assert decision["start"] == round(at * 1e9) or tracing in ("derived", "live")
    derived = tracing in ("none", "live, decided untraced")
    assert bool(decision["attrs"].get("convoy.derived")) is derived
    # (and no derived run span made up to hold it, in a session traced live)
    assert [s["name"] for s in spans if s["name"].startswith("invoke_workflow")] == \
        ["invoke_workflow obs.derived.decision"] * (2 if "live" in tracing else 1)


def test_a_task_its_deadline_decides_has_no_human_decision_span(db: str | Path) -> None:
    """No person decided: its wait and the session's write of the default show it."""
    @convoy.workflow(name="obs.derived.deadline")
    async def wf(ctx: convoy.Context, t: str) -> str:
        answer = await ctx.ask_human("Go?", bool, deadline=0.0, on_deadline="default",
                                     default=False)
        return str(answer.value)

    async def run() -> None:
        async with convoy.Engine(db) as engine:
            res = await engine.run(wf, "x", session_id="dl-1")
            assert res.ok and res.output == "False", res

    asyncio.run(run())
    spans = _spans(db, "dl-1")
    assert any(s["name"].startswith("state.set") for s in spans)
    assert not [s for s in spans if s["name"] == "human_decision"]


@pytest.mark.parametrize("tracing", ["none", "live"])
def test_a_decision_on_an_escalated_session_has_one_human_decision_span(
        db: str | Path, tracing: str) -> None:
    """The inbox keeps the task that answers an escalated session (not journaled): its
    decision is derived from it, at the step that escalated, and shows once when live
    tracing recorded it too."""
    from .test_audit_decisions import ATTEMPTS, escalate

    ATTEMPTS.clear()
    chain = list if tracing == "none" else (lambda: observe(Tracing(["store"], live=True)))

    async def run() -> None:
        async with convoy.Engine(db, interceptors=chain()) as engine:
            assert (await engine.run(escalate, 1, session_id="e-1")).status == "escalated"
            [task] = await engine.inbox.tasks()
            assert task.id == "e-1:escalated"
            await engine.inbox.approve(task.id, by="ann")
            [res] = await engine.resume()
            assert res.ok, res

    asyncio.run(run())
    spans = _spans(db, "e-1")
    [decision] = [s for s in spans if s["name"] == "human_decision"]
    assert decision["attrs"]["convoy.task.id"] == "e-1:escalated"
    assert decision["attrs"]["convoy.decision.action"] == "approve"
    assert decision["attrs"]["convoy.step.key"] == "0"  # (the ctx.step that escalated)
    assert bool(decision["attrs"].get("convoy.derived")) is (tracing == "none")


def test_derived_state_spans_name_the_namespace_and_key_as_live_ones_do(
        db: str | Path) -> None:
    """A state operation's derived span has the namespace and key its live twin has; a
    namespace or key with a ``/`` (its journal target ``OP NAMESPACE/KEY`` does not say
    where the namespace ends) has neither, rather than a wrong one."""
    @convoy.workflow(name="obs.derived.state")
    async def wf(ctx: convoy.Context, t: str) -> str:
        await ctx.state("customer").update("c-1", lambda n: n + 1, default=0)
        await ctx.state("customer").get("c-1")
        await ctx.state("orders:eu").update("o/7", lambda n: n + 1, default=0)
        await ctx.state("a/b").update("k", lambda n: n + 1, default=0)
        return t

    async def run() -> None:
        async with convoy.Engine(db) as engine:
            assert (await engine.run(wf, "x", session_id="st-derived")).ok
        async with convoy.Engine(db, interceptors=observe(Tracing(["store"], live=True))
                                 ) as engine:
            assert (await engine.run(wf, "x", session_id="st-live")).ok

    asyncio.run(run())

    def state(spans: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((s["attrs"]["convoy.step.key"], s["attrs"].get("convoy.state.op"),
                       s["attrs"].get("convoy.state.namespace"),
                       s["attrs"].get("convoy.state.key"))
                      for s in spans if s["name"].startswith("state."))

    derived, live = state(_spans(db, "st-derived")), state(_spans(db, "st-live"))
    assert len(derived) == 7 and len(live) == 7
    for d, lv in zip(derived, live, strict=True):
        if "/" in lv[2] or "/" in (lv[3] or ""):  # ("a/b" and "k", "orders:eu" and "o/7")
            assert d == (*lv[:2], None, None)
        else:
            assert d == lv
