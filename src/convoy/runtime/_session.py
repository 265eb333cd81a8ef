"""Per-session state: the journal cursor, limits, loop detection and running totals.

A running session holds this object, its coroutine and the messages of the agent turns in
flight, nothing else: its history lives in the store. On resume the journal is loaded once
and consumed step by step; when it is empty the session runs live again.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from convoy._errors import (
    ConvoyError,
    LimitExceeded,
    LoopDetected,
    NonDeterminismError,
    StepError,
    UnknownOutcomeError,
    error_from_record,
    error_to_record,
)
from convoy.models._messages import Usage

if TYPE_CHECKING:
    from convoy.engine._runtime import Runtime
    from convoy.stores._sqlite import StepRecord

T = TypeVar("T")


class SessionState:
    """What one session needs while it runs. Shared by every :class:`Context` scope of it."""

    __slots__ = (
        "__weakref__", "_pingpong", "_seen", "cost", "deadline", "handoffs", "id", "replay",
        "replay_only", "runtime", "steps", "tenant", "usage", "workflow",
    )

    def __init__(self, runtime: Runtime, session_id: str, tenant: str, workflow: str,
                 started_at: float, replay: dict[str, StepRecord] | None = None,
                 replay_only: bool = False) -> None:
        self.runtime = runtime
        self.id = session_id
        self.tenant = tenant
        self.workflow = workflow
        self.replay = replay or None
        self.replay_only = replay_only
        self.steps = 0
        self.handoffs = 0
        self.usage = Usage()
        self.cost = 0.0
        limit = runtime.limits.max_seconds
        self.deadline = None if limit is None else started_at + limit
        self._seen: set[tuple[str, int]] | None = None
        self._pingpong: deque[str] | None = None

    # -- limits and loops ----------------------------------------------------------------

    def count_step(self, key: str) -> None:
        self.steps += 1
        limits = self.runtime.limits
        if self.steps > limits.max_steps:
            raise LimitExceeded(f"session {self.id!r} reached max_steps={limits.max_steps} "
                                f"at step {key}")
        if self.deadline is not None and time.time() > self.deadline:
            raise LimitExceeded(f"session {self.id!r} ran past max_seconds="
                                f"{limits.max_seconds} at step {key}")

    def check_depth(self, agent: str, depth: int) -> None:
        if depth > self.runtime.limits.max_depth:
            raise LimitExceeded(f"agent {agent!r} would run at depth {depth}, past "
                                f"max_depth={self.runtime.limits.max_depth}")

    def note_input(self, agent: str, rendered: str) -> None:
        """Loop detection: the same agent handed exactly the same input twice."""
        if not self.runtime.limits.detect_repeats:
            return
        sig = (agent, hash(rendered))
        if self._seen is None:
            self._seen = set()
        elif sig in self._seen:
            raise LoopDetected(f"agent {agent!r} was handed the same input a second time: "
                               f"{rendered[:120]!r}")
        self._seen.add(sig)

    def note_handoff(self, source: str, target: str) -> None:
        limits = self.runtime.limits
        self.handoffs += 1
        if self.handoffs > limits.max_handoffs:
            raise LimitExceeded(f"session {self.id!r} reached max_handoffs="
                                f"{limits.max_handoffs} ({source!r} -> {target!r})")
        n = 2 * limits.max_ping_pong
        trail = self._pingpong
        if trail is None:
            trail = self._pingpong = deque(maxlen=n + 1)
        if not trail:
            trail.append(source)
        trail.append(target)
        if len(trail) == n + 1:
            a, b = trail[0], trail[1]
            if a != b and all(x == (a if i % 2 == 0 else b) for i, x in enumerate(trail)):
                raise LoopDetected(f"agents {a!r} and {b!r} handed over to each other "
                                   f"{limits.max_ping_pong} times in a row")

    # -- the journal ---------------------------------------------------------------------

    async def journaled(self, key: str, kind: str, target: str,
                        execute: Callable[[], Awaitable[T]],
                        encode: Callable[[T], str], decode: Callable[[str], T], *,
                        effect: bool = False, idempotent: bool = True) -> T:
        """Run one step durably.

        A completed or failed record replays without running anything. A ``started``
        record without an outcome (the process died during the call) is retried only if
        the step is idempotent; otherwise :class:`UnknownOutcomeError`. Side-effecting
        steps (``effect=True``) commit a ``started`` record before they run.
        """
        self.count_step(key)
        replay = self.replay
        if replay is not None:
            rec = replay.pop(key, None)
            if not replay:
                self.replay = None
            if rec is not None:
                if rec.kind != kind or rec.target != target:
                    raise NonDeterminismError(
                        f"session {self.id!r} step {key}: the journal recorded a {rec.kind} "
                        f"step for {rec.target!r} but the workflow code now asks for a {kind} "
                        f"step for {target!r}; the workflow changed in a way that breaks "
                        "determinism (bump its version and start new sessions)", key=key)
                if rec.status == "completed":
                    return decode(rec.result or "")
                if rec.status == "failed":
                    raise error_from_record(json.loads(rec.result or "{}"))
                if self.replay_only:
                    raise NonDeterminismError(
                        f"replay of session {self.id!r}: step {key} never completed", key=key)
                if not idempotent:
                    raise UnknownOutcomeError(
                        f"session {self.id!r} step {key}: {kind} {target!r} started before "
                        "a crash and is not idempotent, so it is not retried; a human must "
                        "check whether it took effect")
            elif self.replay_only:
                raise NonDeterminismError(
                    f"replay of session {self.id!r}: step {key} ({kind} {target!r}) is not in "
                    "the journal", key=key)
        elif self.replay_only:
            raise NonDeterminismError(
                f"replay of session {self.id!r}: step {key} ({kind} {target!r}) is not in the "
                "journal", key=key)
        store = self.runtime.store
        if effect:
            await store.append_step(self.id, key, kind, target, "started", None)
        try:
            value = await execute()
        except ConvoyError as e:
            if isinstance(e, StepError | NonDeterminismError):
                await store.append_step(self.id, key, kind, target, "failed",
                                        json.dumps(error_to_record(e)))
            raise
        await store.append_step(self.id, key, kind, target, "completed", encode(value))
        return value
