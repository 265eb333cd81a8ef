"""Learned baselines: an EWMA mean and an EWMA deviation per metric, with a band around them.

Each observation ``x`` updates ``mean += alpha * (x - mean)`` and ``deviation += alpha *
(|x - mean| - deviation)`` (the deviation from the mean before the update). The band's top
is ``mean + k * max(deviation, floor)``, where ``floor = max(min_deviation, rel_deviation *
|mean|)`` keeps a perfectly steady metric from alerting on noise. Alerts are one-sided:
every metric watched here (error rate, latency, tokens, tokens per minute) is bad when it
rises.

Hysteresis, so an alert does not flap: it fires after ``fire_after`` consecutive
observations above ``mean + k * dev``, and clears after ``clear_after`` consecutive
observations at or below ``mean + clear_k * dev`` (``clear_k < k``). Nothing fires before
``warmup`` observations have been learned. An observation above the band is learned as the
band's top (clipped, so a spike barely moves the baseline and the baseline is not biased
low by leaving them out), and nothing is learned while an alert is open, so a drift does
not become the new normal while it alerts. A level that lasts does, in the end: after
``relearn_after`` observations with its alert open (a new model, a longer prompt), the
alert clears as ``relearned`` and the baseline is learned again from there (a new
warm-up), so a later, worse change can fire. The error rate never is by default: a lasting
rise of it is an outage.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from convoy._errors import UserError
from convoy._numbers import is_number

Transition = Literal["fired", "cleared", "relearned"]


def _real(value: object) -> float:
    """``value`` as a number, or NaN (which every range refuses) for what is none: text,
    ``None``, a bool."""
    return float(value) if is_number(value) else math.nan


@dataclass(frozen=True, slots=True, kw_only=True)
class BaselinePolicy:
    """How a baseline learns and when it alerts.

    Args:
        alpha: EWMA weight of a new observation (0 < alpha <= 1).
        k: band width in deviations above the mean that fires.
        clear_k: band width at or below which an open alert clears (default ``k / 2``).
        warmup: observations learned before any alert.
        fire_after: consecutive observations above the band that fire.
        clear_after: consecutive observations back in the band that clear.
        min_deviation: the smallest deviation used for the band (absolute).
        rel_deviation: the smallest deviation used, as a fraction of the mean.
        relearn_after: observations an alert stays open before its level is taken as the
            new normal: the alert clears (``relearned``) and the baseline is learned
            again from there; ``None``: never (the error rate's default).
    """

    alpha: float = 0.1
    k: float = 3.0
    clear_k: float | None = None
    warmup: int = 20
    fire_after: int = 3
    clear_after: int = 3
    min_deviation: float = 0.0
    rel_deviation: float = 0.05
    relearn_after: int | None = 100

    def __post_init__(self) -> None:
        alpha, k, clear_k = _real(self.alpha), _real(self.k), _real(self.clear_k)
        if not 0 < alpha <= 1:  # (text, from a config file, is refused as NaN is)
            raise UserError(f"BaselinePolicy.alpha must be in (0, 1], got {self.alpha!r}")
        if not 0 < k < math.inf:  # (NaN compares false: refused too)
            raise UserError(f"BaselinePolicy.k must be a number > 0, got {self.k!r}")
        if self.clear_k is not None and not 0 <= clear_k <= k:
            raise UserError(f"BaselinePolicy.clear_k must be in [0, k={self.k}], got "
                            f"{self.clear_k!r}")
        for name in ("warmup", "fire_after", "clear_after"):
            value = getattr(self, name)
            if type(value) is not int or not value >= (0 if name == "warmup" else 1):
                raise UserError(f"BaselinePolicy.{name} must be a whole number "
                                f"{'>= 0' if name == 'warmup' else '>= 1'}, got {value!r}")
        r = self.relearn_after
        if r is not None and (type(r) is not int or r < 1):
            raise UserError(f"BaselinePolicy.relearn_after must be a whole number >= 1, or "
                            f"None for never, got {r!r}")
        if not (0 <= _real(self.min_deviation) < math.inf
                and 0 <= _real(self.rel_deviation) < math.inf):
            raise UserError("BaselinePolicy.min_deviation and rel_deviation must be >= 0")

    @property
    def clear_width(self) -> float:
        """The band width (in deviations) an open alert must be back within to clear."""
        return self.k / 2 if self.clear_k is None else self.clear_k


@dataclass(slots=True, kw_only=True)
class Baseline:
    """The learned state of one metric of one agent or tenant (JSON-serialisable)."""

    count: int = 0
    mean: float = 0.0
    deviation: float = 0.0
    above: int = 0
    within: int = 0
    alert_id: int | None = None
    #: Observations since its alert opened (see :attr:`BaselinePolicy.relearn_after`).
    open_for: int = 0

    def spread(self, policy: BaselinePolicy) -> float:
        """The deviation the band uses (never below the policy's floor)."""
        return max(self.deviation, policy.min_deviation, policy.rel_deviation * abs(self.mean))

    def threshold(self, policy: BaselinePolicy) -> float:
        """The band's top: an observation above it counts towards firing."""
        return self.mean + policy.k * self.spread(policy)

    def observe(self, x: float, policy: BaselinePolicy) -> Transition | None:
        """Learn ``x`` (unless it is above the band) and say whether an alert fires or
        clears now."""
        if self.count < policy.warmup:
            self._learn(x, policy)
            return None
        if self.alert_id is None:
            self.open_for = 0
        else:
            self.open_for += 1
            if policy.relearn_after is not None and self.open_for >= policy.relearn_after:
                self.count = self.above = self.within = self.open_for = 0
                self.mean = self.deviation = 0.0
                self._learn(x, policy)  # (the first of a new warm-up)
                return "relearned"
        spread = self.spread(policy)
        top = self.mean + policy.k * spread
        if x > top:
            self.above += 1
            self.within = 0
            if self.alert_id is not None:
                return None
            if self.above >= policy.fire_after:
                return "fired"
            self._learn(top, policy)  # clipped: a spike moves the band by one band at most
            return None
        self.above = 0
        if self.alert_id is not None:
            if x <= self.mean + policy.clear_width * spread:
                self.within += 1
                if self.within >= policy.clear_after:
                    self.within = 0
                    self._learn(x, policy)
                    return "cleared"
            else:
                self.within = 0
            return None
        self._learn(x, policy)
        return None

    def _learn(self, x: float, policy: BaselinePolicy) -> None:
        if self.count == 0:
            self.mean = x
        else:
            diff = abs(x - self.mean)
            self.mean += policy.alpha * (x - self.mean)
            self.deviation += policy.alpha * (diff - self.deviation)
        self.count += 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Baseline:
        return cls(**{k: data[k] for k in ("count", "mean", "deviation", "above", "within",
                                            "alert_id", "open_for") if k in data})
