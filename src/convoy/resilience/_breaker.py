"""Circuit breakers per model endpoint, per tool and per (agent, endpoint) (resilience4j
semantics).

CLOSED: outcomes go into a sliding window (of the last ``window_seconds`` seconds by
default, or of the last ``window`` calls with ``window_type="count"``); once it holds
``minimum_calls`` and the failure rate (or slow-call rate) reaches its threshold, the
breaker OPENS.
OPEN: every call is rejected at once with :class:`CircuitOpenError`, downstream untouched,
until ``wait_in_open`` has passed; then the breaker is HALF_OPEN.
HALF_OPEN: ``half_open_calls`` probes are let through (others are rejected); when they have
all finished, their failure rate decides: CLOSED again, or OPEN for another wait.

Engines on one store share their breakers (:mod:`convoy.resilience._breaker_sync`): a
circuit one engine opens is open on the others within ``sync_interval`` seconds, and the
outcomes every engine saw count together towards opening it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from convoy._errors import CircuitOpenError, UserError
from convoy.interceptors._base import Interceptor, ModelCallInput, Next, Stage, ToolCallInput
from convoy.models._base import Model
from convoy.models._messages import ModelResponse
from convoy.resilience._breaker_sync import BreakerSync, Counts
from convoy.resilience._classify import (
    ErrorMatches,
    check_matches,
    is_downstream_failure,
    matches,
)
from convoy.resilience._scope import MODELS_KEPT, Scoped
from convoy.stores._sqlite import SQLiteStore

if TYPE_CHECKING:
    from convoy.engine._engine import Engine
    from convoy.stores._protocol import Store

State = Literal["closed", "open", "half_open"]
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakerPolicy:
    """When a breaker opens, and for how long.

    ``window_type="time"`` (the default) keeps outcomes of the last ``window_seconds``;
    ``"count"`` keeps the last ``window`` calls. The time-based window is the safer default
    under high concurrency: a burst of calls that fail together (a timeout wave) weighs as
    what it is, a few seconds, instead of filling a short count window.

    What counts is yours to say (resilience4j's ``recordExceptions``,
    ``ignoreExceptions`` and ``recordResultPredicate``), each an exception class (also
    matching the exception a ``ToolError`` or ``ModelError`` wraps), a failure kind
    (``"server_error"``, see ``convoy.resilience.failure_kind``), a predicate, or a tuple
    of those:

    * ``record``: the failures that count against the breaker; other failures count as
      successes. Default: ``convoy.resilience.is_downstream_failure`` (timeouts, 5xx,
      connection failures, unusable answers, an exhausted quota; not rate limits, not
      other 4xx).
    * ``ignore``: failures that count neither way (checked first).
    * ``record_result``: a predicate on the answer; ``True`` counts it as a failure (the
      answer is still returned).
    """

    failure_rate_threshold: float = 50.0     # percent of recorded calls that failed
    slow_call_rate_threshold: float = 100.0  # percent of recorded calls that were slow
    slow_call_duration: float = 60.0         # seconds; slower calls count as slow
    window_type: Literal["time", "count"] = "time"
    window: int = 100                        # count-based window size, in calls
    window_seconds: int = 10                 # time-based window size, in seconds
    minimum_calls: int = 20                  # calls needed before rates are evaluated
    wait_in_open: float = 30.0               # seconds in OPEN before probing
    half_open_calls: int = 5                 # probes allowed in HALF_OPEN
    record: ErrorMatches | None = None       # None: is_downstream_failure
    ignore: ErrorMatches | None = None
    record_result: Callable[[Any], bool] | None = None

    def __post_init__(self) -> None:
        check_matches(self.record, "BreakerPolicy.record")
        check_matches(self.ignore, "BreakerPolicy.ignore")
        if self.record_result is not None and not callable(self.record_result):
            raise UserError("BreakerPolicy.record_result must be a predicate on the answer")
        if not (0 < self.failure_rate_threshold <= 100 and 0 < self.slow_call_rate_threshold
                <= 100):
            raise UserError("BreakerPolicy thresholds are percentages in (0, 100]")
        if self.window < 1 or self.window_seconds < 1 or self.minimum_calls < 1 or \
                self.half_open_calls < 1:
            raise UserError("BreakerPolicy window, window_seconds, minimum_calls and "
                            "half_open_calls must be >= 1")
        if self.window_type not in ("time", "count"):
            raise UserError(f"BreakerPolicy.window_type must be 'time' or 'count', got "
                            f"{self.window_type!r}")
        if not (0 <= self.wait_in_open < math.inf and self.slow_call_duration > 0):
            raise UserError("BreakerPolicy wait_in_open must be >= 0 and slow_call_duration > 0")


class _CountWindow:
    """The last N outcomes, with running totals (O(1) per call)."""

    def __init__(self, size: int) -> None:
        self._ring: deque[tuple[bool, bool]] = deque()
        self._size = size
        self.calls = self.failures = self.slow = 0

    def add(self, failed: bool, slow: bool, now: float) -> None:
        if len(self._ring) == self._size:
            f, s = self._ring.popleft()
            self.calls -= 1
            self.failures -= f
            self.slow -= s
        self._ring.append((failed, slow))
        self.calls += 1
        if failed:
            self.failures += 1
        if slow:
            self.slow += 1

    def ok(self, now: float) -> None:
        """Add a call that succeeded, in time."""
        self.add(False, False, now)

    def expire(self, now: float) -> None:
        return None

    def clear(self) -> None:
        self._ring.clear()
        self.calls = self.failures = self.slow = 0


class _TimeWindow:
    """Outcomes of the last N seconds in one-second buckets, with running totals."""

    def __init__(self, seconds: int) -> None:
        self._buckets: deque[list[int]] = deque()  # [second, calls, failures, slow]
        self._seconds = seconds
        self.calls = self.failures = self.slow = 0
        self._sec: int | None = None  # the second of the newest bucket, ``_last``
        self._last: list[int] = []

    def expire(self, now: float) -> None:
        horizon = int(now) - self._seconds
        b = self._buckets
        while b and b[0][0] <= horizon:
            _, c, f, s = b.popleft()
            self.calls -= c
            self.failures -= f
            self.slow -= s
            if not b:  # the newest bucket left too
                self._sec = None

    def _bucket(self, now: float) -> list[int]:
        """The bucket of ``now``'s second (a new second drops the ones that left the
        window)."""
        sec = int(now)
        if sec != self._sec:
            self.expire(now)
            self._last = [sec, 0, 0, 0]
            self._buckets.append(self._last)
            self._sec = sec
        return self._last

    def ok(self, now: float) -> None:
        """Add a call that succeeded, in time (the common case, kept short)."""
        last = self._last if int(now) == self._sec else self._bucket(now)
        last[1] += 1
        self.calls += 1

    def add(self, failed: bool, slow: bool, now: float) -> None:
        last = self._bucket(now)
        last[1] += 1
        self.calls += 1
        if failed:
            last[2] += 1
            self.failures += 1
        if slow:
            last[3] += 1
            self.slow += 1

    def clear(self) -> None:
        self._buckets.clear()
        self.calls = self.failures = self.slow = 0
        self._sec = None


class CircuitBreaker:
    """One breaker. ``acquire()`` asks permission and returns a ticket; ``record(ticket,
    ...)`` reports the outcome. A ticket from an earlier state (a call admitted while the
    breaker was closed that ends after it opened) is ignored: only probes decide HALF_OPEN.
    """

    def __init__(self, name: str, policy: BreakerPolicy,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[CircuitBreaker], None] | None = None) -> None:
        self.name = name
        self._on_change = on_change
        self.policy = policy
        self._clock = clock
        self.state: State = "closed"
        self._window: _CountWindow | _TimeWindow = (
            _TimeWindow(policy.window_seconds) if policy.window_type == "time"
            else _CountWindow(policy.window))
        self._generation = 0
        # The generation while a success needs no more than a count (closed, answers not
        # judged), else -1: ``succeeded``'s one test.
        self._plain = 0 if policy.record_result is None else -1
        self._opened_at = 0.0
        self._probes_started = 0
        self._probe_calls = 0
        self._probe_failures = 0
        self._probe_slow = 0
        self._remote: Counts = (0, 0, 0)
        self.rejected = 0
        self.transitions: list[tuple[State, State]] = []

    def _to(self, state: State) -> None:
        self.transitions.append((self.state, state))
        self.state = state
        self._generation += 1
        self._plain = self._generation if state == "closed" and \
            self.policy.record_result is None else -1
        if state == "open":
            self._opened_at = self._clock()
        elif state == "half_open":
            self._probes_started = self._probe_calls = self._probe_failures = 0
            self._probe_slow = 0
        else:
            self._window.clear()
            self._remote = (0, 0, 0)
        if self._on_change is not None:
            self._on_change(self)

    def restore_open(self, remaining: float) -> None:
        """Be OPEN with ``remaining`` seconds of the wait left (state from a restart, or
        from another engine)."""
        self.state = "open"
        self._generation += 1
        self._plain = -1
        self._opened_at = self._clock() - (self.policy.wait_in_open - remaining)
        self._remote = (0, 0, 0)

    def reset(self) -> None:
        """Close, with an empty window (another engine's probes found the downstream
        healthy again)."""
        self._to("closed")

    def counts(self) -> Counts:
        """This engine's outcomes in the current window: calls, failures, slow calls."""
        w = self._window
        w.expire(self._clock())
        return w.calls, w.failures, w.slow

    def set_remote(self, counts: Counts) -> None:
        """The other engines' outcomes in their current windows; they count towards
        opening this breaker, which may open now."""
        self._remote = counts
        if self.state == "closed" and counts[0]:
            self._maybe_open()

    @property
    def open_remaining(self) -> float:
        """Seconds left before an open breaker lets a probe through."""
        return max(0.0, self.policy.wait_in_open - (self._clock() - self._opened_at))

    def acquire(self) -> int:
        """A ticket for one call, or :class:`CircuitOpenError` if it may not go through."""
        if self.state == "closed":
            return self._generation
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
        return self._generation

    def record(self, ticket: int, failed: bool, duration: float,
               now: float | None = None) -> None:
        """Report the outcome of the call ``ticket`` admitted; may open or close the breaker.
        Tickets from an earlier state are ignored."""
        if ticket != self._generation:
            return
        slow = duration >= self.policy.slow_call_duration
        p = self.policy
        if self.state == "half_open":
            self._probe_calls += 1
            self._probe_failures += failed
            self._probe_slow += slow
            if self._probe_calls >= p.half_open_calls:
                self._to("open" if self._tripped(self._probe_calls, self._probe_failures,
                                                  self._probe_slow) else "closed")
            return
        w = self._window
        w.add(failed, slow, self._clock() if now is None else now)
        if w.failures or w.slow or self._remote[0]:  # else nothing could trip it
            self._maybe_open()

    def succeeded(self, ticket: int, duration: float, now: float, result: Any) -> None:
        """Report that the call ``ticket`` admitted answered ``result`` (``record`` with
        the policy's ``record_result`` applied; the closed breaker's fast path)."""
        if ticket != self._plain or duration >= self.policy.slow_call_duration:
            judge = self.policy.record_result
            self.record(ticket, judge is not None and bool(judge(result)), duration, now)
            return
        w = self._window
        w.ok(now)
        if w.failures or w.slow or self._remote[0]:  # else nothing could trip it
            self._maybe_open()

    def _maybe_open(self) -> None:
        w, (rc, rf, rs) = self._window, self._remote
        calls = w.calls + rc
        if calls >= self.policy.minimum_calls and self._tripped(calls, w.failures + rf,
                                                                 w.slow + rs):
            self._to("open")

    def failed(self, error: BaseException) -> bool | None:
        """Does ``error`` count as a failure under this breaker's policy (``None``:
        ignored, neither a failure nor a success)?"""
        p = self.policy
        if p.ignore is not None and matches(p.ignore, error):
            return None
        return matches(p.record, error) if p.record is not None else \
            is_downstream_failure(error)

    def release(self, ticket: int) -> None:
        """A call that was admitted but ended without an outcome (cancelled)."""
        if ticket == self._generation and self.state == "half_open" and \
                self._probes_started > self._probe_calls:
            self._probes_started -= 1

    def _tripped(self, calls: int, failures: int, slow: int) -> bool:
        p = self.policy
        return (100.0 * failures >= p.failure_rate_threshold * calls
                or 100.0 * slow >= p.slow_call_rate_threshold * calls)

    @property
    def failure_rate(self) -> float:
        """Failed calls in the current window, in percent."""
        w = self._window
        w.expire(self._clock())
        return 100.0 * w.failures / w.calls if w.calls else 0.0


class Breakers(Interceptor):
    """Circuit breakers for model deployments, agents and tools.

    A model call must be admitted by the breaker of its deployment (key
    ``model:DEPLOYMENT``, see :attr:`convoy.Model.deployment`: the model name unless there
    are several deployments of it) and by the breaker of its agent on that deployment (key
    ``agent:AGENT@DEPLOYMENT``); a tool call by the breaker of its tool (``tool:NAME``). A
    breaker protects one downstream: an agent whose primary endpoint is failing still
    reaches a healthy fallback, even one of the same model behind another base URL.
    ``models`` is keyed by model name or by deployment. ``None`` for a target turns its
    breaker off.

    The breakers' state is kept in the engine's store (or, with ``state_path``, in a store
    of their own) and shared by every engine on it, exchanged at most every
    ``sync_interval`` seconds of ``clock`` (``None``: only loaded when the engine opens).
    """

    stage: Stage = "breaker"

    def __init__(self, policy: BreakerPolicy | None = None, *,
                 agents: Mapping[str, BreakerPolicy | None] | None = None,
                 models: Mapping[str, BreakerPolicy | None] | None = None,
                 tools: Mapping[str, BreakerPolicy | None] | None = None,
                 per_agent: bool = True, clock: Callable[[], float] = time.monotonic,
                 state_path: str | Path | None = None,
                 sync_interval: float | None = 1.0) -> None:
        if sync_interval is not None and sync_interval < 0:
            raise UserError(f"sync_interval must be >= 0 or None, got {sync_interval!r}")
        default = policy if policy is not None else BreakerPolicy()
        self._models: Scoped[BreakerPolicy] = Scoped(default=default, models=models or {})
        self._agents: Scoped[BreakerPolicy] = Scoped(default=default if per_agent else None,
                                                     agents=agents or {})
        self._tools: Scoped[BreakerPolicy] = Scoped(default=default, tools=tools or {})
        self._clock = clock
        self.breakers: dict[str, CircuitBreaker] = {}
        # By model instance: no lookup of its deployment on every call (bounded: an
        # application may make a model per request).
        self._pairs: dict[tuple[Model, str], tuple[CircuitBreaker, ...]] = {}
        self._state_path = Path(state_path) if state_path is not None else None
        self._own_store: SQLiteStore | None = None
        self._state: BreakerSync | None = None
        self.sync_interval = sync_interval
        self._next_sync = float("inf")
        self._syncing = False

    async def start(self, engine: Engine) -> None:
        """Load the breakers' state: a restarted engine keeps rejecting calls to a
        downstream that was failing instead of hammering it again."""
        store: Store = engine.store
        if self._state_path is not None:
            store = self._own_store = SQLiteStore(self._state_path)
            await store.open()
        self._state = BreakerSync(store, engine.clock, engine.owner)
        await self._state.load()
        if self.sync_interval is not None:
            self._next_sync = self._clock() + self.sync_interval

    async def _sync(self, st: BreakerSync) -> None:
        """Exchange state with the other engines (one caller at a time; the others go on)."""
        assert self.sync_interval is not None
        self._syncing = True
        try:
            await st.sync(self.breakers)
        finally:
            self._syncing = False
            self._next_sync = self._clock() + self.sync_interval

    async def close(self) -> None:
        self._state = None
        if self._own_store is not None:
            await self._own_store.aclose()
            self._own_store = None

    def _save(self, b: CircuitBreaker) -> None:
        if self._state is not None:  # not started (used without an engine): nothing kept
            self._state.save(b)

    def get(self, key: str, policy: BreakerPolicy) -> CircuitBreaker:
        """The breaker for ``key`` (created with ``policy`` on first use, open if the store says
        it was open)."""
        b = self.breakers.get(key)
        if b is None:
            # Saves go through ``self``: an interceptor reused by an engine opened again
            # (``run_sync`` twice) saves to the store of that run.
            b = self.breakers[key] = CircuitBreaker(key, policy, self._clock, self._save)
            st = self._state
            if st is not None:
                remaining = st.open_remaining(key)
                if remaining is not None:
                    b.restore_open(remaining)
        return b

    def _for_model(self, model: Model, agent: str) -> tuple[CircuitBreaker, ...]:
        found = self._pairs.get((model, agent))
        if found is None:
            deployment = model.deployment
            mp = self._models.for_endpoint("", model)
            ap = self._agents.for_model(agent, "")
            pair = []
            if mp is not None:
                pair.append(self.get(f"model:{deployment}", mp))
            if ap is not None:
                # Keyed by (agent, deployment): the agent's failures on one endpoint must
                # not refuse its calls to another (a fallback to a healthy provider).
                pair.append(self.get(f"agent:{agent}@{deployment}", ap))
            if len(self._pairs) >= MODELS_KEPT:
                self._pairs.clear()
            found = self._pairs[(model, agent)] = tuple(pair)
        return found

    async def _guarded(self, breakers: tuple[CircuitBreaker, ...],
                       call: Callable[[I], Awaitable[O]], input: I) -> O:
        clock = self._clock
        t0 = clock()
        if t0 >= self._next_sync:  # never without a state to sync (then it is inf)
            st = self._state
            if st is not None and not self._syncing:
                await self._sync(st)
                t0 = clock()
        tickets = []
        try:
            for b in breakers:
                tickets.append(b.acquire())
        except CircuitOpenError:
            for b, ticket in zip(breakers, tickets, strict=False):
                b.release(ticket)
            raise
        try:
            out = await call(input)
        except Exception as e:
            now = clock()
            for b, ticket in zip(breakers, tickets, strict=True):
                failed = b.failed(e)
                if failed is None:
                    b.release(ticket)
                else:
                    b.record(ticket, failed, now - t0, now)
            raise
        except BaseException:
            for b, ticket in zip(breakers, tickets, strict=True):
                b.release(ticket)
            raise
        now = clock()
        duration = now - t0
        for b, ticket in zip(breakers, tickets):  # noqa: B905 - one ticket per breaker
            b.succeeded(ticket, duration, now, out)
        return out

    def model_call(  # type: ignore[override]
            self, input: ModelCallInput,
            next: Next[ModelCallInput, ModelResponse]) -> Awaitable[ModelResponse]:
        # Not a coroutine: returns ``_guarded``'s, one frame fewer per model call.
        found = self._for_model(input.model, input.agent.name)
        if not found:
            return next(input)
        return self._guarded(found, next, input)

    async def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        tp = self._tools.for_tool("", input.tool.name)
        if tp is None:
            return await next(input)
        return await self._guarded((self.get(f"tool:{input.tool.name}", tp),), next, input)
