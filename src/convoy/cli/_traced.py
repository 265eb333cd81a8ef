"""The command line traces where the store keeps the session's trace.

The command line runs the application's interceptors only where ``--interceptors`` names
them (a ``Tracing`` among them traces as in the application's engine, and this steps
aside). When a session's trace is
kept in the store (``Tracing(exporters=["store"])``, ``--trace store``: ``convoy trace
SESSION`` prints it), what the command line does with the session goes into that trace,
as the application's :class:`~convoy.observability.Tracing` would record it: a run that
``convoy resume``, ``worker`` or ``cancel`` makes (its agents, model and tool
calls, ...: the trace goes on, as a resumed session's does), and a person's decision
(``convoy inbox answer|approve|reject``, an escalation's answer: its ``human_decision``
span). A session whose spans are derived from its journal when read (tracing to the
store, by default) needs nothing from here: what the command line runs is journaled (a
person's decision made here is derived from the decided task when read). A session
traced elsewhere only (OTLP, the console) gets nothing from here: the command line does
not know where the application exports; ``--trace`` traces every
session the command runs, to where it says.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from convoy import DecisionInput, HumanTask, Next, SessionEnd, SessionInput
from convoy.observability import Tracing
from convoy.observability._spans import SPANS_NAMESPACE, traceparent_sampled
from convoy.observability._tracing import TRACE_HEADER


class TraceWhereTraced(Tracing):
    """Tracing to the store, of the sessions (and decisions) whose trace the store keeps
    already (see the module docstring); every other session passes untraced."""

    #: Sessions found traced, remembered (a worker resumes one session again and again).
    KNOWN = 4096

    def __init__(self) -> None:
        # (live: a session whose spans the store keeps goes on with live spans; one whose
        # spans are derived when read needs nothing from here, its journal is its trace)
        super().__init__(["store"], live=True)
        self._known: OrderedDict[str, None] = OrderedDict()

    async def _kept(self, session_id: str, headers: Any) -> bool:
        """Whether the store keeps spans of the session's trace (once found, remembered:
        they are not read again for each of its runs)."""
        store = self.store
        if not traceparent_sampled(headers.get(TRACE_HEADER)) or store is None:
            return False
        known = self._known
        if session_id in known:
            known.move_to_end(session_id)
            return True
        if not await store.kv_all(SPANS_NAMESPACE + session_id):
            return False
        known[session_id] = None
        if len(known) > self.KNOWN:
            known.popitem(last=False)
        return True

    def session_run(self, input: SessionInput,
                    next: Next[SessionInput, SessionEnd]) -> Any:
        return self._run_if_kept(input, next)

    async def _run_if_kept(self, input: SessionInput,
                           next: Next[SessionInput, SessionEnd]) -> SessionEnd:
        if input.info.replay or not await self._kept(input.info.session_id, input.headers):
            return await next(input)
        end: SessionEnd = await super().session_run(input, next)
        return end

    async def human_decision(self, input: DecisionInput,
                             next: Next[DecisionInput, HumanTask]) -> HumanTask:
        if not await self._kept(input.session_id, input.headers):
            return await next(input)
        out: HumanTask = await super().human_decision(input, next)
        return out
