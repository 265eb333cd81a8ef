"""The contract of a model's tool calls: each names a tool, worker or handoff target the
agent declares, with arguments that validate.

One check for everything that needs it: the agent loop dispatches only calls that pass it
(and tells the model why the others failed); the response cache keeps only answers whose
every call passes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError

from convoy._text import readable_validation_error
from convoy.definitions._agent import HANDOFF_PREFIX, ref_name
from convoy.definitions._tools import Tool
from convoy.models._messages import ToolCall

if TYPE_CHECKING:
    from convoy.definitions._agent import Agent, AgentLinks


@dataclass(frozen=True, slots=True)
class ToolCallCheck:
    """A valid call: a tool with its validated arguments, or a worker or handoff target
    with its validated input."""

    kind: Literal["tool", "worker", "handoff"]
    tool: Tool | None
    agent: Agent[Any, Any] | None
    value: Any


class InvalidCall(ValueError):
    """A call the agent's contract does not allow; the message is what the model is told."""


def check_call(agent: Agent[Any, Any], links: AgentLinks, call: ToolCall, *,
               alone: bool) -> ToolCallCheck:
    """Validate one call of a model turn (``alone``: the only call of that turn).

    Raises:
        InvalidCall: an unknown name, invalid arguments or payload, or a handoff beside
            other calls.
    """
    name = call.name
    tool = agent.tools_by_name.get(name)
    if tool is not None:
        try:
            args: BaseModel = tool.validate_args(call.arguments)
        except ValueError as e:
            raise InvalidCall(f"invalid arguments for tool {name!r}: {e}") from None
        return ToolCallCheck(kind="tool", tool=tool, agent=None, value=args)
    worker = links.workers_by_name.get(name)
    if worker is not None:
        try:
            payload = worker.coerce_input(_loads(call.arguments))
        except (ValidationError, ValueError) as e:
            raise InvalidCall(f"invalid input for worker {name!r}: {_reason(e)}") from None
        return ToolCallCheck(kind="worker", tool=None, agent=worker, value=payload)
    target = links.handoffs_by_tool.get(name)
    if target is not None:
        if not alone:
            raise InvalidCall("a handoff must be the only call of its turn")
        try:
            payload = target.coerce_input(_loads(call.arguments))
        except (ValidationError, ValueError) as e:
            raise InvalidCall(f"invalid payload for handoff to {target.name!r}: {_reason(e)}; "
                              f"it must match {json.dumps(target.input_schema)}") from None
        return ToolCallCheck(kind="handoff", tool=None, agent=target, value=payload)
    raise InvalidCall(_unknown(agent, links, name))


def calls_valid(agent: Agent[Any, Any], links: AgentLinks, calls: list[ToolCall]) -> bool:
    """Does every call of this turn pass :func:`check_call`?"""
    alone = len(calls) == 1
    try:
        for call in calls:
            check_call(agent, links, call, alone=alone)
    except InvalidCall:
        return False
    return True


def _loads(arguments: str) -> Any:
    try:
        return json.loads(arguments or "{}")
    except json.JSONDecodeError as e:
        raise ValueError(f"arguments are not valid JSON ({e.msg} at char {e.pos})") from None


def _reason(e: Exception) -> str:
    return readable_validation_error(e) if isinstance(e, ValidationError) else str(e)


def _unknown(agent: Agent[Any, Any], links: AgentLinks, name: str) -> str:
    if name.startswith(HANDOFF_PREFIX):
        valid = [ref_name(h) for h in agent.handoffs] or ["(none: this agent cannot hand off)"]
        return (f"{name[len(HANDOFF_PREFIX):]!r} is not a declared handoff target of "
                f"{agent.name!r}; valid targets: {', '.join(valid)}")
    valid = [t.name for t in links.tool_specs] or ["(none)"]
    return f"unknown tool {name!r}; available tools: {', '.join(valid)}"
