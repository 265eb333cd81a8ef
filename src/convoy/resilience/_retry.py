"""Retries with exponential backoff and full jitter, capped by a retry budget."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from convoy._errors import StepError, UserError
from convoy.interceptors._base import Interceptor, ModelCallInput, Next, Stage, ToolCallInput
from convoy.models._messages import ModelResponse
from convoy.resilience._classify import ErrorMatches, check_matches, classify, failure_kind, matches
from convoy.resilience._scope import Scoped


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """How one step is retried.

    The n-th retry waits a uniformly random time in ``[0, min(max_delay, initial_delay *
    multiplier**n)]`` ("full jitter"), or the server's ``Retry-After`` when it sent one
    (capped at ``max_retry_after``) plus a random ``0..retry_after_jitter`` of it, so the
    calls a burst of 429s sent back do not return as one synchronised wave.

    A call makes at most ``max_attempts`` attempts (1: no retries at all). Rate limits
    (failure kind ``"rate_limited"``: HTTP 429, :class:`RateLimited`) do not use them up:
    the endpoint did not fail, it asked to be called later. They are retried, after their
    ``Retry-After``, until the call has waited ``max_rate_limited_wait`` seconds for them
    in total (``None``: they count as attempts like any failure); the retry budget still
    caps how many retries all calls make together.

    What is retried is yours to say (resilience4j's ``retryExceptions``,
    ``ignoreExceptions`` and ``retryOnResult``), each an exception class (which also
    matches the exception a tool raised or an adapter's client raised, that the
    ``ToolError`` or ``ModelError`` wraps), a failure kind (``"server_error"``), a
    predicate, or a tuple of those:

    * ``retry_on``: the failures that are retried. Default: those
      ``convoy.resilience.classify`` calls retryable.
    * ``ignore``: failures never retried (checked first).
    * ``retry_on_result``: a predicate on the answer; ``True`` retries the call (counting
      an attempt); out of attempts, the last answer is returned.
    """

    max_attempts: int = 4
    initial_delay: float = 0.1
    max_delay: float = 10.0
    multiplier: float = 2.0
    honour_retry_after: bool = True
    max_retry_after: float = 60.0
    retry_after_jitter: float = 0.2
    max_rate_limited_wait: float | None = 60.0
    retry_on: ErrorMatches | None = None
    ignore: ErrorMatches | None = None
    retry_on_result: Callable[[Any], bool] | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise UserError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        if self.max_rate_limited_wait is not None and not self.max_rate_limited_wait >= 0:
            raise UserError("RetryPolicy.max_rate_limited_wait must be >= 0 or None")
        check_matches(self.retry_on, "RetryPolicy.retry_on")
        check_matches(self.ignore, "RetryPolicy.ignore")
        if self.retry_on_result is not None and not callable(self.retry_on_result):
            raise UserError("RetryPolicy.retry_on_result must be a predicate on the answer")
        if not (0 <= self.initial_delay < math.inf and 0 <= self.max_delay < math.inf
                and 1 <= self.multiplier < math.inf):  # (NaN compares false: refused too)
            raise UserError(f"RetryPolicy delays must be finite numbers >= 0 and multiplier "
                            f">= 1, got initial_delay={self.initial_delay!r}, max_delay="
                            f"{self.max_delay!r}, multiplier={self.multiplier!r}")
        if not 0 <= self.retry_after_jitter <= 1:
            raise UserError(f"RetryPolicy.retry_after_jitter must be in [0, 1], got "
                            f"{self.retry_after_jitter!r}")

    def retries(self, error: BaseException) -> bool:
        """Is ``error`` one this policy retries (``ignore``, then ``retry_on``, then
        ``classify``), attempts left or not?"""
        if self.ignore is not None and matches(self.ignore, error):
            return False
        if self.retry_on is not None:
            return matches(self.retry_on, error)
        return classify(error) == "retryable"

    def delay(self, retry: int, error: BaseException | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry``: the server's ``Retry-After`` if
        honoured, else full jitter."""
        if self.honour_retry_after and isinstance(error, StepError) and \
                error.retry_after is not None:
            base = min(max(error.retry_after, 0.0), self.max_retry_after)
            if self.retry_after_jitter:
                base *= 1.0 + rng.uniform(0.0, self.retry_after_jitter)
            return base
        cap = min(self.max_delay, self.initial_delay * self.multiplier ** retry)
        return rng.uniform(0.0, cap)


class RetryBudget:
    """Caps the extra load retries add (Finagle's retry budget, gRPC's retry throttling).

    Every first attempt deposits ``ratio`` tokens and every retry withdraws one; both expire
    after ``ttl`` seconds, so a long healthy period does not bank retries for an outage,
    while a minute of history lets a burst of failures (a wave of 429s) draw on the calls
    around it. A floor lets a quiet or newly started system still retry: per ``ttl``
    window, ``min_retries`` retries, or as many as there are calls in flight when that is
    more (``try_retry(in_flight=...)``; :class:`Retry` passes it), so one failure that hits
    every call in flight at once (a burst of 429s right after a start) can be retried once
    whatever the history (``min_retries=0`` turns the floor off). It is per window, not
    per second, so at low traffic it does not dominate.

    Bound: over any ``ttl`` window, retries are at most ``ratio`` times the first attempts
    of the window plus the floor (``max(min_retries, calls in flight)``). With the defaults
    (``ratio=0.2``, ``min_retries=5``, ``ttl=60``) an outage adds at most about 20% extra
    calls (plus one retry per call in flight, once a minute), and a fault rate up to ~15%
    in bursts is retried in full. A denied retry re-raises the failure marked
    ``retry_budget_exhausted = True`` and counts in ``denied`` (and ``Retry.denied``).

    Args:
        ratio: retries allowed per first attempt, in ``[0, 1]``.
        min_retries: retries always allowed per ``ttl`` window.
        ttl: seconds deposits and withdrawals count.
        min_per_second: older spelling of the floor (``min_retries = min_per_second * ttl``);
            overrides ``min_retries`` when given.
    """

    def __init__(self, *, ratio: float = 0.2, min_retries: float = 5, ttl: float = 60.0,
                 min_per_second: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if min_per_second is not None:
            min_retries = min_per_second * ttl
        if not 0 <= ratio <= 1 or min_retries < 0 or ttl <= 0:
            raise UserError("RetryBudget: ratio must be in [0, 1], min_retries >= 0 and "
                            "ttl > 0")
        self.ratio = ratio
        self.min_retries = min_retries
        self.ttl = ttl
        self._clock = clock
        self._buckets: deque[list[float]] = deque()  # [second, net deposits]
        self._sec: int | None = None  # the second of the newest bucket, ``_last``
        self._last: list[float] = []
        self._net = 0.0
        self._floor_used: deque[float] = deque()  # times the floor paid for a retry
        self.calls = 0
        self.retries = 0
        self.denied = 0

    def _add(self, amount: float) -> None:
        now = self._clock()
        sec = int(now)
        if sec != self._sec:  # a new second: expire what left the window
            b = self._buckets
            horizon = now - self.ttl
            while b and b[0][0] < horizon:
                self._net -= b.popleft()[1]
            self._last = [sec, 0.0]
            b.append(self._last)
            self._sec = sec
        self._last[1] += amount
        self._net += amount

    def _floor_left(self, in_flight: int = 0) -> float:
        horizon = self._clock() - self.ttl
        f = self._floor_used
        while f and f[0] <= horizon:
            f.popleft()
        floor = max(self.min_retries, in_flight) if self.min_retries > 0 else 0.0
        return floor - len(f)

    @property
    def balance(self) -> float:
        """Retries that may be spent now (unexpired deposits minus withdrawals, plus what is
        left of this window's floor)."""
        self._add(0.0)
        return max(0.0, self._net) + max(0.0, self._floor_left())

    def on_call(self) -> None:
        """Deposit for a first attempt."""
        self.calls += 1
        if int(self._clock()) == self._sec:  # the common case, kept short
            self._last[1] += self.ratio
            self._net += self.ratio
        else:
            self._add(self.ratio)

    def try_retry(self, in_flight: int = 0) -> bool:
        """Withdraw one retry if the budget allows it; ``False`` (and counted in ``denied``) if
        not. Deposits pay first; the floor (``max(min_retries, in_flight)`` per window)
        pays when they run out."""
        self._add(0.0)
        if self._net >= 1.0:
            self._add(-1.0)
        elif self._floor_left(in_flight) >= 1.0:
            self._floor_used.append(self._clock())
        else:
            self.denied += 1
            return False
        self.retries += 1
        return True


class _Tally:
    """What one call has used of its policy: attempts made, failures counted against
    ``max_attempts``, seconds waited for rate limits."""

    __slots__ = ("attempts", "failures", "waited")

    def __init__(self) -> None:
        self.attempts = self.failures = 0
        self.waited = 0.0


class Retry(Interceptor):
    """Retries retryable failures of model calls and of idempotent tool calls.

    ``retries`` counts retries made, ``denied`` retries the :class:`RetryBudget` refused
    (the failure is then re-raised with ``retry_budget_exhausted = True``), ``in_flight``
    the calls inside it now.

    Non-idempotent tools are never retried here: a write whose outcome is unknown must not
    be applied twice. Each attempt passes everything inside this interceptor again
    (deployment routing, breaker, budget, rate limit, timeout) and the model sees
    ``request.attempt``.
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
        self.denied = 0
        self.in_flight = 0
        # By (agent, model): few, long-lived; no scope lookup on every call.
        self._by_model: dict[tuple[str, str], RetryPolicy | None] = {}

    @property
    def gave_up(self) -> int:
        """Older name of :attr:`denied`."""
        return self.denied

    def _spend(self) -> bool:
        if self.budget.try_retry(self.in_flight):
            self.retries += 1
            return True
        self.denied += 1
        return False

    async def _retry_or_raise(self, policy: RetryPolicy, tally: _Tally,
                              error: Exception) -> None:
        """Sleep before the next attempt, or re-raise ``error`` if it may not be retried."""
        if not policy.retries(error):
            raise error
        limit = policy.max_rate_limited_wait
        rate_limited = limit is not None and failure_kind(error) == "rate_limited"
        if (tally.waited >= limit) if rate_limited else (  # type: ignore[operator]
                tally.failures + 1 >= policy.max_attempts):
            raise error
        if not self._spend():
            # Reported distinctly (journaled with the error): the failure itself may have
            # been retryable; the retry budget refused to amplify it.
            error.retry_budget_exhausted = True  # type: ignore[attr-defined]
            raise error
        delay = policy.delay(tally.attempts, error, self._rng)
        if rate_limited:
            tally.waited += delay
        else:
            tally.failures += 1
        tally.attempts += 1
        await self._sleep(delay)

    async def _retry_result(self, policy: RetryPolicy, tally: _Tally, result: Any) -> bool:
        """Sleep and say ``True`` if ``result`` is to be retried (``retry_on_result``)."""
        judge = policy.retry_on_result
        if judge is None or not judge(result) or tally.failures + 1 >= policy.max_attempts \
                or not self._spend():
            return False
        delay = policy.delay(tally.attempts, None, self._rng)
        tally.failures += 1
        tally.attempts += 1
        await self._sleep(delay)
        return True

    async def _again(self, policy: RetryPolicy, call: Callable[[Any], Awaitable[Any]],
                     input: Any, error: Exception | None, result: Any) -> Any:
        """The attempts after the first, which failed with ``error`` or answered ``result``
        (a frame of its own, paid only by calls that are retried)."""
        tally = _Tally()
        model = isinstance(input, ModelCallInput)
        while True:
            if error is not None:
                await self._retry_or_raise(policy, tally, error)
            elif not await self._retry_result(policy, tally, result):
                return result
            if model:
                input.request.attempt = tally.attempts
            try:
                result = await call(input)
                error = None
            except Exception as e:
                error = e

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        key = (input.agent.name, input.model.name)
        try:
            policy = self._by_model[key]
        except KeyError:
            policy = self._by_model[key] = self.scope.for_model(*key)
        if policy is None or policy.max_attempts == 1:
            return await next(input)
        self.budget.on_call()
        self.in_flight += 1
        try:
            input.request.attempt = 0
            try:
                resp = await next(input)
            except Exception as e:
                out: ModelResponse = await self._again(policy, next, input, e, None)
                return out
            if policy.retry_on_result is None:
                return resp
            out = await self._again(policy, next, input, None, resp)
            return out
        finally:
            self.in_flight -= 1

    async def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        policy = self.scope.for_tool(input.agent.name, input.tool.name)
        if policy is None or policy.max_attempts == 1 or not input.tool.idempotent:
            return await next(input)
        self.budget.on_call()
        self.in_flight += 1
        try:
            try:
                out = await next(input)
            except Exception as e:
                return await self._again(policy, next, input, e, None)
            if policy.retry_on_result is None:
                return out
            return await self._again(policy, next, input, None, out)
        finally:
            self.in_flight -= 1
