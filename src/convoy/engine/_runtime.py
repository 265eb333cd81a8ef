"""What every running session shares: the store, the limits, the models and the chains."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from convoy._errors import UserError
from convoy.cost._pricing import PriceTable
from convoy.hitl._rules import Escalation
from convoy.interceptors._base import (
    AgentRunEnd,
    AgentRunInput,
    Chain,
    DecisionInput,
    EffectInput,
    HandoffInput,
    Interceptor,
    ModelCallInput,
    SessionEnd,
    SessionInput,
    StateInput,
    ToolCallInput,
    ordered,
)
from convoy.models import infer_model
from convoy.models._base import Model
from convoy.models._messages import ModelResponse
from convoy.runtime._agent_loop import agent_turns
from convoy.runtime._limits import Limits
from convoy.state._access import run_state_op

if TYPE_CHECKING:
    from convoy.definitions._agent import Agent
    from convoy.hitl._task import HumanTask
    from convoy.stores._protocol import Store


def _call_model(i: ModelCallInput) -> Awaitable[ModelResponse]:
    # Not a coroutine: the model's own coroutine is the end of the chain (one frame fewer
    # per model call in flight).
    return i.model.request(i.request)


async def _call_tool(i: ToolCallInput) -> Any:
    return await i.tool.invoke(i.args, i.context)


async def _handoff(i: HandoffInput) -> Any:
    return i.payload


async def _effect(i: EffectInput) -> Any:
    return await i.fn()


def _nobody() -> None:
    return None


async def _run_session(i: SessionInput) -> SessionEnd:
    """The end of the session chain: run the workflow."""
    return await i.proceed(i)


async def _write_decision(i: DecisionInput) -> HumanTask:
    """The end of the decision chain: write the decision."""
    return await i.proceed(i)


class Runtime:
    """Resolved configuration of an engine, read on every step."""

    def __init__(self, store: Store, *, limits: Limits,
                 interceptors: Sequence[Interceptor], models: Mapping[str, Model],
                 model_override: str | Model | None, prices: PriceTable | None = None,
                 deps: Any = None, escalation: Escalation | None = None) -> None:
        self.store = store
        #: The wall clock every session reads (deadlines, timers): the store's.
        self.clock: Callable[[], float] = getattr(store, "clock", time.time)
        self.prices = prices
        self.limits = limits
        self.deps = deps
        #: The escalation rules of agents that have none of their own.
        self.escalation = escalation
        #: Known injection patterns found in untrusted content, by pattern name.
        self.injection_signals: Counter[str] = Counter()
        interceptors = ordered(interceptors)
        self.interceptors = tuple(interceptors)
        self.session_chain: Chain[SessionInput, SessionEnd] = Chain(
            "session_run", interceptors, _run_session)
        self.models: dict[str, Model] = dict(models)
        self.override = model_override
        self._by_agent: dict[Agent[Any, Any], Model] = {}
        self.agent_chain: Chain[AgentRunInput, AgentRunEnd] = Chain(
            "agent_run", interceptors, agent_turns)
        self.model_chain: Chain[ModelCallInput, ModelResponse] = Chain(
            "model_call", interceptors, _call_model)
        self.tool_chain: Chain[ToolCallInput, Any] = Chain("tool_call", interceptors, _call_tool)
        self.handoff_chain: Chain[HandoffInput, Any] = Chain("handoff", interceptors, _handoff)
        self.effect_chain: Chain[EffectInput, Any] = Chain("effect", interceptors, _effect)
        self.state_chain: Chain[StateInput, Any] = Chain("state_op", interceptors, run_state_op)
        self.decision_chain: Chain[DecisionInput, HumanTask] = Chain(
            "human_decision", interceptors, _write_decision)
        #: Called when a state write woke parked sessions (the engine's serve loop listens).
        self.wake: Callable[[], None] = _nobody

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
                raise UserError(
                    f"agent {agent.name!r} has no model: give it one (Agent(model='sim:') for "
                    "the simulator, 'openai:gpt-4o-mini', ...) or run every agent on one "
                    "model with Engine(model=...)")
            model = self._by_agent[agent] = self.resolve(spec)
        return model
