"""Journal, replay, resume and the non-determinism guard (in one process; crash tests with
SIGKILL are in test_crash.py). Crashes are simulated by raising ``Crash`` (a
``BaseException`` nothing catches) inside a step: the session stays running and owned by
the "dead" engine, and a second engine whose clock is past the lease takes it over. No test
edits the store with SQL."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy import ModelRequest

from .conftest import Classification, Crash, later_engine

OK = {"label": "billing", "confidence": 0.9}


def make_flow(agents: list[convoy.Agent[Any, Any]], name: str = "flow",
              version: str = "1") -> convoy.Workflow[Any, Any]:
    @convoy.workflow(name=name, version=version)
    async def wf(ctx: convoy.Context, text: str) -> Classification:
        out: Classification = await convoy.pipeline(ctx, agents, text)
        return out

    return wf


class CrashOnce(convoy.SimModel):
    """A simulator that crashes the process the first time ``agent`` is called."""

    def __init__(self, agent: str, script: Any = None) -> None:
        super().__init__(script if script is not None else {"*": {"output": OK}})
        self.crash_agent = agent
        self.crashed = False

    async def request(self, request: ModelRequest) -> convoy.ModelResponse:
        if request.agent == self.crash_agent and not self.crashed:
            self.crashed = True
            raise Crash
        return await super().request(request)


async def crash(eng: convoy.Engine, wf: convoy.Workflow[Any, Any], value: Any,
                **kw: Any) -> str:
    """Run until the simulated crash; the id of the session left behind."""
    sid = kw.pop("session_id", "s1")
    with pytest.raises(Crash):
        await eng.run(wf, value, session_id=sid, **kw)
    return sid


async def test_every_step_is_journaled_under_its_tree_key(engine_factory: Any) -> None:
    sim = convoy.SimModel({"*": {"output": OK}})
    agents = [convoy.Agent(name=f"a{i}", output_type=Classification, model=sim) for i in range(3)]
    eng = engine_factory()
    res = await eng.run(make_flow(agents), "t")
    rows = await eng.store.journal(res.id)
    assert [(r.key, r.kind, r.target, r.status) for r in rows] == [
        ("0/0", "model", "a0", "completed"), ("1/0", "model", "a1", "completed"),
        ("2/0", "model", "a2", "completed")]
    assert all(r.input_tokens > 0 and (r.agent or r.target) == r.target and r.input_hash
               for r in rows)
    row = await eng.store.get_session(res.id)
    assert row is not None and row.status == "completed" and row.steps == 3
    assert row.input_tokens == res.usage.input_tokens > 0
    assert row.owner is None  # a finished session is owned by nobody


async def test_replay_calls_nothing_and_reaches_the_same_result(engine_factory: Any) -> None:
    sim = convoy.SimModel({"*": {"output": OK}})
    agents = [convoy.Agent(name=f"a{i}", output_type=Classification, model=sim) for i in range(2)]
    eng = engine_factory()
    res = await eng.run(make_flow(agents), "t")
    calls = sim.calls
    rr = await eng.replay(res.id)
    assert rr.matches and rr.status == "completed" and rr.steps == 2
    assert sim.calls == calls


async def test_resume_replays_completed_steps_without_calling_the_model(
        engine_factory: Any, db: Path) -> None:
    sim = CrashOnce("a2")
    agents = [convoy.Agent(name=f"a{i}", output_type=Classification, model=sim) for i in range(3)]
    wf = make_flow(agents)
    await crash(engine_factory(), wf, "t")
    assert sim.calls == 2
    async with later_engine(db, workflows=[wf]) as eng2:
        [again] = await eng2.resume()
    assert again.ok and again.output == Classification(**OK)
    assert sim.calls == 3  # only the missing step ran
    assert again.steps == 3 and again.usage.input_tokens > 0  # replayed steps count


async def test_changed_workflow_code_fails_with_the_step_named(engine_factory: Any,
                                                               db: Path) -> None:
    sim = CrashOnce("x")
    a = convoy.Agent(name="a", output_type=Classification, model=sim)
    b = convoy.Agent(name="b", output_type=Classification, model=sim)
    x = convoy.Agent(name="x", output_type=Classification, model=sim)
    await crash(engine_factory(), make_flow([a, x]), "t")
    changed = make_flow([b, x])  # same name and version, different first step
    async with later_engine(db, workflows=[changed]) as eng2:
        [again] = await eng2.resume()
    assert again.status == "failed"
    assert again.error is not None and again.error["type"] == "NonDeterminismError"
    assert again.error["key"] == "0/0"
    assert "'a'" in again.error["message"] and "'b'" in again.error["message"]


async def test_a_replay_that_diverges_because_an_agent_changed_says_so(
        engine_factory: Any) -> None:
    """Replay's question, "why does my changed code diverge?": the journal keeps each step's
    agent configuration id, so the answer names the change and both ids."""
    sim = convoy.SimModel({"*": {"output": OK}})
    before = convoy.Agent(name="a", instructions="Classify.", output_type=Classification,
                          model=sim)
    after = convoy.Agent(name="a", instructions="Classify briefly.",
                         output_type=Classification, model=sim)
    eng = engine_factory()
    res = await eng.run(make_flow([before]), "t", session_id="s1")
    assert res.ok
    eng2 = engine_factory(workflows=[make_flow([after])])
    rr = await eng2.replay("s1")
    assert not rr.matches and rr.error is not None
    assert rr.error["type"] == "NonDeterminismError"
    msg = rr.error["message"]
    assert f"its agent's configuration changed (recorded {before.config_id}, now " \
        f"{after.config_id}:" in msg, msg
    assert "bump its version and start new sessions" in msg


async def test_a_resume_that_diverges_keeps_the_sessions_totals(engine_factory: Any) -> None:
    """A session parked after a paid model step, resumed by code whose agent changed: the
    replay stops at that step (non-determinism) and the session fails. What it spent and
    the steps it took stay in its totals (a new user's trial: they were written as 0, the
    replay having stopped before it counted them), as a cancel's or a plain failure's do."""
    sim = convoy.SimModel({"*": {"output": OK}})

    def flow(instructions: str) -> convoy.Workflow[Any, Any]:
        agent = convoy.Agent(name="a", instructions=instructions,
                             output_type=Classification, model=sim)

        @convoy.workflow(name="dur.diverges")
        async def wf(ctx: convoy.Context, text: str) -> str:
            first = await ctx.run(agent, text)
            await ctx.wait_for("go")
            return str(first) + str(await ctx.run(agent, text))

        return wf

    eng = engine_factory()
    parked = await eng.run(flow("Classify."), "t", session_id="d1")
    assert parked.status == "waiting" and parked.cost > 0, parked
    before = (await eng.session("d1"))
    await eng.signal("d1", "go", "null")
    eng2 = engine_factory(workflows=[flow("Classify briefly.")])
    [res] = await eng2.resume()
    assert res.status == "failed" and res.error is not None and \
        res.error["type"] == "NonDeterminismError", res
    after = await eng2.session("d1")
    assert (after.steps, after.input_tokens, after.output_tokens, after.cost) == (
        before.steps, before.input_tokens, before.output_tokens, before.cost), (before, after)
    assert (res.steps, res.usage.input_tokens, res.cost) == (
        before.steps, before.input_tokens, before.cost), res


async def test_a_new_workflow_version_leaves_started_sessions_unfinished(
        engine_factory: Any, db: Path) -> None:
    """Hole 6: one policy everywhere. A session of another version that has journaled steps
    stays unfinished (reported) for an engine with its version; one that journaled nothing
    simply starts on the new version."""
    sim = CrashOnce("x")
    a = convoy.Agent(name="a", output_type=Classification, model=sim)
    x = convoy.Agent(name="x", output_type=Classification, model=sim)
    await crash(engine_factory(), make_flow([a, x]), "t")
    async with later_engine(db, workflows=[make_flow([a, x], version="2")]) as eng2:
        [again] = await eng2.resume()
        assert again.status == "pending" and again.error is not None
        assert again.error["type"] == "VersionMismatch"
        assert "version '1'" in again.error["message"]
        row = await eng2.store.get_session("s1")
        assert row is not None and row.status == "running" and row.version == "1"
        # (a new user's trial: a worker serving until idle waited for it for good, a
        # session no engine of version 2 runs: it is idle with it left unfinished)
        await asyncio.wait_for(eng2.serve(until_idle=True, poll_interval=0.01), 20)
        left = await eng2.store.get_session("s1")
        assert left is not None and left.status in ("running", "pending"), left
    async with later_engine(db, workflows=[make_flow([a, x], version="1")]) as eng3:
        [done] = await eng3.resume()  # the old code finishes it
    assert done.ok


async def test_a_session_that_journaled_nothing_starts_on_the_new_version(
        engine_factory: Any, db: Path) -> None:
    a = convoy.Agent(name="a", output_type=Classification,
                     model=convoy.SimModel({"*": {"output": OK}}))
    eng = engine_factory()
    await eng.open()
    await eng.store.create_sessions([convoy.stores.NewSession(
        id="fresh", workflow="flow", version="1", tenant="default", input='"t"')])
    [res] = await eng.run_many(make_flow([a], version="2"), ["t"], ids=["fresh"])
    assert res.ok
    row = await eng.store.get_session("fresh")
    assert row is not None and row.version == "2"


def _write_tool(log: list[str], *, crash_after: bool = False,
                idempotent: bool = False) -> convoy.Tool:
    @convoy.tool(writes=True, idempotent=idempotent)
    def charge(ctx: convoy.ToolContext, amount: int) -> str:
        """Charge a card."""
        log.append(ctx.idempotency_key)
        if crash_after and len(log) == 1:
            raise Crash  # the effect happened; its outcome never reached the journal
        return f"charged {amount}"

    return charge


def _tool_flow(tool: convoy.Tool) -> convoy.Workflow[Any, Any]:
    sim = convoy.SimModel({"a": [{"tool_calls": [{"name": tool.name,
                                                   "arguments": {"amount": 5}}]},
                                 {"output": OK}]})
    a = convoy.Agent(name="a", output_type=Classification, tools=[tool], model=sim)
    return make_flow([a])


async def test_write_tool_started_but_unfinished_is_escalated_not_repeated(
        engine_factory: Any, db: Path) -> None:
    log: list[str] = []
    wf = _tool_flow(_write_tool(log, crash_after=True))
    await crash(engine_factory(), wf, "t")
    async with later_engine(db, workflows=[wf]) as eng2:
        [again] = await eng2.resume()
        assert again.status == "escalated"
        assert again.error is not None and again.error["type"] == "UnknownOutcomeError"
        assert again.error["key"] == "0/1"
        assert len(log) == 1
        # Hole 5: replay agrees with the run (the unknown outcome is journaled).
        rr = await eng2.replay("s1")
        assert rr.matches and rr.status == "escalated"


async def test_an_escalated_session_can_be_answered(engine_factory: Any, db: Path) -> None:
    """Escalation is a wait: a person checks the write and answers; the session goes on."""
    log: list[str] = []
    wf = _tool_flow(_write_tool(log, crash_after=True))
    await crash(engine_factory(), wf, "t")
    async with later_engine(db, workflows=[wf]) as eng2:
        [esc] = await eng2.resume()
        assert esc.status == "escalated"
        await eng2.signal("s1", convoy.ESCALATION,
                          {"action": "complete", "result": "charged 5 (checked by Ann)"})
        [done] = await eng2.resume()
        assert done.ok and len(log) == 1  # the write was never repeated
        tool_rec = (await eng2.store.load_journal("s1"))["0/1"]
        assert tool_rec.status == "completed" and "Ann" in (tool_rec.result or "")


async def test_an_escalation_answered_retry_runs_the_step_again(engine_factory: Any,
                                                                db: Path) -> None:
    log: list[str] = []
    wf = _tool_flow(_write_tool(log, crash_after=True))
    await crash(engine_factory(), wf, "t")
    async with later_engine(db, workflows=[wf]) as eng2:
        await eng2.resume()
        await eng2.signal("s1", convoy.ESCALATION, {"action": "retry"})
        [done] = await eng2.resume()
        assert done.ok and log == ["s1:0/1", "s1:0/1"]  # same idempotency key
        with pytest.raises(convoy.UserError, match="not escalated"):
            await eng2.signal("s1", convoy.ESCALATION, {"action": "retry"})


async def test_an_escalation_answered_fail_ends_the_session(engine_factory: Any,
                                                            db: Path) -> None:
    wf = _tool_flow(_write_tool([], crash_after=True))
    await crash(engine_factory(), wf, "t")
    async with later_engine(db, workflows=[wf]) as eng2:
        await eng2.resume()
        with pytest.raises(convoy.UserError, match="action"):
            await eng2.signal("s1", convoy.ESCALATION, {"action": "maybe"})
        await eng2.signal("s1", convoy.ESCALATION, {"action": "fail", "reason": "refunded"})
        row = await eng2.store.get_session("s1")
        assert row is not None and row.status == "failed"
        assert row.error_record is not None and row.error_record["message"] == "refunded"


@pytest.mark.parametrize(("answer", "message"), [
    ({"action": "complete"},
     "{'action': 'complete'} needs a 'result': the value the step that escalated returns"),
    ({"action": "complete", "reslt": "manual-1"},
     "an answer to an escalation has no key 'reslt'"),
    ({"action": "retry", "result": 1}, "'result' goes with 'complete', not 'retry'"),
    ({"action": "fail", "reason": "x", "comment": "y"},
     "an answer to an escalation has no key 'comment'"),
])
async def test_an_escalation_answer_that_is_incomplete_or_misspelt_is_refused(
        engine_factory: Any, db: Path, answer: dict[str, Any], message: str) -> None:
    """Refused when it is given, in one line, with the session still escalated: not
    accepted and failed later with an invalid output."""
    log: list[str] = []
    wf = _tool_flow(_write_tool(log, crash_after=True))
    await crash(engine_factory(), wf, "t")
    async with later_engine(db, workflows=[wf]) as eng2:
        await eng2.resume()
        with pytest.raises(convoy.UserError) as caught:
            await eng2.signal("s1", convoy.ESCALATION, answer)
        assert message in str(caught.value) and "\n" not in str(caught.value)
        row = await eng2.store.get_session("s1")
        assert row is not None and row.status == "escalated"
        [open_task] = await eng2.inbox.tasks()
        assert open_task.status == "open"
        # what it should have been is still accepted
        await eng2.signal("s1", convoy.ESCALATION,
                          {"action": "complete", "result": "charged 5", "by": "ann"})
        [done] = await eng2.resume()
        assert done.ok and len(log) == 1


async def test_idempotent_write_tool_is_retried_with_the_same_key(engine_factory: Any,
                                                                  db: Path) -> None:
    log: list[str] = []
    wf = _tool_flow(_write_tool(log, crash_after=True, idempotent=True))
    await crash(engine_factory(), wf, "t")
    async with later_engine(db, workflows=[wf]) as eng2:
        [again] = await eng2.resume()
    assert again.ok
    assert log == ["s1:0/1", "s1:0/1"]  # same key both times


async def test_effects_clock_random_uuid_replay_their_values(engine_factory: Any) -> None:
    seen: list[tuple[float, float, str]] = []

    @convoy.workflow(name="effects")
    async def wf(ctx: convoy.Context, x: int) -> str:
        vals = (await ctx.now(), await ctx.random(), await ctx.uuid())
        seen.append(vals)
        return f"{vals[0]}|{vals[1]}|{vals[2]}"

    eng = engine_factory()
    res = await eng.run(wf, 1)
    rr = await eng.replay(res.id)
    assert rr.matches and seen[0] == seen[1]


async def test_a_store_from_a_newer_convoy_is_refused(db: Path) -> None:
    import sqlite3

    async with convoy.Engine(db):
        pass
    # Simulates a newer Convoy having written the file (the one place a test writes SQL).
    with sqlite3.connect(db) as c:
        c.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(convoy.JournalError, match="schema version 99"):
        async with convoy.Engine(db):
            pass


async def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.db"
    bad.write_text("this is not sqlite " * 100)
    with pytest.raises(convoy.StoreError, match="not a usable Convoy store"):
        async with convoy.Engine(bad):
            pass


async def test_group_commit_batches_across_sessions(engine_factory: Any) -> None:
    sim = convoy.SimModel({"*": {"output": OK}}, latency=0.001)
    agents = [convoy.Agent(name=f"a{i}", output_type=Classification, model=sim) for i in range(5)]
    eng = engine_factory()
    wf = make_flow(agents)
    results = await eng.run_many(wf, [f"t{i}" for i in range(200)])
    assert all(r.ok for r in results)
    assert eng.store.records >= 200 * 6
    assert eng.store.commits < eng.store.records / 20  # batched, not one commit per record


async def test_an_awaited_write_commits_at_once_with_the_unawaited_ones_before_it(
        tmp_path: Path) -> None:
    # An unawaited write (an audit entry, a span) queued just before a step's journal
    # record rides that record's commit, in the caller: no commit, nor loop turn, of its
    # own.
    async with convoy.Engine(tmp_path / "s.db") as eng:
        store = eng.store
        assert isinstance(store, convoy.stores.SQLiteStore)
        before = store.commits
        queued = store.audit_append("acme", [b"entry"], wait=False)
        awaited = store.kv_put("ns", "k", "v")
        assert queued.done() and awaited.done()
        assert store.commits == before + 1
        assert await store.audit_size("acme") == 1


async def test_a_session_hook_that_sets_a_header_costs_no_loop_turn(tmp_path: Path) -> None:
    # A lone session commits each step in the caller, start to end; a session hook that
    # sets a header (as tracing does, for its trace id) must not change that.
    class Header(convoy.Interceptor):
        async def session_run(self, input: convoy.SessionInput, next: Any) -> Any:
            input.headers["trace"] = "x"
            return await next(input)

    sim = convoy.SimModel({"*": {"output": OK}})
    wf = make_flow([convoy.Agent(name=f"a{i}", output_type=Classification, model=sim)
                    for i in range(3)])
    loop = asyncio.get_running_loop()
    turns = 0

    def counted() -> None:  # the loop's iterations, counted
        nonlocal turns
        turns += 1
        type(loop)._run_once(loop)  # type: ignore[attr-defined]

    for chain in ([], [Header()]):
        async with convoy.Engine(tmp_path / f"h{len(chain)}.db", interceptors=chain) as eng:
            await eng.run(wf, "warm")
            turns = 0
            loop._run_once = counted  # type: ignore[attr-defined]
            try:
                res = await eng.run(wf, "t")
            finally:
                del loop._run_once  # type: ignore[attr-defined]
            assert res.ok and turns == 0, (chain, turns)
            assert (await eng.store.get_session(res.id)).header_map == (  # type: ignore[union-attr]
                {"trace": "x"} if chain else {})


async def test_power_durability_commits_on_a_thread(tmp_path: Path) -> None:
    sim = convoy.SimModel({"*": {"output": OK}})
    a = convoy.Agent(name="a", output_type=Classification, model=sim)
    async with convoy.Engine(tmp_path / "p.db", durability="power") as eng:
        results = await eng.run_many(make_flow([a]), ["x", "y", "z"])
        assert [r.status for r in results] == ["completed"] * 3
        assert sum([len(await eng.store.journal(r.id)) for r in results]) == 3


async def test_model_errors_are_journaled_and_replay_as_the_same_error(
        engine_factory: Any) -> None:
    def script(req: ModelRequest) -> Any:
        raise convoy.ModelError("HTTP 401 bad key", status_code=401)

    a = convoy.Agent(name="a", output_type=Classification, model=convoy.SimModel(script))
    eng = engine_factory()
    res = await eng.run(make_flow([a]), "t")
    assert res.status == "failed" and res.error is not None
    rr = await eng.replay(res.id)
    assert rr.matches and rr.status == "failed"


async def test_run_many_with_known_ids_returns_stored_results(engine_factory: Any) -> None:
    sim = convoy.SimModel({"*": {"output": OK}})
    a = convoy.Agent(name="a", output_type=Classification, model=sim)
    wf = make_flow([a])
    eng = engine_factory()
    first = await eng.run_many(wf, ["x", "y"], ids=["s1", "s2"])
    again = await eng.run_many(wf, ["x", "y", "z"], ids=["s1", "s2", "s3"])
    assert [r.id for r in again] == ["s1", "s2", "s3"]
    assert [r.output for r in again[:2]] == [r.output for r in first]
    assert sim.calls == 3


async def test_run_with_a_known_session_id_never_runs_it_twice(engine_factory: Any) -> None:
    sim = convoy.SimModel({"*": {"output": OK}})
    a = convoy.Agent(name="a", output_type=Classification, model=sim)
    wf = make_flow([a])
    eng = engine_factory()
    first = await eng.run(wf, "x", session_id="known")
    again = await eng.run(wf, "x", session_id="known")
    assert again.ok and again.output == first.output and sim.calls == 1
    other = make_flow([a], name="other-flow")
    with pytest.raises(convoy.UserError, match="belongs to workflow 'flow'"):
        await eng.run(other, "x", session_id="known")


def test_run_sync_works_twice_on_one_engine(db: Path) -> None:
    """Each run_sync has its own event loop; the engine opens and closes with it."""
    sim = convoy.SimModel({"*": {"output": OK}})
    a = convoy.Agent(name="a", output_type=Classification, model=sim)
    eng = convoy.Engine(db)
    first = eng.run_sync(make_flow([a]), "x")
    second = eng.run_sync(make_flow([a]), "y")
    assert first.ok and second.ok and first.id != second.id
    assert second.raise_for_status() is second


async def test_raise_for_status_raises_a_typed_error(engine_factory: Any) -> None:
    def script(req: ModelRequest) -> Any:
        raise convoy.ModelError("HTTP 401 bad key", status_code=401)

    a = convoy.Agent(name="a", output_type=Classification, model=convoy.SimModel(script))
    res = await engine_factory().run(make_flow([a]), "t")
    with pytest.raises(convoy.SessionFailed, match="401") as info:
        res.raise_for_status()
    assert info.value.status == "failed" and info.value.session_id == res.id
    assert isinstance(info.value, convoy.ConvoyError)


async def test_the_wal_stays_bounded_under_a_steady_stream_of_commits(tmp_path: Path) -> None:
    """Checkpoints run on a thread; under commits that never pause, a PASSIVE checkpoint
    never catches the WAL's tail, so without a RESTART the WAL would grow with every byte
    written (tens of MB here)."""
    from convoy.stores import NewSession, SQLiteStore, StepRecord

    store = SQLiteStore(tmp_path / "w.db", wal_limit_bytes=1024 * 1024)
    await store.open()
    store.create_session(NewSession(id="s", workflow="w", version="1", tenant="t", input="1"),
                         owner="me", lease_s=60)
    wal = tmp_path / "w.db-wal"
    biggest, commits = 0, 0
    try:
        payload = "x" * 3000
        while commits < 12_000:
            await store.append("s", "me", StepRecord(key=str(commits), kind="model",
                                                     target="a", status="completed",
                                                     result=payload))
            commits += 1
            if commits % 200 == 0:
                biggest = max(biggest, wal.stat().st_size)
    finally:
        await store.aclose()
    written = commits * 2 * 4096  # each commit appends at least two pages to the WAL
    assert written > 40 * 1024 * 1024, "too few commits to tell"
    assert biggest < written / 3, (biggest, written)


async def test_a_write_commits_in_the_caller_unless_another_write_could_join_it(
        tmp_path: Path) -> None:
    """Group commit: the first write of a loop iteration commits at once; a later one of
    the same iteration commits at once too when nothing else is ready to run (nobody could
    join its batch), else it waits for the next iteration's batch."""
    import asyncio

    from convoy.stores import NewSession, SQLiteStore, StepRecord

    store = SQLiteStore(tmp_path / "g.db")
    await store.open()
    try:
        await store.create_session(NewSession(id="s", workflow="w", version="1", tenant="t",
                                              input="1"), owner="me", lease_s=60)
        await asyncio.sleep(0)  # a fresh loop iteration

        def record(key: str) -> StepRecord:
            return StepRecord(key=key, kind="model", target="a", status="completed",
                              result="{}")

        alone = [store.append("s", "me", record(str(i))) for i in range(3)]
        assert all(f.done() for f in alone), "a session running alone waited for a batch"
        commits = store.commits
        asyncio.get_running_loop().call_soon(lambda: None)  # something else is ready
        later = [store.append("s", "me", record(k)) for k in ("a", "b", "c")]
        assert not any(f.done() for f in later), "a write did not wait for its batch"
        await asyncio.gather(*later)
        assert store.commits == commits + 1  # the three in one batch
        assert [r.key for r in await store.journal("s")] == ["0", "1", "2", "a", "b", "c"]
    finally:
        await store.aclose()


def _gated_flow(name: str) -> tuple[convoy.Workflow[Any, Any], asyncio.Event, list[int]]:
    """A workflow whose step ``wait`` blocks until cancelled (the first time it runs)."""
    reached = asyncio.Event()
    runs: list[int] = []

    async def wait() -> int:
        runs.append(1)
        if len(runs) == 1:
            reached.set()
            await asyncio.Event().wait()
        return 7

    @convoy.workflow(name=name)
    async def flow(ctx: convoy.Context, n: int) -> int:
        got: int = await ctx.step("wait", wait, idempotent=True)
        return n + got

    return flow, reached, runs


async def test_a_run_its_caller_cancels_gives_its_session_back(db: Path) -> None:
    """A run cancelled by its caller (a request's timeout) left its session ``running``,
    held by this engine until the lease lapsed: nobody could resume it meanwhile."""
    flow, reached, runs = _gated_flow("durability.cancelled")
    async with convoy.Engine(db, workflows=[flow]) as eng:
        task = asyncio.create_task(eng.run(flow, 1, session_id="c"))
        await reached.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # (given back in the background, which a claim of it waits for)
        [res] = await eng.resume()
        assert (res.id, res.status, res.output, len(runs)) == ("c", "completed", 8, 2)


async def test_run_many_gives_back_the_sessions_a_failing_one_cancelled(db: Path) -> None:
    """A session hook's error stops ``run_many``; the sessions its task group cancelled
    are given back too, not held until their leases lapse."""
    flow, reached, _ = _gated_flow("durability.siblings")

    class Refuses(convoy.Interceptor):
        async def session_run(self, input: convoy.SessionInput,
                              next: convoy.Next[convoy.SessionInput, convoy.SessionEnd],
                              ) -> convoy.SessionEnd:
            if input.input == 2:
                await reached.wait()  # (the other one is in its step)
                raise convoy.UserError("tenant suspended")
            return await next(input)

    async with convoy.Engine(db, workflows=[flow], interceptors=[Refuses()]) as eng:
        with pytest.raises(convoy.UserError, match="tenant suspended"):
            await eng.run_many(flow, [1, 2], ids=["one", "two"])
    async with convoy.Engine(db) as eng:  # (the first waited for its give-backs to close)
        rows = [await eng.store.get_session(s) for s in ("one", "two")]
    assert [(r.status, r.owner) for r in rows if r is not None] == [("pending", None)] * 2


async def test_a_cancelled_run_gives_back_without_waiting_for_a_locked_store(
        db: Path) -> None:
    """The give-back runs after the caller has its cancel: a store locked by another
    process (or a database that hangs) does not stretch a timeout around ``run``; the
    session is given back once the lock is gone, before the engine closes."""
    flow, reached, _ = _gated_flow("durability.locked_give_back")
    other = sqlite3.connect(db, isolation_level=None)  # another process, later
    try:
        async with convoy.Engine(db, workflows=[flow]) as eng:
            task = asyncio.create_task(eng.run(flow, 1, session_id="g"))
            await reached.wait()
            other.execute("BEGIN IMMEDIATE")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task  # (returned with the lock still held)
            assert other.execute("SELECT status FROM sessions WHERE id='g'").fetchone() == (
                "running",)
            other.execute("ROLLBACK")
        row = other.execute("SELECT status, owner FROM sessions WHERE id='g'").fetchone()
        assert row == ("pending", None)
    finally:
        other.close()


async def test_a_run_cancelled_while_it_waits_for_a_slot_is_given_back(db: Path) -> None:
    flow, reached, _ = _gated_flow("durability.slot")

    @convoy.workflow(name="durability.quick")
    async def quick(ctx: convoy.Context, n: int) -> int:
        return n

    async with convoy.Engine(db, workflows=[flow, quick], concurrency=1) as eng:
        first = asyncio.create_task(eng.run(flow, 1, session_id="first"))
        await reached.wait()  # (it holds the one slot)
        waiting = asyncio.create_task(eng.run(quick, 2, session_id="waits"))
        many = asyncio.create_task(eng.run_many(quick, [3, 4], ids=["m1", "m2"]))
        while await eng.store.get_session("m2") is None:  # noqa: ASYNC110 (the store's state)
            await asyncio.sleep(0)
        waiting.cancel()
        many.cancel()
        await asyncio.gather(waiting, many, return_exceptions=True)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
    async with convoy.Engine(db) as eng:
        rows = {s: await eng.store.get_session(s) for s in ("waits", "m1", "m2")}
    assert {s: (r.status, r.owner) for s, r in rows.items() if r is not None} == dict.fromkeys(
        ("waits", "m1", "m2"), ("pending", None))


async def test_a_cancel_landing_in_a_session_hook_ends_the_session_cancelled(
        db: Path) -> None:
    """``engine.cancel`` of a run whose session hook awaits something (a remote policy
    check) before ``next``: it was lost (the run raised ``CancelledError`` to a caller
    who had not cancelled, and the session ran again on its next resume)."""
    entered, go = asyncio.Event(), asyncio.Event()

    class Checks(convoy.Interceptor):
        async def session_run(self, input: convoy.SessionInput,
                              next: convoy.Next[convoy.SessionInput, convoy.SessionEnd],
                              ) -> convoy.SessionEnd:
            entered.set()
            await go.wait()
            return await next(input)

    @convoy.workflow(name="durability.checked")
    async def checked(ctx: convoy.Context, n: int) -> int:
        return n

    async with convoy.Engine(db, workflows=[checked], interceptors=[Checks()]) as eng:
        task = asyncio.create_task(eng.run(checked, 1, session_id="s"))
        await entered.wait()
        assert await eng.cancel("s", by="alice") == "cancelled"
        res = await task
        assert (res.status, res.error and res.error["by"]) == ("cancelled", "alice")
        row = await eng.store.get_session("s")
        assert row is not None and row.status == "cancelled"
        assert await eng.resume() == []


async def test_run_many_refusing_an_id_gives_back_what_it_created(db: Path) -> None:
    """An id of another workflow is refused after the new sessions were created (and
    claimed): they were left held."""
    @convoy.workflow(name="durability.theirs")
    async def theirs(ctx: convoy.Context, n: int) -> int:
        return n

    @convoy.workflow(name="durability.mine")
    async def mine(ctx: convoy.Context, n: int) -> int:
        return n

    async with convoy.Engine(db) as eng:
        await eng.run(theirs, 1, session_id="theirs")
        with pytest.raises(convoy.UserError, match="belongs to workflow"):
            await eng.run_many(mine, [1, 2, 3], ids=["n1", "n2", "theirs"])
    async with convoy.Engine(db) as eng:
        rows = [await eng.store.get_session(s) for s in ("n1", "n2")]
    assert [(r.status, r.owner) for r in rows if r is not None] == [("pending", None)] * 2


async def test_run_many_gives_a_cancelled_session_back_once_with_its_counts(
        db: Path) -> None:
    """A session ``run_many`` cancels is given back by its own run, with its counts; the
    release of the sessions ``run_many`` created passed over it. It did not: its plain
    release could land first, the session's counts were lost, and a claim made between
    the two was freed by the late one (the session ran twice)."""
    reached, gate = asyncio.Event(), asyncio.Event()
    ran: list[str] = []

    async def second() -> int:
        ran.append("second")
        if len(ran) == 1:
            reached.set()
            await asyncio.Event().wait()
        return 2

    @convoy.workflow(name="durability.counted")
    async def counted(ctx: convoy.Context, n: int) -> int:
        a: int = await ctx.step("first", lambda: n)
        b: int = await ctx.step("second", second, idempotent=True)
        return a + b

    class Refuses(convoy.Interceptor):
        async def session_run(self, input: convoy.SessionInput,
                              next: convoy.Next[convoy.SessionInput, convoy.SessionEnd],
                              ) -> convoy.SessionEnd:
            if input.input == 2:
                await reached.wait()
                raise convoy.UserError("tenant suspended")
            return await next(input)

    class SlowCreate(convoy.stores.SQLiteStore):
        """The give-back's first write (making sure the session exists) waits: a round
        trip to a remote database, long enough for another write to overtake it."""

        slow = False

        async def create_sessions(self, sessions: list[convoy.stores.NewSession],
                                  **kw: Any) -> int:
            if self.slow and [s.id for s in sessions] == ["a"]:
                await gate.wait()
            return await super().create_sessions(sessions, **kw)

    store = SlowCreate(db)
    async with convoy.Engine(store, workflows=[counted], interceptors=[Refuses()]) as eng:
        run = asyncio.create_task(eng.run_many(counted, [1, 2], ids=["a", "b"]))
        await reached.wait()
        store.slow = True
        with pytest.raises(convoy.UserError, match="tenant suspended"):
            await run
        store.slow = False
        gate.set()
    async with convoy.Engine(db, workflows=[counted]) as eng:
        row = await eng.store.get_session("a")
        assert row is not None and (row.status, row.owner) == ("pending", None)
        assert row.steps == 2
        results = {r.id: r.status for r in await eng.resume()}
    # (a's step twice: cut, then again; b's once: its first run was refused)
    assert results == {"a": "completed", "b": "completed"} and len(ran) == 3


async def test_run_many_never_frees_a_claim_made_after_a_session_was_given_back(
        db: Path) -> None:
    """A session ``run_many`` cancelled is given back by its own run; this engine's
    ``serve`` may then claim it again while ``run_many`` still unwinds. ``run_many``'s own
    release of the sessions it created came after and freed that claim: another engine
    could run the session at the same time."""
    reached, again, go, c_in, c_out = (asyncio.Event() for _ in range(5))
    runs: list[int] = []
    refused: list[int] = []

    async def work(n: int) -> int:
        runs.append(n)
        if n == 1 and runs.count(1) == 1:
            reached.set()
        elif n == 1:
            again.set()
            await go.wait()
            return n
        elif n == 3:
            c_in.set()
        await asyncio.Event().wait()
        return n

    @convoy.workflow(name="durability.reclaimed")
    async def flow(ctx: convoy.Context, n: int) -> int:
        got: int = await ctx.step("work", lambda: work(n), idempotent=True)
        return got

    class Policy(convoy.Interceptor):
        async def session_run(self, input: convoy.SessionInput,
                              next: convoy.Next[convoy.SessionInput, convoy.SessionEnd],
                              ) -> convoy.SessionEnd:
            if input.input == 2 and not refused:
                refused.append(2)
                await reached.wait()
                await c_in.wait()
                raise convoy.UserError("tenant suspended")
            try:
                return await next(input)
            except asyncio.CancelledError:
                if input.input == 3:  # (its hook takes a while to unwind)
                    await c_out.wait()
                raise

    async with convoy.Engine(db, workflows=[flow], interceptors=[Policy()]) as eng:
        many = asyncio.create_task(eng.run_many(flow, [1, 2, 3], ids=["a", "b", "c"]))
        await reached.wait()
        server = asyncio.create_task(eng.serve(poll_interval=0.01))
        await again.wait()  # (a given back by its own run, claimed by serve, in its step)
        c_out.set()
        with pytest.raises(convoy.UserError, match="tenant suspended"):
            await many
        row = await eng.store.get_session("a")
        assert row is not None and (row.status, row.owner) == ("running", eng.owner)
        go.set()
        while (row := await eng.store.get_session("a")) is None or \
                row.status != "completed":  # noqa: ASYNC110 (the store's state)
            await asyncio.sleep(0.01)
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
    assert runs.count(1) == 2


async def test_a_cancel_during_a_refused_runs_give_back_does_not_abandon_it(
        db: Path) -> None:
    """A session hook refused the run, and its caller's timeout landed while the session
    was being given back (a slow round trip): the give-back was cancelled with the run,
    and the session stayed held by this engine until its lease lapsed. It goes on in the
    background now, as a cancelled run's does."""
    releasing, gate = asyncio.Event(), asyncio.Event()

    @convoy.workflow(name="durability.refused_slowly")
    async def flow(ctx: convoy.Context, n: int) -> int:
        return n

    class Refuses(convoy.Interceptor):
        async def session_run(self, input: convoy.SessionInput, next: Any) -> Any:
            raise convoy.UserError("tenant suspended")

    class SlowRelease(convoy.stores.SQLiteStore):
        async def release(self, session_id: str, owner: str, *a: Any, **kw: Any) -> Any:
            releasing.set()
            await gate.wait()
            return await super().release(session_id, owner, *a, **kw)

    async with convoy.Engine(SlowRelease(db), workflows=[flow], interceptors=[Refuses()],
                             lease_seconds=3600) as eng:
        run = asyncio.create_task(eng.run(flow, 1, session_id="r"))
        await releasing.wait()
        run.cancel()  # (the caller's timeout, during the give-back)
        with pytest.raises(asyncio.CancelledError):
            await run
        gate.set()
    async with convoy.Engine(db) as eng:  # (the first waited for its give-backs to close)
        row = await eng.store.get_session("r")
    assert row is not None and (row.status, row.owner) == ("pending", None)


@pytest.mark.parametrize("committed", [False, True], ids=["lost", "committed"])
async def test_a_cancel_while_a_runs_end_is_written_keeps_that_end(
        db: Path, committed: bool) -> None:
    """The run's caller cancelled it (a timeout) while how it ended was being written (a
    slow round trip): the write was cancelled with it, and the session stayed held by this
    engine until its lease lapsed, then ran again: a completed session's work done twice.
    The end is written in the background now, as a cancelled run's give-back is; a write
    that did commit (only its answer was slow) is not written twice, and the end taps are
    told the end, once."""
    finishing, gate = asyncio.Event(), asyncio.Event()
    ran: list[int] = []

    @convoy.workflow(name="durability.ends_slowly")
    async def flow(ctx: convoy.Context, n: int) -> int:
        ran.append(n)
        return n * 2

    class SlowFinish(convoy.stores.SQLiteStore):
        async def finish(self, session_id: str, *a: Any, **kw: Any) -> Any:
            written = super().finish(session_id, *a, **kw) if committed else None
            finishing.set()
            await gate.wait()
            return await (written or super().finish(session_id, *a, **kw))

    ended: list[tuple[str, Any]] = []

    class Told(convoy.Interceptor):
        async def session_run(self, input: convoy.SessionInput, next: Any) -> Any:
            input.end_taps.append(lambda end: ended.append((end.status, end.error)))
            return await next(input)

    async with convoy.Engine(SlowFinish(db), workflows=[flow], interceptors=[Told()],
                             lease_seconds=3600) as eng:
        run = asyncio.create_task(eng.run(flow, 4, session_id="e"))
        await finishing.wait()
        run.cancel()  # (the caller's timeout, as the end is written)
        with pytest.raises(asyncio.CancelledError):
            await run
        gate.set()
    async with convoy.Engine(db, workflows=[flow]) as eng:
        row = await eng.store.get_session("e")
        assert row is not None and (row.status, row.owner) == ("completed", None)
        assert (await eng.result("e")).output == 8
        assert await eng.resume() == []
    assert ran == [4] and ended == [("completed", None)]  # (not the refused write's error)


async def test_sessions_a_worker_claimed_and_never_started_are_given_back(
        db: Path) -> None:
    """``serve`` stopped (a store error, another session's error that stops it) right
    after a round claimed sessions, before their runs started: the runs never ran, and
    the sessions stayed held by this engine until their leases lapsed. They are given
    back."""
    @convoy.workflow(name="durability.claimed")
    async def flow(ctx: convoy.Context, n: int) -> int:
        return n

    async with convoy.Engine(db) as eng:
        eng.drain()
        await eng.run_many(flow, [1, 2], ids=["a", "b"])  # (created, pending)

    class FailsAfterTheClaim(convoy.stores.SQLiteStore):
        async def next_wake(self, *a: Any, **kw: Any) -> Any:
            # (at once, in the round that claimed them: their runs are not started yet)
            raise convoy.StoreError("database disk image is malformed", transient=False)

    async with convoy.Engine(FailsAfterTheClaim(db), workflows=[flow],
                             lease_seconds=3600) as eng:
        with pytest.raises(convoy.StoreError, match="malformed"):
            await eng.serve(poll_interval=0.001)
    async with convoy.Engine(db) as eng:
        rows = [await eng.store.get_session(s) for s in ("a", "b")]
    assert [(r.status, r.owner) for r in rows if r is not None] == [("pending", None)] * 2


async def test_an_output_json_cannot_hold_or_a_broken_str_fails_its_session_alone(
        engine_factory: Any) -> None:
    """A new user's trial: an output JSON cannot hold (an untyped workflow's object) and an
    exception whose ``__str__`` raises (a Convoy error's too) each crashed the engine
    (``convoy worker`` with a traceback, again at every restart), the session left
    running. Each now fails its session alone, in one line, as every hook sees it (a
    review: the output's failure was found after the hooks were told it completed); the
    others complete."""

    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("str broke")

    class BrokenStep(convoy.StepError):
        def __str__(self) -> str:
            raise RuntimeError("str broke")

    class Opaque:
        pass

    ends: list[str] = []

    class Told(convoy.Interceptor):
        async def session_run(self, input: Any, next: Any) -> Any:
            end = await next(input)
            ends.append(end.status)
            return end

    @convoy.workflow(name="dur.misbehaves")
    async def wf(ctx: convoy.Context, x: int) -> Any:
        await ctx.now()
        if x == 1:
            raise BrokenStep("x")
        if x == 2:
            return Opaque()
        if x == 3:
            raise Broken()
        return x

    eng = engine_factory(interceptors=[Told()])
    results = await eng.run_many(wf, [0, 1, 2, 3, 4])
    assert [r.status for r in results] == ["completed", "failed", "failed", "failed",
                                           "completed"], results
    assert sorted(ends) == sorted(r.status for r in results), ends
    step, opaque, broken = (results[i].error or {} for i in (1, 2, 3))
    assert step["type"] == "BrokenStep" and "its __str__ raised RuntimeError" in \
        step["message"], step
    assert opaque["type"] == "OutputSerializationError" and \
        "cannot be stored as JSON" in opaque["message"], opaque
    assert broken["type"] == "Broken" and "its __str__ raised RuntimeError" in \
        broken["message"], broken
    for r in results:  # (as written: none left running)
        row = await eng.session(r.id)
        assert row is not None and row.status == r.status, (r, row)


async def test_a_session_hooks_own_output_is_the_one_written(engine_factory: Any) -> None:
    """A session hook that ends the run with an output of its own, or changes the
    workflow's in place: that output is written (the workflow's JSON, made as its run
    ends, is not reused for it: a read-through and a review); one JSON cannot hold fails
    the session, recorded (it was raised out of ``run``, the session never written)."""

    class Replaces(convoy.Interceptor):
        async def session_run(self, input: Any, next: Any) -> Any:
            end = await next(input)
            if input.input == "replace":
                end.output = {"by": "the hook"}
            elif input.input == "mutate":
                end.output["hooked"] = True
            elif input.input == "opaque":
                end.output = object()
            return end

    @convoy.workflow(name="dur.hook_output")
    async def wf(ctx: convoy.Context, x: str) -> dict[str, Any]:
        return {"by": "the workflow"}

    eng = engine_factory(interceptors=[Replaces()])
    for sid, want in (("replace", {"by": "the hook"}),
                      ("mutate", {"by": "the workflow", "hooked": True})):
        res = await eng.run(wf, sid, session_id=sid)
        assert res.ok and res.output == want, res
        row = await eng.session(sid)
        assert row is not None and json.loads(row.output or "null") == want, row
    res = await eng.run(wf, "opaque", session_id="opaque")
    assert res.status == "failed" and (res.error or {}).get("type") == \
        "OutputSerializationError", res
    row = await eng.session("opaque")
    assert row is not None and row.status == "failed", row


async def test_an_output_with_an_integer_too_long_to_read_back_fails_its_session(
        engine_factory: Any) -> None:
    """An untyped output holding an integer of more digits than Python reads (4300) was
    written, and every later read of it (``run`` of the same session id, ``sessions
    show``) failed with pydantic's "number out of range" (a review). Such an output now
    fails its session, recorded, in one line that says what to do, whether the workflow
    or a session hook made it; a string of as many digits is stored."""
    huge = 10 ** 5000

    class Replaces(convoy.Interceptor):
        async def session_run(self, input: Any, next: Any) -> Any:
            end = await next(input)
            if input.input == "hook":
                end.output = {"n": huge}
            return end

    @convoy.workflow(name="dur.huge_output")
    async def wf(ctx: convoy.Context, x: str) -> Any:
        return {"own": huge, "text": "9" * 5000}[x] if x != "hook" else 1

    for chain in ([], [Replaces()]):
        eng = engine_factory(interceptors=chain)
        for sid in ("own", *(("hook",) if chain else ())):
            res = await eng.run(wf, sid, session_id=f"{sid}-{len(chain)}")
            err = res.error or {}
            assert res.status == "failed" and err.get("type") == \
                "OutputSerializationError" and "more than 4300 digits" in \
                err.get("message", "") and "write it as a string" in err["message"], res
            again = await eng.run(wf, sid, session_id=f"{sid}-{len(chain)}")
            assert again.status == "failed", again  # (read back: no "number out of range")
        res = await eng.run(wf, "text", session_id=f"text-{len(chain)}")
        assert res.ok and res.output == "9" * 5000, res.status
        assert (await eng.run(wf, "text", session_id=f"text-{len(chain)}")).output == \
            "9" * 5000
        await eng.aclose()


async def test_an_untyped_output_keeps_nan_and_infinity(engine_factory: Any) -> None:
    """A review: an untyped workflow output of ``{"r": inf}`` was returned as ``inf`` by
    its run and stored as ``null`` (every later read gave ``None``), where a ``ctx.step``'s
    NaN was journaled as ``NaN`` and replayed as one. Both keep them now."""
    import math

    @convoy.workflow(name="dur.inf_nan")
    async def wf(ctx: convoy.Context, x: int) -> Any:
        return {"r": math.inf, "n": [math.nan, -math.inf]}

    eng = engine_factory()
    first = await eng.run(wf, 1, session_id="inf")
    again = await eng.run(wf, 1, session_id="inf")  # (read back from the store)
    for res in (first, again):
        out = res.output
        assert res.ok and out["r"] == math.inf and math.isnan(out["n"][0]) and \
            out["n"][1] == -math.inf, res


async def test_a_typed_output_that_does_not_read_back_is_one_clear_error(
        engine_factory: Any) -> None:
    """A review: a model output with a NaN field (pydantic writes it as ``null`` unless
    the model says otherwise) completed, and ``run`` of the same session id raised
    pydantic's ValidationError (a traceback). It is one line now, that says what the
    stored output is and where to read it."""
    import math

    from pydantic import BaseModel

    class Ratio(BaseModel):
        ratio: float

    @convoy.workflow(name="dur.nan_model")
    async def wf(ctx: convoy.Context, x: int) -> Ratio:
        return Ratio(ratio=math.nan)

    eng = engine_factory()
    first = await eng.run(wf, 1, session_id="nan")
    assert first.ok and math.isnan(first.output.ratio), first
    with pytest.raises(convoy.UserError, match=r"session 'nan' completed, but its stored "
                       r"output is not what workflow 'dur.nan_model' returns \(ratio: "
                       r".*\); engine.result\('nan'\) reads it as JSON") as caught:
        await eng.run(wf, 1, session_id="nan")
    assert "\n" not in str(caught.value)
    stored = await eng.result("nan")
    assert stored.ok and stored.output == {"ratio": None}, stored


async def test_a_session_hook_raising_an_unprintable_error_does_not_stop_the_worker(
        engine_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A review: a session hook that raised an exception whose ``__str__`` raises made
    the worker itself raise (RuntimeError from its warning line), so a restarted worker
    claimed the session and stopped again. It is one warning now, and the worker goes
    on."""

    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("broken __str__")

    class Policy(convoy.Interceptor):
        async def session_run(self, input: Any, next: Any) -> Any:
            if input.info.session_id == "refused":
                raise Broken()
            return await next(input)

    @convoy.workflow(name="dur.hook_unprintable")
    async def wf(ctx: convoy.Context, x: int) -> int:
        return x

    eng = engine_factory(interceptors=[Policy()])
    eng.register(wf)
    from convoy.stores._protocol import NewSession
    await eng.open()
    await eng.store.create_sessions([
        NewSession(id=sid, workflow=wf.name, version=wf.version, tenant="default", input="1")
        for sid in ("refused", "fine")])
    await asyncio.wait_for(eng.serve(until_idle=True), 120)  # (a safety net, not a timing)
    fine = await eng.session("fine")
    assert fine.status == "completed", fine
    assert "its __str__ raised RuntimeError" in caplog.text, caplog.text


async def test_an_error_with_deeply_nested_arguments_fails_its_session(
        engine_factory: Any) -> None:
    """A review: a workflow's exception whose arguments nest 5,000 lists deep made the
    engine raise RecursionError out of ``run`` (its record's arguments were checked with
    ``json.dumps``), and the session stayed pending for ever. It fails, recorded, without
    the arguments; the others of the batch complete."""

    class Deep(Exception):
        pass

    @convoy.workflow(name="dur.deep_error")
    async def wf(ctx: convoy.Context, x: int) -> int:
        if x:
            doc: list[Any] = []
            for _ in range(5000):
                doc = [doc]
            raise Deep(doc)
        return x

    eng = engine_factory()
    deep, fine = await eng.run_many(wf, [1, 0])
    assert deep.status == "failed" and (deep.error or {}).get("type") == "Deep", deep
    assert "args" not in (deep.error or {}) and fine.ok, (deep, fine)
    row = await eng.session(deep.id)
    assert row.status == "failed", row


async def test_a_batch_naming_a_session_whose_output_does_not_read_back_runs_the_others(
        engine_factory: Any) -> None:
    """A review: ``run_many`` naming a finished session whose stored output does not read
    back as its type (a model's NaN, written as ``null``) raised for the whole batch, and
    the new sessions it had created stayed owned and never ran. That session's result says
    why, with no output; the others run; ``run`` of it alone raises, in one line."""
    import math

    from pydantic import BaseModel

    class Ratio(BaseModel):
        ratio: float

    @convoy.workflow(name="dur.nan_batch")
    async def wf(ctx: convoy.Context, x: float) -> Ratio:
        return Ratio(ratio=x)

    eng = engine_factory()
    assert (await eng.run(wf, math.nan, session_id="nan")).ok
    old, new = await eng.run_many(wf, [math.nan, 1.0], ids=["nan", "new1"])
    assert new.ok and new.output == Ratio(ratio=1.0), new
    assert old.status == "completed" and old.output is None and \
        (old.error or {}).get("type") == "StoredOutputUnreadable", old
    with pytest.raises(convoy.UserError, match="its stored output is not what workflow"):
        await eng.run(wf, math.nan, session_id="nan")
