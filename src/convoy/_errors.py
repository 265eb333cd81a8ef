"""Convoy's exceptions.

One root, a shallow tree::

    ConvoyError
    ├── UserError                  misuse of the API (bad config, unknown model, bad workflow)
    │   ├── SubjectErased          the data subject was erased already (``seq``, ``at``)
    │   └── WorkflowNotFound       no workflow of that name is loaded (``workflow``)
    ├── StepError                  a step failed; ``retryable`` classifies it
    │   ├── ModelError             the model endpoint failed (timeout, 429, 5xx, auth, ...)
    │   │   ├── ContextWindowExceeded   the request is longer than the model's context
    │   │   └── ContentPolicyViolation  the provider's content policy refused it
    │   ├── OutputValidationError  model output still invalid after the repair attempts
    │   ├── ToolError              a tool failed or returned an invalid result
    │   │   └── ToolDenied         refused before it ran: outside the agent's scopes, or
    │   │                          a person rejected it (or nobody approved it in time)
    │   ├── HandoffError           a handoff still invalid after the repair attempts
    │   ├── AgentTurnsExhausted    an agent used its ``max_turns`` without a final answer
    │   ├── UnknownOutcomeError    a non-idempotent step started but never finished
    │   ├── CircuitOpenError       a circuit breaker rejected the call without making it
    │   ├── PolicyDenied           a policy refused the step (terminal)
    │   ├── ApprovalRequired       a policy asks a person to approve this call first
    │   ├── Rejected               a person rejected what an agent proposed
    │   ├── WaitTimeout            ``ctx.wait_for`` reached its timeout without a signal
    │   │   └── HumanTimeout       nobody answered a human task before its deadline
    │   └── StateConflict          a compare-and-set write of shared state found a newer
    │                              version (carries the current value and version)
    ├── NonDeterminismError        resumed workflow code no longer matches its journal
    ├── StoreError                 the store failed (``transient``: try again later)
    │   └── JournalError           the store holds something this version cannot read
    ├── AuditError                 the audit log does not verify (``index``: first bad entry)
    │   └── AuditProofError        an inclusion or consistency proof does not hold
    ├── RecordedError              a non-Convoy error replayed from the journal whose type
    │                              cannot be rebuilt (``original_type`` names it)
    └── SessionTerminated          control flow: ends a session with a terminal reason
        ├── LimitExceeded          step / handoff / depth / wall-clock limit reached
        ├── LoopDetected           the same agent got the same input again, or ping-pong
        ├── BudgetExhausted        a token or money budget ran out (policy "stop")
        └── Escalated              the session needs a human

``SessionTerminated`` derives from ``BaseException`` (like ``asyncio.CancelledError``) so a
workflow's ``except Exception`` cannot swallow a limit; so do the engine's own control
signals (``convoy.durability`` parks a waiting session with one). Catch ``ConvoyError`` for
every Convoy failure.

Every error round-trips through ``error_to_record`` / ``error_from_record`` so it can be
journaled and re-raised on replay with its type: Convoy errors (subclasses register
themselves, wherever they are defined, whatever their ``__init__`` takes: they come back
with their ``args`` and every instance attribute JSON can hold, without calling
``__init__``, as pickle does) and, for other exceptions, any class that can be imported
again by module and name and built from its ``args`` (``ConnectionRefusedError``, your own
``class QuotaError(Exception)``); anything else comes back as ``RecordedError``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

_BY_NAME: dict[str, type[BaseException]] = {}
_BY_QUALNAME: dict[tuple[str, str], type[BaseException]] = {}


def _register(cls: type[BaseException]) -> None:
    """Every Convoy error class is found when a journal record is read back: by module and
    qualified name, or (records written before those were kept) by its name."""
    _BY_NAME.setdefault(cls.__name__, cls)
    _BY_QUALNAME[(cls.__module__, cls.__qualname__)] = cls


TerminalReason = Literal[
    "completed",
    "failed",
    "escalated",
    "budget_exhausted",
    "loop_detected",
    "limit_exceeded",
    "cancelled",
]


class ConvoyError(Exception):
    """Root of every error Convoy raises (except the ``SessionTerminated`` signals)."""

    retryable: bool = False

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        _register(cls)

    def to_record(self) -> dict[str, Any]:
        """The fields people read (``error_to_record`` adds what rebuilds the error)."""
        return {"type": type(self).__name__, "message": message_of(self),
                "retryable": self.retryable}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), self.args, dict(vars(self))))


class UserError(ConvoyError):
    """The API was used wrongly; the message says how to fix it."""


class SessionsHeld(UserError):
    """An erasure or a purge refused, nothing deleted: another engine runs (holds the lease
    of) one of the sessions it would delete. Not a mistake of the caller's: it succeeds
    once that session has ended (``convoy erase`` and ``convoy purge`` exit 1)."""


class UnknownSubject(UserError):
    """No session of the tenant names the data subject, it has no key and no erasure."""


class SubjectErased(UserError):
    """``tenant``'s data subject ``subject`` was erased already, by the erasure numbered
    ``seq`` (``Store.erasures()``) at ``at`` (seconds since the epoch): nothing of it is
    left to erase or export. A repeated erasure request is answered by it, not an error to
    the command line (``convoy erase`` says so and exits 0)."""

    def __init__(self, message: str, *, subject: str, tenant: str, seq: int,
                 at: float) -> None:
        super().__init__(message)
        self.subject, self.tenant, self.seq, self.at = subject, tenant, seq, at


class StoreError(ConvoyError):
    """The store failed: locked, disk full, read-only, unreachable.

    ``transient`` errors (a lock held too long, a lost connection) leave the session
    unfinished for a later resume; the others need an operator.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.retryable = transient

    def to_record(self) -> dict[str, Any]:
        return {**super().to_record(), "transient": self.transient}


class NoStoreError(StoreError):
    """The database named holds no Convoy store: an empty or foreign file, a PostgreSQL
    schema without Convoy's tables. The caller named the wrong store (the command line
    says so as a usage error); an engine would create one there."""


class JournalError(StoreError):
    """The store holds data this version of Convoy cannot read, or refused a write."""


class AuditError(ConvoyError):
    """The audit log does not verify: an entry was changed, removed, inserted, reordered or
    cut off, or the log forked from a signed checkpoint. ``index`` is the first bad entry
    (``None`` when no single entry can be named)."""

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class AuditProofError(AuditError):
    """An inclusion or consistency proof, or a checkpoint signature, does not hold."""


class RecordedError(ConvoyError):
    """An error replayed from the journal whose original class could not be rebuilt."""

    def __init__(self, message: str, *, original_type: str = "") -> None:
        super().__init__(message)
        self.original_type = original_type

    def to_record(self) -> dict[str, Any]:
        return {**super().to_record(), "type": self.original_type or "RecordedError"}


class NonDeterminismError(ConvoyError):
    """Resumed workflow code asked for a different step than the journal recorded."""

    def __init__(self, message: str, *, key: str = "") -> None:
        super().__init__(message)
        self.key = key

    def to_record(self) -> dict[str, Any]:
        return {**super().to_record(), "key": self.key}


class StepError(ConvoyError):
    """A step failed. ``retryable`` says whether trying again may succeed; ``timeout`` that
    the call did not finish in time (which makes it retryable).

    Kinds that are ``terminal`` by nature (an open circuit, a policy denial, output still
    invalid after the repair attempts) are never ``retryable``, whatever the caller says:
    the attribute journaled with the error and ``convoy.resilience.classify`` agree.
    """

    kind: ClassVar[str] = "step"
    terminal: ClassVar[bool] = False
    #: JSON-able facts about the failure a model can act on: a failed tool call reports
    #: them to the model beside the message (a :class:`StateConflict`'s current value).
    details: dict[str, Any] | None = None
    timeout: bool = False

    def __init__(self, message: str, *, retryable: bool = False, timeout: bool = False,
                 status_code: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = (retryable or timeout) and not self.terminal
        self.timeout = timeout
        self.status_code = status_code
        self.retry_after = retry_after

    def to_record(self) -> dict[str, Any]:
        rec = super().to_record()
        rec["status_code"] = self.status_code
        rec["retry_after"] = self.retry_after
        return rec


class ModelError(StepError):
    """The model endpoint failed: timeout, rate limit, server error, auth, bad request.

    ``convoy.resilience.failure_kind`` names what went wrong (``"rate_limited"``,
    ``"timeout"``, ``"server_error"``, ...).
    """

    kind = "model"


class ContextWindowExceeded(ModelError):
    """The request (prompt plus the answer asked for) is longer than the model's context
    window. Terminal on this model: sending it again cannot help, a model with a larger
    window may (``Fallback(by_kind={"context_window_exceeded": ...})``)."""

    kind = "context_window_exceeded"
    terminal = True


class ContentPolicyViolation(ModelError):
    """The provider's content policy refused the request or filtered the answer. Terminal
    on this model; another provider or model may answer
    (``Fallback(by_kind={"content_policy": ...})``)."""

    kind = "content_policy"
    terminal = True


class OutputValidationError(StepError):
    """Model output failed its contract after every repair attempt.

    Terminal: the agent loop already re-prompted the model ``output_retries`` times (that
    is where malformed output is retried); running the step again would repeat them.
    """

    kind = "validation"
    terminal = True


class ToolError(StepError):
    """A tool raised, or returned a value that failed its declared result type.

    ``timeout`` is set when the call did not finish in time (a tool timeout, or the tool
    raised ``TimeoutError``); such a failure is retryable.
    """

    kind = "tool"

    def __init__(self, message: str, *, retryable: bool = False, timeout: bool = False,
                 status_code: int | None = None, retry_after: float | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message, retryable=retryable, timeout=timeout,
                         status_code=status_code, retry_after=retry_after)
        if details is not None:
            self.details = details


class ToolDenied(ToolError):
    """A tool call refused before the tool ran: the agent lacks a scope the tool needs
    (``reason="scope"``), a person rejected the call (``"rejected"``), nobody approved
    it before its deadline (``"expired"``), or a provenance rule denies it
    (``"untrusted"``). The agent loop reports it to the model as a
    failed call, like any tool failure; the refusal is journaled as the step's outcome.

    Attributes:
        tool: the tool that was refused.
        reason: ``"scope"``, ``"rejected"``, ``"expired"`` or ``"untrusted"``.
        missing: the scopes the agent lacked (``reason="scope"``).
        by: who rejected it (``reason="rejected"``).
        rule: the rule that refused it, or that asked for the approval a person
            rejected (``"scope"``, ``"requires_approval"``, a provenance rule's name).
    """

    kind = "denied"
    terminal = True

    def __init__(self, message: str, *, tool: str = "", reason: str = "scope",
                 missing: Sequence[str] = (), by: str | None = None,
                 rule: str | None = None) -> None:
        super().__init__(message)
        self.tool = tool
        self.reason = reason
        self.missing = list(missing)
        self.by = by
        self.rule = rule or (reason if reason == "scope" else None)
        self.details = {"refused": reason}


class HandoffError(StepError):
    """A handoff named an undeclared target or carried an invalid payload, too often."""

    kind = "handoff"


class AgentTurnsExhausted(StepError):
    """An agent used all its ``max_turns`` model calls without a final answer.

    A failure of that agent's run, not of the session (``LimitExceeded`` bounds the
    session): like ``OutputValidationError`` it propagates out of ``ctx.run`` (and out of
    the supervisor that delegated to the agent), where the workflow may catch it and route
    the work elsewhere, for instance to a person with :attr:`transcript`; uncaught, it
    fails the session. Terminal: running the agent again would spend the same turns.

    Attributes:
        agent: the agent that ran out of turns.
        max_turns: its turn budget.
        transcript: its conversation so far, as OpenAI-shaped message dicts (``role``,
            ``content``, ``tool_calls``, ``tool_call_id``), the tool results included.
    """

    kind = "max_turns"
    terminal = True

    def __init__(self, message: str, *, agent: str = "", max_turns: int = 0,
                 transcript: Sequence[Mapping[str, Any]] = (), retryable: bool = False,
                 status_code: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, retryable=retryable, status_code=status_code,
                         retry_after=retry_after)
        self.agent = agent
        self.max_turns = max_turns
        self.transcript = [dict(m) for m in transcript]

    def to_record(self) -> dict[str, Any]:
        return {**super().to_record(), "agent": self.agent, "max_turns": self.max_turns}


class UnknownOutcomeError(StepError):
    """A non-idempotent step started and its outcome was never journaled (the process was
    killed, or the store failed as the outcome was written): its outcome is unknown."""

    kind = "unknown_outcome"


class CircuitOpenError(StepError):
    """A circuit breaker is open: the call was rejected at once, downstream untouched."""

    kind = "circuit_open"
    terminal = True


class PolicyDenied(StepError):
    """A policy refused the step. Terminal: retrying cannot help."""

    kind = "policy"
    terminal = True


class ApprovalRequired(StepError):
    """Raised by a policy (an interceptor's ``tool_call``) to ask a person to approve this
    tool call before it runs. The agent loop parks the session on an approval task in the
    inbox; once approved, the call runs again carrying the approval, which the policy
    checks with :func:`convoy.approved` (bound to the call's tool, arguments, tenant and
    session; it expires and is used once). Raised elsewhere, it fails the step.

    Attributes:
        reason: why an approval is needed, shown to the reviewer.
        rule: the name of the rule that asked (for audit), or ``None``.
    """

    kind = "approval_required"
    terminal = True

    def __init__(self, message: str, *, rule: str | None = None) -> None:
        super().__init__(message)
        self.reason = message
        self.rule = rule


class Rejected(StepError):
    """A person rejected what an agent proposed (an output escalated for review).
    Terminal. ``by`` and ``comment`` say who and why; ``task_id`` names the inbox task."""

    kind = "rejected"
    terminal = True

    def __init__(self, message: str, *, by: str = "", comment: str | None = None,
                 task_id: str = "") -> None:
        super().__init__(message)
        self.by = by
        self.comment = comment
        self.task_id = task_id


class WaitTimeout(StepError):
    """``ctx.wait_for`` timed out before its signal arrived."""

    kind = "wait_timeout"


class HumanTimeout(WaitTimeout):
    """Nobody answered a human task (``ctx.ask_human``) before its deadline, and its
    ``on_deadline`` is ``"fail"``. ``task_id`` names the task (now ``expired``)."""

    kind = "human_timeout"

    def __init__(self, message: str, *, task_id: str = "") -> None:
        super().__init__(message)
        self.task_id = task_id


class StateConflict(StepError):
    """A compare-and-set write of shared state found the key at another version than the
    one its writer read: another writer got there first, and nothing was written.

    ``current_version`` and ``current_value`` are what the key holds now (version 0: it
    does not exist). Re-read, decide again and write against that version; ``update``
    on a :class:`~convoy.State` does so by itself. Inside a tool the conflict reaches the
    model as a failed tool call carrying the current value, so the agent re-plans.
    """

    kind = "state_conflict"

    def __init__(self, message: str, *, namespace: str, key: str, expected_version: int,
                 current_version: int, current_value: Any = None) -> None:
        super().__init__(message, retryable=True)
        self.namespace = namespace
        self.key = key
        self.expected_version = expected_version
        self.current_version = current_version
        self.current_value = current_value
        self.details = {"conflict": {
            "namespace": namespace, "key": key, "expected_version": expected_version,
            "current_version": current_version, "current_value": current_value}}


class SessionTerminated(BaseException):
    """Ends a session with a typed terminal reason. Not an ``Exception`` on purpose."""

    reason: TerminalReason = "failed"

    def __init__(self, message: str, *, reason: TerminalReason | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        _register(cls)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), self.args, dict(vars(self))))


class LimitExceeded(SessionTerminated):
    """A step, handoff, depth or wall-clock limit was reached."""

    reason: TerminalReason = "limit_exceeded"


class LoopDetected(SessionTerminated):
    """The same agent was handed the same input again, or two agents ping-ponged."""

    reason: TerminalReason = "loop_detected"


class BudgetExhausted(SessionTerminated):
    """A token or money budget ran out and its policy is to stop the session."""

    reason: TerminalReason = "budget_exhausted"


class Escalated(SessionTerminated):
    """The session needs a human: it is parked with reason ``escalated``.

    ``grant`` names what a person approving it allows (``"budget:<ledger>"``: one more
    budget's worth on that ledger, for this session); agents with
    :class:`~convoy.Escalation` rules turn it into an inbox task instead of ending the
    session."""

    reason: TerminalReason = "escalated"

    def __init__(self, message: str, *, reason: TerminalReason | None = None,
                 grant: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.grant = grant


class SessionUnreadable(Escalated):
    """A session this process cannot run because it cannot read what is stored for it: its
    input is not what its workflow's code takes now (the code changed without a new
    version), or a value of its row or journal is damaged (the store was edited). It is
    escalated rather than failed: its input and journal stay as they are, and once the code
    or the store is fixed, a person's approval runs it again from its journal."""

    @classmethod
    def of(cls, session_id: str, what: str) -> SessionUnreadable:
        """The error for session ``session_id``: ``what`` is wrong and what to fix."""
        return cls(f"session {session_id!r} cannot run here: {what}, then approve this "
                   "escalation in 'convoy inbox' to run it again from its journal (or "
                   "reject it to fail it)")


for _cls in (ConvoyError, SessionTerminated):
    _register(_cls)


def _restore(cls: type[BaseException], args: Sequence[Any],
             state: Mapping[str, Any]) -> BaseException:
    """A Convoy error with these ``args`` and instance attributes, built without calling
    ``__init__`` (whose signature a subclass may have changed), as pickle does."""
    try:
        exc = cls.__new__(cls, *args)
    except TypeError:
        exc = BaseException.__new__(cls)
    exc.args = tuple(args)
    exc.__dict__.update(state)
    return exc


def _is_convoy(cls: type[BaseException]) -> bool:
    return issubclass(cls, ConvoyError | SessionTerminated)


def _find(module: Any, qualname: Any) -> type[BaseException] | None:
    """The exception class ``module:qualname``: registered, or imported again."""
    if not module or not qualname:
        return None
    found = _BY_QUALNAME.get((str(module), str(qualname)))
    if found is not None:
        return found
    try:
        obj: Any = importlib.import_module(str(module))
        for part in str(qualname).split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    return obj if isinstance(obj, type) and issubclass(obj, BaseException) else None


def _rebuild(name: str, message: str, rec: Mapping[str, Any]) -> BaseException:
    cls = _find(rec.get("module"), rec.get("qualname"))
    if "attrs" in rec:  # written by this version for a Convoy error
        if cls is None or not _is_convoy(cls):
            cls = _BY_NAME.get(name)  # its module moved or is gone: the class by name
        if cls is not None and _is_convoy(cls):
            args = rec.get("args")
            return _restore(cls, args if isinstance(args, list) else [message],
                            dict(rec["attrs"] or {}))
        return RecordedError(message, original_type=name)
    if cls is not None and not _is_convoy(cls):
        return _foreign(cls, name, message, rec)
    if cls is None and rec.get("module"):  # a non-Convoy class that is gone
        return RecordedError(message, original_type=name)
    cls = cls or _BY_NAME.get(name)
    if cls is None:
        return RecordedError(message, original_type=name)
    return _legacy(cls, name, message, rec)


def _legacy(cls: type[BaseException], name: str, message: str,
            rec: Mapping[str, Any]) -> BaseException:
    """A Convoy error from a record written before records kept ``attrs``."""
    if issubclass(cls, StepError):
        return cls(message, retryable=rec.get("retryable", False),
                   status_code=rec.get("status_code"), retry_after=rec.get("retry_after"))
    if issubclass(cls, SessionTerminated):
        return cls(message, reason=rec.get("reason"))
    if issubclass(cls, NonDeterminismError):
        return cls(message, key=rec.get("key", ""))
    if issubclass(cls, StoreError):
        return cls(message, transient=bool(rec.get("transient", False)))
    if issubclass(cls, RecordedError):
        return cls(message, original_type=str(rec.get("original_type", "")))
    try:
        return cls(message)
    except TypeError:
        return RecordedError(message, original_type=name)


def _foreign(cls: type[BaseException], name: str, message: str,
             rec: Mapping[str, Any]) -> BaseException:
    """A non-Convoy exception built again from its ``args``, if that gives it back."""
    args = rec.get("args")
    if issubclass(cls, Exception):
        try:
            exc = cls(*args) if isinstance(args, list) else cls(message)
        except Exception:
            pass
        else:
            if message_of(exc) == message:
                return exc
    return RecordedError(message, original_type=name)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):  # (nested too deep: left out too)
        return False
    return True


def error_to_record(exc: BaseException) -> dict[str, Any]:
    """A JSON-able record of ``exc`` that ``error_from_record`` turns back into it."""
    cls = type(exc)
    rec: dict[str, Any]
    if isinstance(exc, ConvoyError | SessionTerminated):
        rec = exc.to_record() if isinstance(exc, ConvoyError) else {
            "type": cls.__name__, "message": message_of(exc), "reason": exc.reason}
        rec["module"], rec["qualname"] = cls.__module__, cls.__qualname__
        if exc.args != (rec["message"],) and _jsonable(list(exc.args)):
            rec["args"] = list(exc.args)
        # Attributes JSON cannot hold are left out (pickle keeps them).
        rec["attrs"] = {k: v for k, v in vars(exc).items() if _jsonable(v)}
        return rec
    rec = {"type": cls.__name__, "message": message_of(exc), "retryable": False,
           "module": cls.__module__, "qualname": cls.__qualname__}
    if _jsonable(list(exc.args)):
        rec["args"] = list(exc.args)
    return rec


def message_of(exc: BaseException) -> str:
    """``str(exc)``, or what it is when that raises (an application's exception whose
    ``__str__`` is broken: the session it ends fails with this, not the engine)."""
    try:
        return str(exc)
    except Exception as e:
        return (f"(its message could not be read: its __str__ raised "
                f"{type(e).__name__})")


def error_from_record(rec: Mapping[str, Any]) -> BaseException:
    """The exception a record of ``error_to_record`` describes (see the module docstring)."""
    return _rebuild(str(rec.get("type", "StepError")), str(rec.get("message", "")), rec)
