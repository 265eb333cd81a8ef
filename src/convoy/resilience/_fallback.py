"""Fallback model chains and criticality-based model routing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from convoy._errors import CircuitOpenError, StepError
from convoy.interceptors._base import Interceptor, ModelCallInput, Next, Stage
from convoy.models._base import Model
from convoy.models._messages import ModelResponse
from convoy.resilience._classify import classify


class Fallback(Interceptor):
    """When a model call still fails (after retries, or its circuit is open), try the next
    model of the agent's fallback chain, e.g. a second provider.

    Args:
        chains: agent name -> fallback models, in order (``"*"`` for every agent).
        on_terminal: also fall back on terminal errors (auth, bad request); by default only
            retryable failures and open circuits fall back.
    """

    stage: Stage = "fallback"

    def __init__(self, chains: Mapping[str, Sequence[str | Model]], *,
                 on_terminal: bool = False) -> None:
        self.chains = {k: tuple(v) for k, v in chains.items()}
        self.on_terminal = on_terminal
        self.used = 0

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        chain = self.chains.get(input.agent.name, self.chains.get("*", ()))
        if not chain:
            return await next(input)
        rt = input.session.runtime
        candidates = [input.model, *(rt.resolve(m) for m in chain)]
        for i, model in enumerate(candidates):
            input.model = model
            try:
                return await next(input)
            except StepError as e:
                last = i == len(candidates) - 1
                if last or not (self.on_terminal or isinstance(e, CircuitOpenError)
                                or classify(e) == "retryable"):
                    raise
                self.used += 1
        raise AssertionError("unreachable")


class Router(Interceptor):
    """Routes each model call by the agent's criticality.

    ``high`` goes to ``strong``; ``low`` and ``normal`` go to ``cheap``, and escalate to
    ``strong`` once the cheap model's answer failed validation ``escalate_after`` times.
    Agents listed in ``keep`` keep their own model.
    """

    stage: Stage = "route"

    def __init__(self, *, cheap: str | Model, strong: str | Model, escalate_after: int = 1,
                 keep: Sequence[str] = ()) -> None:
        self.cheap, self.strong = cheap, strong
        self.escalate_after = escalate_after
        self.keep = frozenset(keep)
        self.routed: dict[Literal["cheap", "strong"], int] = {"cheap": 0, "strong": 0}
        self.escalations = 0

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        if input.agent.name not in self.keep:
            rt = input.session.runtime
            strong = input.agent.criticality == "high"
            if not strong and input.request.repairs >= self.escalate_after:
                strong = True
                self.escalations += 1
            input.model = rt.resolve(self.strong if strong else self.cheap)
            self.routed["strong" if strong else "cheap"] += 1
        return await next(input)
