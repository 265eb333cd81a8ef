"""The seams: session interceptors with persisted headers, step info, explicit interceptor
order, async start/close, the step-executor protocol, tool dependencies, store errors."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

import convoy
import convoy.chaos
from convoy.interceptors._base import STAGES, ordered
from convoy.resilience import protections
from convoy.runtime._agent_loop import agent_turns
from convoy.stores import SQLiteStore, StepRecord
from convoy.stores import _sqlite as sqlite_store

from .conftest import Classification, Crash, CrashOnce, later_engine

T = TypeVar("T")
OK = {"label": "billing", "confidence": 0.9}


class TraceLike(convoy.Interceptor):
    """What a tracer needs: a trace id that survives a resume, step info, flush on close."""

    stage = "trace"

    def __init__(self) -> None:
        self.runs: list[tuple[str, bool, str]] = []
        self.steps: list[convoy.StepInfo] = []
        self.events: list[str] = []

    async def start(self, engine: convoy.Engine) -> None:
        self.events.append("start")

    async def close(self) -> None:
        self.events.append("close")

    async def session_run(self, input: convoy.SessionInput,
                          next: convoy.Next[convoy.SessionInput, convoy.SessionEnd],
                          ) -> convoy.SessionEnd:
        trace = input.headers.setdefault("trace_id", f"trace-{len(self.runs)}")
        self.runs.append((input.info.session_id, input.info.resumed, trace))
        end = await next(input)
        self.events.append(f"end:{end.status}")
        return end

    async def model_call(self, input: convoy.ModelCallInput,
                         next: convoy.Next[convoy.ModelCallInput, convoy.ModelResponse],
                         ) -> convoy.ModelResponse:
        self.steps.append(input.info)
        return await next(input)


async def test_headers_set_by_a_session_interceptor_survive_a_resume(db: Path) -> None:
    crashed: list[bool] = []

    class CrashSecond(convoy.SimModel):
        async def request(self, request: convoy.ModelRequest) -> convoy.ModelResponse:
            if request.agent == "b" and not crashed:
                crashed.append(True)
                raise Crash
            return await super().request(request)

    sim = CrashSecond({"*": {"output": OK}})
    a = convoy.Agent(name="a", output_type=Classification, model=sim)
    b = convoy.Agent(name="b", output_type=Classification, model=sim)

    @convoy.workflow(name="traced")
    async def wf(ctx: convoy.Context, t: str) -> Classification:
        out: Classification = await convoy.pipeline(ctx, [a, b], t)
        return out

    first = TraceLike()
    eng = convoy.Engine(db, interceptors=[first])
    with pytest.raises(Crash):
        await eng.run(wf, "t", session_id="s", headers={"tenant_ref": "acme"})
    assert first.runs == [("s", False, "trace-0")]
    second = TraceLike()
    second.runs.append(("other", False, "x"))  # so a fresh id would differ
    async with later_engine(db, workflows=[wf], interceptors=[second]) as eng2:
        [res] = await eng2.resume()
        row = await eng2.store.get_session("s")
    assert res.ok
    assert second.runs[-1] == ("s", True, "trace-0")  # the trace continues
    assert row is not None and row.header_map == {"tenant_ref": "acme", "trace_id": "trace-0"}
    info = second.steps[-1]
    assert (info.session_id, info.key, info.kind, info.agent, info.resumed) == \
        ("s", "1/0", "model", "b", True)
    assert info.headers["trace_id"] == "trace-0" and info.workflow == "traced"
    assert second.events == ["start", "end:completed", "close"]
    await eng.aclose()


def test_interceptors_are_ordered_by_stage_whatever_order_they_are_given() -> None:
    chain = protections(cache=convoy.cost.ResponseCache(), budgets=convoy.cost.Budgets(),
                        step_timeout=5.0, router=convoy.resilience.Router(cheap="sim:a",
                                                                          strong="sim:b"),
                        fallbacks={"x": ["sim:c"]},
                        rate=convoy.resilience.Rate(rpm=10))
    shuffled = [*reversed(chain), TraceLike(), convoy.StepTimings(),
                convoy.chaos.FaultInjector("server_error=0.1"), convoy.UsageAccounting()]
    stages = [ic.stage for ic in ordered(shuffled)]
    assert stages == sorted(stages, key=STAGES.index)
    assert stages[0] == "timing" and stages[1] == "trace" and stages[-1] == "fault"
    names = [type(ic).__name__ for ic in ordered(shuffled)]
    assert names.index("Retry") < names.index("Breakers") < names.index("Budgets") \
        < names.index("RateLimit") < names[len(names) - 3:].index("Timeout") + len(names) - 3
    assert names.index("ResponseCache") < names.index("Fallback") < names.index("Retry")
    assert names.index("UsageAccounting") == len(names) - 2


async def test_user_interceptors_sit_between_trace_and_the_resilience_chain(
        engine_factory: Any) -> None:
    order: list[str] = []

    class Mark(convoy.Interceptor):
        def __init__(self, name: str, stage: Any) -> None:
            self.name, self.stage = name, stage

        async def model_call(self, input: Any, next: Any) -> Any:
            order.append(self.name)
            return await next(input)

    sim = convoy.SimModel({"*": {"output": OK}})
    a = convoy.Agent(name="a", output_type=Classification, model=sim)

    @convoy.workflow(name="ordered")
    async def wf(ctx: convoy.Context, t: str) -> Classification:
        out: Classification = await ctx.run(a, t)
        return out

    eng = engine_factory(interceptors=[Mark("retry", "retry"), Mark("mine", "custom"),
                                       Mark("audit", "audit")])
    await eng.run(wf, "t")
    assert order == ["audit", "mine", "retry"]


def _triage_to_billing_crashing_once() -> convoy.Workflow[str, Classification]:
    """Triage hands over to billing, whose first model call dies (:class:`Crash`) and who
    delegates to the worker ``lookup`` once the session resumes."""
    sim = CrashOnce({
        "triage": {"handoff": "billing", "payload": {"task": "charged twice"}},
        "billing": [{"tool_calls": [{"name": "lookup", "arguments": {"task": "x"}}]},
                    {"output": OK}],
        "lookup": {"output": OK}}, agent="billing")
    lookup = convoy.Agent(name="lookup", output_type=Classification, model=sim)
    billing = convoy.Agent(name="billing", output_type=Classification, workers=[lookup],
                           model=sim)
    triage = convoy.Agent(name="triage", output_type=Classification, handoffs=[billing],
                          model=sim)

    @convoy.workflow(name="agent_runs")
    async def wf(ctx: convoy.Context, t: str) -> Classification:
        out: Classification = await ctx.run(triage, t)
        return out

    return wf


async def test_agent_run_wraps_each_invocation_and_names_the_handoff(db: Path) -> None:
    """The agent hook: one call per agent invocation (a handoff's target is the next one,
    naming its source and the handoff step; a worker runs inside its supervisor's), and a
    resumed session's replayed agent says so."""
    wf = _triage_to_billing_crashing_once()

    class Runs(convoy.Interceptor):
        stage = "trace"

        def __init__(self) -> None:
            self.seen: list[tuple[str, str, str | None, str | None, bool, int]] = []
            self.ends: list[tuple[str, str | None]] = []

        async def agent_run(self, input: convoy.AgentRunInput,
                            next: convoy.Next[convoy.AgentRunInput, convoy.AgentRunEnd],
                            ) -> convoy.AgentRunEnd:
            src = input.handoff_from.name if input.handoff_from else None
            self.seen.append((input.agent.name, input.key, src, input.handoff_key,
                              input.replaying, input.depth))
            assert input.info.kind == "agent" and input.info.agent == input.agent.name
            assert input.messages[-1].content == 'charged twice' or \
                input.agent.name != "billing"
            end = await next(input)
            self.ends.append((input.agent.name,
                              end.handoff.name if end.handoff is not None else None))
            return end

    first = Runs()
    eng = convoy.Engine(db, interceptors=[first])
    with pytest.raises(Crash):
        await eng.run(wf, "t", session_id="s")
    assert first.seen == [("triage", "0/0", None, None, False, 1),
                          ("billing", "0/2", "triage", "0/1", False, 1)]
    assert first.ends == [("triage", "billing")]
    second = Runs()
    async with later_engine(db, workflows=[wf], interceptors=[second]) as eng2:
        [res] = await eng2.resume()
    assert res.ok
    # triage replays from the journal; billing starts live (its model call never finished)
    assert second.seen == [("triage", "0/0", None, None, True, 1),
                           ("billing", "0/2", "triage", "0/1", False, 1),
                           ("lookup", "0/3/0", None, None, False, 2)]
    assert second.ends == [("triage", "billing"), ("lookup", None), ("billing", None)]
    await eng.aclose()


async def test_run_taps_see_each_agent_run_end_as_the_agent_hook_does(db: Path) -> None:
    """A session hook's run tap is told of every agent run that ends (a handoff's source
    with its target, a failed run with its error, a replayed run as replaying), in the
    order the agent hook sees the runs end, with no agent hook in the chain."""
    wf = _triage_to_billing_crashing_once()

    Ended = tuple[str, str, str | None, str | None, bool, bool]

    class Taps(convoy.Interceptor):
        def __init__(self) -> None:
            self.ends: list[Ended] = []

        def ended(self, e: convoy.AgentRunEnded) -> None:
            assert e.nanoseconds >= 0 and e.session.id == "s"
            self.ends.append((e.agent.name, e.key, e.handoff.name if e.handoff else None,
                              type(e.error).__name__ if e.error else None, e.replaying,
                              e.ended_earlier))

        async def session_run(self, input: convoy.SessionInput,
                              next: convoy.Next[convoy.SessionInput, convoy.SessionEnd],
                              ) -> convoy.SessionEnd:
            input.run_taps.append(self.ended)
            return await next(input)

    first = Taps()
    eng = convoy.Engine(db, interceptors=[first])
    assert eng.runtime.agent_chain.call is agent_turns  # (no agent hook)
    with pytest.raises(Crash):
        await eng.run(wf, "t", session_id="s")
    assert first.ends == [("triage", "0/0", "billing", None, False, False),
                          ("billing", "0/2", None, "Crash", False, False)]
    second = Taps()
    async with later_engine(db, workflows=[wf], interceptors=[second]) as eng2:
        [res] = await eng2.resume()
        assert res.ok
        told = list(second.ends)
        await eng2.replay("s")  # (a replay ends no run: the taps are told nothing)
        assert second.ends == told
    # triage's run ended in the first run of the session (told then); billing's had not
    assert second.ends == [("triage", "0/0", "billing", None, True, True),
                           ("lookup", "0/3/0", None, None, False, False),
                           ("billing", "0/2", None, None, False, False)]
    await eng.aclose()


async def test_a_run_tap_that_raises_changes_nothing_of_the_run(
        db: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A tap that raises is logged: the handoff goes on, a park still parks."""
    @convoy.tool(requires_approval=convoy.Approval())
    def refund(amount: float) -> str:
        """Refund."""
        return "refunded"

    sim = convoy.SimModel({
        "triage": {"handoff": "clerk", "payload": {"task": "refund"}},
        "clerk": [{"tool_calls": [{"name": "refund", "arguments": {"amount": 5}}]},
                  {"output": OK}]})
    clerk = convoy.Agent(name="clerk", output_type=Classification, tools=[refund], model=sim)
    triage = convoy.Agent(name="triage", output_type=Classification, handoffs=[clerk],
                          model=sim)

    @convoy.workflow(name="raising_tap")
    async def wf(ctx: convoy.Context, t: str) -> Classification:
        out: Classification = await ctx.run(triage, t)
        return out

    told: list[str] = []

    class Raising(convoy.Interceptor):
        async def session_run(self, input: convoy.SessionInput,
                              next: convoy.Next[convoy.SessionInput, convoy.SessionEnd],
                              ) -> convoy.SessionEnd:
            def tap(e: convoy.AgentRunEnded) -> None:
                raise RuntimeError("tap broke")

            input.run_taps.append(tap)
            input.run_taps.append(lambda e: told.append(e.agent.name))  # (told all the same)
            return await next(input)

    async with convoy.Engine(db, interceptors=[Raising()]) as eng:
        res = await eng.run(wf, "t", session_id="r")
        assert res.status == "waiting"  # the handoff went on; clerk parked on the approval
        [task] = await eng.inbox.tasks()
        await eng.inbox.approve(task.id, by="ann")
        [res] = await eng.resume()
        assert res.ok
    assert "a run tap raised on the end of the run of agent triage at step 0/0" in caplog.text
    # clerk parked on the approval; the resumed run replays triage's (ended earlier)
    assert told == ["triage", "clerk", "triage", "clerk"]


async def test_an_unknown_stage_is_refused() -> None:
    class Odd(convoy.Interceptor):
        stage = "sideways"  # type: ignore[assignment]

    with pytest.raises(ValueError, match="unknown stage 'sideways'"):
        ordered([Odd()])


class DictExecutor:
    """A second implementation of the step-executor protocol: in memory, no journal.

    It proves the seam: Context, the agent loop and the patterns run on any executor."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, str]] = []

    async def run_step(self, key: str, kind: str, target: str,
                       execute: Callable[[], Awaitable[T]], encode: Callable[[T], str],
                       decode: Callable[[str], T], **kw: Any) -> T:
        self.log.append((key, kind, target))
        return decode(encode(await execute()))

    async def now(self, key: str) -> float:
        return 42.0

    async def random(self, key: str) -> float:
        return 0.5

    async def uuid(self, key: str) -> str:
        return "u"

    async def sleep(self, key: str, seconds: float) -> None:
        self.log.append((key, "sleep", str(seconds)))

    async def wait_for(self, key: str, name: str, timeout: float | None) -> str:  # noqa: ASYNC109
        return '{"approved": true}'


async def test_workflow_code_runs_on_any_step_executor(engine_factory: Any) -> None:
    from convoy.engine._runtime import Runtime
    from convoy.runtime._session import SessionState

    sim = convoy.SimModel({"*": {"output": OK}})
    a = convoy.Agent(name="a", output_type=Classification, model=sim)
    b = convoy.Agent(name="b", output_type=Classification, model=sim)

    async def wf(ctx: convoy.Context, t: str) -> tuple[Any, ...]:
        out = await convoy.pipeline(ctx, [a, b], t)
        await ctx.sleep(10)
        approved = await ctx.wait_for("ok")
        return out, await ctx.now(), approved

    eng = engine_factory()
    rt: Runtime = eng.runtime
    executor = DictExecutor()
    state = SessionState(rt, "mem", "default", "wf", executor=executor)
    out, now, approved = await wf(convoy.Context(state), "t")
    assert out == Classification(**OK) and now == 42.0 and approved == {"approved": True}
    assert executor.log == [("0/0", "model", "a"), ("1/0", "model", "b"),
                            ("2", "sleep", "10.0")]


async def test_tools_get_their_dependencies_from_the_engine(engine_factory: Any) -> None:
    class Crm:
        def __init__(self) -> None:
            self.notes: list[str] = []

    @convoy.tool(writes=True)
    def note(ctx: convoy.ToolContext[Crm], text: str) -> int:
        """Add a note to the CRM."""
        ctx.deps.notes.append(text)
        return len(ctx.deps.notes)

    sim = convoy.SimModel({"a": [{"tool_calls": [{"name": "note",
                                                   "arguments": {"text": "hi"}}]},
                                 {"output": OK}]})
    a = convoy.Agent(name="a", output_type=Classification, tools=[note], model=sim)

    @convoy.workflow(name="deps")
    async def wf(ctx: convoy.Context, t: str) -> Classification:
        out: Classification = await ctx.run(a, t)
        return out

    crm = Crm()
    res = await engine_factory(deps=crm).run(wf, "t")
    assert res.ok and crm.notes == ["hi"]


def test_a_process_creating_the_store_waits_for_another_creating_it_at_once(
        db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Switching a new file to WAL upgrades a read lock to a write lock, and SQLite never
    # makes that upgrade wait (two connections could deadlock): it answers "locked" at
    # once, whatever the busy timeout. Two engine processes starting on one new file hit
    # it; the second must wait for the first, not fail.
    other = sqlite3.connect(db, isolation_level=None)  # the other process, creating it
    other.execute("BEGIN IMMEDIATE")
    pauses: list[float] = []

    def pause(seconds: float) -> None:  # the other process is done with the file
        pauses.append(seconds)
        if other.in_transaction:
            other.execute("ROLLBACK")

    monkeypatch.setattr(sqlite_store, "_pause", pause)
    store = SQLiteStore(db, busy_timeout=60.0)
    try:
        store.open_sync()
        assert len(pauses) == 1 and not other.in_transaction
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()
        other.close()


def test_a_process_creating_the_store_gives_up_past_the_busy_timeout(db: Path) -> None:
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    store = SQLiteStore(db, busy_timeout=0.05)
    try:
        with pytest.raises(convoy.StoreError, match="stayed locked by another process past "
                           "the busy timeout: nothing was opened"):
            store.open_sync()
        assert not store.is_open
    finally:
        other.close()


async def test_writes_queued_around_a_commit_that_finds_the_store_locked_land_in_order(
        db: Path) -> None:
    # An unawaited write schedules the end of the loop iteration's batch; an awaited one
    # then commits at once with it and finds the store locked, so a task retries them.
    # The scheduled end-of-batch must leave them to that task: a second retrying task
    # could commit later writes before earlier ones.
    store = SQLiteStore(db, busy_timeout=5.0)
    await store.open()
    other = sqlite3.connect(db, isolation_level=None)  # another process's transaction
    try:
        other.execute("BEGIN EXCLUSIVE")
        futures = [store.audit_append("acme", [b"entry"], wait=False),
                   store.kv_put("ns", "k", "first")]
        # The scheduled end of the batch runs; the retrying task backs off a while (a
        # second retrying task, started afresh, would then retry sooner than the first).
        await asyncio.sleep(0.05)
        futures.append(store.kv_put("ns", "k", "second"))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not any(f.done() for f in futures)
        other.execute("ROLLBACK")
        await asyncio.gather(*futures)
        assert await store.kv_get("ns", "k") == "second"
        assert [r.body for r in await store.audit_entries("acme", 0, 10)] == [b"entry"]
    finally:
        other.close()
        await store.aclose()


async def test_a_locked_store_leaves_the_session_unfinished_and_the_loop_free(
        db: Path) -> None:
    """Hole 7: a commit that finds the database locked by another process longer than the
    busy timeout fails the run, not the session, and never blocks the event loop."""
    sim = convoy.SimModel({"*": {"output": OK}})
    a = convoy.Agent(name="a", output_type=Classification, model=sim)
    reached, go = asyncio.Event(), asyncio.Event()

    async def gate() -> int:
        reached.set()
        await go.wait()
        return 1

    @convoy.workflow(name="locked")
    async def wf(ctx: convoy.Context, t: str) -> Classification:
        await ctx.step("gate", gate, idempotent=True)
        out: Classification = await ctx.run(a, t)
        return out

    async with convoy.Engine(SQLiteStore(db, busy_timeout=0.3), workflows=[wf]) as eng:
        task = asyncio.create_task(eng.run_many(wf, ["t"], ids=["L"]))
        await reached.wait()
        other = sqlite3.connect(db, isolation_level=None)  # another process's transaction
        other.execute("BEGIN EXCLUSIVE")
        ticks = 0
        done = False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0.001)

        t = asyncio.create_task(ticker())
        go.set()
        [res] = await task
        done = True
        await t
        other.execute("ROLLBACK")
        other.close()
        assert res.status == "pending" and res.error is not None
        assert res.error["type"] == "StoreError" and res.error["transient"] is True
        assert "locked" in res.error["message"]
        assert ticks > 20  # the loop kept running while the commit was retried
        row = await eng.store.get_session("L")
        assert row is not None and row.unfinished  # not failed
        [again] = await eng.resume()  # the lock is gone: the session finishes
        assert again.ok and sim.calls == 1


@pytest.mark.parametrize("n", [1, 2, 3])
def test_taps_are_each_called_in_order(n: int) -> None:
    from convoy.durability._executor import journal_tap_of

    seen: list[tuple[int, object]] = []
    taps = [lambda e, i=i: seen.append((i, e)) for i in range(n)]
    record = StepRecord(key="0", kind="model", target="a", status="completed")
    journal_tap_of(taps, "s")(record)
    assert seen == [(i, record) for i in range(n)]


async def test_a_journal_tap_that_raises_changes_nothing_of_the_step(
        db: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A journal tap sees a record once it is committed: one that raises is logged, and the
    step goes on as journaled (it did not fail a step whose outcome the journal holds), and
    the other taps are told all the same."""
    sim = convoy.SimModel({
        "triage": {"handoff": "clerk", "payload": {"task": "refund"}},
        "clerk": {"output": OK}})
    clerk = convoy.Agent(name="clerk", output_type=Classification, model=sim)
    triage = convoy.Agent(name="triage", output_type=Classification, handoffs=[clerk],
                          model=sim)

    @convoy.workflow(name="raising_journal_tap")
    async def wf(ctx: convoy.Context, t: str) -> Classification:
        out: Classification = await ctx.run(triage, t)
        return out

    class Raising(convoy.Interceptor):
        def __init__(self, others: int) -> None:
            self.others = others
            self.told: list[str] = []

        def broken(self, r: StepRecord) -> None:
            raise RuntimeError("tap broke")

        async def session_run(self, input: convoy.SessionInput,
                              next: convoy.Next[convoy.SessionInput, convoy.SessionEnd],
                              ) -> convoy.SessionEnd:
            input.journal_taps.append(self.broken)
            for _ in range(self.others):
                input.journal_taps.append(lambda r: self.told.append(r.key))
            return await next(input)

    for count in (1, 2, 3):  # (one tap; the common pair; more)
        raising = Raising(count - 1)
        caplog.clear()
        async with convoy.Engine(db, interceptors=[raising]) as eng:
            res = await eng.run(wf, "t", session_id=f"j{count}")
            assert res.ok, res
        assert "a journal tap raised on the record of step 0/0 (model triage) of session " \
            f"j{count}" in caplog.text
        assert raising.told == [k for k in ("0/0", "0/1", "0/2") for _ in range(count - 1)]


class _AsyncCall:
    async def __call__(self, event: object) -> None:
        pass


@pytest.mark.parametrize("which", ["journal_taps", "run_taps", "end_taps"])
@pytest.mark.parametrize("form", ["method", "function", "object"])
async def test_an_async_tap_is_refused_with_a_clear_error(db: Path, which: str,
                                                           form: str) -> None:
    """Taps are called, not awaited: an ``async def`` one would do nothing (and warn of a
    coroutine never awaited at some later collection). The run is refused at once,
    naming the tap; a plain one of each form runs."""
    async def tap(event: object) -> None:
        pass

    class Async(convoy.Interceptor):
        async def tap(self, event: object) -> None:
            pass

        async def session_run(self, input: convoy.SessionInput,
                              next: convoy.Next[convoy.SessionInput, convoy.SessionEnd],
                              ) -> convoy.SessionEnd:
            getattr(input, which).append(
                {"method": self.tap, "function": tap, "object": _AsyncCall()}[form])
            return await next(input)

    name = {"method": r"Async\.tap", "function": r"\.tap", "object": "_AsyncCall"}[form]
    async with convoy.Engine(db, interceptors=[Async()]) as eng:
        with pytest.raises(convoy.UserError, match=rf"{which}: .*{name} is an async "
                           "function; taps are called, not awaited: make it a plain one"):
            await eng.run(_triage_to_billing_crashing_once(), "t", session_id="a")
