"""Cheap per-call deadlines.

``asyncio.timeout`` arms and cancels a loop timer for every call (~4 µs); on the hot path of
every model and tool step that is a third of the resilience chain's cost. Calls with the
same timeout expire in the order they started, so one FIFO queue per timeout value and a
single armed timer for its head do the same job for the price of a deque append. The
cancel / uncancel protocol is the one ``asyncio.timeout`` uses, so task groups and outer
cancellations keep working.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Watch:
    """One call under a deadline."""

    __slots__ = ("deadline", "done", "expired", "task")

    def __init__(self, task: asyncio.Task[object] | None, deadline: float) -> None:
        self.task = task
        self.deadline = deadline
        self.done = False
        self.expired = False


class Deadlines:
    """Every call started with the same ``seconds`` bound."""

    __slots__ = ("_handle", "_loop", "_queue", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._queue: deque[Watch] = deque()
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self) -> Watch:
        """Start watching the current task; set ``done`` on the result when it ends."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # (a new loop: ``asyncio.run`` again, ``run_sync``)
            # The last loop's timer never fires (its loop is gone, or not running this):
            # one left armed would keep this loop's calls from ever timing out.
            self._loop, self._handle = loop, None
            self._queue.clear()
        q = self._queue
        while q and q[0].done:
            q.popleft()
        w = Watch(asyncio.current_task(loop), loop.time() + self.seconds)
        q.append(w)
        if self._handle is None:
            self._handle = loop.call_at(w.deadline, self._fire)
        return w

    def _fire(self) -> None:
        self._handle = None
        q = self._queue
        if not q:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        while q and (q[0].done or q[0].deadline <= now):
            w = q.popleft()
            if not w.done and w.task is not None:
                w.expired = True
                w.task.cancel()
        if q:
            self._handle = loop.call_at(q[0].deadline, self._fire)

    def timed_out(self, w: Watch) -> bool:
        """Call from ``except CancelledError``: was it our deadline (then it is undone)?"""
        return w.expired and w.task is not None and w.task.uncancel() == 0
