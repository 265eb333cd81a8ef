"""A human decision as durable steps of a session: the one primitive behind
``ctx.ask_human``, tool approvals and escalations.

The decision takes one position in the step tree (its task id is ``<session>:<position>``)
and runs its steps under it, all journaled shared-state operations on the tenant's inbox
(:data:`~convoy.hitl._task.INBOX`):

1. read the clock, write the task (compare-and-set against "absent"; a write that names
   its writer is not applied twice after a crash);
2. wait for the task to be decided: the session parks (a state watch, no coroutine) and
   the write that records the answer wakes it;
3. past the deadline: escalate the task to another queue and wait on, record the default
   answer, or expire it (each a compare-and-set: an answer that landed first wins);
4. check the answer against its type; an invalid one (a stored schema that no longer
   matches the code, a forged write) reopens the task with the error, and it waits again.

Replay returns every step from the journal, so a resumed session sees the same decision.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from convoy._errors import StateConflict, WaitTimeout
from convoy._text import readable_validation_error
from convoy.hitl._task import (
    ACTIONS,
    DEADLINE,
    INBOX,
    Decision,
    HumanTask,
    OnDeadline,
    TaskKind,
    task_id,
)
from convoy.state._access import JournaledAccess
from convoy.state._handle import State

if TYPE_CHECKING:
    from convoy.runtime._context import Context
    from convoy.state._values import Versioned


@dataclass(slots=True, kw_only=True)
class TaskSpec:
    """What a new task asks (see :class:`~convoy.hitl._task.HumanTask`)."""

    kind: TaskKind
    prompt: str
    context: Any = None
    reason: str | None = None
    history: dict[str, Any] | None = None
    proposal: Any = None
    answer_schema: dict[str, Any] | None = None
    answer_type: str | None = None
    queue: str = "default"
    assignees: tuple[str, ...] = ()
    deadline: float | None = None
    on_deadline: OnDeadline = "fail"
    default: Any = None
    escalate_to: str | None = None
    binding: str | None = None
    expires_after: float | None = None
    #: Turns an answer or edit (JSON values) into the Python value the caller gets;
    #: raises ``ValueError`` / ``ValidationError`` for an invalid one.
    check: Callable[[Any], Any] = field(default=lambda v: v)


#: The fields of a :class:`TaskSpec` that a task does not take as they are.
_NOT_ASKED = frozenset({"check", "deadline"})


@dataclass(slots=True, frozen=True, kw_only=True)
class Outcome:
    """The decided task, and its answer or edit as the caller's type (``None`` for the
    other actions)."""

    task: HumanTask
    decision: Decision
    value: Any = None


def _decided(v: Versioned[HumanTask | None]) -> bool:
    return v.value is not None and v.value.status != "open"


async def decide(ctx: Context, spec: TaskSpec) -> Outcome:
    """Ask a person, durably; the decision (see the module docstring)."""
    scope = ctx.child(deeper=False)
    s = ctx.session
    tid = task_id(s.id, scope.position)
    inbox: State[HumanTask] = State(INBOX, JournaledAccess(scope), HumanTask)
    now = await scope.now()
    asked = {f.name: getattr(spec, f.name) for f in fields(spec) if f.name not in _NOT_ASKED}
    task = HumanTask(id=tid, tenant=s.tenant, session_id=s.id, created_at=now,
                     deadline=None if spec.deadline is None else now + spec.deadline, **asked)
    made: Versioned[Any] = await inbox.set(tid, task, expected_version=0)
    current: Versioned[HumanTask | None] = made
    while True:
        if not _decided(current):
            got = await _wait(scope, inbox, current)
            if got is None:  # the deadline escalated the task, or someone acted first
                current = await inbox.get(tid)
                continue
            current = got
        decided = current.value
        assert decided is not None and decided.decision is not None
        decision = decided.decision
        if decision.action not in (*ACTIONS[spec.kind], "default", "expire"):
            await _reopen(inbox, current, f"{decision.action!r} is not a decision on a "
                                          f"{spec.kind} (by {decision.by!r})")
            current = await inbox.get(tid)
            continue
        if decision.action not in ("answer", "edit", "default"):
            return Outcome(task=decided, decision=decision)
        try:
            value = spec.check(decision.value)
        except (ValidationError, ValueError) as e:
            why = readable_validation_error(e) if isinstance(e, ValidationError) else str(e)
            await _reopen(inbox, current, f"the {decision.action} by {decision.by!r} was "
                                          f"invalid: {why}")
            current = await inbox.get(tid)
            continue
        return Outcome(task=decided, decision=decision, value=value)


async def _wait(scope: Context, inbox: State[HumanTask],
                current: Versioned[HumanTask | None]) -> Versioned[HumanTask | None] | None:
    """Wait for a decision; at the deadline apply ``on_deadline``. ``None``: read again."""
    task = current.value
    assert task is not None
    tid = task.id
    timeout = None
    if task.deadline is not None:
        timeout = max(0.0, task.deadline - await scope.now())
    try:
        return await inbox.wait(tid, until=_decided, timeout=timeout)
    except WaitTimeout:
        pass
    latest = await inbox.get(tid)
    if _decided(latest):
        return latest  # answered right at the deadline: the answer stands
    task = latest.value
    assert task is not None
    now = await scope.now()
    if task.on_deadline == "escalate":
        changed = task.model_copy(update={"queue": task.escalate_to or task.queue,
                                          "escalated": True, "deadline": None})
    else:
        action = "default" if task.on_deadline == "default" else "expire"
        changed = task.model_copy(update={"status": "expired", "decision": Decision(
            action=action, value=task.default if action == "default" else None,
            by=DEADLINE, at=now)})
    try:
        written: Versioned[Any] = await inbox.set(tid, changed, expected_version=latest.version)
    except StateConflict:
        return None  # someone acted first: read again
    return written if changed.status != "open" else None


async def _reopen(inbox: State[HumanTask], got: Versioned[HumanTask | None],
                  error: str) -> None:
    task = got.value
    assert task is not None
    reopened = task.model_copy(update={"status": "open", "decision": None, "error": error})
    with suppress(StateConflict):  # changed meanwhile: the loop reads it again
        await inbox.set(task.id, reopened, expected_version=got.version)


__all__ = ["Outcome", "TaskSpec", "decide"]
