"""Spans for the steps no interceptor hook sees: the values the engine draws for the
workflow and its waits for signals.

``ctx.now()``, ``ctx.random()``, ``ctx.uuid()``, the timer of ``ctx.sleep()`` (a drawn
value each) and ``ctx.wait_for()`` (``ctx.ask_human``'s wait too) are journaled by the step
executor directly, not through the interceptor chain (:class:`~convoy.interceptors.
EffectInput` says why). Each is still a step of the session, with an audit entry, so each
gets its span, made from its journal record as it is written (a journal tap, as audit
does): a drawn value is an instant ``step NAME`` span (``convoy.step.drawn``); a wait is a
``wait NAME`` span from the moment it started waiting to the signal that ended it (an
ERROR span if it timed out), with how long it waited (``convoy.wait.seconds``). A wait
still open when the run ends (the session parks) has its span in the run that ends it,
from that run's start (a span starts within its parent), its ``convoy.wait.seconds``
counted from the ``started`` record the parked run journaled. Steps replayed from the
journal are not journaled again, so they get no second span.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from convoy._text import json_object
from convoy.observability._spans import CURRENT, Shape, SpanData, time_ns
from convoy.resilience._classify import error_kind_of
from convoy.state._access import WATCH_PREFIX, watched
from convoy.stores._protocol import StepRecord

if TYPE_CHECKING:
    from convoy.observability._tracing import Tracing

#: The names of the values the engine draws (``ctx.now``, ``random``, ``uuid``, the
#: timer of ``sleep``): ``effect`` records no hook made.
DRAWN = frozenset({"clock", "random", "uuid", "timer"})


def wait_family(signal: str) -> str:
    """What a wait's span is named by: a watch's (a person's task, a state key) namespace,
    decoded (span names stay few: the whole signal name is an attribute), else the
    signal."""
    found = watched(signal)
    return signal if found is None else WATCH_PREFIX + found[0]


class UnhookedSteps:
    """The journal tap of one traced run: a span for each drawn value and wait it
    journals (see the module docstring). The run's ``stepped`` are the keys of the
    ``ctx.step`` effects its ``step`` hook gave a span (a user's step may be named
    ``clock`` too)."""

    __slots__ = ("journal", "opened", "root", "tracing")

    def __init__(self, tracing: Tracing, root: SpanData,
                 journal: Mapping[str, StepRecord]) -> None:
        self.tracing = tracing
        self.root = root
        self.journal = journal
        self.opened: dict[str, int] = {}  # wait key -> when it started waiting (ns)

    def __call__(self, record: StepRecord) -> None:
        kind = record.kind
        if kind == "wait":
            self._wait(record)
        elif kind == "effect" and record.target in DRAWN and record.status != "started" \
                and record.key not in self.root.run.stepped:
            # (a drawn value writes no ``started`` record: a user's step that has one
            # writes it before its hook runs)
            self._drawn(record)

    def _parent(self) -> SpanData:
        current = CURRENT.get()
        return current if current is not None and current.run is self.root.run else self.root

    def _drawn(self, record: StepRecord) -> None:
        name = record.target
        shape = self.tracing.shape(("drawn", name), lambda: Shape(
            "step " + name, {"convoy.step.name": name, "convoy.step.drawn": True}))
        parent = self._parent()
        span = SpanData(parent, shape, {"convoy.step.key": record.key}, parent.agent,
                        record.key)
        span.status = "ok" if record.status == "completed" else "error"
        self.tracing.ended(span)  # (an instant: the value is drawn as it is journaled)

    def _wait(self, record: StepRecord) -> None:
        key, now = record.key, time_ns()
        if record.status == "started":
            # (a refused signal writes it again: the wait started the first time, in an
            # earlier run if the journal this run resumed has it)
            if key not in self.journal:
                self.opened.setdefault(key, now)
            return
        parent = self._parent()
        start = self.opened.pop(key, None)
        waited = None if start is None else (now - start) / 1e9
        if start is None:
            # Opened by the run that parked the session: the span is this run's (it
            # starts with it, under its parent), and says how long the wait was.
            before = self.journal.get(key)
            at = before.at if before is not None else None
            if isinstance(at, float) and 0 < at * 1e9 <= now:
                waited = (now - int(at * 1e9)) / 1e9
            start = max(parent.start, self.root.start)
        tracing = self.tracing
        target = record.target
        # A watch (a person's task, a state key) is named by its namespace: span names
        # stay few; the whole signal name is an attribute.
        family = wait_family(target)
        shape = tracing.shape(("wait", family), lambda: Shape(
            "wait " + tracing.redact(family), {}))
        attrs: dict[str, object] = {"convoy.step.key": key,
                                    "convoy.signal.name": tracing.redact(target)}
        if waited is not None:
            attrs["convoy.wait.seconds"] = round(waited, 6)
        span = SpanData(parent, shape, attrs, parent.agent, key)
        span.start = start
        if record.status == "completed":
            span.status = "ok"
        else:
            error = json_object(record.result)
            kind = error_kind_of(error) or "unknown"
            span.status = "error"
            span.attrs["error.type"] = kind
            span.note(f"{kind}: " + tracing.error_text(str(error.get("message", "")),
                                                            parent.run))
        tracing.ended(span)


__all__ = ["DRAWN", "UnhookedSteps", "wait_family"]
