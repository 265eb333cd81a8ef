"""Prices per million tokens, by model name; users extend the table."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from convoy._errors import UserError
from convoy.models._messages import Usage

log = logging.getLogger("convoy.cost")


@dataclass(frozen=True, kw_only=True, slots=True)
class Price:
    """USD per million input and output tokens."""

    input_per_mtok: float
    output_per_mtok: float

    def __post_init__(self) -> None:
        for name in ("input_per_mtok", "output_per_mtok"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or \
                    not 0 <= v < math.inf:  # (NaN compares false: refused too)
                raise UserError(f"Price.{name} must be a finite number of USD >= 0, got {v!r}")

    def cost(self, usage: Usage) -> float:
        """USD for ``usage`` at this price."""
        return (usage.input_tokens * self.input_per_mtok
                + usage.output_tokens * self.output_per_mtok) / 1e6


class PriceTable:
    """Maps a model name (``"provider:model"``, or a bare model id) or a deployment
    (``"provider:model@name"``) to its :class:`Price`.

    Lookup tries the full name, then the part after ``provider:``, then a ``provider:*``
    wildcard. Unknown models cost 0, are listed in ``unknown`` so a report can flag them,
    and are warned of once each on the ``convoy.cost`` logger.
    """

    def __init__(self, prices: dict[str, Price] | None = None) -> None:
        self._prices: dict[str, Price] = dict(DEFAULT_PRICES)
        if prices:
            self._prices.update(prices)
        self.unknown: set[str] = set()
        self._cache: dict[str, Price | None] = {}

    def set(self, model: str, *, input_per_mtok: float, output_per_mtok: float) -> None:
        """Add or replace the price of ``model`` (USD per million input/output tokens)."""
        try:
            price = Price(input_per_mtok=input_per_mtok, output_per_mtok=output_per_mtok)
        except UserError as e:
            raise UserError(f"prices for {model!r}: {e}") from None
        self._prices[model] = price
        self._cache.clear()

    def get(self, model: str) -> Price | None:
        """The price of ``model`` (full name, bare id, then ``provider:*``), or ``None``."""
        try:
            return self._cache[model]
        except KeyError:
            pass
        provider, _, bare = model.partition(":")
        price = (self._prices.get(model) or (self._prices.get(bare) if bare else None)
                 or self._prices.get(f"{provider}:*"))
        self._cache[model] = price
        return price

    def cost(self, model: str, usage: Usage, deployment: str | None = None) -> float:
        """USD for ``usage`` on ``model``: at the price set for its ``deployment`` (exact
        name, e.g. ``"openai:gpt-4o-mini@east"``) if there is one, else at the model's. An
        unknown model costs 0 and is added to ``unknown``."""
        price = self._prices.get(deployment) if deployment is not None and \
            deployment != model else None
        if price is None:
            price = self.get(model)
        if price is None:
            if model not in self.unknown:
                self.unknown.add(model)
                # (once per model: a budget in USD never counts its calls, a report shows $0)
                log.warning("no price for model %r: its calls cost $0 here, so budgets in "
                            "USD do not count them and cost reports show $0; set its price "
                            "with Engine(prices=convoy.PriceTable({%r: convoy.Price("
                            "input_per_mtok=..., output_per_mtok=...)}))", model, model)
            return 0.0
        # ``price.cost(usage)``, inlined: once per model step.
        return (usage.input_tokens * price.input_per_mtok
                + usage.output_tokens * price.output_per_mtok) / 1e6


# Public list prices (USD / 1M tokens) of a few common models; local models are free.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(input_per_mtok=2.50, output_per_mtok=10.00),
    "gpt-4o-mini": Price(input_per_mtok=0.15, output_per_mtok=0.60),
    "gpt-4.1": Price(input_per_mtok=2.00, output_per_mtok=8.00),
    "gpt-4.1-mini": Price(input_per_mtok=0.40, output_per_mtok=1.60),
    "gpt-4.1-nano": Price(input_per_mtok=0.10, output_per_mtok=0.40),
    "sim:*": Price(input_per_mtok=0.15, output_per_mtok=0.60),
    "local:*": Price(input_per_mtok=0.0, output_per_mtok=0.0),
}
