"""Bulkheads (concurrent-call caps) and rate limits (token buckets), both with
backpressure: a call over the limit waits its turn instead of failing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from convoy._errors import UserError
from convoy.interceptors._base import Interceptor, ModelCallInput, Next, Stage, ToolCallInput
from convoy.models._messages import ModelRequest, ModelResponse
from convoy.resilience._scope import Scoped


class Bulkhead(Interceptor):
    """At most N concurrent calls per model endpoint and per tool; the rest wait."""

    stage: Stage = "bulkhead"

    def __init__(self, *, model: int | None = None, tool: int | None = None,
                 models: Mapping[str, int | None] | None = None,
                 tools: Mapping[str, int | None] | None = None) -> None:
        for v in (model, tool, *(models or {}).values(), *(tools or {}).values()):
            if v is not None and v < 1:
                raise UserError(f"bulkhead limits must be >= 1, got {v}")
        self._models: Scoped[int] = Scoped(default=model, models=models or {})
        self._tools: Scoped[int] = Scoped(default=tool, tools=tools or {})
        self._sems: dict[str, asyncio.Semaphore] = {}
        self.waited = 0

    def _sem(self, key: str, n: int) -> asyncio.Semaphore:
        sem = self._sems.get(key)
        if sem is None:
            sem = self._sems[key] = asyncio.Semaphore(n)
        return sem

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        n = self._models.for_model("", input.model.name)
        if n is None:
            return await next(input)
        sem = self._sem("model:" + input.model.name, n)
        if sem.locked():
            self.waited += 1
        async with sem:
            return await next(input)

    async def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        n = self._tools.for_tool("", input.tool.name)
        if n is None:
            return await next(input)
        sem = self._sem("tool:" + input.tool.name, n)
        if sem.locked():
            self.waited += 1
        async with sem:
            return await next(input)


@dataclass(frozen=True, kw_only=True, slots=True)
class Rate:
    """Requests per minute and tokens per minute for one endpoint (``None``: unlimited)."""

    rpm: float | None = None
    tpm: float | None = None

    def __post_init__(self) -> None:
        if (self.rpm is not None and self.rpm <= 0) or (self.tpm is not None and self.tpm <= 0):
            raise UserError("Rate.rpm and Rate.tpm must be > 0 or None")


class TokenBucket:
    """A bucket of ``capacity`` tokens refilled at ``rate`` per second. ``take`` waits
    (FIFO) until the tokens are there; ``adjust`` settles the difference afterwards (the
    balance may go negative, so the next callers wait for the debt)."""

    def __init__(self, rate: float, capacity: float,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.rate, self.capacity = rate, capacity
        self._clock = clock
        self._sleep = sleep
        self.tokens = capacity
        self._last = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate)
        self._last = now

    async def take(self, n: float) -> float:
        """Wait until ``n`` tokens can be taken; returns the seconds waited."""
        n = min(n, self.capacity)
        waited = 0.0
        async with self._lock:
            self._refill()
            if self.tokens < n:
                delay = (n - self.tokens) / self.rate
                await self._sleep(delay)
                waited += delay
                self._refill()
                # The wait covered the deficit: rounding (a clock read at 1e6 s cannot
                # show a 1e-11 s step) or a timer fired a little early must not make it
                # wait again for a sliver, or forever on a clock that did not move.
                self.tokens = max(self.tokens, n)
            self.tokens -= n
        return waited

    def adjust(self, delta: float) -> None:
        """Settle the difference between what was taken and what was used (the balance may go
        negative)."""
        self._refill()
        self.tokens = min(self.capacity, self.tokens - delta)


def estimate_usage(req: ModelRequest) -> tuple[int, int]:
    """A pre-call estimate of (input, output) tokens: ~4 characters per input token, and
    the output allowance (``max_tokens``, or 256)."""
    chars = sum(len(m.content or "") for m in req.messages)
    return chars // 4 + 1, req.settings.max_tokens or 256


def estimate_tokens(req: ModelRequest) -> int:
    i, o = estimate_usage(req)
    return i + o


class RateLimit(Interceptor):
    """Requests-per-minute and tokens-per-minute token buckets per model endpoint.

    ``clock`` (monotonic seconds) and ``sleep`` are injectable, for tests that fake time.
    """

    stage: Stage = "rate_limit"

    def __init__(self, default: Rate | None = None, *, models: Mapping[str, Rate | None] | None
                 = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self._scope: Scoped[Rate] = Scoped(default=default, models=models or {})
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, tuple[TokenBucket | None, TokenBucket | None]] = {}
        self.waited_s = 0.0

    def _for(self, model: str, rate: Rate) -> tuple[TokenBucket | None, TokenBucket | None]:
        b = self._buckets.get(model)
        if b is None:
            rpm = TokenBucket(rate.rpm / 60, rate.rpm, self._clock, self._sleep) \
                if rate.rpm else None
            tpm = TokenBucket(rate.tpm / 60, rate.tpm, self._clock, self._sleep) \
                if rate.tpm else None
            b = self._buckets[model] = (rpm, tpm)
        return b

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        rate = self._scope.for_model("", input.model.name)
        if rate is None:
            return await next(input)
        rpm, tpm = self._for(input.model.name, rate)
        # ``self.waited_s += await ...`` would read the total before the wait and lose
        # what concurrent calls add meanwhile.
        if rpm is not None:
            waited = await rpm.take(1)
            self.waited_s += waited
        estimate = estimate_tokens(input.request) if tpm is not None else 0
        if tpm is not None:
            waited = await tpm.take(estimate)
            self.waited_s += waited
        resp = await next(input)
        if tpm is not None:
            tpm.adjust(resp.usage.total_tokens - estimate)
        return resp
