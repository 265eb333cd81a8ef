"""Per-agent, per-model (or per-deployment) and per-tool configuration with a default."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from convoy.models._base import Model

P = TypeVar("P")

#: How many (agent, model instance) pairs an interceptor keeps its settings for before it
#: starts again: the usual few long-lived models never reach it, models made anew for
#: every request cannot grow it without bound.
MODELS_KEPT = 1024


@dataclass(frozen=True, kw_only=True)
class Scoped(Generic[P]):
    """Picks the most specific setting: tool, then agent, then deployment, then model name,
    then default. ``models`` is keyed by model name (``"openai:gpt-4o-mini"``: every
    deployment of it) or by deployment (``"openai:gpt-4o-mini@east"``).

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

    def for_endpoint(self, agent: str, model: Model) -> P | None:
        """The setting for ``agent``'s calls to ``model``: by agent, then by the model's
        deployment, then by its name."""
        if agent in self.agents:
            return self.agents[agent]
        models = self.models
        if models:
            deployment = model.deployment
            if deployment in models:
                return models[deployment]
            if model.name in models:
                return models[model.name]
        return self.default

    def for_tool(self, agent: str, tool: str) -> P | None:
        if tool in self.tools:
            return self.tools[tool]
        if agent in self.agents:
            return self.agents[agent]
        return self.default
