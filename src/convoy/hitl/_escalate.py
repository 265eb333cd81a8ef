"""Escalation: an agent's run that fails for a reason its :class:`Escalation` rules name
goes to a person (an inbox task; the session parks) instead of failing.

The gate wraps one leg of an agent run (the agent's turns until it answers or hands off).
When the leg raises an error the rules name, or answers below the confidence threshold,
the gate asks a person and continues as they decide: edit (the person's output, validated,
is the leg's answer), approve (run the leg again, with the person's comment for the
model; a budget gets one more budget's worth, loop detection forgets what it saw; a
low-confidence answer is kept), reject (the original error stands; a low-confidence
answer raises :class:`~convoy.Rejected`). Everything it decides on comes from journaled
steps, so a resumed session decides the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from convoy._errors import (
    AgentTurnsExhausted,
    CircuitOpenError,
    Escalated,
    HandoffError,
    LoopDetected,
    ModelError,
    OutputValidationError,
    Rejected,
    SessionTerminated,
    ToolDenied,
    ToolError,
)
from convoy.hitl._decide import TaskSpec, decide
from convoy.hitl._rules import Escalation, EscalationReason
from convoy.hitl._task import type_name

if TYPE_CHECKING:
    from convoy.definitions._agent import Agent
    from convoy.models._messages import Message
    from convoy.runtime._context import Context

#: ``leg(note)``: run the agent's turns again, as a person asked (``note``: their comment
#: for the model; loop detection does not count the run).
Leg = Callable[[str | None], Awaitable[tuple[bool, Any]]]

_SAYS: dict[str, str] = {
    "retries_exhausted": "failed after its retries",
    "invalid_output": "still gave invalid output after its repair attempts",
    "turns_exhausted": "used all its turns without an answer",
    "budget": "ran out of budget",
    "loop": "went round in a loop",
    "low_confidence": "answered with low confidence",
}
_TEXT = 2000  # characters of one message kept in a task's history
_MESSAGES = 8  # the last messages kept


def reason_for(e: BaseException) -> EscalationReason | None:
    """The escalation reason of an error, or ``None`` (never escalated)."""
    if getattr(e, "escalated_task", None) is not None:
        return None  # a person already decided on this error (a nested agent's gate)
    if isinstance(e, LoopDetected):
        return "loop"
    if isinstance(e, Escalated):
        return "budget" if (e.grant or "").startswith("budget:") else None
    if isinstance(e, SessionTerminated | ToolDenied):
        return None
    if isinstance(e, OutputValidationError | HandoffError):
        return "invalid_output"
    if isinstance(e, AgentTurnsExhausted):
        return "turns_exhausted"
    if isinstance(e, ModelError | ToolError | CircuitOpenError):
        return "retries_exhausted"
    return None


def _confidence(output: Any, field: str) -> float | None:
    value = output.get(field) if isinstance(output, dict) else getattr(output, field, None)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def conversation(agent: Agent[Any, Any], messages: list[Message],
                 error: BaseException | None) -> dict[str, Any]:
    """What a reviewer reads of an agent's run: its input, last answer, the error, and
    the last messages (each cut to a readable length)."""
    said = [m for m in messages if m.role == "assistant" and m.content]
    kept = []
    for m in messages[-_MESSAGES:]:
        d = m.to_dict()
        if isinstance(d.get("content"), str):
            d["content"] = d["content"][:_TEXT]
        kept.append(d)
    first = next((m.content for m in messages if m.role == "user"), None)
    return {"agent": agent.name, "input": (first or "")[:_TEXT],
            "last_output": said[-1].content[:_TEXT] if said and said[-1].content else None,
            "error": None if error is None else {"type": type(error).__name__,
                                                 "message": str(error)[:_TEXT]},
            "messages": kept}


def _spec(agent: Agent[Any, Any], rules: Escalation, reason: EscalationReason,
          messages: list[Message], error: BaseException | None, proposal: Any) -> TaskSpec:
    what = f"Agent {agent.name!r} {_SAYS[reason]}"
    schema = agent.output_schema or {"type": "string"}
    return TaskSpec(
        kind="escalation", prompt=f"{what}. Approve to "
        + ("keep its answer (the agent does not run again)" if reason == "low_confidence"
           else "run it again")
        + ", edit to give its output yourself, or reject.",
        reason=reason if error is None else f"{reason}: {str(error)[:_TEXT]}",
        history=conversation(agent, messages, error), proposal=proposal, answer_schema=schema,
        answer_type=type_name(agent.output_type) if isinstance(agent.output_type, type)
        and issubclass(agent.output_type, BaseModel) else None,
        queue=rules.queue, assignees=tuple(rules.assignees), deadline=rules.deadline,
        on_deadline="fail", check=agent.validate_output)


def escalates(rules: Escalation, e: BaseException) -> bool:
    """Whether ``rules`` send this failure of a leg to a person."""
    reason = reason_for(e)
    return reason is not None and reason in rules.on


def reviews(rules: Escalation, done: bool, result: Any) -> bool:
    """Whether ``rules`` send this answer of a leg to a person (low confidence)."""
    if not done or rules.confidence_below is None or "low_confidence" not in rules.on:
        return False
    conf = _confidence(result, rules.confidence_field)
    return conf is not None and conf < rules.confidence_below


async def escalated(ctx: Context, agent: Agent[Any, Any], rules: Escalation, leg: Leg,
                    messages: list[Message], *, error: BaseException | None = None,
                    outcome: tuple[bool, Any] | None = None) -> tuple[bool, Any]:
    """After a leg of ``agent`` failed with ``error`` (one :func:`escalates`), or answered
    ``outcome`` that :func:`reviews`: ask a person, and go on as they decide (see the
    module docstring). The agent loop calls this only then: a run that needs nobody pays
    nothing for the rules."""
    s = ctx.session
    asked = 0
    while True:
        if error is not None:
            reason = reason_for(error)
            if reason is None or reason not in rules.on or asked >= rules.max_escalations:
                raise error
            asked += 1
            said = [m.content for m in messages if m.role == "assistant" and m.content]
            out = await decide(ctx, _spec(agent, rules, reason, messages, error,
                                          said[-1] if reason == "invalid_output" and said
                                          else None))
            d = out.decision
            if d.action == "edit":
                return True, out.value
            if d.action in ("reject", "expire"):
                error.escalated_task = out.task.id  # type: ignore[attr-defined]
                raise error
            if isinstance(error, Escalated) and error.grant:
                s.grant(error.grant)
            if isinstance(error, LoopDetected):
                s.forget_loops()
            try:
                outcome = await leg(d.comment)
            except (Exception, SessionTerminated) as e:
                error = e
                continue
            error = None
        assert outcome is not None
        done, result = outcome
        if asked >= rules.max_escalations or not reviews(rules, done, result):
            return outcome
        asked += 1
        out = await decide(ctx, _spec(agent, rules, "low_confidence", messages, None,
                                      agent.output_json(result)))
        d = out.decision
        if d.action == "edit":
            return True, out.value
        if d.action == "reject":
            raise Rejected(f"a person ({d.by}) rejected the answer of agent {agent.name!r}"
                           + (f": {d.comment}" if d.comment else ""), by=d.by,
                           comment=d.comment, task_id=out.task.id)
        return outcome  # approved, or nobody decided in time: the answer stands


__all__ = ["Leg", "escalated", "escalates", "reason_for", "reviews"]
