"""Circuit breakers per model endpoint, per tool and per agent (resilience4j semantics).

CLOSED: outcomes go into a count-based sliding window; once it holds ``minimum_calls``
and the failure rate (or slow-call rate) reaches its threshold, the breaker OPENS.
OPEN: every call is rejected at once with :class:`CircuitOpenError`, downstream untouched,
until ``wait_in_open`` has passed; then the breaker is HALF_OPEN.
HALF_OPEN: ``half_open_calls`` probes are let through (others are rejected); when they have
all finished, their failure rate decides: CLOSED again, or OPEN for another wait.
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from convoy._errors import CircuitOpenError, UserError
from convoy._interceptors import Interceptor, ModelCallInput, Next, ToolCallInput
from convoy._messages import ModelResponse
from convoy.resilience._classify import is_downstream_failure
from convoy.resilience._scope import Scoped

State = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakerPolicy:
    failure_rate_threshold: float = 50.0     # percent of recorded calls that failed
    slow_call_rate_threshold: float = 100.0  # percent of recorded calls that were slow
    slow_call_duration: float = 60.0         # seconds; slower calls count as slow
    window: int = 100                        # sliding window size, in calls
    minimum_calls: int = 20                  # calls needed before rates are evaluated
    wait_in_open: float = 30.0               # seconds in OPEN before probing
    half_open_calls: int = 5                 # probes allowed in HALF_OPEN

    def __post_init__(self) -> None:
        if not (0 < self.failure_rate_threshold <= 100 and 0 < self.slow_call_rate_threshold
                <= 100):
            raise UserError("BreakerPolicy thresholds are percentages in (0, 100]")
        if self.window < 1 or self.minimum_calls < 1 or self.half_open_calls < 1:
            raise UserError("BreakerPolicy window, minimum_calls and half_open_calls must be >= 1")
        if self.wait_in_open < 0 or self.slow_call_duration <= 0:
            raise UserError("BreakerPolicy wait_in_open must be >= 0 and slow_call_duration > 0")


class CircuitBreaker:
    """One breaker. ``acquire()`` asks permission; ``record()`` reports the outcome."""

    def __init__(self, name: str, policy: BreakerPolicy,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[CircuitBreaker], None] | None = None) -> None:
        self.name = name
        self._on_change = on_change
        self.policy = policy
        self._clock = clock
        self.state: State = "closed"
        self._window: deque[tuple[bool, bool]] = deque(maxlen=policy.window)
        self._opened_at = 0.0
        self._probes_started = 0
        self._probes: list[tuple[bool, bool]] = []
        self.rejected = 0
        self.transitions: list[tuple[State, State]] = []

    def _to(self, state: State) -> None:
        self.transitions.append((self.state, state))
        self.state = state
        if state == "open":
            self._opened_at = self._clock()
        elif state == "half_open":
            self._probes_started = 0
            self._probes = []
        else:
            self._window.clear()
        if self._on_change is not None:
            self._on_change(self)

    def restore_open(self, remaining: float) -> None:
        """Start OPEN with ``remaining`` seconds of the wait left (state from a restart)."""
        self.state = "open"
        self._opened_at = self._clock() - (self.policy.wait_in_open - remaining)

    @property
    def open_remaining(self) -> float:
        return max(0.0, self.policy.wait_in_open - (self._clock() - self._opened_at))

    def acquire(self) -> None:
        """Raise :class:`CircuitOpenError` unless a call may go through now."""
        if self.state == "open":
            waited = self._clock() - self._opened_at
            if waited < self.policy.wait_in_open:
                self.rejected += 1
                raise CircuitOpenError(
                    f"circuit {self.name!r} is open; calls are rejected for another "
                    f"{self.policy.wait_in_open - waited:.1f}s", retryable=False)
            self._to("half_open")
        if self.state == "half_open":
            if self._probes_started >= self.policy.half_open_calls:
                self.rejected += 1
                raise CircuitOpenError(f"circuit {self.name!r} is half-open and its "
                                       f"{self.policy.half_open_calls} probes are in flight",
                                       retryable=False)
            self._probes_started += 1

    def record(self, failed: bool, duration: float) -> None:
        slow = duration >= self.policy.slow_call_duration
        if self.state == "half_open":
            self._probes.append((failed, slow))
            if len(self._probes) >= self.policy.half_open_calls:
                self._to("open" if self._tripped(self._probes) else "closed")
            return
        if self.state == "open":
            return  # a call admitted before the breaker opened
        self._window.append((failed, slow))
        if len(self._window) >= self.policy.minimum_calls and self._tripped(self._window):
            self._to("open")

    def release(self) -> None:
        """A call that was admitted but ended without an outcome (cancelled)."""
        if self.state == "half_open" and self._probes_started > len(self._probes):
            self._probes_started -= 1

    def _tripped(self, outcomes: Any) -> bool:
        n = len(outcomes)
        failures = sum(1 for f, _ in outcomes if f)
        slow = sum(1 for _, s in outcomes if s)
        return (100.0 * failures / n >= self.policy.failure_rate_threshold
                or 100.0 * slow / n >= self.policy.slow_call_rate_threshold)

    @property
    def failure_rate(self) -> float:
        n = len(self._window)
        return 100.0 * sum(1 for f, _ in self._window if f) / n if n else 0.0


class Breakers(Interceptor):
    """Circuit breakers for model endpoints, agents and tools.

    A model call must be admitted by the breaker of its endpoint and of its agent; a tool
    call by the breaker of its tool. ``None`` for a target turns its breaker off.
    """

    def __init__(self, policy: BreakerPolicy | None = None, *,
                 agents: Mapping[str, BreakerPolicy | None] | None = None,
                 models: Mapping[str, BreakerPolicy | None] | None = None,
                 tools: Mapping[str, BreakerPolicy | None] | None = None,
                 per_agent: bool = True, clock: Callable[[], float] = time.monotonic,
                 state_path: str | Path | None = None) -> None:
        default = policy if policy is not None else BreakerPolicy()
        self._models: Scoped[BreakerPolicy] = Scoped(default=default, models=models or {})
        self._agents: Scoped[BreakerPolicy] = Scoped(default=default if per_agent else None,
                                                     agents=agents or {})
        self._tools: Scoped[BreakerPolicy] = Scoped(default=default, tools=tools or {})
        self._clock = clock
        self.breakers: dict[str, CircuitBreaker] = {}
        self._state = _BreakerState(Path(state_path)) if state_path is not None else None

    def get(self, key: str, policy: BreakerPolicy) -> CircuitBreaker:
        b = self.breakers.get(key)
        if b is None:
            st = self._state
            b = self.breakers[key] = CircuitBreaker(key, policy, self._clock,
                                                    st.save if st is not None else None)
            if st is not None:
                remaining = st.open_remaining(key)
                if remaining is not None:
                    b.restore_open(remaining)
        return b

    async def _guarded(self, breakers: list[CircuitBreaker], call: Any) -> Any:
        admitted: list[CircuitBreaker] = []
        try:
            for b in breakers:
                b.acquire()
                admitted.append(b)
        except CircuitOpenError:
            for b in admitted:
                b.release()
            raise
        t0 = self._clock()
        try:
            out = await call()
        except Exception as e:
            failed = is_downstream_failure(e)
            for b in admitted:
                b.record(failed, self._clock() - t0)
            raise
        except BaseException:
            for b in admitted:
                b.release()
            raise
        for b in admitted:
            b.record(False, self._clock() - t0)
        return out

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        found = []
        mp = self._models.for_model("", input.model.name)
        if mp is not None:
            found.append(self.get(f"model:{input.model.name}", mp))
        ap = self._agents.for_model(input.agent.name, "")
        if ap is not None:
            found.append(self.get(f"agent:{input.agent.name}", ap))
        if not found:
            return await next(input)
        out: ModelResponse = await self._guarded(found, lambda: next(input))
        return out

    async def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        tp = self._tools.for_tool("", input.tool.name)
        if tp is None:
            return await next(input)
        return await self._guarded([self.get(f"tool:{input.tool.name}", tp)],
                                   lambda: next(input))


class _BreakerState:
    """Open breakers in a small SQLite file, so a restarted engine (after a crash, say)
    keeps rejecting calls to a downstream that was failing, instead of hammering it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as c:
            c.execute("CREATE TABLE IF NOT EXISTS breakers(key TEXT PRIMARY KEY, state TEXT "
                      "NOT NULL, until REAL NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10, isolation_level=None)

    def save(self, b: CircuitBreaker) -> None:
        with self._connect() as c:
            c.execute("INSERT OR REPLACE INTO breakers VALUES(?,?,?)",
                      (b.name, b.state, time.time() + b.open_remaining))

    def open_remaining(self, key: str) -> float | None:
        with self._connect() as c:
            row = c.execute("SELECT state, until FROM breakers WHERE key=?", (key,)).fetchone()
        if row is None or row[0] != "open":
            return None
        return max(0.0, float(row[1]) - time.time())
