"""Fallback model chains and criticality-based model routing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from convoy._errors import CircuitOpenError, StepError
from convoy.interceptors._base import Interceptor, ModelCallInput, Next, Stage
from convoy.models._base import Model
from convoy.models._messages import ModelResponse
from convoy.resilience._classify import FailureKind, check_matches, classify, failure_kind


class Fallback(Interceptor):
    """When a model call still fails (after retries, or its circuit is open), try the next
    model of the agent's fallback chain, e.g. a second provider.

    Chains can be typed by failure kind (LiteLLM's ``context_window_fallbacks`` and
    ``content_policy_fallbacks``): a failure of a kind that has a chain for the agent goes
    down that chain, even a terminal one (a context window exceeded is terminal on its
    model, not on a model with a larger window); other failures go down ``chains``.

    Args:
        chains: agent name -> fallback models, in order (``"*"`` for every agent).
        on_terminal: also fall back on terminal errors (auth, bad request); by default only
            retryable failures and open circuits fall back.
        by_kind: failure kind (see ``convoy.resilience.failure_kind``) -> agent name (or
            ``"*"``) -> fallback models, e.g. ``{"context_window_exceeded": {"*":
            ["openai:gpt-4.1"]}}``.
    """

    stage: Stage = "fallback"

    def __init__(self, chains: Mapping[str, Sequence[str | Model]], *,
                 on_terminal: bool = False,
                 by_kind: Mapping[FailureKind, Mapping[str, Sequence[str | Model]]] | None
                 = None) -> None:
        self.chains = {k: tuple(v) for k, v in chains.items()}
        self.on_terminal = on_terminal
        check_matches(tuple(by_kind or ()), "Fallback(by_kind=...)")
        self.by_kind = {kind: {a: tuple(v) for a, v in per_agent.items()}
                        for kind, per_agent in (by_kind or {}).items()}
        self._kinds: dict[str, dict[str, tuple[str | Model, ...]]] = {}
        self.used = 0

    def _kinds_for(self, agent: str) -> dict[str, tuple[str | Model, ...]]:
        found = self._kinds.get(agent)
        if found is None:
            found = self._kinds[agent] = {
                kind: chain for kind, per_agent in self.by_kind.items()
                if (chain := per_agent.get(agent, per_agent.get("*", ())))}
        return found

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        agent = input.agent.name
        chain = self.chains.get(agent, self.chains.get("*", ()))
        kinds = self._kinds_for(agent) if self.by_kind else {}
        if not chain and not kinds:
            return await next(input)
        rt = input.session.runtime
        taken: dict[str | None, int] = {}  # per chain (None: ``chains``), models used
        while True:
            try:
                return await next(input)
            except StepError as e:
                kind = failure_kind(e) if kinds else None
                if kind in kinds:
                    candidates = kinds[kind]
                elif self.on_terminal or isinstance(e, CircuitOpenError) or \
                        classify(e) == "retryable":
                    candidates, kind = chain, None
                else:
                    raise
                i = taken.get(kind, 0)
                if i >= len(candidates):
                    raise
                taken[kind] = i + 1
                input.model = rt.resolve(candidates[i])
                self.used += 1


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
