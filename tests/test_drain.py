"""A graceful stop (``Engine.drain``): the steps in flight finish and are journaled, no
step starts after, and the sessions are left unfinished and released, so that a later run
goes on from where they stopped, runs nothing twice and escalates nothing (a stop that
cancels a non-idempotent effect in flight leaves it ``started``, which only a person can
settle). Each test waits for observable state (an effect that has begun), never a clock."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import convoy


class Effects:
    """Non-idempotent effects that count their calls; ``gate`` holds them until it is set,
    and ``begun`` is set once ``expect`` of them have begun."""

    def __init__(self, expect: int = 1) -> None:
        self.expect = expect
        self.calls: Counter[str] = Counter()
        self.begun = asyncio.Event()
        self.gate = asyncio.Event()

    def flow(self, steps: int = 3) -> convoy.Workflow[Any, Any]:
        @convoy.workflow(name="effects", version="1")
        async def wf(ctx: convoy.Context, text: str) -> str:
            for n in range(steps):
                await ctx.step(f"s{n}", lambda n=n: self._effect(f"{text}/s{n}"))
            return text

        return wf

    async def _effect(self, name: str) -> str:
        self.calls[name] += 1
        if sum(self.calls.values()) >= self.expect:
            self.begun.set()
        await self.gate.wait()
        return name


async def test_a_drained_run_finishes_its_step_in_flight_and_resumes_without_escalating(
        tmp_path: Path) -> None:
    fx = Effects(expect=2)
    wf = fx.flow()
    async with convoy.Engine(tmp_path / "d.db") as engine:
        run = asyncio.create_task(engine.run_many(wf, ["a", "b"], ids=["a", "b"]))
        await fx.begun.wait()  # both sessions are in their first effect
        engine.drain()
        assert engine.draining
        fx.gate.set()
        results = await run
        assert [r.status for r in results] == ["pending", "pending"]
        rows = await engine.store.get_sessions(["a", "b"])
        assert {r.status for r in rows.values()} == {"pending"}
        assert all(r.owner is None for r in rows.values())  # released, not left owned
        for sid in ("a", "b"):  # s0 journaled as done; s1 never started
            journal = await engine.store.journal(sid)
            assert [(r.target, r.status) for r in journal] == [("s0", "completed")], journal
        listed = await engine.store.list_sessions(convoy.stores.SessionFilter())
        assert {r.id: r.steps for r in listed} == {"a": 1, "b": 1}  # (as sessions list)
    async with convoy.Engine(tmp_path / "d.db") as engine:
        engine.register(wf)
        resumed = await engine.resume()
        assert sorted((r.id, r.status) for r in resumed) == [("a", "completed"),
                                                              ("b", "completed")]
    assert set(fx.calls.values()) == {1}, fx.calls  # every effect ran once, none twice
    assert len(fx.calls) == 6


async def test_a_drained_run_many_starts_none_of_the_sessions_left(tmp_path: Path) -> None:
    fx = Effects()
    wf = fx.flow(steps=1)
    async with convoy.Engine(tmp_path / "d.db", concurrency=1) as engine:
        run = asyncio.create_task(engine.run_many(wf, ["a", "b", "c"], ids=["a", "b", "c"]))
        await fx.begun.wait()  # "a" runs; "b" and "c" wait for the one slot
        engine.drain()
        fx.gate.set()
        results = await run
        assert [(r.id, r.status) for r in results] == [
            ("a", "completed"), ("b", "pending"), ("c", "pending")]
        rows = await engine.store.get_sessions(["b", "c"])
        assert [(r.status, r.owner) for r in rows.values()] == [("pending", None)] * 2
    assert list(fx.calls) == ["a/s0"]
    async with convoy.Engine(tmp_path / "d.db") as engine:
        engine.register(wf)
        assert sorted(r.status for r in await engine.resume()) == ["completed"] * 2
    assert sorted(fx.calls) == ["a/s0", "b/s0", "c/s0"] and set(fx.calls.values()) == {1}


async def test_serve_returns_once_a_drain_has_stopped_its_sessions(tmp_path: Path) -> None:
    fx = Effects()
    wf = fx.flow(steps=3)
    async with convoy.Engine(tmp_path / "d.db") as engine:  # "a" stops after its s0
        run = asyncio.create_task(engine.run_many(wf, ["a"], ids=["a"]))
        await fx.begun.wait()
        engine.drain()
        fx.gate.set()
        assert [r.status for r in await run] == ["pending"]
    fx.begun, fx.gate, fx.expect = asyncio.Event(), asyncio.Event(), 2
    async with convoy.Engine(tmp_path / "d.db") as engine:
        engine.register(wf)
        serving = asyncio.create_task(engine.serve(poll_interval=0.01))
        await fx.begun.wait()  # it claimed "a", which is in its s1
        engine.drain()
        await asyncio.sleep(0)
        assert not serving.done()  # its session's step is still in flight
        fx.gate.set()
        await serving  # returns, not cancelled
        row = await engine.store.get_session("a")
        assert row is not None and (row.status, row.owner) == ("pending", None)
    async with convoy.Engine(tmp_path / "d.db") as engine:
        engine.register(wf)
        assert [r.status for r in await engine.resume()] == ["completed"]
    assert fx.calls == Counter({"a/s0": 1, "a/s1": 1, "a/s2": 1})


# -- a data subject's session, on an engine without the master key -----------------------


async def _left_pending(db: Path, fx: Effects, wf: convoy.Workflow[Any, Any], sid: str,
                        **kw: Any) -> None:
    """Session ``sid`` started, stopped by a drain after its first effect: pending."""
    async with convoy.Engine(db, **kw) as engine:
        run = asyncio.create_task(engine.run_many(wf, [sid], ids=[sid], **(
            {"subject": "ada"} if "master_key" in kw else {})))
        await fx.begun.wait()
        engine.drain()
        fx.gate.set()
        assert [r.status for r in await run] == ["pending"]
    fx.begun, fx.gate = asyncio.Event(), asyncio.Event()


async def test_without_the_master_key_a_subjects_session_is_left_and_the_others_run(
        tmp_path: Path) -> None:
    """Its input and journal are sealed: resume says so for it (nothing claimed) and runs
    the others; serve stops, saying so, once the sessions it runs have stopped."""
    from convoy.privacy import MasterKey

    key = MasterKey.from_text(MasterKey.generate())
    fx = Effects()
    wf = fx.flow(steps=2)
    db = tmp_path / "d.db"
    await _left_pending(db, fx, wf, "ada-1", master_key=key)
    await _left_pending(db, fx, wf, "plain")
    fx.gate.set()
    async with convoy.Engine(db) as engine:  # no master key
        engine.register(wf)
        results = {r.id: r for r in await engine.resume()}
        assert results["plain"].status == "completed"
        left = results["ada-1"]
        assert left.status == "pending" and left.error is not None
        assert left.error["type"] == "MasterKeyNeeded"
        assert "CONVOY_MASTER_KEY_FILE" in left.error["message"]
        row = await engine.store.get_session("ada-1")
        assert row is not None and (row.status, row.owner) == ("pending", None)
    async with convoy.Engine(db) as engine:
        engine.register(wf)
        with pytest.raises(convoy.UserError, match=r"cannot run session 'ada-1'.*MASTER_KEY"):
            await engine.serve(poll_interval=0.01)
        row = await engine.store.get_session("ada-1")
        assert row is not None and (row.status, row.owner) == ("pending", None)
    async with convoy.Engine(db, master_key=key) as engine:
        engine.register(wf)
        assert [r.status for r in await engine.resume()] == ["completed"]
    assert set(fx.calls.values()) == {1} and len(fx.calls) == 4
