"""Framework values exchanged with model adapters: messages, requests, responses, usage.

Plain slotted dataclasses (cheap to build on the hot path); each journaled value has an
explicit ``to_dict`` / ``from_dict`` so the persisted form is stable and versioned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from convoy.security._provenance import Provenance

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(slots=True, frozen=True)
class ToolCall:
    """A model's request to call a tool (or a worker, or a handoff): arguments are JSON text."""

    id: str
    name: str
    arguments: str

    def to_dict(self) -> dict[str, Any]:
        """The call as a plain dict, for the journal."""
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(slots=True, kw_only=True)
class Message:
    """One chat message in OpenAI's shape.

    ``provenance`` says where its content came from and whether it is untrusted (see
    :class:`~convoy.Provenance`); ``None`` for messages built outside an agent loop."""

    role: Role
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    provenance: Provenance | None = None

    def to_dict(self) -> dict[str, Any]:
        """The message as a plain dict (only the fields it has), e.g. for a transcript."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.provenance is not None and self.provenance.tainted:
            out["untrusted"] = self.provenance.label
        return out


@dataclass(slots=True)
class Usage:
    """Token usage of one model response (or a running total)."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def add(self, other: Usage) -> None:
        """Add ``other`` to this running total, in place."""
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens


@dataclass(slots=True, frozen=True, kw_only=True)
class ToolSpec:
    """What the model is told about a callable tool: a name, a description, a JSON schema."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(slots=True, frozen=True, kw_only=True)
class ModelSettings:
    """Per-request knobs an adapter passes through where its backend supports them."""

    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float | None = None
    seed: int | None = None


@dataclass(slots=True, kw_only=True)
class ModelRequest:
    """Everything an adapter needs for one call.

    ``output_schema`` is the JSON schema the final answer must satisfy (``None`` for free
    text). ``agent``, ``session_id`` and ``step_key`` identify the call deterministically,
    which the simulator uses to seed its behaviour.
    """

    messages: list[Message]
    tools: list[ToolSpec] = field(default_factory=list)
    output_schema: dict[str, Any] | None = None
    output_name: str | None = None
    settings: ModelSettings = field(default_factory=ModelSettings)
    agent: str = ""
    session_id: str = ""
    step_key: str = ""
    attempt: int = 0
    repairs: int = 0
    tenant: str = "default"
    boundary: str = ""
    """Set when a message is untrusted: the session's spotlighting boundary (adapters
    send :func:`convoy.spotlight` of the request)."""


@dataclass(slots=True, kw_only=True)
class ModelResponse:
    """One answer: text (the JSON of a structured output, or prose) and/or tool calls."""

    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    finish_reason: str | None = None
    cost: float = 0.0
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The compact form the journal stores (versioned by the store schema)."""
        d: dict[str, Any] = {"model": self.model, "in": self.usage.input_tokens,
                             "out": self.usage.output_tokens}
        if self.text is not None:
            d["text"] = self.text
        if self.tool_calls:
            d["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.finish_reason is not None:
            d["finish"] = self.finish_reason
        if self.cost:
            d["cost"] = self.cost
        if self.cached:
            d["cached"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelResponse:
        """Rebuild a response from :meth:`to_dict`'s form (replay)."""
        return cls(
            text=d.get("text"),
            tool_calls=[ToolCall(c["id"], c["name"], c["arguments"])
                        for c in d.get("tool_calls", ())],
            usage=Usage(d.get("in", 0), d.get("out", 0)),
            model=d.get("model", ""),
            finish_reason=d.get("finish"),
            cost=d.get("cost", 0.0),
            cached=d.get("cached", False),
        )
