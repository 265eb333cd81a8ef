"""Control signals of durable execution.

They derive from ``BaseException`` (like ``asyncio.CancelledError``) so that workflow code
that catches ``Exception`` cannot swallow them: each one must unwind the session's coroutine
to the engine, which then leaves the session unfinished (interrupted) or parked (waiting).
"""

from __future__ import annotations

from convoy._errors import StoreError


class SessionInterrupted(BaseException):
    """This run of a session stopped without an outcome; the session stays unfinished and
    another run (after a restart, or on another engine) continues it from its journal."""

    def __init__(self, message: str, *, cause: StoreError | None = None,
                 refused_step: bool = False) -> None:
        super().__init__(message)
        self.cause = cause
        #: The run stopped at a step it did not start (a graceful stop): the step counted
        #: for it is not one the session took.
        self.refused_step = refused_step


class LeaseLost(SessionInterrupted):
    """The store refused a write: another engine owns the session now (this engine's lease
    expired and it was taken over). The write did not happen."""


class Parked(BaseException):
    """The session waits for a timer and/or a signal: its coroutine unwinds, it holds no
    memory or concurrency slot, and the store wakes it."""

    def __init__(self, *, wake_at: float | None, wait_name: str | None,
                 since: float | None = None, now: float | None = None) -> None:
        super().__init__(f"waiting for {wait_name or 'a timer'}")
        self.wake_at = wake_at
        self.wait_name = wait_name
        #: A signal wait's: when it began, and the clock's time as it parked (how
        #: branches of a gather that wait for different signals look for theirs).
        self.since = since
        self.now = now


__all__ = ["LeaseLost", "Parked", "SessionInterrupted"]
