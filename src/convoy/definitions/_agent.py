"""Agent definitions. An agent is configuration; an engine runs it."""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeAlias, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from convoy._errors import UserError
from convoy._text import readable_validation_error
from convoy.definitions._config_hash import JOURNALED, config_hash
from convoy.definitions._tools import Tool
from convoy.hitl._rules import Escalation
from convoy.models._base import Model
from convoy.models._messages import ModelSettings, ToolSpec
from convoy.security._scopes import check_grants

InT = TypeVar("InT")
OutT = TypeVar("OutT")

HANDOFF_PREFIX = "transfer_to_"

AgentRef: TypeAlias = "Agent[Any, Any] | str"
"""An agent, or its name, resolved when a session runs (see :class:`Agent`)."""


@dataclass(frozen=True, slots=True)
class AgentLinks:
    """An agent's tools, workers and handoff targets with every name resolved: what the
    agent loop offers the model and dispatches its calls on."""

    tool_specs: list[ToolSpec]
    workers_by_name: dict[str, Agent[Any, Any]]
    handoffs_by_tool: dict[str, Agent[Any, Any]]


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
            becomes this run's output), as agents or by name.
        workers: agents it may delegate to as tools; control returns to this agent with the
            worker's typed output. Independent delegations in one turn run in parallel.
            As agents or by name.
        output_retries: re-prompts with the validation errors before the step fails.
        handoff_retries: recoverable handoff / tool-call mistakes (an unknown tool,
            invalid arguments or payload) fed back to the model before the run fails with
            ``HandoffError``.
        tool_failures: failed tool calls (the tool raised, timed out, or its circuit
            breaker is open) reported to the model before the run fails with the tool's
            own error (``ToolError``, ``CircuitOpenError``).
        max_turns: model calls in one run of this agent.
        model_settings: sampling settings (temperature, max tokens, seed) sent with every
            model call of this agent.
        criticality: ``"low"``, ``"normal"`` or ``"high"``; a model router sends critical
            steps to a stronger model and the rest to a cheaper one.
        scopes: the scopes this agent is granted (``"payments:refund"``, ``"payments:*"``,
            ``"*"``). A call of a tool that needs a scope the grant does not cover is
            refused before it runs and reported to the model (``ToolDenied``).
        escalation: which failures of this agent's runs go to a person (an inbox task)
            instead of ending the run (see :class:`~convoy.Escalation`); default: the
            engine's ``escalation``.

    **Naming agents by string.** Agents are frozen, so two agents that hand off to each
    other cannot both hold the other: name one of them instead, and the name is resolved
    when a session runs the agent, among the agents of that session::

        billing = Agent(name="billing", handoffs=["triage"], ...)
        triage = Agent(name="triage", handoffs=[billing], ...)

    A session knows the agents given to its workflow (``@workflow(agents=[...])``), every
    agent its code runs, and every agent those hold as objects in their ``handoffs`` and
    ``workers``, transitively; the first one known under a name is the one it resolves to.
    An agent's own name always resolves to itself. A name that resolves to nothing fails
    the session with a :class:`~convoy.UserError` naming it. Resolution is cached, and the
    handoff and worker tools still carry the target's input schema.
    """

    name: str
    instructions: str | Callable[[Any], str] = ""
    input_type: type[InT] | type[str] = str
    output_type: type[OutT] | type[str] = str
    model: str | Model | None = None
    tools: Sequence[Tool] = ()
    handoffs: Sequence[AgentRef] = ()
    workers: Sequence[AgentRef] = ()
    output_retries: int = 2
    handoff_retries: int = 2
    tool_failures: int = 3
    max_turns: int = 12
    model_settings: ModelSettings = field(default_factory=ModelSettings)
    criticality: Literal["low", "normal", "high"] = "normal"
    scopes: Collection[str] = frozenset()
    escalation: Escalation | None = None

    # Derived once, at definition time, so the hot path never rebuilds schemas.
    output_schema: dict[str, Any] | None = field(init=False, repr=False)
    tools_by_name: dict[str, Tool] = field(init=False, repr=False)
    _out_adapter: TypeAdapter[Any] | None = field(init=False, repr=False)
    #: The links of an agent that names no agent by string, built once (``None`` if it
    #: does: those are resolved when a session runs it). Else the last resolution: (the
    #: targets it used, the links).
    static_links: AgentLinks | None = field(init=False, repr=False, compare=False)
    _resolved: tuple[tuple[Agent[Any, Any], ...], AgentLinks] | None = field(
        init=False, repr=False)
    #: The sha256 (hex) of this definition's canonical JSON: instructions, model route,
    #: schemas, tools, handoffs, workers, scopes and policies (see
    #: :mod:`convoy.definitions._config_hash`); the same in every process.
    config_hash: str = field(init=False, repr=False)
    #: The first 16 hex digits (64 bits) of :attr:`config_hash`: what the journal records
    #: with every step this agent takes, and ``convoy sessions show`` prints (a 64-digit
    #: column cost about 1.5 µs per journaled step; 16 digits cost nothing measurable).
    config_id: str = field(init=False, repr=False)
    #: What the model may call: the tools', workers' and ``transfer_to_`` handoffs' names.
    callable_names: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not _valid_name(self.name):
            raise UserError(f"agent name {self.name!r} must be non-empty letters, digits, "
                            "'_' or '-'")
        for n, v in (("output_retries", self.output_retries),
                     ("handoff_retries", self.handoff_retries),
                     ("tool_failures", self.tool_failures), ("max_turns", self.max_turns)):
            if v < 0 or (n == "max_turns" and v < 1):
                raise UserError(f"agent {self.name!r}: {n} must be positive, got {v}")
        s = object.__setattr__
        s(self, "scopes", check_grants(self.scopes, f"agent {self.name!r}"))
        if self.escalation is not None and not isinstance(self.escalation, Escalation):
            raise UserError(f"agent {self.name!r}: escalation must be a convoy.Escalation, "
                            f"got {self.escalation!r}")
        out_is_model = isinstance(self.output_type, type) and issubclass(self.output_type,
                                                                         BaseModel)
        s(self, "_out_adapter", None if self.output_type is str else TypeAdapter(self.output_type))
        schema: dict[str, Any] | None = None
        if out_is_model:
            schema = self.output_type.model_json_schema()  # type: ignore[union-attr]
        elif self._out_adapter is not None:
            schema = self._out_adapter.json_schema()
        s(self, "output_schema", schema)
        by_name: dict[str, Tool] = {}
        for t in self.tools:
            _unique(self, by_name, t.name)
            by_name[t.name] = t
        seen: dict[str, Any] = dict(by_name)
        for kind, refs in (("workers", self.workers), ("handoffs", self.handoffs)):
            for ref in refs:
                name = ref_name(ref)
                if isinstance(ref, str) and not _valid_name(ref):
                    raise UserError(f"agent {self.name!r}: {kind} entry {ref!r} is not an agent "
                                    "name (letters, digits, '_' or '-'), nor an Agent")
                _unique(self, seen, HANDOFF_PREFIX + name if kind == "handoffs" else name)
                seen[HANDOFF_PREFIX + name if kind == "handoffs" else name] = ref
        s(self, "tools_by_name", by_name)
        s(self, "_resolved", None)
        # Once per definition: the hot path reads a plain attribute.
        s(self, "config_hash", config_hash(self))
        s(self, "config_id", self.config_hash[:JOURNALED])
        s(self, "callable_names", frozenset(seen))
        _remember(self)
        static = not any(isinstance(r, str) for r in (*self.workers, *self.handoffs))
        s(self, "static_links", self._build_links(list(self.workers), list(self.handoffs))  # type: ignore[arg-type]
          if static else None)

    # -- links to other agents -----------------------------------------------------------

    def links(self, agents: Mapping[str, Agent[Any, Any]] | None = None) -> AgentLinks:
        """This agent's tool specs, workers and handoff targets, names resolved in
        ``agents`` (the agents a session knows, by name).

        Raises:
            UserError: a worker or handoff name that ``agents`` does not know.
        """
        if self.static_links is not None:
            return self.static_links
        known = agents if agents is not None else {}
        workers = [self._resolve(r, known, "workers") for r in self.workers]
        handoffs = [self._resolve(r, known, "handoffs") for r in self.handoffs]
        targets = (*workers, *handoffs)
        last = self._resolved
        if last is not None and all(a is b for a, b in zip(last[0], targets, strict=True)):
            return last[1]
        links = self._build_links(workers, handoffs)
        object.__setattr__(self, "_resolved", (targets, links))
        return links

    def _resolve(self, ref: AgentRef, known: Mapping[str, Agent[Any, Any]],
                 kind: str) -> Agent[Any, Any]:
        if not isinstance(ref, str):
            return ref
        if ref == self.name:
            return self
        found = known.get(ref)
        if found is None:
            raise UserError(
                f"agent {self.name!r} names {ref!r} in its {kind}, but no agent named {ref!r} "
                f"is known to this session (known: {', '.join(sorted(known)) or 'none'}); "
                f"pass the agent itself in some agent's handoffs or workers, or give it to "
                f"the workflow: @convoy.workflow(agents=[{ref}])")
        return found

    def _build_links(self, workers: list[Agent[Any, Any]],
                     handoffs: list[Agent[Any, Any]]) -> AgentLinks:
        specs = [t.spec for t in self.tools]
        by_worker: dict[str, Agent[Any, Any]] = {}
        for w in workers:
            by_worker[w.name] = w
            specs.append(ToolSpec(name=w.name, description=f"Delegate to the {w.name} agent; "
                                  "its result comes back to you.", parameters=w.input_schema))
        by_tool: dict[str, Agent[Any, Any]] = {}
        for h in handoffs:
            by_tool[HANDOFF_PREFIX + h.name] = h
            specs.append(ToolSpec(name=HANDOFF_PREFIX + h.name, description=f"Hand the "
                                  f"conversation over to the {h.name} agent.",
                                  parameters=h.input_schema))
        return AgentLinks(tool_specs=specs, workers_by_name=by_worker, handoffs_by_tool=by_tool)

    def _known_links(self) -> AgentLinks:
        if self.static_links is not None:
            return self.static_links
        if self._resolved is not None:
            return self._resolved[1]
        raise UserError(f"agent {self.name!r} names agents by string; they are resolved when "
                        "a session runs it (Agent.links(agents) resolves them by hand)")

    @property
    def tool_specs(self) -> list[ToolSpec]:
        """The tools the model is offered: tools, then workers, then handoffs."""
        return self._known_links().tool_specs

    @property
    def workers_by_name(self) -> dict[str, Agent[Any, Any]]:
        """The agents this one may delegate to, by the tool name the model calls."""
        return self._known_links().workers_by_name

    @property
    def handoffs_by_tool(self) -> dict[str, Agent[Any, Any]]:
        """The agents this one may hand off to, by handoff tool name (``transfer_to_X``)."""
        return self._known_links().handoffs_by_tool

    def reachable(self) -> list[Agent[Any, Any]]:
        """This agent and every agent it holds as an object, transitively (not names)."""
        out: dict[int, Agent[Any, Any]] = {}
        todo: list[Agent[Any, Any]] = [self]
        while todo:
            a = todo.pop()
            if id(a) in out:
                continue
            out[id(a)] = a
            todo.extend(r for r in (*a.workers, *a.handoffs) if not isinstance(r, str))
        return list(out.values())

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

    def validate_output(self, value: Any) -> Any:
        """A JSON value (a person's edit of this agent's answer) validated into the output
        type; ``ValueError`` / ``ValidationError`` says what is wrong."""
        if self._out_adapter is None:
            if not isinstance(value, str):
                raise ValueError(f"agent {self.name!r} answers text, got {value!r}")
            return value
        return self._out_adapter.validate_python(value)

    def output_json(self, value: Any) -> Any:
        """An output as JSON values (what a reviewer sees and may edit)."""
        if self._out_adapter is None:
            return str(value)
        return self._out_adapter.dump_python(value, mode="json")

    def render_instructions(self, value: Any) -> str:
        """The system prompt for this input: ``instructions`` itself, or its result when it is a
        function of the input."""
        return self.instructions(value) if callable(self.instructions) else self.instructions

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r})"


#: The agent definitions this process made, by configuration id: how the audit log tells
#: an agent's tool from a name the model made up (see :func:`callable_names`). Those still
#: referenced (module-level agents, for the process's life) are found by a weak
#: reference; the names of the last :data:`_RECENT_MAX` made are kept as well, so a
#: definition made per request and dropped is still known when its session is sealed,
#: a moment after its run. Neither grows without end.
_ALIVE: weakref.WeakValueDictionary[str, Agent[Any, Any]] = weakref.WeakValueDictionary()
_RECENT: dict[str, frozenset[str]] = {}
_RECENT_MAX = 10_000


_REMEMBERING = threading.Lock()  # (agents may be made in several threads at once)


def _remember(agent: Agent[Any, Any]) -> None:
    config = agent.config_id
    with _REMEMBERING:
        _ALIVE.setdefault(config, agent)
        recent = _RECENT
        recent.pop(config, None)  # (made again: the newest)
        if len(recent) >= _RECENT_MAX:
            del recent[next(iter(recent))]  # the oldest
        recent[config] = agent.callable_names


def callable_names(config_id: str) -> frozenset[str] | None:
    """The names the model of the agent definition ``config_id`` (:attr:`Agent.config_id`)
    may call, if this process made that definition (``None``: it did not, or made it long
    ago and no longer holds it)."""
    agent = _ALIVE.get(config_id)
    return agent.callable_names if agent is not None else _RECENT.get(config_id)


def ref_name(ref: AgentRef) -> str:
    """The name of an agent, or of an agent named by string."""
    return ref if isinstance(ref, str) else ref.name


def _valid_name(name: str) -> bool:
    return bool(name) and name.replace("_", "").replace("-", "").isalnum()


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
