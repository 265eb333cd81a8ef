"""What every running session shares: the store, the limits, the models and the chains."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from convoy._errors import UserError
from convoy.interceptors._base import (
    Chain,
    EffectInput,
    HandoffInput,
    Interceptor,
    ModelCallInput,
    ToolCallInput,
)
from convoy.runtime._limits import Limits
from convoy.models._messages import ModelResponse
from convoy.cost._pricing import PriceTable
from convoy.models import infer_model
from convoy.models._base import Model

if TYPE_CHECKING:
    from convoy.definitions._agent import Agent
    from convoy.stores._sqlite import SQLiteStore


async def _call_model(i: ModelCallInput) -> ModelResponse:
    return await i.model.request(i.request)


async def _call_tool(i: ToolCallInput) -> Any:
    return await i.tool.invoke(i.args, i.context)


async def _handoff(i: HandoffInput) -> Any:
    return i.payload


async def _effect(i: EffectInput) -> Any:
    return await i.fn()


class Runtime:
    """Resolved configuration of an engine, read on every step."""

    def __init__(self, store: SQLiteStore, *, limits: Limits,
                 interceptors: Sequence[Interceptor], models: Mapping[str, Model],
                 model_override: str | Model | None, prices: PriceTable | None = None) -> None:
        self.store = store
        self.prices = prices
        self.limits = limits
        self.interceptors = tuple(interceptors)
        self.models: dict[str, Model] = dict(models)
        self.override = model_override
        self._by_agent: dict[Agent[Any, Any], Model] = {}
        self.model_chain: Chain[ModelCallInput, ModelResponse] = Chain(
            "model_call", interceptors, _call_model)
        self.tool_chain: Chain[ToolCallInput, Any] = Chain("tool_call", interceptors, _call_tool)
        self.handoff_chain: Chain[HandoffInput, Any] = Chain("handoff", interceptors, _handoff)
        self.effect_chain: Chain[EffectInput, Any] = Chain("effect", interceptors, _effect)

    def resolve(self, spec: str | Model) -> Model:
        if isinstance(spec, Model):
            return spec
        model = self.models.get(spec)
        if model is None:
            model = self.models[spec] = infer_model(spec)
        return model

    def model_for(self, agent: Agent[Any, Any]) -> Model:
        model = self._by_agent.get(agent)
        if model is None:
            spec = self.override if self.override is not None else agent.model
            if spec is None:
                raise UserError(f"agent {agent.name!r} has no model; give it one, e.g. "
                                "Agent(model='sim:') or Agent(model='openai:gpt-4o-mini'), "
                                "or set one for every agent with Engine(model=...)")
            model = self._by_agent[agent] = self.resolve(spec)
        return model
