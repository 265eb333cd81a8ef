"""Escalation rules: when an agent's run goes to a person instead of failing.

Configuration only (an :class:`~convoy.Agent` holds one); :mod:`convoy.hitl._escalate`
applies it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from convoy._errors import UserError
from convoy._seconds import timeout_seconds

EscalationReason = Literal["retries_exhausted", "invalid_output", "turns_exhausted",
                           "budget", "loop", "low_confidence"]
#: Every reason, in the order the docs list them.
REASONS: tuple[EscalationReason, ...] = get_args(EscalationReason)


@dataclass(frozen=True, kw_only=True, slots=True)
class Escalation:
    """Which failures of an agent's run become a task for a person (the session parks on
    it) instead of ending the run, and where the task goes.

    Give it to an agent (``Agent(escalation=...)``) or to every agent of an engine
    (``Engine(escalation=...)``; an agent's own wins). The reasons:

    * ``"retries_exhausted"``: a model or tool call still failed after the retries the
      interceptors made (``ModelError``, ``ToolError`` past ``tool_failures``,
      ``CircuitOpenError``);
    * ``"invalid_output"``: the answer (or its tool calls and handoffs) was still invalid
      after the repair attempts (``OutputValidationError``, ``HandoffError``);
    * ``"turns_exhausted"``: the agent used its ``max_turns``;
    * ``"budget"``: a budget ran out under ``Budgets(on_exhausted="escalate")``;
    * ``"loop"``: loop detection fired (same input again, or ping-pong);
    * ``"low_confidence"``: the output's ``confidence_field`` is below
      ``confidence_below`` (needs ``confidence_below``).

    The task carries the reason and the history (the agent's input, its last answer, the
    error, the last messages). The reviewer approves (run the agent again; for a budget,
    with one more budget's worth; for a loop, past the detector; for low confidence,
    accept the output), edits (gives the output, validated against the agent's output
    type), rejects (the run fails with the original error; low confidence raises
    :class:`~convoy.Rejected`), and may comment (on a new run, the agent reads it).

    Args:
        on: the reasons that escalate.
        confidence_field: the output field holding the agent's confidence.
        confidence_below: escalate an output whose confidence is below this.
        queue: the inbox queue of the tasks.
        assignees: who may decide (empty: anyone who reaches the tenant's inbox).
        deadline: seconds to wait for a decision; past it the original error stands
            (low confidence: the output is kept). ``None``: wait as long as it takes.
        max_escalations: tasks one run of the agent may raise; past them the error
            stands (every session still ends).
    """

    on: Collection[EscalationReason] = field(default=REASONS)
    confidence_field: str = "confidence"
    confidence_below: float | None = None
    queue: str = "escalations"
    assignees: Sequence[str] = ()
    deadline: float | None = None
    max_escalations: int = 3

    def __post_init__(self) -> None:
        if isinstance(self.on, str):
            raise UserError(f"Escalation.on is a list of reasons, got {self.on!r}")
        bad = [r for r in self.on if r not in REASONS]
        if bad:
            raise UserError(f"Escalation.on: unknown reason(s) {', '.join(map(repr, bad))}; "
                            f"use {', '.join(REASONS)}")
        object.__setattr__(self, "on", frozenset(self.on))
        if not self.queue:
            raise UserError("Escalation.queue must be a non-empty name")
        if isinstance(self.assignees, str):
            raise UserError(f"Escalation.assignees is a list of names, got {self.assignees!r}")
        if self.max_escalations < 1:
            raise UserError(f"Escalation.max_escalations must be >= 1, got "
                            f"{self.max_escalations}")
        object.__setattr__(self, "deadline", timeout_seconds(  # (inf: none)
            self.deadline, "Escalation.deadline"))


__all__ = ["REASONS", "Escalation", "EscalationReason"]
