"""Token velocity: tokens per minute per agent and per tenant, against a learned baseline.

Each key keeps an exponentially weighted mean and variance of its per-interval token
rate. An interval whose rate is more than ``k`` deviations above the mean (after
``warmup`` intervals, and above ``min_rate``) raises an alert: a chain that suddenly burns
10x its usual tokens is caught in minutes, not on the invoice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from convoy.interceptors._base import Interceptor, ModelCallInput, Next
from convoy.models._messages import ModelResponse


@dataclass(slots=True)
class VelocityAlert:
    """A token-rate spike, handed to ``TokenVelocity(on_alert=...)``.

    ``key`` is ``agent:NAME`` or ``tenant:NAME``; rates are tokens per minute.
    """

    key: str
    at: float
    rate_per_min: float
    baseline_per_min: float
    deviation_per_min: float

    def __str__(self) -> str:
        return (f"token velocity of {self.key} is {self.rate_per_min:,.0f}/min, baseline "
                f"{self.baseline_per_min:,.0f} ± {self.deviation_per_min:,.0f}/min")


@dataclass(slots=True)
class _Series:
    start: float
    tokens: int = 0
    mean: float = 0.0
    var: float = 0.0
    intervals: int = 0
    history: list[float] = field(default_factory=list)


class TokenVelocity(Interceptor):
    """Tracks tokens/minute per ``agent:NAME`` and ``tenant:NAME`` and alerts on spikes."""

    def __init__(self, *, interval: float = 60.0, alpha: float = 0.2, k: float = 4.0,
                 warmup: int = 5, min_rate: float = 1000.0,
                 on_alert: Callable[[VelocityAlert], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.alpha, self.k = interval, alpha, k
        self.warmup, self.min_rate = warmup, min_rate
        self.on_alert = on_alert
        self._clock = clock
        self.series: dict[str, _Series] = {}
        self.alerts: list[VelocityAlert] = []

    def record(self, key: str, tokens: int) -> None:
        """Count ``tokens`` for ``key`` in the current interval, closing (and checking) the
        intervals that have ended."""
        now = self._clock()
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = _Series(start=now)
        while now - s.start >= self.interval:  # close finished intervals (idle ones are 0)
            self._close(key, s)
            s.start += self.interval
            if now - s.start >= self.interval * 1000:  # long idle: jump ahead
                s.start = now
        s.tokens += tokens

    def _close(self, key: str, s: _Series) -> None:
        rate = s.tokens * 60.0 / self.interval
        s.tokens = 0
        if s.intervals >= self.warmup and rate >= self.min_rate:
            dev = math.sqrt(s.var)
            if rate > s.mean + self.k * max(dev, 0.05 * s.mean):
                alert = VelocityAlert(key, self._clock(), rate, s.mean, dev)
                self.alerts.append(alert)
                if self.on_alert is not None:
                    self.on_alert(alert)
        if s.intervals == 0:
            s.mean = rate
        else:
            diff = rate - s.mean
            incr = self.alpha * diff
            s.mean += incr
            s.var = (1 - self.alpha) * (s.var + diff * incr)
        s.intervals += 1
        s.history.append(rate)
        if len(s.history) > 1440:
            del s.history[:720]

    def rate(self, key: str) -> float:
        """The current interval's rate so far, in tokens per minute."""
        s = self.series.get(key)
        if s is None:
            return 0.0
        elapsed = max(self._clock() - s.start, 1e-9)
        return s.tokens * 60.0 / max(elapsed, self.interval / 10)

    def flush(self) -> None:
        """Close every interval that has ended (call from a periodic task or a report)."""
        for key in list(self.series):
            self.record(key, 0)

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        resp = await next(input)
        n = resp.usage.total_tokens
        if n:
            self.record(f"agent:{input.agent.name}", n)
            self.record(f"tenant:{input.session.tenant}", n)
        return resp
