"""The interceptor chain: the single extension point around every step.

Each kind of step has a typed input (one dataclass per kind) and a method on
:class:`Interceptor`; an interceptor overrides the methods it cares about and calls
``next(input)`` to continue down the chain (or does not, to short-circuit). The first
interceptor in ``Engine(interceptors=[...])`` is the outermost. Journaling sits outside the
chain: a step already in the journal is replayed without running any interceptor, so a
resumed session pays nothing twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from convoy.models._messages import ModelRequest, ModelResponse

if TYPE_CHECKING:
    from pydantic import BaseModel

    from convoy.definitions._agent import Agent
    from convoy.definitions._tools import Tool, ToolContext
    from convoy.engine._runtime import Runtime
    from convoy.models._base import Model
    from convoy.runtime._session import SessionState

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


@dataclass(slots=True, kw_only=True)
class ModelCallInput:
    """One call to a model endpoint on behalf of an agent."""

    session: SessionState
    key: str
    agent: Agent[Any, Any]
    model: Model
    request: ModelRequest


@dataclass(slots=True, kw_only=True)
class ToolCallInput:
    """One call of a tool with already-validated arguments."""

    session: SessionState
    key: str
    agent: Agent[Any, Any]
    tool: Tool
    args: BaseModel
    context: ToolContext


@dataclass(slots=True, kw_only=True)
class HandoffInput:
    """One agent handing the session over to another, with a validated payload."""

    session: SessionState
    key: str
    source: Agent[Any, Any]
    target: Agent[Any, Any]
    payload: Any


@dataclass(slots=True, kw_only=True)
class EffectInput:
    """A workflow-level effect: ``ctx.step``, ``ctx.now``, ``ctx.random``, ``ctx.sleep``."""

    session: SessionState
    key: str
    name: str
    idempotent: bool
    fn: Callable[[], Awaitable[Any]]


Next = Callable[[I], Awaitable[O]]


class Interceptor:
    """Base class: every method passes through. Override what you need."""

    def bind(self, runtime: Runtime) -> None:
        """Called once when the engine opens its store; an interceptor that keeps state
        across restarts (open circuit breakers, say) can find the store here."""

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        return await next(input)

    async def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        return await next(input)

    async def handoff(self, input: HandoffInput, next: Next[HandoffInput, Any]) -> Any:
        return await next(input)

    async def effect(self, input: EffectInput, next: Next[EffectInput, Any]) -> Any:
        return await next(input)


class Chain(Generic[I, O]):
    """A composed chain for one step kind. Pass-through interceptors are skipped entirely,
    so an empty chain costs one function call."""

    __slots__ = ("call",)

    def __init__(self, method: str, interceptors: Sequence[Interceptor],
                 terminal: Callable[[I], Awaitable[O]]) -> None:
        call: Callable[[I], Awaitable[O]] = terminal
        base = getattr(Interceptor, method)
        for ic in reversed(interceptors):
            bound = getattr(ic, method)
            if getattr(type(ic), method) is base:
                continue
            call = _link(bound, call)
        self.call = call


def _link(bound: Callable[[Any, Any], Awaitable[Any]],
          nxt: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    # A plain function, not a coroutine: each link costs one call, not an extra frame.
    def step(input: Any) -> Awaitable[Any]:
        return bound(input, nxt)

    return step
