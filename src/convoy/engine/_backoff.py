"""Sessions a worker gave back because the store failed to record them (how a run ended,
or a step's journal record): run again after a delay, not at once.

Without it, a store that keeps failing one session's write (a full disk, a constraint, a
failing replica) has the worker claim and replay that session in a tight loop, thousands of
times a second. The delay doubles with each failure of the same session, from
:data:`FIRST_DELAY`, up to a cap the engine gives (a third of its lease, so a session it
holds meanwhile never outlives its claim), and the count starts again once a write of that
session succeeds. Other sessions run as usual meanwhile. The same delays
(:func:`delay_after`) space a worker's tries of a store that fails as a whole (a lost
connection: ``Engine._serve_loop``).

Kept in memory, per engine: another engine (or this one, restarted) runs the session when
it can, as it would any session given back.
"""

from __future__ import annotations

import math

#: The delay before the first run again, in seconds.
FIRST_DELAY = 1.0


def delay_after(failures: int, cap: float) -> float:
    """The delay after the ``failures``-th failure in a row: :data:`FIRST_DELAY`, doubled
    with each further one, at most ``cap``."""
    return min(cap, FIRST_DELAY * 2.0 ** min(failures - 1, 60))


class Backoff:
    """Per session: how many writes failed in a row, and when it runs again."""

    __slots__ = ("_due", "_failures", "_tenants")

    def __init__(self) -> None:
        self._failures: dict[str, int] = {}
        self._due: dict[str, float] = {}  # (``inf``: taken, running again now)
        self._tenants: dict[str, str] = {}

    def __contains__(self, sid: str) -> bool:
        return sid in self._due

    def __len__(self) -> int:
        return len(self._due)

    def written(self, sid: str) -> int:
        """A write of ``sid`` is about to be tried: forget its delay (a session that parks
        may be runnable as soon as the write commits). Returns its failures so far, for
        :meth:`failed` if this write fails too."""
        self._due.pop(sid, None)
        self._tenants.pop(sid, None)
        return self._failures.pop(sid, 0)

    def failed(self, sid: str, tenant: str, before: int, now: float, cap: float) -> float:
        """A write of ``sid`` failed (``before``: the failures before it): it runs again
        after the delay returned, in seconds."""
        n = before + 1
        delay = delay_after(n, cap)
        self._failures[sid], self._due[sid], self._tenants[sid] = n, now + delay, tenant
        return delay

    def hold(self, sid: str, tenant: str, due: float) -> None:
        """``sid``, held by this engine but not run by it, runs again at ``due``."""
        self._due[sid], self._tenants[sid] = due, tenant
        self._failures.setdefault(sid, 0)

    def next_due(self) -> float | None:
        """When the next session is due to run again (``None``: none is waiting)."""
        due = min(self._due.values(), default=math.inf)
        return None if due == math.inf else due

    def take(self, now: float, limit: int, tenant: str | None = None
             ) -> list[tuple[str, str]]:
        """Up to ``limit`` sessions (of ``tenant``, when given) due to run again by
        ``now``, as ``(id, tenant)``: taken, so they are not handed out twice, until
        :meth:`written` or :meth:`settled`."""
        out: list[tuple[str, str]] = []
        for sid, due in self._due.items():
            of = self._tenants[sid]
            if len(out) < limit and due <= now and (tenant is None or of == tenant):
                out.append((sid, of))
        for sid, _ in out:
            self._due[sid] = math.inf
        return out

    def settled(self, sid: str) -> None:
        """A run of ``sid`` that :meth:`take` handed out is over: if it wrote nothing (a
        cancel request ended it, say), it is forgotten."""
        if self._due.get(sid) == math.inf:
            self.forget(sid)

    def forget(self, sid: str) -> None:
        """``sid`` will not run here again (another engine took it, or it ended)."""
        self._failures.pop(sid, None)
        self._due.pop(sid, None)
        self._tenants.pop(sid, None)

    def ids(self) -> list[str]:
        return list(self._due)
