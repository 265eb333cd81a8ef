"""What one run of a session tells the baselines: per agent and for the tenant, the error
rate of its calls, the mean latency and the tokens of its model calls; and what its model
calls tell them as they end: tokens per minute over a time window.

* ``error_rate``: failed calls / calls, over the run's model and tool calls (after the
  retries the interceptors inside made). A model call that repairs an invalid answer
  counts as a failure of kind ``invalid_output``.
* ``latency``: mean seconds of the run's model calls (the injected clock's seconds).
* ``tokens``: input plus output tokens of the run's model calls.
* ``velocity``: tokens per minute: the tokens of every model call that ended in a window
  of ``window_s`` seconds, counted as the call ends (a runaway loop in one long session
  alerts while it runs), observed when the window closes (at the first call after it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, get_args

Metric = Literal["error_rate", "latency", "tokens", "velocity"]
#: Every metric a baseline is learned for.
METRICS: tuple[Metric, ...] = get_args(Metric)


@dataclass(slots=True)
class Tally:
    """The calls of one agent (or of all of a tenant's agents) in one run of a session."""

    calls: int = 0
    errors: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    model_calls: int = 0
    seconds: float = 0.0
    tokens: int = 0

    def add(self, other: Tally) -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.kinds.update(other.kinds)
        self.model_calls += other.model_calls
        self.seconds += other.seconds
        self.tokens += other.tokens

    def observations(self) -> dict[Metric, float]:
        """The per-run metrics this tally has data for (not ``velocity``)."""
        out: dict[Metric, float] = {}
        if self.calls:
            out["error_rate"] = self.errors / self.calls
        if self.model_calls:
            out["latency"] = self.seconds / self.model_calls
            out["tokens"] = float(self.tokens)
        return out


@dataclass(slots=True)
class Window:
    """Tokens counted since ``start`` (seconds on the injected clock)."""

    start: float
    tokens: int = 0

    def add(self, now: float, tokens: int, length: float) -> float | None:
        """Count ``tokens`` at ``now``. When the window has run its ``length``, return its
        tokens per minute (over the time it actually ran) and start the next one with
        ``tokens``."""
        if now - self.start < length:
            self.tokens += tokens
            return None
        rate = self.tokens * 60.0 / (now - self.start)
        self.start, self.tokens = now, tokens
        return rate
