"""Per-session limits that guarantee every session ends."""

from __future__ import annotations

from dataclasses import dataclass

from convoy._errors import UserError


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """Bounds on one session. Reaching any ends the session with a typed reason.

    Args:
        max_steps: steps of every kind in the session: model, tool and handoff steps,
            ``ctx.step``, clock reads, random numbers, timers and waits (``limit_exceeded``).
        max_handoffs: handoffs in the session (``limit_exceeded``).
        max_depth: nesting of agent runs: a worker inside a supervisor is depth 2, a
            subtask of a subtask is depth 3 (``limit_exceeded``).
        max_seconds: active time: seconds the session has spent running, on any engine,
            not counting time crashed, parked (waiting) or queued (``limit_exceeded``);
            ``None`` for no bound.
        max_age: total age: seconds since the session was created, crashes and waits
            included (``limit_exceeded``); ``None`` (the default) for no bound.
        detect_repeats: end the session when an agent is handed exactly the same input a
            second time (``loop_detected``).
        max_ping_pong: end the session when two agents hand over to each other this many
            times in a row, A→B→A→B… (``loop_detected``).
    """

    max_steps: int = 500
    max_handoffs: int = 50
    max_depth: int = 8
    max_seconds: float | None = 900.0
    max_age: float | None = None
    detect_repeats: bool = True
    max_ping_pong: int = 3

    def __post_init__(self) -> None:
        for name in ("max_steps", "max_handoffs", "max_depth", "max_ping_pong"):
            if getattr(self, name) < 1:
                raise UserError(f"Limits.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_seconds", "max_age"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise UserError(f"Limits.{name} must be > 0 or None, got {v}")

    def deadline(self, *, active_s: float, created: float | None, now: float) -> float | None:
        """When (wall clock) a run starting ``now`` must stop: the active time left, and
        the total age left, whichever comes first; ``None`` for no bound."""
        end = None if self.max_seconds is None else now + max(0.0, self.max_seconds - active_s)
        if self.max_age is not None and created is not None:
            aged = created + self.max_age
            return aged if end is None or aged < end else end
        return end

    def describe_time(self) -> str:
        """The time bounds in words, for error messages."""
        parts = []
        if self.max_seconds is not None:
            parts.append(f"max_seconds={self.max_seconds:g} of active time")
        if self.max_age is not None:
            parts.append(f"max_age={self.max_age:g}")
        return ", ".join(parts) or "none"
