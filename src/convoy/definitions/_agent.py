"""Agent definitions. An agent is configuration; an engine runs it."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from convoy._errors import UserError
from convoy.definitions._tools import Tool, readable_validation_error
from convoy.models._base import Model
from convoy.models._messages import ModelSettings, ToolSpec

InT = TypeVar("InT")
OutT = TypeVar("OutT")

HANDOFF_PREFIX = "transfer_to_"


@dataclass(frozen=True, kw_only=True, eq=False)
class Agent(Generic[InT, OutT]):
    """A typed agent definition.

    Args:
        name: unique within a workflow; used in step keys, traces and scripts.
        instructions: the system prompt, or a function of the input returning it.
        input_type: a Pydantic model (or ``str``) the agent is given.
        output_type: a Pydantic model the answer must validate against, or ``str``.
        model: ``"provider:model"`` (``"sim:"``, ``"openai:gpt-4o-mini"``) or a
            :class:`~convoy.models.Model`. Required unless the engine has a ``model``
            override; there is no implicit simulator.
        tools: tools the agent may call.
        handoffs: agents it may hand the session over to (one way: the target's output
            becomes this run's output).
        workers: agents it may delegate to as tools; control returns to this agent with the
            worker's typed output. Independent delegations in one turn run in parallel.
        output_retries: re-prompts with the validation errors before the step fails.
        handoff_retries: recoverable handoff / tool-call mistakes fed back to the model
            before the run fails.
        max_turns: model calls in one run of this agent.
        model_settings: sampling settings (temperature, max tokens, seed) sent with every
            model call of this agent.
        criticality: ``"low"``, ``"normal"`` or ``"high"``; a model router sends critical
            steps to a stronger model and the rest to a cheaper one.
    """

    name: str
    instructions: str | Callable[[Any], str] = ""
    input_type: type[InT] | type[str] = str
    output_type: type[OutT] | type[str] = str
    model: str | Model | None = None
    tools: Sequence[Tool] = ()
    handoffs: Sequence[Agent[Any, Any]] = ()
    workers: Sequence[Agent[Any, Any]] = ()
    output_retries: int = 2
    handoff_retries: int = 2
    max_turns: int = 12
    model_settings: ModelSettings = field(default_factory=ModelSettings)
    criticality: Literal["low", "normal", "high"] = "normal"

    # Derived once, at definition time, so the hot path never rebuilds schemas.
    output_schema: dict[str, Any] | None = field(init=False, repr=False)
    tool_specs: list[ToolSpec] = field(init=False, repr=False)
    tools_by_name: dict[str, Tool] = field(init=False, repr=False)
    workers_by_name: dict[str, Agent[Any, Any]] = field(init=False, repr=False)
    handoffs_by_tool: dict[str, Agent[Any, Any]] = field(init=False, repr=False)
    _out_adapter: TypeAdapter[Any] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise UserError(f"agent name {self.name!r} must be non-empty letters, digits, "
                            "'_' or '-'")
        for n, v in (("output_retries", self.output_retries),
                     ("handoff_retries", self.handoff_retries), ("max_turns", self.max_turns)):
            if v < 0 or (n == "max_turns" and v < 1):
                raise UserError(f"agent {self.name!r}: {n} must be positive, got {v}")
        s = object.__setattr__
        out_is_model = isinstance(self.output_type, type) and issubclass(self.output_type,
                                                                         BaseModel)
        s(self, "_out_adapter", None if self.output_type is str else TypeAdapter(self.output_type))
        schema: dict[str, Any] | None = None
        if out_is_model:
            schema = self.output_type.model_json_schema()  # type: ignore[union-attr]
        elif self._out_adapter is not None:
            schema = self._out_adapter.json_schema()
        s(self, "output_schema", schema)
        specs: list[ToolSpec] = []
        by_name: dict[str, Tool] = {}
        for t in self.tools:
            _unique(self, by_name, t.name)
            by_name[t.name] = t
            specs.append(t.spec)
        workers: dict[str, Agent[Any, Any]] = {}
        for w in self.workers:
            _unique(self, {**by_name, **workers}, w.name)
            workers[w.name] = w
            specs.append(ToolSpec(name=w.name, description=f"Delegate to the {w.name} agent; "
                                  "its result comes back to you.", parameters=w.input_schema))
        handoffs: dict[str, Agent[Any, Any]] = {}
        for h in self.handoffs:
            tname = HANDOFF_PREFIX + h.name
            _unique(self, {**by_name, **workers, **handoffs}, tname)
            handoffs[tname] = h
            specs.append(ToolSpec(name=tname, description=f"Hand the conversation over to "
                                  f"the {h.name} agent.", parameters=h.input_schema))
        s(self, "tool_specs", specs)
        s(self, "tools_by_name", by_name)
        s(self, "workers_by_name", workers)
        s(self, "handoffs_by_tool", handoffs)

    # -- contracts -----------------------------------------------------------------------

    @property
    def input_schema(self) -> dict[str, Any]:
        """JSON schema of the arguments a delegating model passes to this agent."""
        if self.input_type is str:
            return {"type": "object", "properties": {"task": {"type": "string"}},
                    "required": ["task"]}
        schema: dict[str, Any] = TypeAdapter(self.input_type).json_schema()
        schema.pop("title", None)
        return schema

    def coerce_input(self, value: Any) -> Any:
        """Validate ``value`` (a model, a dict, JSON text) into this agent's input type."""
        if self.input_type is str:
            if isinstance(value, str):
                return value
            if isinstance(value, BaseModel):
                return value.model_dump_json()
            if isinstance(value, dict) and set(value) == {"task"}:
                return str(value["task"])
            return json.dumps(value, default=str)
        t: type[BaseModel] = self.input_type  # type: ignore[assignment]
        if isinstance(value, t):
            return value
        if isinstance(value, BaseModel):
            return t.model_validate(value.model_dump())
        if isinstance(value, str | bytes):
            return t.model_validate_json(value)
        return t.model_validate(value)

    def parse_output(self, text: str | None) -> Any:
        """Parse and validate a model answer; ``ValueError`` says what is wrong."""
        if self._out_adapter is None:
            if text is None:
                raise ValueError("expected a text answer, got none")
            return text
        if not text:
            raise ValueError("expected a JSON answer matching the output schema, got nothing")
        try:
            return self._out_adapter.validate_json(text)
        except ValidationError as e:
            raise ValueError(readable_validation_error(e)) from None

    def dump_output(self, value: Any) -> str:
        """An output as JSON text (plain text for ``str``): what the journal keeps and what a
        delegating agent reads back."""
        if isinstance(value, BaseModel):
            return value.model_dump_json()
        if self._out_adapter is None:
            return str(value)
        return self._out_adapter.dump_json(value).decode()

    def render_instructions(self, value: Any) -> str:
        """The system prompt for this input: ``instructions`` itself, or its result when it is a
        function of the input."""
        return self.instructions(value) if callable(self.instructions) else self.instructions

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r})"


def _unique(agent: Agent[Any, Any], seen: dict[str, Any], name: str) -> None:
    if name in seen:
        raise UserError(f"agent {agent.name!r}: two tools/workers/handoffs are named {name!r}")


def render_input(value: Any) -> str:
    """The user message an agent receives for ``value``."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return json.dumps(value, default=str)
