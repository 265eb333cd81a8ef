"""The steady-state hypothesis of a chaos experiment and its probes (Chaos Toolkit shape)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from convoy._errors import UserError
from convoy.chaos._phase import PhaseMetrics


@dataclass(frozen=True, kw_only=True, slots=True)
class Hypothesis:
    """What "the system is fine" means, measured on every phase.

    Args:
        min_success: the share of sessions that must complete.
        max_p99: bound on the p99 session latency in seconds (first start to finish, so a
            killed-and-resumed session counts its downtime), or ``None``.
        max_cost_per_session: bound on the most expensive session in USD, or ``None``.
    """

    min_success: float = 0.999
    max_p99: float | None = None
    max_cost_per_session: float | None = None
    title: str = "the workflow keeps serving its sessions"

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_success <= 1.0:
            raise UserError(f"min_success is a share in [0, 1], got {self.min_success}")
        for name in ("max_p99", "max_cost_per_session"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise UserError(f"{name} must be > 0 or None, got {v}")

    def probes(self) -> list[dict[str, Any]]:
        """The probe activities, as they appear in the experiment."""
        out = [_probe("success-rate", "success_rate", [self.min_success, 1.0])]
        if self.max_p99 is not None:
            out.append(_probe("p99-session-latency-seconds", "p99_s", [0.0, self.max_p99]))
        if self.max_cost_per_session is not None:
            out.append(_probe("max-cost-per-session-usd", "max_cost",
                              [0.0, self.max_cost_per_session]))
        return out

    def check(self, m: PhaseMetrics, start: str, end: str) -> dict[str, Any]:
        """``{"steady_state_met": bool, "probes": [...]}`` for one phase's metrics."""
        runs = []
        values = m.to_dict()
        for probe in self.probes():
            value = values[probe["provider"]["arguments"]["metric"]]
            lo, hi = probe["tolerance"]
            met = not (isinstance(value, float) and math.isnan(value)) and lo <= value <= hi
            runs.append({"activity": probe, "output": _jsonable(value), "status": "succeeded",
                         "start": start, "end": end, "duration": 0.0, "tolerance_met": met})
        return {"steady_state_met": all(r["tolerance_met"] for r in runs), "probes": runs}


def _probe(name: str, metric: str, tolerance: list[float]) -> dict[str, Any]:
    return {"type": "probe", "name": name, "tolerance": tolerance,
            "provider": {"type": "python", "module": "convoy.chaos", "func": "measure",
                         "arguments": {"metric": metric}}}


def _jsonable(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v
