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

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_core import from_json

from convoy._adapters import adapter_for
from convoy._errors import StateConflict, WaitTimeout
from convoy._text import escaped, readable_validation_error, validation_error_kinds
from convoy.hitl._task import (
    ACTIONS,
    DEADLINE,
    INBOX,
    Decision,
    HumanTask,
    OnDeadline,
    TaskKind,
    qualname_of,
    task_id,
)
from convoy.state._access import JournaledAccess, set_fingerprint
from convoy.state._handle import State

if TYPE_CHECKING:
    from convoy.runtime._context import Context
    from convoy.state._values import Versioned
    from convoy.stores._protocol import StateEntry, StepRecord

log = logging.getLogger("convoy")

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
    # (Its own access: the step of this write is fingerprinted by what is asked, see
    # ``_NewTask``; the task's later writes copy what was written, and need not be.)
    made: Versioned[Any] = await State(INBOX, _NewTask(scope, task), HumanTask).set(
        tid, task, expected_version=0)
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
            # (a replay of the refusal, journaled by an earlier run, said it then; an
            # executor that cannot say what its journal holds warns each time)
            holds = getattr(s.executor, "holds", None)
            live = holds is None or not holds(scope.peek_key())
            if await _reopen(inbox, current, f"the {decision.action} by {decision.by!r} was "
                                             f"invalid: {why}") and live:
                _warn_refused(s.id, decided, decision, e)
            current = await inbox.get(tid)
            continue
        return Outcome(task=decided, decision=decision, value=value)


class _NewTask(JournaledAccess):
    """The access of a task's first write, whose step fingerprint names the answer type by
    its ``qualname`` alone: a script's session asks the same question under the name its
    types have where it runs directly (``__main__``) and where it is imported (``desk``),
    so either process replays it. Everything else asked (prompt, answer schema, context,
    ...) is fingerprinted as it is written."""

    __slots__ = ("task",)

    def __init__(self, ctx: Context, task: HumanTask) -> None:
        super().__init__(ctx)
        self.task = task

    async def put(self, namespace: str, key: str, value: str,
                  expected: int | None) -> StateEntry:
        task = self.task
        name = task.answer_type
        asked = value if name is None else _dump(
            task.model_copy(update={"answer_type": qualname_of(name)}))

        def formerly(rec: StepRecord) -> Iterator[str]:
            # Earlier versions fingerprinted the task as written, module and all: a task
            # they journaled replays where the type has the name it had then, or (read
            # from the task the journal recorded) any other name.
            yield set_fingerprint(expected, value)
            was = _recorded_answer_type(rec)
            if name is not None and was is not None and was != name and \
                    qualname_of(was) == qualname_of(name):
                yield set_fingerprint(expected, _dump(task.model_copy(
                    update={"answer_type": was})))

        entry: StateEntry = await self._op(
            "set", namespace, key, value=value, expected=expected,
            input_hash=set_fingerprint(expected, asked), formerly=formerly)
        return entry


def _dump(task: HumanTask) -> str:
    """A task as its :class:`~convoy.State` handle writes it."""
    return adapter_for(HumanTask).dump_json(task).decode()


def _recorded_answer_type(rec: StepRecord) -> str | None:
    """The answer type of the task a journaled first write wrote, if it is readable."""
    if rec.status != "completed" or not rec.result:
        return None
    try:
        written = from_json(rec.result)
        name = from_json(written["value"]).get("answer_type")
    except (ValueError, TypeError, KeyError, AttributeError):
        return None  # not a write's entry (a sealed one, another step's)
    return name if isinstance(name, str) else None


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
                  error: str) -> bool:
    """Open the task again with ``error``; ``False`` if it changed meanwhile (the loop
    reads it again)."""
    task = got.value
    assert task is not None
    reopened = task.model_copy(update={"status": "open", "decision": None, "error": error})
    try:
        await inbox.set(task.id, reopened, expected_version=got.version)
    except StateConflict:
        return False
    return True


def _warn_refused(session_id: str, task: HumanTask, decision: Decision,
                  error: ValueError) -> None:
    """One warning line for an answer (or edit) the session refused, as for a refused
    signal: an engine's log, or a command's stderr (``convoy resume``, ``worker``), says
    why the session still waits. The error kinds only, never the answer nor who gave it
    (personal data, perhaps): the task's own error, which ``convoy inbox show`` shows,
    has the rest."""
    what = {"answer": "the answer", "edit": "the edit",
            "default": "the default answer"}.get(decision.action, decision.action)
    kinds = validation_error_kinds(error) if isinstance(error, ValidationError) else \
        type(error).__name__
    at = datetime.fromtimestamp(decision.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    log.warning("session '%s' refused %s to task '%s' (given at %s): it does not validate "
                "as the task's type: %s; the task is open again for a valid answer",
                escaped(session_id), what, escaped(task.id), at, kinds)


__all__ = ["Outcome", "TaskSpec", "decide"]
