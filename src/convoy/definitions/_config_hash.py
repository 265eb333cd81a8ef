"""Agent configuration hashes: which version of an agent's definition took a step.

The hash covers what decides an agent's behaviour: its instructions (a function's source
code when they are computed), its model route, its input and output schemas, its tools
(name, description, argument and result contract, scopes, write/approval flags), the agents
it may hand off or delegate to (by name), its scopes, and its policies (retries, turns,
sampling settings, criticality, escalation). It is the sha256 of a canonical JSON document
(sorted keys, no whitespace), so the same definition gives the same hash in every process
and any change to one of those gives another. It is computed once per definition
(:attr:`convoy.Agent.config_hash`); its first 16 hex digits (:attr:`convoy.Agent.config_id`)
are journaled with every step the agent takes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from convoy.definitions._agent import Agent
    from convoy.definitions._tools import Tool

#: Hex digits of the short form shown by the CLI (``convoy sessions show``).
SHORT = 12
#: Hex digits journaled with each step (:attr:`convoy.Agent.config_id`).
JOURNALED = 16


def short_hash(full: str | None) -> str:
    """The short form of a configuration hash (``-`` for none)."""
    return full[:SHORT] if full else "-"


def agent_config(agent: Agent[Any, Any]) -> dict[str, Any]:
    """The canonical document an agent's configuration hash is taken of."""
    model = agent.model
    route = model if isinstance(model, str) or model is None else {
        "name": model.name, "deployment": model.deployment, "class": type(model).__qualname__}
    return {
        "name": agent.name,
        "instructions": _code_or_text(agent.instructions),
        "model": route,
        "input": agent.input_schema,
        "output": agent.output_schema,
        "tools": [_tool(t) for t in agent.tools],
        "handoffs": [r if isinstance(r, str) else r.name for r in agent.handoffs],
        "workers": [r if isinstance(r, str) else r.name for r in agent.workers],
        "scopes": sorted(agent.scopes),
        "policies": {
            "output_retries": agent.output_retries, "handoff_retries": agent.handoff_retries,
            "tool_failures": agent.tool_failures, "max_turns": agent.max_turns,
            "criticality": agent.criticality,
            "settings": _plain(agent.model_settings),
            "escalation": _plain(agent.escalation),
        },
    }


def config_hash(agent: Agent[Any, Any]) -> str:
    """The sha256 (hex) of :func:`agent_config` as canonical JSON."""
    text = json.dumps(agent_config(agent), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, default=_fallback)
    return hashlib.sha256(text.encode()).hexdigest()


def _tool(t: Tool) -> dict[str, Any]:
    return {"name": t.name, "description": t.description, "parameters": t.spec.parameters,
            "result": t.result_adapter.json_schema() if t.result_adapter is not None else None,
            "writes": t.writes, "idempotent": t.idempotent, "scopes": sorted(t.scopes),
            "approval": _plain(t.approval), "isolate": t.isolate}


def _code_or_text(value: Any) -> Any:
    """Text as is; a function as its qualified name and source code (what changes when the
    prompt it builds changes), or its name alone when the source is not available."""
    if isinstance(value, str):
        return value
    name = getattr(value, "__qualname__", type(value).__qualname__)
    try:
        source = inspect.getsource(value)
    except (OSError, TypeError):
        source = None
    return {"function": f"{getattr(value, '__module__', '')}.{name}", "source": source}


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return _fallback(value)


def _fallback(value: Any) -> Any:
    # Callables (an escalation's predicate) by name: stable across processes, unlike repr.
    if callable(value):
        return _code_or_text(value)
    return f"{type(value).__qualname__}"
