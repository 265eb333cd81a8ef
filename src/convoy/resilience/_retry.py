"""Retries with exponential backoff and full jitter, capped by a retry budget."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from convoy._errors import StepError, UserError
from convoy.interceptors._base import Interceptor, ModelCallInput, Next, Stage, ToolCallInput
from convoy.models._messages import ModelResponse
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
        """Seconds to wait before retry number ``retry``: the server's ``Retry-After`` if
        honoured, else full jitter."""
        if self.honour_retry_after and isinstance(error, StepError) and \
                error.retry_after is not None:
            return min(max(error.retry_after, 0.0), self.max_retry_after)
        cap = min(self.max_delay, self.initial_delay * self.multiplier ** retry)
        return rng.uniform(0.0, cap)


class RetryBudget:
    """Caps the extra load retries add (Finagle's retry budget).

    Every first attempt deposits ``ratio`` tokens and every retry withdraws one; both expire
    after ``ttl`` seconds, so a long healthy period does not bank retries for an outage.
    A reserve of ``min_per_second * ttl`` tokens lets a quiet system still retry. When
    everything fails, retries add at most about ``ratio`` of the calls (plus the reserve),
    so they cannot amplify an outage.
    """

    def __init__(self, *, ratio: float = 0.1, min_per_second: float = 1.0, ttl: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 <= ratio <= 1 or min_per_second < 0 or ttl <= 0:
            raise UserError("RetryBudget: ratio must be in [0, 1], min_per_second >= 0 and "
                            "ttl > 0")
        self.ratio = ratio
        self.reserve = min_per_second * ttl
        self.ttl = ttl
        self._clock = clock
        self._buckets: deque[list[float]] = deque()  # [second, net deposits]
        self._net = 0.0
        self.calls = 0
        self.retries = 0
        self.denied = 0

    def _add(self, amount: float) -> None:
        now = self._clock()
        sec = int(now)
        b = self._buckets
        if not b or b[-1][0] != sec:  # a new second: expire what left the window
            horizon = now - self.ttl
            while b and b[0][0] < horizon:
                self._net -= b.popleft()[1]
            b.append([sec, 0.0])
        b[-1][1] += amount
        self._net += amount

    @property
    def balance(self) -> float:
        """Retries that may be spent now (the reserve plus unexpired deposits minus withdrawals)."""
        self._add(0.0)
        return self.reserve + self._net

    def on_call(self) -> None:
        """Deposit for a first attempt."""
        self.calls += 1
        self._add(self.ratio)

    def try_retry(self) -> bool:
        """Withdraw one retry if the budget allows it; ``False`` (and counted in ``denied``) if
        not."""
        if self.balance < 1.0:
            self.denied += 1
            return False
        self._add(-1.0)
        self.retries += 1
        return True


class Retry(Interceptor):
    """Retries retryable failures of model calls and of idempotent tool calls.

    Non-idempotent tools are never retried here: a write whose outcome is unknown must not
    be applied twice. Each attempt passes everything inside this interceptor again
    (breaker, budget, rate limit, timeout) and the model sees ``request.attempt``.
    """

    stage: Stage = "retry"

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

    async def _retry_or_raise(self, policy: RetryPolicy, attempt: int, error: Exception) -> None:
        """Sleep before the next attempt, or re-raise ``error`` if it may not be retried."""
        if classify(error) != "retryable" or attempt + 1 >= policy.max_attempts:
            raise error
        if not self.budget.try_retry():
            self.gave_up += 1
            raise error
        self.retries += 1
        await self._sleep(policy.delay(attempt, error, self._rng))

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        policy = self.scope.for_model(input.agent.name, input.model.name)
        if policy is None or policy.max_attempts == 1:
            return await next(input)
        self.budget.on_call()
        attempt = 0
        while True:
            input.request.attempt = attempt
            try:
                return await next(input)
            except Exception as e:
                await self._retry_or_raise(policy, attempt, e)
            attempt += 1

    async def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        policy = self.scope.for_tool(input.agent.name, input.tool.name)
        if policy is None or policy.max_attempts == 1 or not input.tool.idempotent:
            return await next(input)
        self.budget.on_call()
        attempt = 0
        while True:
            try:
                return await next(input)
            except Exception as e:
                await self._retry_or_raise(policy, attempt, e)
            attempt += 1
