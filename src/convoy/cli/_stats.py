"""Totals of one ``convoy run`` / ``convoy resume`` invocation."""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from convoy import SessionResult
from convoy._stats import percentile


@dataclass(slots=True)
class RunStats:
    """Counts sessions by terminal status and totals tokens, cost and latency.

    ``skipped`` counts sessions that were already finished before this invocation (by
    status); they are reported, not re-run, and their tokens are not counted again.
    """

    by_status: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    stale: list[str] = field(default_factory=list)  # unfinished, from another version
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: list[SessionResult[Any]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    wall_s: float = 0.0

    def add(self, res: SessionResult[Any]) -> None:
        self.by_status[res.status] += 1
        self.input_tokens += res.usage.input_tokens
        self.output_tokens += res.usage.output_tokens
        self.cost += res.cost
        self.latencies.append(res.duration_s)
        if not res.ok:
            self.failures.append(res)

    def start(self) -> None:
        self.started = time.perf_counter()

    def stop(self) -> None:
        self.wall_s = time.perf_counter() - self.started

    @property
    def ran(self) -> int:
        return sum(self.by_status.values())

    @property
    def completed(self) -> int:
        return self.by_status["completed"]

    def latency(self, p: float) -> float:
        return percentile(self.latencies, p)

    @property
    def throughput(self) -> float:
        """Sessions finished per second of wall-clock time."""
        return self.ran / self.wall_s if self.wall_s > 0 else math.nan
