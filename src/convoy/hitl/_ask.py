"""``ctx.ask_human``: a typed question to a person, as durable steps of the session."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import ValidationError
from pydantic_core import to_json

from convoy._adapters import adapter_for, schema_for
from convoy._errors import HumanTimeout, UserError
from convoy._seconds import timeout_seconds
from convoy._text import readable_validation_error
from convoy.hitl._decide import TaskSpec, decide
from convoy.hitl._task import OnDeadline, type_name

if TYPE_CHECKING:
    from convoy.runtime._context import Context

T = TypeVar("T")
_UNSET: Any = object()


@dataclass(frozen=True, kw_only=True, slots=True)
class HumanAnswer(Generic[T]):
    """A person's answer to ``ctx.ask_human``, validated into the type asked for.

    Attributes:
        value: the answer.
        by: who gave it (``"convoy:deadline"`` when the deadline gave the default).
        comment: what they added, if anything.
        at: when (epoch seconds, the engine's clock).
        task_id: the inbox task (``engine.inbox.history(task_id)`` is its audit).
        timed_out: nobody answered before the deadline: ``value`` is the default.
    """

    value: T
    by: str
    comment: str | None
    at: float
    task_id: str
    timed_out: bool = False


def _names(values: Sequence[str], what: str) -> tuple[str, ...]:
    if isinstance(values, str) or not all(isinstance(v, str) and v for v in values):
        raise UserError(f"ctx.ask_human {what} is a list of names, got {values!r}")
    return tuple(values)


async def ask_human(ctx: Context, prompt: str, type: Any, *, context: Any = None,
                    queue: str = "default", assignees: Sequence[str] = (),
                    deadline: float | None = None, on_deadline: OnDeadline = "fail",
                    default: Any = _UNSET, escalate_to: str = "escalations",
                    ) -> HumanAnswer[Any]:
    """See :meth:`convoy.Context.ask_human`."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError("ctx.ask_human needs a prompt (the question a person reads)")
    if on_deadline not in ("fail", "default", "escalate"):
        raise UserError(f"ctx.ask_human on_deadline must be 'fail', 'default' or "
                        f"'escalate', got {on_deadline!r}")
    deadline = timeout_seconds(deadline, "ctx.ask_human's deadline")
    if not queue or not escalate_to:
        raise UserError("ctx.ask_human queue and escalate_to must be non-empty names")
    adapter = adapter_for(type)
    stored_default = None
    if on_deadline == "default":
        if default is _UNSET:
            raise UserError("ctx.ask_human(on_deadline='default') needs default=<answer>")
        try:
            stored_default = adapter.dump_python(adapter.validate_python(default), mode="json")
        except ValidationError as e:
            raise UserError(f"ctx.ask_human default does not match the answer type: "
                            f"{readable_validation_error(e)}") from None
    try:
        to_json(context)
    except Exception as e:  # pydantic_core's serialisation error
        raise UserError(f"ctx.ask_human context must be JSON-able: {e}") from None
    out = await decide(ctx, TaskSpec(
        kind="question", prompt=prompt, context=context, answer_schema=schema_for(type),
        answer_type=type_name(type), queue=queue, assignees=_names(assignees, "assignees"),
        deadline=deadline, on_deadline=on_deadline, default=stored_default,
        escalate_to=escalate_to, check=adapter.validate_python))
    d = out.decision
    if d.action == "expire":
        raise HumanTimeout(f"nobody answered task {out.task.id!r} ({prompt[:80]!r}) before its "
                           f"deadline of {deadline}s", task_id=out.task.id)
    return HumanAnswer(value=out.value, by=d.by, comment=d.comment, at=d.at,
                       task_id=out.task.id, timed_out=d.action == "default")


__all__ = ["HumanAnswer", "ask_human"]
