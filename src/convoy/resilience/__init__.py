"""Resilience as interceptors: retries, timeouts, circuit breakers, fallbacks, routing among
models and among the deployments of a model, bulkheads and rate limits. :func:`protections`
assembles them in the recommended order."""

from convoy.resilience._breaker import BreakerPolicy, Breakers, CircuitBreaker
from convoy.resilience._bulkhead import (
    DEFAULT_OUTPUT_CEILING,
    KNOWN_OUTPUT_CEILINGS,
    Bulkhead,
    Rate,
    RateLimit,
    RateLimited,
    TokenBucket,
    output_ceiling,
)
from convoy.resilience._classify import (
    ERROR_KINDS,
    FAILURE_KINDS,
    ErrorKind,
    ErrorMatch,
    ErrorMatches,
    FailureKind,
    classify,
    error_kind,
    error_kind_of,
    failure_kind,
    is_downstream_failure,
)
from convoy.resilience._deployments import Deployment, Deployments, DeploymentStats, Strategy
from convoy.resilience._fallback import Fallback, Router
from convoy.resilience._protections import protections
from convoy.resilience._retry import Retry, RetryBudget, RetryPolicy
from convoy.resilience._timeout import Timeout

__all__ = [
    "DEFAULT_OUTPUT_CEILING",
    "ERROR_KINDS",
    "FAILURE_KINDS",
    "KNOWN_OUTPUT_CEILINGS",
    "BreakerPolicy",
    "Breakers",
    "Bulkhead",
    "CircuitBreaker",
    "Deployment",
    "DeploymentStats",
    "Deployments",
    "ErrorKind",
    "ErrorMatch",
    "ErrorMatches",
    "FailureKind",
    "Fallback",
    "Rate",
    "RateLimit",
    "RateLimited",
    "Retry",
    "RetryBudget",
    "RetryPolicy",
    "Router",
    "Strategy",
    "Timeout",
    "TokenBucket",
    "classify",
    "error_kind",
    "error_kind_of",
    "failure_kind",
    "is_downstream_failure",
    "output_ceiling",
    "protections",
]
