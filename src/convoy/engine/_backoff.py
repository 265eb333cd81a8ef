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

A session whose run a session hook refused (raised before the workflow ended: a policy, a
check that failed) is held back the same way (:meth:`Backoff.failed` with ``refused``),
rather than claimed and refused in a loop, or the worker stopped for one session. A worker
serving ``until_idle`` does not wait for such a session: it stays ``pending`` for a later
run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: The delay before the first run again, in seconds.
FIRST_DELAY = 1.0


def delay_after(failures: int, cap: float) -> float:
    """The delay after the ``failures``-th failure in a row: :data:`FIRST_DELAY`, doubled
    with each further one, at most ``cap``."""
    return min(cap, FIRST_DELAY * 2.0 ** min(failures - 1, 60))


@dataclass(slots=True)
class _Entry:
    tenant: str
    failures: int
    due: float  # (``inf``: taken, running again now)
    refused: bool = False  # (by a session hook, not a store that failed)


class Backoff:
    """Per session: its tenant, how many writes failed in a row, and when it runs again."""

    __slots__ = ("_by_id",)

    def __init__(self) -> None:
        self._by_id: dict[str, _Entry] = {}

    def __contains__(self, sid: str) -> bool:
        return sid in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def written(self, sid: str) -> int:
        """A write of ``sid`` is about to be tried: forget its delay (a session that parks
        may be runnable as soon as the write commits). Returns its failures so far, for
        :meth:`failed` if this write fails too."""
        entry = self._by_id.pop(sid, None)
        return 0 if entry is None else entry.failures

    def failed(self, sid: str, tenant: str, before: int, now: float, cap: float, *,
               refused: bool = False) -> float:
        """A write of ``sid`` failed (``before``: the failures before it), or a session
        hook ``refused`` its run: it runs again after the delay returned, in seconds."""
        delay = delay_after(before + 1, cap)
        self._by_id[sid] = _Entry(tenant, before + 1, now + delay, refused)
        return delay

    def waiting(self, sid: str) -> bool:
        """Is ``sid`` held back, not yet due (not taken by :meth:`take`)?"""
        entry = self._by_id.get(sid)
        return entry is not None and entry.due != math.inf

    def refuse(self, sid: str) -> None:
        """Mark ``sid``, held back, as refused by a session hook (see :meth:`failed`)."""
        entry = self._by_id.get(sid)
        if entry is not None:
            entry.refused = True

    def refused(self, sid: str) -> bool:
        """Is ``sid`` held back because a session hook refused its last run?"""
        entry = self._by_id.get(sid)
        return entry is not None and entry.refused

    def hold(self, sid: str, tenant: str, due: float) -> None:
        """``sid``, held by this engine but not run by it, runs again at ``due``."""
        entry = self._by_id.get(sid)
        self._by_id[sid] = _Entry(tenant, 0 if entry is None else entry.failures, due)

    def next_due(self) -> float | None:
        """When the next session is due to run again (``None``: none is waiting)."""
        due = min((e.due for e in self._by_id.values()), default=math.inf)
        return None if due == math.inf else due

    def take(self, now: float, limit: int, tenant: str | None = None
             ) -> list[tuple[str, str]]:
        """Up to ``limit`` sessions (of ``tenant``, when given) due to run again by
        ``now``, as ``(id, tenant)``: taken, so they are not handed out twice, until
        :meth:`written` or :meth:`settled`."""
        out: list[tuple[str, str]] = []
        for sid, entry in self._by_id.items():
            if len(out) == limit:
                break
            if entry.due <= now and (tenant is None or entry.tenant == tenant):
                entry.due = math.inf
                out.append((sid, entry.tenant))
        return out

    def settled(self, sid: str) -> None:
        """A run of ``sid`` that :meth:`take` handed out is over: if it wrote nothing (a
        cancel request ended it, say), it is forgotten."""
        entry = self._by_id.get(sid)
        if entry is not None and entry.due == math.inf:
            del self._by_id[sid]

    def forget(self, sid: str) -> None:
        """``sid`` will not run here again (another engine took it, or it ended)."""
        self._by_id.pop(sid, None)

    def ids(self) -> list[str]:
        return list(self._by_id)
