"""The recommended interceptor order, assembled from what you turn on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from convoy.interceptors._base import Interceptor
from convoy.models._base import Model
from convoy.resilience._breaker import BreakerPolicy, Breakers
from convoy.resilience._bulkhead import Bulkhead, Rate, RateLimit
from convoy.resilience._classify import FailureKind
from convoy.resilience._deployments import Deployment, Deployments
from convoy.resilience._fallback import Fallback, Router
from convoy.resilience._retry import Retry, RetryBudget, RetryPolicy
from convoy.resilience._timeout import Timeout

_DEFAULT_RETRY = RetryPolicy()
_DEFAULT_BREAKER = BreakerPolicy()


def protections(*, retry: RetryPolicy | None = _DEFAULT_RETRY,
                retry_budget: RetryBudget | None = None,
                call_timeout: float | None = 60.0, tool_timeout: float | None = 30.0,
                step_timeout: float | None = None,
                breaker: BreakerPolicy | None = _DEFAULT_BREAKER,
                breaker_state: str | Path | None = None,
                fallbacks: Mapping[str, Sequence[str | Model]] | None = None,
                fallbacks_by_kind: Mapping[FailureKind, Mapping[str, Sequence[str | Model]]]
                | None = None,
                router: Router | None = None,
                deployments: Deployments | Sequence[Deployment] | None = None,
                bulkhead: Bulkhead | None = None, rate: Rate | RateLimit | None = None,
                cache: Interceptor | None = None, budgets: Interceptor | None = None,
                before: Sequence[Interceptor] = ()) -> list[Interceptor]:
    """Interceptors for ``Engine(interceptors=...)``, outermost first:

    ``before`` (tracing, audit) → step timeout → router → cache → fallback → retry →
    deployments → circuit breaker → budget → rate limit → bulkhead → per-attempt timeout →
    adapter.

    A cache hit costs nothing; every retry attempt is routed to one of its model's
    ``deployments`` (a :class:`Deployments`, or a list of :class:`Deployment` routed
    ``"in_order"``), passes that deployment's breaker, reserves budget, takes a rate-limit
    token and gets its own timeout; a fallback model gets the whole retry policy again.
    ``fallbacks_by_kind`` are fallback chains by failure kind (:class:`Fallback`'s
    ``by_kind``): ``{"context_window_exceeded": {"*": ["openai:gpt-4.1"]}}``.
    ``breaker_state`` is a file where open circuits are kept, so a restarted engine keeps
    rejecting calls to a downstream that was failing.
    """
    chain: list[Interceptor] = list(before)
    if step_timeout is not None:
        chain.append(Timeout(step_timeout, step_timeout, label="step"))
    if router is not None:
        chain.append(router)
    if cache is not None:
        chain.append(cache)
    if fallbacks or fallbacks_by_kind:
        chain.append(Fallback(fallbacks or {}, by_kind=fallbacks_by_kind))
    if retry is not None:
        chain.append(Retry(retry, budget=retry_budget))
    if deployments:
        chain.append(deployments if isinstance(deployments, Deployments)
                     else Deployments(deployments))
    if breaker is not None:
        chain.append(Breakers(breaker, state_path=breaker_state))
    if budgets is not None:
        chain.append(budgets)
    if rate is not None:
        chain.append(rate if isinstance(rate, RateLimit) else RateLimit(rate))
    if bulkhead is not None:
        chain.append(bulkhead)
    if call_timeout is not None or tool_timeout is not None:
        chain.append(Timeout(call_timeout, tool_timeout))
    return chain
