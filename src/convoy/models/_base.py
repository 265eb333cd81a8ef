"""The model seam: one abstract async method."""

from __future__ import annotations

from abc import ABC, abstractmethod

from convoy.models._messages import ModelRequest, ModelResponse


class Model(ABC):
    """A model endpoint. Subclasses implement ``request``; nothing else is required.

    ``name`` is the ``"provider:model"`` string used for routing, pricing and metrics.
    Adapters raise :class:`convoy.ModelError` with ``retryable`` and ``status_code`` set,
    so resilience interceptors can classify failures without knowing the vendor SDK.
    """

    name: str = "model"
    #: The most output tokens one answer of this endpoint can have (``None``: unknown; the
    #: budgets then use ``convoy.resilience.output_ceiling``'s table or its default).
    max_output_tokens: int | None = None

    @abstractmethod
    async def request(self, request: ModelRequest) -> ModelResponse:
        """Send one request and return the response with its token usage."""
        raise NotImplementedError(f"{type(self).__name__}.request")

    async def aclose(self) -> None:  # noqa: B027 - optional capability
        """Release connections. Optional."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
