"""Retries with exponential backoff and full jitter, capped by a retry budget."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from convoy._errors import StepError, UserError
from convoy._interceptors import Interceptor, ModelCallInput, Next, ToolCallInput
from convoy._messages import ModelResponse
from convoy.resilience._classify import classify
from convoy.resilience._scope import Scoped


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """How one step is retried.

    The n-th retry waits a uniformly random time in ``[0, min(max_delay, initial_delay *
    multiplier**n)]`` ("full jitter"), or the server's ``Retry-After`` when it sent one
    (capped at ``max_retry_after``).
    """

    max_attempts: int = 4
    initial_delay: float = 0.1
    max_delay: float = 10.0
    multiplier: float = 2.0
    honour_retry_after: bool = True
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise UserError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        if self.initial_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise UserError("RetryPolicy delays must be >= 0 and multiplier >= 1")

    def delay(self, retry: int, error: BaseException | None, rng: random.Random) -> float:
        if self.honour_retry_after and isinstance(error, StepError) and \
                error.retry_after is not None:
            return min(max(error.retry_after, 0.0), self.max_retry_after)
        cap = min(self.max_delay, self.initial_delay * self.multiplier ** retry)
        return rng.uniform(0.0, cap)


class RetryBudget:
    """Caps the extra load retries add (Finagle's retry budget).

    Every first attempt deposits ``ratio`` tokens, every retry spends one, and a floor of
    ``min_per_second`` tokens a second (at most ``10 * min_per_second`` saved) lets a quiet
    system still retry. When everything fails, retries add at most about ``ratio`` of the
    calls (plus the floor), so they cannot amplify an outage.
    """

    def __init__(self, *, ratio: float = 0.1, min_per_second: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 <= ratio <= 1 or min_per_second < 0:
            raise UserError("RetryBudget: ratio must be in [0, 1] and min_per_second >= 0")
        self.ratio = ratio
        self.min_per_second = min_per_second
        self._clock = clock
        self._floor_cap = 10 * min_per_second
        self._floor = self._floor_cap
        self._deposits = 0.0
        self._last = clock()
        self.calls = 0
        self.retries = 0
        self.denied = 0

    def on_call(self) -> None:
        self.calls += 1
        self._deposits += self.ratio

    def try_retry(self) -> bool:
        now = self._clock()
        self._floor = min(self._floor_cap, self._floor + (now - self._last) * self.min_per_second)
        self._last = now
        if self._deposits >= 1.0:
            self._deposits -= 1.0
        elif self._floor >= 1.0:
            self._floor -= 1.0
        else:
            self.denied += 1
            return False
        self.retries += 1
        return True


class Retry(Interceptor):
    """Retries retryable failures of model calls and of idempotent tool calls.

    Non-idempotent tools are never retried here: a write whose outcome is unknown must not
    be applied twice. Each attempt passes everything inside this interceptor again
    (breaker, budget, rate limit, timeout) and the model sees ``request.attempt``.
    """

    def __init__(self, policy: RetryPolicy | None = None, *,
                 agents: Mapping[str, RetryPolicy | None] | None = None,
                 models: Mapping[str, RetryPolicy | None] | None = None,
                 tools: Mapping[str, RetryPolicy | None] | None = None,
                 budget: RetryBudget | None = None, seed: int | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.scope: Scoped[RetryPolicy] = Scoped(
            default=policy if policy is not None else RetryPolicy(), agents=agents or {},
            models=models or {}, tools=tools or {})
        self.budget = budget if budget is not None else RetryBudget()
        self._rng = random.Random(seed)
        self._sleep = sleep
        self.retries = 0
        self.gave_up = 0

    async def _attempts(self, policy: RetryPolicy, call: Callable[[int], Awaitable[Any]]) -> Any:
        attempt = 0
        while True:
            if attempt == 0:
                self.budget.on_call()
            try:
                return await call(attempt)
            except Exception as e:
                if classify(e) != "retryable" or attempt + 1 >= policy.max_attempts:
                    raise
                if not self.budget.try_retry():
                    self.gave_up += 1
                    raise
                self.retries += 1
                await self._sleep(policy.delay(attempt, e, self._rng))
                attempt += 1

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        policy = self.scope.for_model(input.agent.name, input.model.name)
        if policy is None or policy.max_attempts == 1:
            return await next(input)

        async def call(attempt: int) -> ModelResponse:
            input.request.attempt = attempt
            return await next(input)

        out: ModelResponse = await self._attempts(policy, call)
        return out

    async def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        policy = self.scope.for_tool(input.agent.name, input.tool.name)
        if policy is None or policy.max_attempts == 1 or not input.tool.idempotent:
            return await next(input)

        async def call(attempt: int) -> Any:
            return await next(input)

        return await self._attempts(policy, call)
