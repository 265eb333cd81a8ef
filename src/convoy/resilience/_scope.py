"""Per-agent, per-model-endpoint and per-tool configuration with a default."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P")


@dataclass(frozen=True, kw_only=True)
class Scoped(Generic[P]):
    """Picks the most specific setting: tool, then agent, then model endpoint, then default.

    A value of ``None`` in a mapping switches the feature off for that target.
    """

    default: P | None = None
    agents: Mapping[str, P | None] = field(default_factory=dict)
    models: Mapping[str, P | None] = field(default_factory=dict)
    tools: Mapping[str, P | None] = field(default_factory=dict)

    def for_model(self, agent: str, model: str) -> P | None:
        if agent in self.agents:
            return self.agents[agent]
        if model in self.models:
            return self.models[model]
        return self.default

    def for_tool(self, agent: str, tool: str) -> P | None:
        if tool in self.tools:
            return self.tools[tool]
        if agent in self.agents:
            return self.agents[agent]
        return self.default
