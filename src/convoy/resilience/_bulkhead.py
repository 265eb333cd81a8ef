"""Bulkheads (concurrent-call caps) and rate limits (smoothed token buckets), both with
backpressure: a call over the limit waits its turn (a rate limit at most ``max_wait``)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from convoy._errors import StepError, UserError
from convoy.interceptors._base import Interceptor, ModelCallInput, Next, Stage, ToolCallInput
from convoy.models._base import Model
from convoy.models._messages import ModelRequest, ModelResponse
from convoy.resilience._scope import Scoped

if TYPE_CHECKING:
    from convoy.engine._engine import Engine
    from convoy.stores._protocol import Store


class Bulkhead(Interceptor):
    """At most N concurrent calls per model deployment and per tool; the rest wait."""

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
        model = input.model
        n = self._models.for_endpoint("", model)
        if n is None:
            return await next(input)
        sem = self._sem("model:" + model.deployment, n)
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


class RateLimited(StepError):
    """A call would have waited longer than ``Rate.max_wait`` for its rate-limit token
    (resilience4j's ``RequestNotPermitted``). Retryable, with ``retry_after`` set to the wait
    it would have needed; not a failure of the endpoint (breakers ignore it)."""

    kind = "rate_limited"


@dataclass(frozen=True, kw_only=True, slots=True)
class Rate:
    """Requests and tokens per minute for one endpoint (``None``: unlimited).

    The buckets are smoothed: they refill continuously (``rpm / 60`` requests a second) and
    hold at most ``burst`` requests (default: one second's worth, at least 1) and
    ``tpm_burst`` tokens (default: one second's worth, at least one call's estimate gets
    through, its excess owed). So over *any* window of ``w`` seconds at most
    ``rpm * w / 60 + burst`` requests pass: never the double limit a full bucket of
    ``rpm`` allows in its first minute. A call waits for its turn at most ``max_wait``
    seconds (``None``: as long as it takes), then fails with :class:`RateLimited`.
    """

    rpm: float | None = None
    tpm: float | None = None
    burst: float | None = None
    tpm_burst: float | None = None
    max_wait: float | None = None

    def __post_init__(self) -> None:
        # (``not x > 0``: NaN compares false, and is refused too)
        if (self.rpm is not None and not 0 < self.rpm < math.inf) or (
                self.tpm is not None and not 0 < self.tpm < math.inf):
            raise UserError(f"Rate.rpm and Rate.tpm must be finite numbers > 0 or None, got "
                            f"rpm={self.rpm!r}, tpm={self.tpm!r}")
        for name in ("burst", "tpm_burst"):
            v = getattr(self, name)
            if v is not None and not 1 <= v < math.inf:
                raise UserError(f"Rate.{name} must be a finite number >= 1 or None, got {v!r}")
        if self.max_wait is not None and not self.max_wait >= 0:
            raise UserError(f"Rate.max_wait must be >= 0 or None, got {self.max_wait!r}")
        if self.rpm is not None and self.burst is None:
            object.__setattr__(self, "burst", max(1.0, self.rpm / 60))
        if self.tpm is not None and self.tpm_burst is None:
            object.__setattr__(self, "tpm_burst", max(1.0, self.tpm / 60))


class TokenBucket:
    """A bucket of at most ``capacity`` tokens refilled at ``rate`` per second.

    ``take`` reserves its tokens at once (the balance may go negative: later callers wait
    behind the debt, first come first served) and sleeps until the reservation is covered.
    A take larger than the capacity waits for a full bucket and leaves the rest as debt.
    ``adjust`` settles the difference between what was taken and what was used.
    """

    def __init__(self, rate: float, capacity: float,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.rate, self.capacity = rate, capacity
        self._clock = clock
        self._sleep = sleep
        self.tokens = capacity
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate)
        self._last = now

    def wait_for(self, n: float) -> float:
        """Seconds a ``take(n)`` would wait now."""
        self._refill()
        return max(0.0, (min(n, self.capacity) - self.tokens) / self.rate)

    async def take(self, n: float, max_wait: float | None = None) -> float:
        """Reserve ``n`` tokens and wait until they are covered; returns the seconds waited.
        Raises :class:`RateLimited` (reserving nothing) if that is more than ``max_wait``."""
        delay = self.wait_for(n)
        if max_wait is not None and delay > max_wait:
            raise RateLimited(f"rate limit: the next token is {delay:.3g}s away, more than "
                              f"max_wait={max_wait:g}s", retryable=True, retry_after=delay)
        self.tokens -= n
        if delay > 0:
            try:
                await self._sleep(delay)
            except BaseException:
                self.tokens += n  # cancelled while waiting: the reservation is returned
                raise
        return delay

    def adjust(self, delta: float) -> None:
        """Settle the difference between what was taken and what was used (the balance may go
        negative)."""
        self._refill()
        self.tokens = min(self.capacity, self.tokens - delta)


def estimate_usage(req: ModelRequest) -> tuple[int, int]:
    """A pre-call *expectation* of (input, output) tokens, for the tokens-per-minute bucket
    (settled on the actual usage after the call): ~4 characters per input token, and
    ``max_tokens`` or 256 output tokens. Budgets reserve an upper bound instead
    (:func:`reserve_usage`)."""
    chars = sum(len(m.content or "") for m in req.messages)
    return chars // 4 + 1, req.settings.max_tokens or 256


def estimate_tokens(req: ModelRequest) -> int:
    i, o = estimate_usage(req)
    return i + o


#: Output ceilings (max completion tokens) of common models, by bare model id.
KNOWN_OUTPUT_CEILINGS: dict[str, int] = {
    "gpt-4o": 16_384, "gpt-4o-mini": 16_384, "gpt-4.1": 32_768, "gpt-4.1-mini": 32_768,
    "gpt-4.1-nano": 32_768, "gpt-4-turbo": 4_096, "gpt-3.5-turbo": 4_096,
}
#: The output ceiling assumed for a model that states none and is not in the table.
DEFAULT_OUTPUT_CEILING = 4_096


def output_ceiling(model: Model | None) -> int:
    """The most output tokens one answer of ``model`` can have: its ``max_output_tokens``,
    else :data:`KNOWN_OUTPUT_CEILINGS` by model id, else :data:`DEFAULT_OUTPUT_CEILING`."""
    if model is None:
        return DEFAULT_OUTPUT_CEILING
    if model.max_output_tokens is not None:
        return model.max_output_tokens
    bare = model.name.partition(":")[2] or model.name
    return KNOWN_OUTPUT_CEILINGS.get(bare, DEFAULT_OUTPUT_CEILING)


def reserve_usage(req: ModelRequest, model: Model | None) -> tuple[int, int]:
    """What a budget reserves before a call: the input estimate and the output *ceiling*
    (the request's ``max_tokens``, else :func:`output_ceiling` of the model), so a call
    in flight can never cost more than it holds unless the input estimate was short."""
    i, _ = estimate_usage(req)
    return i, req.settings.max_tokens or output_ceiling(model)


class RateLimit(Interceptor):
    """Requests-per-minute and tokens-per-minute token buckets per model deployment (two
    deployments of one model have buckets of their own; ``models`` is keyed by model name
    or by deployment).

    The buckets live in the engine's store (``shared=True``, the default): every engine on
    that store draws on the same ones, on the store's clock, one store round trip per
    call and bucket (two with both ``rpm`` and ``tpm``). ``shared=False`` keeps them in
    this process (right only if one engine calls the endpoint), on ``clock`` (monotonic
    seconds). ``sleep`` waits for a token; both are injectable, for tests that fake time.
    """

    stage: Stage = "rate_limit"

    def __init__(self, default: Rate | None = None, *, models: Mapping[str, Rate | None] | None
                 = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 shared: bool = True) -> None:
        self._scope: Scoped[Rate] = Scoped(default=default, models=models or {})
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, tuple[TokenBucket | None, TokenBucket | None]] = {}
        self.shared = shared
        self._store: Store | None = None
        self.waited_s = 0.0
        self.refused = 0

    async def start(self, engine: Engine) -> None:
        self._store = engine.store if self.shared else None

    def _for(self, deployment: str, rate: Rate) -> tuple[TokenBucket | None, TokenBucket | None]:
        b = self._buckets.get(deployment)
        if b is None:
            rpm = TokenBucket(rate.rpm / 60, rate.burst or 1.0, self._clock, self._sleep) \
                if rate.rpm else None
            tpm = TokenBucket(rate.tpm / 60, rate.tpm_burst or 1.0, self._clock, self._sleep) \
                if rate.tpm else None
            b = self._buckets[deployment] = (rpm, tpm)
        return b

    def wait_for(self, model: Model) -> float:
        """Seconds a call to ``model`` would wait now for its request token (0: none)."""
        rate = self._scope.for_endpoint("", model)
        if rate is None or rate.rpm is None:
            return 0.0
        rpm, _ = self._for(model.deployment, rate)
        return rpm.wait_for(1) if rpm is not None else 0.0

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        rate = self._scope.for_endpoint("", input.model)
        if rate is None:
            return await next(input)
        if self._store is not None:
            return await self._shared(self._store, rate, input, next)
        rpm, tpm = self._for(input.model.deployment, rate)
        # ``self.waited_s += await ...`` would read the total before the wait and lose
        # what concurrent calls add meanwhile.
        estimate = estimate_tokens(input.request) if tpm is not None else 0
        max_wait = rate.max_wait
        try:
            waited = await rpm.take(1, max_wait) if rpm is not None else 0.0
            if tpm is not None:
                try:
                    waited += await tpm.take(
                        estimate, None if max_wait is None else max(0.0, max_wait - waited))
                except RateLimited:
                    if rpm is not None:
                        rpm.tokens += 1  # the request token goes back
                    raise
        except RateLimited:
            self.refused += 1
            raise
        self.waited_s += waited
        resp = await next(input)
        if tpm is not None:
            tpm.adjust(resp.usage.total_tokens - estimate)
        return resp

    async def _shared(self, store: Store, rate: Rate, input: ModelCallInput,
                      next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        """The buckets in the store: the request and its token estimate are taken at once,
        and the call waits until both are covered."""
        model = input.model.deployment
        rpm = (f"rate:rpm:{model}", 1.0, rate.rpm / 60, rate.burst or 1.0) if rate.rpm \
            else None
        tpm = (f"rate:tpm:{model}", float(estimate_tokens(input.request)), rate.tpm / 60,
               rate.tpm_burst or 1.0) if rate.tpm else None
        taken: list[tuple[str, float, float, float]] = []
        wait = 0.0
        try:
            for bucket in (rpm, tpm):
                if bucket is None:
                    continue
                name, n, per_s, cap = bucket
                ok, w = await store.take(name, n, rate=per_s, capacity=cap,
                                         max_wait=rate.max_wait)
                if not ok:
                    self.refused += 1
                    raise RateLimited(f"rate limit: the next token is {w:.3g}s away, more "
                                      f"than max_wait={rate.max_wait:g}s", retryable=True,
                                      retry_after=w)
                taken.append(bucket)
                wait = max(wait, w)
            if wait > 0:
                await self._sleep(wait)
        except BaseException:
            for name, n, per_s, cap in taken:  # refused or cancelled: the tokens go back
                store.give(name, n, rate=per_s, capacity=cap).add_done_callback(_quiet)
            raise
        self.waited_s += wait
        resp = await next(input)
        if tpm is not None:
            name, n, per_s, cap = tpm
            store.give(name, n - resp.usage.total_tokens, rate=per_s,
                       capacity=cap).add_done_callback(_quiet)
        return resp


def _quiet(fut: asyncio.Future[None]) -> None:
    """A bucket adjustment nobody waits for: a failure only leaves the bucket a little off
    (it refills anyway), so it is retrieved and dropped."""
    if not fut.cancelled():
        fut.exception()
