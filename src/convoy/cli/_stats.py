"""Totals of one ``convoy run`` / ``convoy resume`` / ``convoy worker`` invocation."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from convoy import Engine, SessionResult
from convoy._stats import percentile
from convoy.privacy._seal import is_sealed
from convoy.resilience._classify import error_kind_of

#: Why a session is still unfinished after a command: it waits for a timer, a signal or a
#: person, another live engine owns it, it started on another workflow version, its workflow
#: could not be loaded here, or a store error (or a lost lease) interrupted it.
LeftReason = Literal["waiting", "owned", "version", "code", "key", "interrupted"]
LEFT_LABELS: dict[LeftReason, str] = {
    "waiting": "waiting (timer, signal or person)",
    "owned": "owned by another engine",
    "version": "other workflow version",
    "code": "workflow not loaded here",
    "key": "sealed: no master key here",
    "interrupted": "interrupted (resume later)",
}


def left_reason(res: SessionResult[Any]) -> LeftReason | None:
    """Why ``res`` is unfinished, or ``None`` when it finished."""
    if res.finished:
        return None
    if (res.error or {}).get("type") == "VersionMismatch":
        return "version"
    if (res.error or {}).get("type") == "WorkflowNotFound":
        return "code"
    if (res.error or {}).get("type") == "MasterKeyNeeded":
        return "key"
    if res.status == "running":
        return "owned"
    if res.status == "waiting":
        return "waiting"
    return "interrupted"


@dataclass(slots=True)
class RunStats:
    """Counts sessions by status and totals tokens, cost and latency of those that ran
    (latency: of the runs that ended; one a stop or a store error interrupted is counted,
    not timed).

    ``skipped`` counts sessions that were already finished before this invocation ran
    them (by status; also one another engine on the store finished after the command
    read it unfinished); they are reported, not re-run, and their tokens are not counted
    again.
    ``left`` counts the sessions still unfinished afterwards, by why. ``outcomes`` counts
    the status every input of the command ended in, run now or before (``run --strict``).
    ``kinds`` counts the sessions that ran and did not complete by the kind of their error
    (``convoy.resilience.error_kind``: the taxonomy metrics and traces use too).
    """

    by_status: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    left: Counter[LeftReason] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: list[SessionResult[Any]] = field(default_factory=list)
    #: The failures whose error message is not printed (:func:`withhold_messages`).
    withheld: set[str] = field(default_factory=set)
    store_errors: list[SessionResult[Any]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    wall_s: float = 0.0
    #: The sessions the command set out to run, and the results of those that ended so
    #: far (:meth:`tally`): what :meth:`cut_off` counts.
    expected: int = 0
    ended: list[SessionResult[Any]] = field(default_factory=list)

    def add(self, res: SessionResult[Any]) -> None:
        if res.already_finished:  # (another engine on the store finished it meanwhile:
            self.skipped[res.status] += 1  # its run, not this command's)
            return
        why = left_reason(res)
        if why is not None:
            self.left[why] += 1
            if why == "interrupted" and res.error:  # (one a stop never started: no error)
                self.failures.append(res)
                if (res.error or {}).get("type") == "StoreError":
                    self.store_errors.append(res)
            # A session that was only looked at (not due, owned elsewhere, another
            # version) reports no run time; one that ran and then parked does.
            if not res.duration_s > 0:
                return
        self.by_status[res.status] += 1
        self.input_tokens += res.usage.input_tokens
        self.output_tokens += res.usage.output_tokens
        self.cost += res.cost
        if why != "interrupted":  # (cut off by a stop or a store error: not timed)
            self.latencies.append(res.duration_s)
        if why is None and not res.ok:
            self.failures.append(res)
            self.kinds[error_kind_of(res.error) or res.status] += 1

    def tally(self, expected: int, on_done: Callable[[SessionResult[Any]], None]
              ) -> Callable[[SessionResult[Any]], None]:
        """``on_done`` (a progress callback) for ``expected`` sessions, that also keeps each
        result as it comes (:meth:`cut_off`)."""
        self.expected = expected

        def done(res: SessionResult[Any]) -> None:
            self.ended.append(res)
            on_done(res)

        return done

    def cut_off(self) -> RunStats:
        """These totals, of a command that a stop cancelled before it could count what it
        ran: the sessions that ended (:meth:`tally`); the others it set out to run, cut
        off in flight or never started, are left unfinished (``interrupted``). Their
        error messages are withheld (the store, closed, cannot say which quote a data
        subject's data)."""
        for res in self.ended:
            self.add(res)
            self.outcomes[res.status] += 1
        self.left["interrupted"] += max(0, self.expected - len(self.ended))
        self.withheld = {res.id for res in self.failures}
        self.stop()
        return self

    def start(self) -> None:
        self.started = time.perf_counter()

    def stop(self) -> None:
        self.wall_s = time.perf_counter() - self.started

    @property
    def ran(self) -> int:
        return sum(self.by_status.values())

    @property
    def completed(self) -> int:
        return self.by_status["completed"]

    def latency(self, p: float) -> float:
        return percentile(self.latencies, p)

    @property
    def throughput(self) -> float:
        """Session runs that ended (not interrupted) per second of wall-clock time."""
        return len(self.latencies) / self.wall_s if self.wall_s > 0 else math.nan


async def withhold_messages(engine: Engine, stats: RunStats) -> None:
    """Mark the failures of ``stats`` whose error message the command must not print: a
    data subject's session (or one that read a subject's data: its stored error is sealed),
    whose message may quote the subject's data, in output kept beyond 'convoy erase''s
    reach. Read from the store as it is (sealed), before the engine closes; a store that
    cannot say withholds them all."""
    ids = [r.id for r in stats.failures]
    if not ids:
        return
    raw = engine.store if engine.keys is None else engine.keys.store
    try:
        rows = await raw.get_sessions(ids)
    except Exception:  # (a store error stopped the run: say nothing the rows may hold)
        stats.withheld = set(ids)
        return
    stats.withheld = {sid for sid, row in rows.items()
                      if row.subject is not None or is_sealed(row.error)}
