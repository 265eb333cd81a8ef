"""Explicit error classification: what may be retried, what counts against a breaker, and
what kind of failure it was.

Retryable: timeouts, HTTP 429 (``Retry-After`` honoured), 5xx, connection errors, and
malformed responses. Terminal: auth and other 4xx errors (a context window exceeded, a
content policy violation, an exhausted quota), contract violations after the repair
attempts, policy denials, open circuits (a fallback may still take over), budget exhaustion.

A breaker counts what says the downstream itself failed: timeouts, 5xx, connection
failures, unusable answers, an exhausted quota, a tool that raised. Not rate limiting: an
HTTP 429 with its ``Retry-After`` is the endpoint's flow control, not a failure (it is
retried after the delay, and a deployment that sent it is passed over for a while). Not the
caller's own mistakes either (4xx).

These are the defaults. ``RetryPolicy(retry_on=..., ignore=...)``,
``BreakerPolicy(record=..., ignore=...)`` and ``Fallback(by_kind=...)`` say otherwise,
matching errors by class, by :data:`FailureKind` or by a predicate (:data:`ErrorMatch`).
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeAlias, get_args

from convoy._errors import (
    AgentTurnsExhausted,
    ApprovalRequired,
    CircuitOpenError,
    ContentPolicyViolation,
    ContextWindowExceeded,
    HandoffError,
    ModelError,
    NonDeterminismError,
    OutputValidationError,
    PolicyDenied,
    SessionTerminated,
    StateConflict,
    StepError,
    StoreError,
    ToolError,
    UnknownOutcomeError,
    UserError,
    WaitTimeout,
    error_from_record,
)

Classification = Literal["retryable", "terminal"]

FailureKind = Literal[
    "rate_limited", "quota_exhausted", "context_window_exceeded", "content_policy",
    "timeout", "server_error", "unavailable", "auth", "bad_request", "circuit_open",
    "invalid_output", "denied", "other"]
#: Every :data:`FailureKind`, in the order :func:`failure_kind` documents them.
FAILURE_KINDS: tuple[FailureKind, ...] = get_args(FailureKind)

ErrorKind = Literal[
    "rate_limited", "quota_exhausted", "context_window_exceeded", "content_policy",
    "timeout", "server_error", "unavailable", "auth", "bad_request", "circuit_open",
    "invalid_output", "denied", "provider_error", "tool_error", "handoff_invalid",
    "turns_exhausted", "unknown_outcome", "conflict", "wait_timeout", "budget_exhausted",
    "loop_detected", "limit_exceeded", "escalated", "nondeterminism", "store_error",
    "cancelled", "approval_required", "other"]
#: Every :data:`ErrorKind`: the one error taxonomy of metrics labels, span attributes, logs
#: and the CLI's summaries. The :data:`FailureKind` values come first, in their order.
ERROR_KINDS: tuple[ErrorKind, ...] = get_args(ErrorKind)

#: What a policy matches an error with: an exception class (of the error, or of the
#: exception a :class:`ToolError` or :class:`ModelError` wraps), a :data:`FailureKind`, or
#: a predicate.
ErrorMatch: TypeAlias = "type[BaseException] | FailureKind | Callable[[BaseException], bool]"
#: One :data:`ErrorMatch` or a tuple of them (any may match).
ErrorMatches: TypeAlias = "ErrorMatch | tuple[ErrorMatch, ...]"

_DOWNSTREAM: frozenset[FailureKind] = frozenset(
    {"timeout", "server_error", "unavailable", "quota_exhausted"})


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


def failure_kind(exc: BaseException) -> FailureKind:
    """What kind of failure ``exc`` is.

    ``"rate_limited"`` (HTTP 429 that may be retried, or :class:`RateLimited`),
    ``"quota_exhausted"`` (HTTP 429 that may not: the account is out of quota),
    ``"context_window_exceeded"``, ``"content_policy"``, ``"timeout"``, ``"server_error"``
    (5xx, 409), ``"unavailable"`` (no connection, or an answer that is not a completion),
    ``"auth"`` (401, 403), ``"bad_request"`` (other 4xx), ``"circuit_open"``,
    ``"invalid_output"`` (still invalid after the repair attempts), ``"denied"`` (a policy
    refused the step), ``"other"``.
    """
    if isinstance(exc, StepError):
        if isinstance(exc, CircuitOpenError):
            return "circuit_open"
        if isinstance(exc, PolicyDenied):
            return "denied"
        if isinstance(exc, OutputValidationError):
            return "invalid_output"
        if isinstance(exc, ContextWindowExceeded):
            return "context_window_exceeded"
        if isinstance(exc, ContentPolicyViolation):
            return "content_policy"
        if exc.kind == "rate_limited":
            return "rate_limited"
        if exc.timeout:
            return "timeout"
        status = exc.status_code
        if status == 429:
            return "rate_limited" if exc.retryable else "quota_exhausted"
        if status is not None:
            if status == 408:
                return "timeout"
            if status >= 500 or status == 409:
                return "server_error"
            if status in (401, 403):
                return "auth"
            if 400 <= status < 500:
                return "bad_request"
        return "unavailable" if exc.retryable else "other"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionError):
        return "unavailable"
    return "other"


def is_downstream_failure(exc: BaseException) -> bool:
    """Does ``exc`` say the endpoint or tool itself failed (what a breaker counts by
    default)? Timeouts, 5xx, connection failures, unusable answers, an exhausted quota,
    and any other failure a model or tool raised; not rate limiting, 4xx, open circuits,
    policy denials or invalid output."""
    kind = failure_kind(exc)
    if kind in _DOWNSTREAM:
        return True
    return kind == "other" and isinstance(exc, ModelError | ToolError)


def matches(match: ErrorMatches, exc: BaseException) -> bool:
    """Does ``exc`` match: an instance of the class, of the failure kind, accepted by the
    predicate, or (a tuple) matching any of them?

    A class also matches the exception a Convoy error wraps: a tool's own exception that
    its :class:`ToolError` carries, an adapter's client error that its :class:`ModelError`
    carries (their ``__cause__``, see :func:`wrapped`). Failure kinds and predicates see
    the error itself."""
    if isinstance(match, tuple):
        return any(matches(m, exc) for m in match)
    if isinstance(match, type):
        return any(isinstance(e, match) for e in wrapped(exc))
    if isinstance(match, str):
        return failure_kind(exc) == match
    return bool(match(exc))


def wrapped(exc: BaseException) -> list[BaseException]:
    """``exc``, then what it wraps: while the error is a Convoy :class:`StepError` (a
    :class:`ToolError`, a :class:`ModelError`, ...) raised ``from`` another exception, that
    exception (a tool's ``TimeoutError``, the ``openai`` client's ``APITimeoutError``)."""
    chain = [exc]
    while isinstance(chain[-1], StepError) and chain[-1].__cause__ is not None and \
            chain[-1].__cause__ not in chain and len(chain) < _MAX_WRAPPED:
        chain.append(chain[-1].__cause__)
    return chain


_MAX_WRAPPED = 8


def check_matches(match: ErrorMatches | None, where: str) -> None:
    """Raise :class:`UserError` for a failure kind that does not exist (with a hint), or
    something that is neither a class, a kind nor a callable."""
    if match is None:
        return
    for m in match if isinstance(match, tuple) else (match,):
        if isinstance(m, str):
            if m not in FAILURE_KINDS:
                hint = difflib.get_close_matches(m, FAILURE_KINDS, n=1)
                did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
                raise UserError(f"{where}: unknown failure kind {m!r}; known: "
                                f"{', '.join(FAILURE_KINDS)}.{did_you_mean}")
        elif not (isinstance(m, type) and issubclass(m, BaseException)) and not callable(m):
            raise UserError(f"{where}: {m!r} is not an exception class, a failure kind or a "
                            "predicate")


def error_kind(exc: BaseException) -> ErrorKind:
    """The kind of any failure a step or session can end with: its :func:`failure_kind`,
    or, where that says ``"other"``, what the error is: ``"provider_error"`` (a model
    endpoint failed otherwise), ``"tool_error"``, ``"handoff_invalid"``,
    ``"turns_exhausted"``, ``"unknown_outcome"``, ``"conflict"`` (a stale shared-state
    write), ``"wait_timeout"``, a session's terminal reason (``"budget_exhausted"``,
    ``"loop_detected"``, ``"limit_exceeded"``, ``"escalated"``), ``"nondeterminism"``,
    ``"store_error"``, ``"cancelled"`` (a cancelled run or session),
    ``"approval_required"`` (a tool call that waits for a person's approval: no failure,
    which traces, metrics and alerts do not count as one); ``"other"`` for anything else
    (see :data:`ERROR_KINDS`)."""
    for cls, name in _OWN_KIND:  # never a downstream's failure, whatever ``retryable`` says
        if isinstance(exc, cls):
            return name
    kind = failure_kind(exc)
    if kind != "other":
        return kind
    for cls, name in _REFINED:
        if isinstance(exc, cls):
            return name
    if isinstance(exc, SessionTerminated):
        return _REASONS.get(exc.reason, "other")
    return "other"


def error_kind_of(record: Mapping[str, Any] | None) -> ErrorKind | None:
    """:func:`error_kind` of a journaled error record (a session's ``error``); ``None`` for
    no record or one that is not an error (a parked session's wait)."""
    if not record or "type" not in record:
        return None
    if (record["type"], record.get("module")) in _CANCELS:
        return "cancelled"  # (no exception is rebuilt from these)
    return error_kind(error_from_record(record))


def budget_refused(error: BaseException | Mapping[str, Any] | None) -> bool:
    """Whether the retry budget refused to retry ``error``: an exception it marked
    (``retry_budget_exhausted``, see :class:`~convoy.resilience.RetryBudget`), or the
    journaled record of one (the mark kept under its ``attrs``)."""
    if isinstance(error, BaseException):
        return getattr(error, "retry_budget_exhausted", False) is True
    attrs = error.get("attrs") if isinstance(error, Mapping) else None
    return isinstance(attrs, Mapping) and attrs.get("retry_budget_exhausted") is True


_OWN_KIND: tuple[tuple[type[BaseException], ErrorKind], ...] = (
    (StateConflict, "conflict"), (UnknownOutcomeError, "unknown_outcome"),
    (HandoffError, "handoff_invalid"), (AgentTurnsExhausted, "turns_exhausted"),
    (WaitTimeout, "wait_timeout"), (asyncio.CancelledError, "cancelled"),
    (ApprovalRequired, "approval_required"))
_REFINED: tuple[tuple[type[BaseException], ErrorKind], ...] = (
    (ToolError, "tool_error"), (ModelError, "provider_error"),
    (NonDeterminismError, "nondeterminism"), (StoreError, "store_error"))
#: ``(type, module)`` of the records of a cancel: a cancelled session's (no exception's),
#: an ``asyncio.CancelledError``'s.
_CANCELS = frozenset({("Cancelled", None), ("CancelledError", "asyncio.exceptions")})
_REASONS: dict[str, ErrorKind] = {r: r for r in (
    "budget_exhausted", "loop_detected", "limit_exceeded", "escalated")}
