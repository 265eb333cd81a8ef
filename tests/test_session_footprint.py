"""What a running session keeps alive, and the behaviour its leaner frames must keep.

Every object a session in flight holds is walked by each full collection of the cyclic
garbage collector: with 10,000 concurrent sessions (workload W2) that walk was half the
CPU. ``bench/w2_objects.py`` prints the breakdown; the bound here catches regressions.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import convoy
from convoy import ModelRequest, ModelResponse

from .conftest import Classification

OK = '{"label": "billing", "confidence": 0.9}'


class GatedModel(convoy.Model):
    """While closed, holds every request until :meth:`open`; counts those held."""

    name = "local:gated"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = 0
        self.all_in = asyncio.Event()
        self.expect = 0

    def close(self, expect: int) -> None:
        """Hold requests from now on; ``all_in`` is set once ``expect`` are held."""
        self.gate.clear()
        self.all_in.clear()
        self.waiting, self.expect = 0, expect

    async def request(self, request: ModelRequest) -> ModelResponse:
        if not self.gate.is_set():
            self.waiting += 1
            if self.waiting == self.expect:
                self.all_in.set()
            try:
                await self.gate.wait()
            finally:
                self.waiting -= 1
        return ModelResponse(text=OK, usage=convoy.Usage(5, 5), model=self.name)


def _chain(model: GatedModel) -> convoy.Workflow[Any, Any]:
    agents = [convoy.Agent(name=f"a{k}", input_type=str if k == 0 else Classification,
                           output_type=Classification, model=model) for k in range(3)]

    @convoy.workflow(name="footprint:chain3")
    async def chain(ctx: convoy.Context, ticket: str) -> Classification:
        out: Classification = await convoy.pipeline(ctx, agents, ticket)
        return out

    return chain


async def test_a_session_waiting_on_its_model_holds_few_tracked_objects(
        engine_factory: Any) -> None:
    model = GatedModel()
    wf = _chain(model)
    eng = engine_factory(concurrency=1000)
    await asyncio.gather(*(eng.run(wf, f"warm {i}") for i in range(5)))
    n = 200
    model.close(n)
    gc.collect()
    before = len(gc.get_objects())
    runs = [asyncio.ensure_future(eng.run(wf, f"ticket {i}")) for i in range(n)]
    await model.all_in.wait()
    gc.collect()
    per_session = (len(gc.get_objects()) - before - 1) / n  # - 1: the list ``runs``
    model.gate.set()
    results = await asyncio.gather(*runs)
    assert all(r.ok and r.steps == 3 for r in results)
    # 31.8 on CPython 3.11 (48.8 before the frames and closures of the model step, the
    # pattern and the admission, and the session's own asyncio.timeout, were cut); the
    # test's own model, task and run included.
    assert per_session <= 33, f"{per_session:.1f} tracked objects per session in flight"


async def test_a_model_that_cannot_be_resolved_fails_its_step_in_the_journal(
        engine_factory: Any) -> None:
    # The model is resolved only when the step runs (a replayed step needs none): an
    # error resolving it is the step's failure, journaled, and the session's.
    agent = convoy.Agent(name="nomodel", output_type=Classification)

    @convoy.workflow(name="footprint:nomodel")
    async def wf(ctx: convoy.Context, ticket: str) -> Any:
        return await convoy.pipeline(ctx, [agent], ticket)

    eng = engine_factory()
    res = await eng.run(wf, "x")
    assert res.status == "failed" and res.error is not None
    assert res.error["type"] == "UserError" and res.error["key"] == "0/0"
    [rec] = await eng.store.journal(res.id)
    assert (rec.key, rec.kind, rec.target, rec.status) == ("0/0", "model", "nomodel", "failed")


async def test_sessions_past_the_concurrency_limit_wait_and_every_end_frees_a_slot(
        engine_factory: Any) -> None:
    model = GatedModel()
    ok = _chain(model)
    bad = convoy.Agent(name="nomodel", output_type=Classification)

    @convoy.workflow(name="footprint:fails")
    async def fails(ctx: convoy.Context, ticket: str) -> Any:
        return await convoy.pipeline(ctx, [bad], ticket)

    eng = engine_factory(concurrency=2)
    model.close(2)
    runs = [asyncio.ensure_future(eng.run(ok, f"t{i}")) for i in range(3)]
    await model.all_in.wait()
    for _ in range(20):  # the third session stays queued for admission
        await asyncio.sleep(0)
    assert model.waiting == 2 and not any(r.done() for r in runs)
    model.gate.set()
    assert all(r.ok for r in await asyncio.gather(*runs))
    # A failed session gives its slot back, as a completed one does.
    for _ in range(3):
        assert (await eng.run(fails, "x")).status == "failed"
    assert all(r.ok for r in await asyncio.gather(*(eng.run(ok, f"u{i}") for i in range(4))))
    # A cancelled one too.
    model.close(2)
    held = [asyncio.ensure_future(eng.run(ok, f"c{i}")) for i in range(2)]
    await model.all_in.wait()
    for r in held:
        r.cancel()
    await asyncio.gather(*held, return_exceptions=True)
    model.gate.set()
    assert all(r.ok for r in await asyncio.gather(*(eng.run(ok, f"v{i}") for i in range(2))))
