"""The wall-clock limits of an engine's running sessions, on one timer of the event loop.

Each run is watched as ``asyncio.timeout`` would watch it (the task is cancelled when its
deadline passes; leaving un-cancels it and turns a cancellation that was the deadline's
alone into :class:`TimeoutError`), but a run costs an entry in one heap of
``(loop time, token)`` pairs and two dict entries, not a timeout object with its own timer
handle, bound methods and context: a session in flight keeps five objects fewer for the
cyclic garbage collector to walk, and the event loop's timer heap gets no entry per
session.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from typing import Any


class Deadlines:
    """Deadlines of the runs of one engine (on the event loop it runs on)."""

    __slots__ = ("_cancelling", "_expired", "_heap", "_loop", "_next", "_stale", "_tasks",
                 "_timer", "_timer_at")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []  # (loop time, token); left runs linger
        self._tasks: dict[int, asyncio.Task[Any]] = {}
        self._cancelling: dict[int, int] = {}  # the task's cancel requests when it entered
        self._expired: set[int] = set()
        self._next = 0
        self._stale = 0  # heap entries of runs that left
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.Handle | None = None
        self._timer_at = math.inf

    def enter(self, delay: float) -> int:
        """Watch the current task: cancel it ``delay`` seconds from now. Its token."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline watches a task: call it from one")
        loop = task.get_loop()
        if loop is not self._loop:  # a new loop (``run_sync`` opens one per call)
            self._reset(loop)
        when = loop.time() + delay
        token = self._next
        self._next = token + 1
        self._tasks[token] = task
        self._cancelling[token] = task.cancelling()
        heapq.heappush(self._heap, (when, token))
        if when < self._timer_at:
            self._arm(loop, when)
        return token

    def expired(self, token: int) -> bool:
        """Did the run's deadline pass (and cancel its task)?"""
        return token in self._expired

    def leave(self, token: int, exc: BaseException | None = None) -> None:
        """Stop watching the run ``token``, which ends with ``exc`` (``None``: it returned).
        If its deadline cancelled it, the task is un-cancelled, and a ``CancelledError``
        that was the deadline's alone is raised as :class:`TimeoutError`."""
        task = self._tasks.pop(token, None)
        if task is None:  # watched on a loop that is gone (see ``_reset``)
            return
        cancelling = self._cancelling.pop(token)
        if token in self._expired:  # its heap entry is gone already
            self._expired.discard(token)
            if task.uncancel() <= cancelling and isinstance(exc, asyncio.CancelledError):
                raise TimeoutError from exc
            return
        self._stale += 1
        heap = self._heap
        if self._stale > 100 and self._stale * 2 > len(heap):
            live = self._tasks
            self._heap = [e for e in heap if e[1] in live]
            heapq.heapify(self._heap)
            self._stale = 0

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        # A deadline already past fires before anything else ready runs, as in
        # ``asyncio.timeout``.
        self._timer = loop.call_soon(self._fire) if when <= loop.time() else \
            loop.call_at(when, self._fire)
        self._timer_at = when

    def _fire(self) -> None:
        """Cancel the tasks whose deadline passed; arm the timer for the next one."""
        loop = self._loop
        assert loop is not None
        due = max(loop.time(), self._timer_at)  # what the loop deemed due, at least
        self._timer, self._timer_at = None, math.inf
        heap, tasks = self._heap, self._tasks
        while heap and heap[0][0] <= due:
            _, token = heapq.heappop(heap)
            task = tasks.get(token)
            if task is None:  # a run that left
                self._stale -= 1
                continue
            self._expired.add(token)
            task.cancel()
        while heap and heap[0][1] not in tasks:
            heapq.heappop(heap)
            self._stale -= 1
        if heap:
            self._arm(loop, heap[0][0])

    def _reset(self, loop: asyncio.AbstractEventLoop) -> None:
        # The runs of a loop that is gone ended with it: only their entries are left.
        if self._timer is not None:
            self._timer.cancel()
        self._heap, self._stale, self._timer, self._timer_at = [], 0, None, math.inf
        self._tasks.clear()
        self._cancelling.clear()
        self._expired.clear()
        self._loop = loop


__all__ = ["Deadlines"]
