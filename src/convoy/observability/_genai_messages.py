"""Chat messages in the shape the OpenTelemetry GenAI semantic conventions give
``gen_ai.input.messages`` and ``gen_ai.output.messages``: a list of ``{"role", "parts"}``,
each part a ``{"type": "text", "content"}``, a ``{"type": "tool_call", "id", "name",
"arguments"}`` or a ``{"type": "tool_call_response", "id", "response"}``, and an output
message's ``finish_reason``. Backends that read the conventions (Phoenix, Langfuse, ...)
find the text and the tool calls in ``parts``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from convoy.models._messages import Message, ModelResponse, ToolCall
from convoy.observability._spans import finish_reason

Part = dict[str, Any]


def _arguments(call: ToolCall) -> Any:
    """A tool call's arguments as the object they are (the model's text if not JSON)."""
    try:
        return json.loads(call.arguments)
    except (TypeError, ValueError):
        return call.arguments


def _call(call: ToolCall) -> Part:
    return {"type": "tool_call", "id": call.id, "name": call.name,
            "arguments": _arguments(call)}


def input_messages(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """A model call's (or an agent's) input messages."""
    out: list[dict[str, Any]] = []
    for m in messages:
        parts: list[Part]
        if m.role == "tool":
            parts = [{"type": "tool_call_response", "id": m.tool_call_id,
                      "response": m.content}]
        else:
            parts = [{"type": "text", "content": m.content}] if m.content else []
            parts += [_call(c) for c in m.tool_calls or ()]
        message: dict[str, Any] = {"role": m.role, "parts": parts}
        if m.provenance is not None and m.provenance.tainted:
            message["untrusted"] = m.provenance.label  # (not in the conventions: Convoy's)
        out.append(message)
    return out


def output_messages(response: ModelResponse) -> list[dict[str, Any]]:
    """A model's answer as the one output message it is."""
    parts: list[Part] = [{"type": "text", "content": response.text}] if response.text else []
    parts += [_call(c) for c in response.tool_calls]
    finish = finish_reason(response.finish_reason) if response.finish_reason else \
        ("tool_call" if response.tool_calls else "stop")
    return [{"role": "assistant", "parts": parts, "finish_reason": finish}]


def agent_output(output: Any) -> list[dict[str, Any]]:
    """An agent's result (a typed output, or text) as its output message: the text part
    holds it as it is, an object as JSON."""
    dump = getattr(output, "model_dump", None)
    value = dump(mode="json") if callable(dump) else output
    content = value if isinstance(value, str) else json.dumps(value, default=str,
                                                              ensure_ascii=False)
    return [{"role": "assistant", "parts": [{"type": "text", "content": content}],
             "finish_reason": "stop"}]


__all__ = ["agent_output", "input_messages", "output_messages"]
