"""Built-in interceptors: step timing, token / cost accounting, shared-state counters."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from convoy._errors import StateConflict, StepError
from convoy._stats import percentile
from convoy.cost._pricing import PriceTable
from convoy.interceptors._base import (
    EffectInput,
    HandoffInput,
    Interceptor,
    ModelCallInput,
    Next,
    Stage,
    StateInput,
    ToolCallInput,
)
from convoy.models._messages import ModelResponse, Usage

T = TypeVar("T")


@dataclass(slots=True)
class Durations:
    """Durations (seconds) of one kind of step, kept in full for exact percentiles."""

    samples: list[float] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.samples)

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile (``p`` in 0..100); NaN when there are no samples."""
        return percentile(self.samples, p)


class StepTimings(Interceptor):
    """Times every step by kind (``model``, ``tool``, ``handoff``, ``effect``)."""

    stage: Stage = "timing"

    def __init__(self, *, keep: int = 100_000) -> None:
        self.by_kind: dict[str, Durations] = defaultdict(Durations)
        self.keep = keep

    async def _timed(self, kind: str, call: Awaitable[T]) -> T:
        t = time.perf_counter()
        try:
            return await call
        finally:
            d = self.by_kind[kind]
            if len(d.samples) < self.keep:
                d.samples.append(time.perf_counter() - t)

    def model_call(self, input: ModelCallInput,
                   next: Next[ModelCallInput, ModelResponse],
                   ) -> Coroutine[Any, Any, ModelResponse]:
        return self._timed("model", next(input))

    def tool_call(self, input: ToolCallInput,
                  next: Next[ToolCallInput, Any]) -> Coroutine[Any, Any, Any]:
        return self._timed("tool", next(input))

    def handoff(self, input: HandoffInput,
                next: Next[HandoffInput, Any]) -> Coroutine[Any, Any, Any]:
        return self._timed("handoff", next(input))

    def effect(self, input: EffectInput,
               next: Next[EffectInput, Any]) -> Coroutine[Any, Any, Any]:
        return self._timed("effect", next(input))

    def state_op(self, input: StateInput,
                 next: Next[StateInput, Any]) -> Coroutine[Any, Any, Any]:
        return self._timed("state", next(input))


@dataclass(slots=True)
class Spend:
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    calls: int = 0


class UsageAccounting(Interceptor):
    """Prices every model response and totals tokens and cost per agent, per model, per
    deployment (:attr:`convoy.Model.deployment`) and per tenant.

    It sets ``response.cost``, which is journaled with the response, so a session's totals
    survive a restart and replayed steps are never billed again.

    A step adds to one total, of its (agent, model, deployment, tenant); the totals by
    each of them (:attr:`by_agent`, ...) are summed from those when read.
    """

    stage: Stage = "accounting"

    def __init__(self, prices: PriceTable | None = None) -> None:
        self.prices = prices or PriceTable()
        self._spends: dict[tuple[str, str, str, str], Spend] = {}

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        try:
            resp = await next(input)
        except StepError as e:
            # The model that failed, kept with the failure (journaled with its error
            # record: what a span derived from it names); the adapter's own, if it set one.
            if getattr(e, "model", None) is None:
                e.model = input.model.name  # type: ignore[attr-defined]
            raise
        model = input.model
        deployment = model.deployment
        usage = resp.usage
        resp.cost = cost = self.prices.cost(resp.model or model.name, usage, deployment)
        key = (input.agent.name, resp.model, deployment, input.session.tenant)
        spend = self._spends.get(key)
        if spend is None:
            spend = self._spends[key] = Spend()
        total = spend.usage  # ``Usage.add``, inlined: once per model step
        total.input_tokens += usage.input_tokens
        total.output_tokens += usage.output_tokens
        spend.cost += cost
        spend.calls += 1
        return resp

    def _by(self, part: int) -> defaultdict[str, Spend]:
        out: defaultdict[str, Spend] = defaultdict(Spend)
        for key, spend in self._spends.items():
            acc = out[key[part]]
            acc.usage.add(spend.usage)
            acc.cost += spend.cost
            acc.calls += spend.calls
        return out

    @property
    def by_agent(self) -> defaultdict[str, Spend]:
        """Totals per agent name (a snapshot)."""
        return self._by(0)

    @property
    def by_model(self) -> defaultdict[str, Spend]:
        """Totals per model name, as the responses gave it (a snapshot)."""
        return self._by(1)

    @property
    def by_deployment(self) -> defaultdict[str, Spend]:
        """Totals per deployment (a snapshot)."""
        return self._by(2)

    @property
    def by_tenant(self) -> defaultdict[str, Spend]:
        """Totals per tenant (a snapshot)."""
        return self._by(3)


@dataclass(slots=True)
class StateCounts:
    """Shared-state operations that ran (replayed ones are not counted again)."""

    reads: int = 0
    writes: int = 0
    conflicts: int = 0


class StateStats(Interceptor):
    """Counts shared-state operations: reads (``get``, ``history``, ``keys``), writes that
    landed, and conflicts (stale compare-and-set writes refused), in all and by the kind of
    namespace (what precedes its first ``:``: ``customer`` for ``customer:42``, ``session``
    for a session's own), so entities do not each get a counter.

    The engine keeps one as ``engine.state_stats``.
    """

    stage: Stage = "accounting"

    def __init__(self) -> None:
        self.total = StateCounts()
        self.by_kind: dict[str, StateCounts] = defaultdict(StateCounts)

    @property
    def conflicts(self) -> int:
        """Stale writes refused so far."""
        return self.total.conflicts

    async def state_op(self, input: StateInput, next: Next[StateInput, Any]) -> Any:
        kind = self.by_kind[input.namespace.split(":", 1)[0]]
        try:
            out = await next(input)
        except StateConflict:
            self.total.conflicts += 1
            kind.conflicts += 1
            raise
        if input.op == "set":
            self.total.writes += 1
            kind.writes += 1
        elif input.op != "watch":
            self.total.reads += 1
            kind.reads += 1
        return out
