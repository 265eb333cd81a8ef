"""Control signals of durable execution.

They derive from ``BaseException`` (like ``asyncio.CancelledError``) so that workflow code
that catches ``Exception`` cannot swallow them: each one must unwind the session's coroutine
to the engine, which then leaves the session unfinished (interrupted) or parked (waiting).
"""

from __future__ import annotations

from collections.abc import Sequence

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

    def __init__(self, *, wake_at: float | None, wait_names: Sequence[str] = ()) -> None:
        super().__init__(f"waiting for {' or '.join(wait_names) or 'a timer'}")
        self.wake_at = wake_at
        #: The signals any of which wakes it (one, or the several a gather's branches
        #: wait for), each once.
        self.wait_names = tuple(dict.fromkeys(wait_names))

    @property
    def wait_name(self) -> str | None:
        """The first signal it waits for (``None``: a timer alone)."""
        return self.wait_names[0] if self.wait_names else None


__all__ = ["LeaseLost", "Parked", "SessionInterrupted"]
