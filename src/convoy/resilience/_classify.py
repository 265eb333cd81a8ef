"""Explicit error classification: what may be retried, and what counts against a breaker.

Retryable: timeouts, HTTP 429 (``Retry-After`` honoured), 5xx, connection errors, and
malformed or schema-invalid output (re-prompted by the agent loop). Terminal: auth and
other 4xx errors, contract violations after the repair attempts, policy denials, open
circuits (a fallback may still take over), budget exhaustion.
"""

from __future__ import annotations

from typing import Literal

from convoy._errors import (
    CircuitOpenError,
    ModelError,
    OutputValidationError,
    PolicyDenied,
    StepError,
    ToolError,
)

Classification = Literal["retryable", "terminal"]


def classify(exc: BaseException) -> Classification:
    """Whether a failure may be retried: ``"retryable"`` or ``"terminal"`` (see the module
    docstring for the rules)."""
    if isinstance(exc, CircuitOpenError | PolicyDenied | OutputValidationError):
        return "terminal"
    if isinstance(exc, StepError):
        return "retryable" if exc.retryable else "terminal"
    if isinstance(exc, TimeoutError | ConnectionError):
        return "retryable"
    return "terminal"


def is_downstream_failure(exc: BaseException) -> bool:
    """Does ``exc`` say the endpoint or tool itself failed (what a breaker counts)?"""
    if isinstance(exc, CircuitOpenError | PolicyDenied | OutputValidationError):
        return False
    if isinstance(exc, ModelError | ToolError):
        return exc.status_code is None or exc.status_code >= 500 or exc.status_code == 429 \
            or exc.retryable
    return isinstance(exc, TimeoutError | ConnectionError)
