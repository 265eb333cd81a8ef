"""The model seam: one abstract async method."""

from __future__ import annotations

from abc import ABC, abstractmethod

from convoy.models._messages import ModelRequest, ModelResponse


class Model(ABC):
    """A model endpoint. Subclasses implement ``request``; nothing else is required.

    ``name`` is the ``"provider:model"`` string used for routing, pricing and metrics;
    ``deployment`` names the endpoint (the same, unless there are several of one model).
    Adapters raise :class:`convoy.ModelError` with ``retryable`` and ``status_code`` set,
    so resilience interceptors can classify failures without knowing the vendor SDK.
    """

    name: str = "model"
    #: The most output tokens one answer of this endpoint can have (``None``: unknown; the
    #: budgets then use ``convoy.resilience.output_ceiling``'s table or its default).
    max_output_tokens: int | None = None
    _deployment: str | None = None

    @property
    def deployment(self) -> str:
        """The endpoint this instance reaches: what circuit breakers, rate limits, cooldowns
        and metrics are keyed by. The model name, unless the instance is one of several
        deployments of its model: an ``openai:`` model with a base URL of its own
        (``"openai:gpt-4o-mini@127.0.0.1:8000/v1"``), or a named
        :class:`~convoy.Deployment` (``"openai:gpt-4o-mini@east"``). Set it before the
        instance's first call: the resilience interceptors read it once per instance."""
        return self._deployment or self.name

    @deployment.setter
    def deployment(self, value: str) -> None:
        self._deployment = value

    @abstractmethod
    async def request(self, request: ModelRequest) -> ModelResponse:
        """Send one request and return the response with its token usage."""
        raise NotImplementedError(f"{type(self).__name__}.request")

    async def aclose(self) -> None:  # noqa: B027 - optional capability
        """Release connections. Optional."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
