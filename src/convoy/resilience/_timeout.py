"""Timeouts per model call and per tool call (per attempt, or per step outside retries)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from convoy._errors import ModelError, ToolError, UserError
from convoy.interceptors._base import Interceptor, ModelCallInput, Next, Stage, ToolCallInput
from convoy.models._base import Model
from convoy.models._messages import ModelResponse
from convoy.resilience._deadlines import Deadlines, Watch
from convoy.resilience._scope import MODELS_KEPT, Scoped


class Timeout(Interceptor):
    """Cuts a model or tool call that takes longer than its bound.

    Placed inside :class:`Retry` it bounds each attempt; placed outside, the whole step
    with its retries. A timed-out call raises a *retryable* ``ModelError`` / ``ToolError``.
    Per-session wall-clock bounds are :class:`convoy.Limits` ``max_seconds``.
    """

    stage: Stage = "timeout"

    def __init__(self, model: float | None = 60.0, tool: float | None = 30.0, *,
                 agents: Mapping[str, float | None] | None = None,
                 models: Mapping[str, float | None] | None = None,
                 tools: Mapping[str, float | None] | None = None, label: str = "call") -> None:
        for v in (model, tool, *(agents or {}).values(), *(models or {}).values(),
                  *(tools or {}).values()):
            if v is not None and v <= 0:
                raise UserError(f"timeouts must be > 0 seconds or None, got {v}")
        self.model_scope: Scoped[float] = Scoped(default=model, agents=agents or {},
                                                 models=models or {})
        self.tool_scope: Scoped[float] = Scoped(default=tool, agents=agents or {},
                                                tools=tools or {})
        self.label = label
        if label == "step":  # bounds a whole step, retries included: outside Retry
            self.stage = "step_timeout"
        self.timeouts = 0
        self._deadlines: dict[float, Deadlines] = {}
        # By (agent, model instance): no scope lookup on every call (bounded: an
        # application may make a model per request).
        self._by_call: dict[tuple[str, Model], Deadlines | None] = {}

    def _deadline(self, seconds: float) -> Deadlines:
        d = self._deadlines.get(seconds)
        if d is None:
            d = self._deadlines[seconds] = Deadlines(seconds)
        return d

    def _for_model(self, agent: str, model: Model) -> Deadlines | None:
        seconds = self.model_scope.for_endpoint(agent, model)
        if len(self._by_call) >= MODELS_KEPT:
            self._by_call.clear()
        d = self._by_call[(agent, model)] = None if seconds is None else \
            self._deadline(seconds)
        return d

    def _expired(self, d: Deadlines, w: Watch) -> None:
        """In ``except CancelledError``: re-raise it unless our deadline caused it."""
        if not d.timed_out(w):
            raise  # noqa: PLE0704 - re-raises the CancelledError being handled
        self.timeouts += 1

    # The two methods below repeat one shape on purpose: a shared coroutine helper would
    # add a frame to every model and tool call.
    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        try:
            d = self._by_call[(input.agent.name, input.model)]
        except KeyError:
            d = self._for_model(input.agent.name, input.model)
        if d is None:
            return await next(input)
        w = d.watch()
        try:
            return await next(input)
        except asyncio.CancelledError:
            self._expired(d, w)
            raise ModelError(f"model {input.model.name!r} (agent {input.agent.name!r}) did not "
                             f"answer within {d.seconds:g}s ({self.label} timeout)",
                             timeout=True) from None
        finally:
            w.done = True

    async def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        seconds = self.tool_scope.for_tool(input.agent.name, input.tool.name)
        if seconds is None:
            return await next(input)
        d = self._deadline(seconds)
        w = d.watch()
        try:
            return await next(input)
        except asyncio.CancelledError:
            self._expired(d, w)
            raise ToolError(f"tool {input.tool.name!r} did not finish within {seconds:g}s "
                            f"({self.label} timeout)", timeout=True) from None
        finally:
            w.done = True
