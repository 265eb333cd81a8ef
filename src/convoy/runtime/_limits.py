"""Per-session limits that guarantee every session ends."""

from __future__ import annotations

from dataclasses import dataclass

from convoy._errors import UserError


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """Bounds on one session. Reaching any ends the session with a typed reason.

    Args:
        max_steps: model, tool and handoff steps in the session (``limit_exceeded``).
        max_handoffs: handoffs in the session (``limit_exceeded``).
        max_depth: nesting of agent runs: a worker inside a supervisor is depth 2, a
            subtask of a subtask is depth 3 (``limit_exceeded``).
        max_seconds: wall-clock time from the session's first start (``limit_exceeded``);
            ``None`` for no bound.
        detect_repeats: end the session when an agent is handed exactly the same input a
            second time (``loop_detected``).
        max_ping_pong: end the session when two agents hand over to each other this many
            times in a row, A→B→A→B… (``loop_detected``).
    """

    max_steps: int = 500
    max_handoffs: int = 50
    max_depth: int = 8
    max_seconds: float | None = 900.0
    detect_repeats: bool = True
    max_ping_pong: int = 3

    def __post_init__(self) -> None:
        for name in ("max_steps", "max_handoffs", "max_depth", "max_ping_pong"):
            if getattr(self, name) < 1:
                raise UserError(f"Limits.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise UserError(f"Limits.max_seconds must be > 0 or None, got {self.max_seconds}")
