"""Journal, replay, resume and the non-determinism guard (in one process; crash tests with
SIGKILL are in test_crash.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy import ModelRequest

from .conftest import Classification

OK = {"label": "billing", "confidence": 0.9}


def make_flow(agents: list[convoy.Agent[Any, Any]], name: str = "flow",
              version: str = "1") -> convoy.Workflow[Any, Any]:
    @convoy.workflow(name=name, version=version)
    async def wf(ctx: convoy.Context, text: str) -> Classification:
        out: Classification = await convoy.pipeline(ctx, agents, text)
        return out

    return wf


async def test_every_step_is_journaled_under_its_tree_key(engine_factory: Any) -> None:
    sim = convoy.SimModel({"*": {"output": OK}})
    agents = [convoy.Agent(name=f"a{i}", output_type=Classification, model=sim) for i in range(3)]
    eng = engine_factory()
    res = await eng.run(make_flow(agents), "t")
    rows = eng.store.journal(res.id)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("0/0", "model", "a0", "completed"), ("1/0", "model", "a1", "completed"),
        ("2/0", "model", "a2", "completed")]
    row = eng.store.get_session(res.id)
    assert row is not None and row.status == "completed" and row.steps == 3
    assert row.input_tokens == res.usage.input_tokens > 0


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
    sim = convoy.SimModel({"*": {"output": OK}})
    agents = [convoy.Agent(name=f"a{i}", output_type=Classification, model=sim) for i in range(3)]
    wf = make_flow(agents)
    eng = engine_factory()
    res = await eng.run(wf, "t")
    # Simulate a crash after step 2: drop the last step and mark the session running.
    with sqlite3.connect(db) as c:
        c.execute("DELETE FROM journal WHERE key='2/0'")
        c.execute("UPDATE sessions SET status='running', output=NULL WHERE id=?", (res.id,))
    calls = sim.calls
    eng2 = engine_factory(workflows=[wf])
    [again] = await eng2.resume()
    assert again.ok and again.output == res.output
    assert sim.calls == calls + 1  # only the missing step ran
    assert again.usage.input_tokens == res.usage.input_tokens  # totals include replayed steps


async def test_changed_workflow_code_fails_with_the_step_named(engine_factory: Any,
                                                               db: Path) -> None:
    sim = convoy.SimModel({"*": {"output": OK}})
    a = convoy.Agent(name="a", output_type=Classification, model=sim)
    b = convoy.Agent(name="b", output_type=Classification, model=sim)
    eng = engine_factory()
    res = await eng.run(make_flow([a, a]), "t")
    with sqlite3.connect(db) as c:
        c.execute("DELETE FROM journal WHERE key='1/0'")
        c.execute("UPDATE sessions SET status='running' WHERE id=?", (res.id,))
    changed = make_flow([b, a])  # same name and version, different first step
    [again] = await engine_factory(workflows=[changed]).resume()
    assert again.status == "failed"
    assert again.error is not None and again.error["type"] == "NonDeterminismError"
    assert again.error["key"] == "0/0"
    assert "'a'" in again.error["message"] and "'b'" in again.error["message"]


async def test_resuming_with_a_new_workflow_version_is_refused(engine_factory: Any,
                                                               db: Path) -> None:
    sim = convoy.SimModel({"*": {"output": OK}})
    a = convoy.Agent(name="a", output_type=Classification, model=sim)
    res = await engine_factory().run(make_flow([a]), "t")
    with sqlite3.connect(db) as c:
        c.execute("UPDATE sessions SET status='running' WHERE id=?", (res.id,))
    [again] = await engine_factory(workflows=[make_flow([a], version="2")]).resume()
    assert again.status == "failed" and again.error is not None
    assert "version '1'" in again.error["message"] and "version '2'" in again.error["message"]


def _write_tool(log: list[str]) -> convoy.Tool:
    @convoy.tool(writes=True)
    def charge(ctx: convoy.ToolContext, amount: int) -> str:
        """Charge a card."""
        log.append(ctx.idempotency_key)
        return f"charged {amount}"

    return charge


async def test_write_tool_started_but_unfinished_is_escalated_not_repeated(
        engine_factory: Any, db: Path) -> None:
    log: list[str] = []
    charge = _write_tool(log)
    sim = convoy.SimModel({"a": [{"tool_calls": [{"name": "charge", "arguments": {"amount": 5}}]},
                                 {"output": OK}]})
    a = convoy.Agent(name="a", output_type=Classification, tools=[charge], model=sim)
    wf = make_flow([a])
    res = await engine_factory().run(wf, "t")
    assert res.ok and len(log) == 1
    # Crash between the tool's 'started' record and its 'completed' record:
    with sqlite3.connect(db) as c:
        c.execute("UPDATE journal SET status='started', result=NULL WHERE kind='tool'")
        c.execute("DELETE FROM journal WHERE key='0/2'")
        c.execute("UPDATE sessions SET status='running' WHERE id=?", (res.id,))
    [again] = await engine_factory(workflows=[wf]).resume()
    assert again.status == "escalated"
    assert again.error is not None and again.error["type"] == "UnknownOutcomeError"
    assert len(log) == 1


async def test_idempotent_write_tool_is_retried_with_the_same_key(engine_factory: Any,
                                                                  db: Path) -> None:
    log: list[str] = []

    @convoy.tool(writes=True, idempotent=True)
    def upsert(ctx: convoy.ToolContext, value: int) -> int:
        """Idempotent write (the backend dedupes on the idempotency key)."""
        log.append(ctx.idempotency_key)
        return value

    sim = convoy.SimModel({"a": [{"tool_calls": [{"name": "upsert", "arguments": {"value": 1}}]},
                                 {"output": OK}]})
    a = convoy.Agent(name="a", output_type=Classification, tools=[upsert], model=sim)
    wf = make_flow([a])
    res = await engine_factory().run(wf, "t")
    with sqlite3.connect(db) as c:
        c.execute("UPDATE journal SET status='started', result=NULL WHERE kind='tool'")
        c.execute("DELETE FROM journal WHERE key='0/2'")
        c.execute("UPDATE sessions SET status='running' WHERE id=?", (res.id,))
    [again] = await engine_factory(workflows=[wf]).resume()
    assert again.ok
    assert log == [f"{res.id}:0/1", f"{res.id}:0/1"]  # same key both times


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


async def test_unknown_store_schema_version_is_refused(db: Path) -> None:
    convoy.Engine(db).open()
    with sqlite3.connect(db) as c:
        c.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(convoy.JournalError, match="schema version 99"):
        convoy.Engine(db).open()


def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.db"
    bad.write_text("this is not sqlite " * 100)
    with pytest.raises(convoy.UserError, match="not a usable Convoy store"):
        convoy.Engine(bad).open()


async def test_group_commit_batches_across_sessions(engine_factory: Any) -> None:
    sim = convoy.SimModel({"*": {"output": OK}}, latency=0.001)
    agents = [convoy.Agent(name=f"a{i}", output_type=Classification, model=sim) for i in range(5)]
    eng = engine_factory()
    wf = make_flow(agents)
    results = await eng.run_many(wf, [f"t{i}" for i in range(200)])
    assert all(r.ok for r in results)
    assert eng.store.records >= 200 * 7
    assert eng.store.commits < eng.store.records / 20  # batched, not one commit per record


async def test_power_durability_commits_on_a_thread(tmp_path: Path) -> None:
    sim = convoy.SimModel({"*": {"output": OK}})
    a = convoy.Agent(name="a", output_type=Classification, model=sim)
    async with convoy.Engine(tmp_path / "p.db", durability="power") as eng:
        results = await eng.run_many(make_flow([a]), ["x", "y", "z"])
        assert [r.status for r in results] == ["completed"] * 3
    with sqlite3.connect(tmp_path / "p.db") as c:
        assert c.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 3


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


def test_run_sync_for_scripts_without_a_loop(db: Path) -> None:
    sim = convoy.SimModel({"*": {"output": OK}})
    a = convoy.Agent(name="a", output_type=Classification, model=sim)
    res = convoy.Engine(db).run_sync(make_flow([a]), "x")
    assert res.ok and res.output == Classification(**OK)


async def test_the_wal_stays_bounded_under_a_steady_stream_of_commits(tmp_path: Path) -> None:
    """Checkpoints run on a thread; under commits that never pause, a PASSIVE checkpoint
    never catches the WAL's tail, so without a RESTART the WAL would grow with every byte
    written (tens of MB here)."""
    import time

    from convoy.stores._sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "w.db", wal_limit_bytes=1024 * 1024)
    store.open()
    wal = tmp_path / "w.db-wal"
    biggest, commits = 0, 0
    try:
        payload = "x" * 3000
        t_end = time.monotonic() + 3.0
        while time.monotonic() < t_end:
            await store.append_step("s", str(commits), "model", "a", "completed", payload)
            commits += 1
            if commits % 200 == 0:
                biggest = max(biggest, wal.stat().st_size)
    finally:
        await store.aclose()
    written = commits * 2 * 4096  # each commit appends at least two pages to the WAL
    assert written > 40 * 1024 * 1024, "too few commits to tell"
    assert biggest < written / 3, (biggest, written)
