"""Hole 2: every step outcome reaches the journal (except cancellation), keeping its type;
hole 8: determinism breaks are never silent."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.cost import Budget, Budgets
from convoy.resilience import error_kind_of

from .conftest import STORE_KINDS, Classification, Crash, later_engine, store_db


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    """Every test of this module runs on SQLite and on PostgreSQL."""
    yield from store_db(request.param, tmp_path)

OK = {"label": "billing", "confidence": 0.9}


class QuotaError(Exception):
    """A user's own exception type, importable by module and name."""


async def test_an_ordinary_exception_caught_by_the_workflow_is_journaled(
        engine_factory: Any, db: str | Path) -> None:
    """The reproduction: a ctx.step raising ConnectionRefusedError that the workflow
    catches; after a crash the session resumes (not escalated) and replay agrees."""
    calls: list[str] = []

    async def refuse() -> str:
        calls.append("refuse")
        raise ConnectionRefusedError("crm down")

    async def quota() -> str:
        raise QuotaError("over quota", 7)

    crashed: list[bool] = []

    async def then_crash() -> int:
        if not crashed:
            crashed.append(True)
            raise Crash
        return 1

    @convoy.workflow(name="outcomes")
    async def wf(ctx: convoy.Context, x: int) -> str:
        got = []
        try:
            await ctx.step("crm", refuse)
        except ConnectionRefusedError as e:
            got.append(f"refused:{e}")
        try:
            await ctx.step("quota", quota)
        except QuotaError as e:
            got.append(f"quota:{e.args}")
        await ctx.step("after", then_crash, idempotent=True)
        return ",".join(got)

    await _crash_run(engine_factory(), wf)
    async with later_engine(db, workflows=[wf]) as eng2:
        [res] = await eng2.resume()
        assert res.ok, res.error
        assert res.output == "refused:crm down,quota:('over quota', 7)"
        assert calls == ["refuse"]  # the recorded failure replayed; nothing called twice
        journal = await eng2.store.load_journal(res.id)
        assert journal["0"].status == "failed" and journal["1"].status == "failed"
        rr = await eng2.replay(res.id)
        assert rr.matches


async def _crash_run(eng: convoy.Engine, wf: convoy.Workflow[Any, Any]) -> None:
    with pytest.raises(Crash):
        await eng.run(wf, 1, session_id="s")


async def test_replay_of_a_budget_exhausted_session_matches(engine_factory: Any) -> None:
    sim = convoy.SimModel({"*": {"output": OK}}, usage=(100, 20))
    agents = [convoy.Agent(name=f"a{i}", output_type=Classification, model=sim) for i in range(4)]

    @convoy.workflow(name="budgeted")
    async def wf(ctx: convoy.Context, t: str) -> Classification:
        out: Classification = await convoy.pipeline(ctx, agents, t)
        return out

    eng = engine_factory(interceptors=[Budgets(session=Budget(tokens=250))])
    res = await eng.run(wf, "t")
    assert res.status == "budget_exhausted"
    rr = await eng.replay(res.id)
    assert rr.matches and rr.status == "budget_exhausted"


async def test_an_error_whose_class_is_gone_replays_as_a_recorded_error(
        engine_factory: Any) -> None:
    class Local(Exception):  # not importable by name: it lives in a function
        pass

    async def boom() -> None:
        raise Local("gone")

    @convoy.workflow(name="local-error")
    async def wf(ctx: convoy.Context, x: int) -> str:
        try:
            await ctx.step("boom", boom)
        except Exception as e:
            return type(e).__name__
        return "no"

    eng = engine_factory()
    res = await eng.run(wf, 1)
    assert res.output == "Local"
    rr = await eng.replay(res.id)
    assert rr.status == "completed" and rr.output == '"RecordedError"'  # a visible change
    assert not rr.matches


async def test_cancellation_is_not_journaled(engine_factory: Any) -> None:
    import asyncio

    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    @convoy.workflow(name="cancel-me")
    async def wf(ctx: convoy.Context, x: int) -> str:
        await ctx.step("hang", hang, idempotent=True)
        return "done"

    eng = engine_factory()
    task = asyncio.create_task(eng.run(wf, 1, session_id="c"))
    await started.wait()
    await eng.cancel("c")
    res = await task
    assert res.status == "cancelled"
    # one kind in the taxonomy metrics, spans, logs and the CLI share (not "other")
    assert error_kind_of(res.error) == "cancelled"
    assert await eng.store.load_journal("c") == {}
    row = await eng.store.get_session("c")
    assert row is not None and row.status == "cancelled"


def _two_step(first_input: str) -> convoy.Workflow[Any, Any]:
    sim = convoy.SimModel({"*": {"output": OK}})
    a = convoy.Agent(name="a", output_type=Classification, model=sim)
    x = convoy.Agent(name="x", output_type=Classification,
                     model=_CrashingSim())

    @convoy.workflow(name="det")
    async def wf(ctx: convoy.Context, t: str) -> Classification:
        await ctx.run(a, first_input)
        out: Classification = await ctx.run(x, t)
        return out

    return wf


class _CrashingSim(convoy.SimModel):
    crashed = False

    def __init__(self) -> None:
        super().__init__({"*": {"output": OK}})

    async def request(self, request: convoy.ModelRequest) -> convoy.ModelResponse:
        if not _CrashingSim.crashed:
            _CrashingSim.crashed = True
            raise Crash
        return await super().request(request)


async def test_a_changed_step_input_is_non_determinism(engine_factory: Any, db: str | Path) -> None:
    """Hole 8: changing what an already-journaled agent call is asked no longer replays
    the old answer silently."""
    _CrashingSim.crashed = False
    with pytest.raises(Crash):
        await engine_factory().run(_two_step("original question"), "t", session_id="d")
    async with later_engine(db, workflows=[_two_step("edited question")]) as eng2:
        [res] = await eng2.resume()
    assert res.status == "failed" and res.error is not None
    assert res.error["type"] == "NonDeterminismError" and res.error["key"] == "0/0"
    assert "different input" in res.error["message"]


async def test_a_changed_step_input_can_be_a_warning(engine_factory: Any, db: str | Path) -> None:
    _CrashingSim.crashed = False
    with pytest.raises(Crash):
        await engine_factory().run(_two_step("original question"), "t", session_id="d")
    async with later_engine(db, workflows=[_two_step("edited question")],
                            on_nondeterminism="warn") as eng2:
        with pytest.warns(convoy.durability.NonDeterminismWarning, match="different input"):
            [res] = await eng2.resume()
    assert res.ok


async def test_journal_entries_the_workflow_no_longer_asks_for_are_reported(
        engine_factory: Any) -> None:
    sim = convoy.SimModel({"*": {"output": OK}})
    a = convoy.Agent(name="a", output_type=Classification, model=sim)
    b = convoy.Agent(name="b", output_type=Classification, model=sim)

    @convoy.workflow(name="shrink")
    async def before(ctx: convoy.Context, t: str) -> str:
        await ctx.run(a, t)
        await ctx.run(b, t)
        return "ok"

    @convoy.workflow(name="shrink")
    async def after(ctx: convoy.Context, t: str) -> str:
        await ctx.run(a, t)  # the call of b was removed
        return "ok"

    eng = engine_factory()
    res = await eng.run(before, "t")
    eng.register(after)
    rr = await eng.replay(res.id)
    assert not rr.matches and rr.error is not None
    assert rr.error["type"] == "NonDeterminismError" and "1/0" in rr.error["message"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        eng.register(before)
        assert (await eng.replay(res.id)).matches


@pytest.mark.parametrize("name", ["bad\udcffname", "nul\x00name"])
async def test_a_step_or_wait_name_no_store_holds_fails_its_session_in_one_line(
        engine_factory: Any, db: str | Path, name: str) -> None:
    """A review: a ``ctx.step`` name with a lone surrogate (``os.fsdecode`` of a file name
    that is not UTF-8) lost its session on SQLite (never created; the run said another
    engine owned it) and hung the run on PostgreSQL (the write batch raised outside what
    its commit settles); a NUL in a step's or a ``ctx.wait_for``'s name left the session
    pending for ever on PostgreSQL. The session fails now, recorded, in one line; the
    others of its batch complete."""

    @convoy.workflow(name="outcomes.bad_names")
    async def wf(ctx: convoy.Context, x: str) -> str:
        if x == "step":
            await ctx.step(name, lambda: 1)
        elif x == "wait":
            await ctx.wait_for(name)
        return x

    eng = engine_factory(db=db)
    step, wait, fine = await eng.run_many(wf, ["step", "wait", "fine"])
    assert fine.ok, fine
    for res, what in ((step, "ctx.step's name"), (wait, "ctx.wait_for's signal name")):
        err = res.error or {}
        assert res.status == "failed" and err.get("type") == "UserError" and \
            err.get("message", "").startswith(what) and "\n" not in err["message"], res
        row = await eng.session(res.id)
        assert row.status == "failed", row


async def test_a_step_returns_on_its_first_run_what_it_returns_on_replay(
        engine_factory: Any, db: str | Path) -> None:
    """A review: ``ctx.step`` returned its function's own object on the first run (a
    model, a tuple, a set, a date) and the JSON of it on replay (a dict, a list, a string),
    so a workflow that used ``c.name`` completed when it never parked and failed once it
    resumed ('dict' object has no attribute 'name'). Both runs now get the value as its
    journaled JSON reads back."""
    import datetime

    from pydantic import BaseModel

    class Customer(BaseModel):
        name: str

    seen: list[Any] = []

    @convoy.workflow(name="outcomes.step_json")
    async def wf(ctx: convoy.Context, x: int) -> str:
        got = await ctx.step("fetch", lambda: {"customer": Customer(name="Ada"),
                                               "pair": (1, 2), "day": datetime.date(2026, 1, 2),
                                               "n": 3, "ratio": 0.5})
        seen.append(got)
        await ctx.wait_for("go")
        return str(got["customer"]["name"])

    eng = engine_factory(db=db)
    first = await eng.run(wf, 1, session_id="s")
    assert first.status == "waiting", first
    await eng.signal("s", "go")
    [done] = await eng.resume()
    assert done.ok and done.output == "Ada", done
    want = {"customer": {"name": "Ada"}, "pair": [1, 2], "day": "2026-01-02", "n": 3,
            "ratio": 0.5}
    assert seen == [want, want], seen
    scalar = await eng.run(_scalar_step, 1)
    assert scalar.ok and scalar.output == ["text", 7, 0.25, True, None], scalar


@convoy.workflow(name="outcomes.scalar_steps")
async def _scalar_step(ctx: convoy.Context, x: int) -> list[Any]:
    return [await ctx.step(str(v), lambda v=v: v) for v in ("text", 7, 0.25, True, None)]


@pytest.mark.parametrize(("kind", "value", "outcome"), [
    ("sleep", math.nan, "ctx.sleep's seconds must be a number of seconds"),
    ("sleep", math.inf, "to wait with no end, wait for a signal"),
    ("sleep", 1e12, "(a hundred years), got 1e+12"),
    ("wait", math.nan, "ctx.wait_for's timeout must be a number of seconds"),
    ("wait", 1e308, "pass None (or math.inf) for no timeout"),
    ("wait", math.inf, "waiting"),
    ("ask", math.nan, "ctx.ask_human's deadline must be a number of seconds"),
    ("ask", math.inf, "waiting"),
    ("state", math.nan, "the state wait's timeout must be a number of seconds"),
    ("state", math.inf, "waiting"),
])
async def test_a_wait_of_no_time_is_refused_and_inf_is_no_timeout(
        engine_factory: Any, db: str | Path, kind: str, value: float, outcome: str) -> None:
    """A new user's trial: ``timeout=math.inf`` (or a sleep of 1e12 s) was taken, and the
    session's wake time written as ``inf`` (or past the year 9999): every later read of it
    (``engine.signal``, ``sessions list``, ``resume``, a worker) called the row damaged,
    and ``resume`` left the other sessions unrun. NaN slept not at all, or never timed
    out. A duration that makes no time is refused in one line, failing its session; an
    infinite timeout or deadline is none; and the other sessions run."""

    @convoy.workflow(name="outcomes.durations")
    async def wf(ctx: convoy.Context, x: str) -> str:
        if x == "sleep":
            await ctx.sleep(value)
        elif x == "wait":
            await ctx.wait_for("go", timeout=value)
        elif x == "ask":
            await ctx.ask_human("ok?", bool, deadline=value)
        elif x == "state":
            await ctx.state("acct").wait("k", timeout=value)
        return x

    eng = engine_factory(db=db)
    res, fine = await eng.run_many(wf, [kind, "fine"])
    assert fine.ok, fine
    if outcome == "waiting":
        assert res.status == "waiting", res
        row = await eng.session(res.id)
        assert row.wake_at is None, row
        assert res.id in {s.id for s in await eng.sessions(status="waiting")}  # (readable)
    else:
        err = res.error or {}
        assert res.status == "failed" and err.get("type") == "UserError" and \
            outcome in err.get("message", ""), res
