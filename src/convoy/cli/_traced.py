"""The command line traces where the store keeps the session's trace.

The command line runs none of the application's interceptors. When a session's trace is
kept in the store (``Tracing(exporters=["store"])``, ``--trace store``: ``convoy trace
SESSION`` prints it), what the command line does with the session goes into that trace,
as the application's :class:`~convoy.observability.Tracing` would record it: a run that
``convoy resume``, ``worker`` or ``cancel`` makes (its agents, model and tool
calls, ...: the trace goes on, as a resumed session's does), and a person's decision
(``convoy inbox answer|approve|reject``, an escalation's answer: its ``human_decision``
span). A session traced elsewhere only (OTLP, the console) gets nothing from here: the
command line does not know where the application exports; ``--trace`` traces every
session the command runs, to where it says.
"""

from __future__ import annotations

from typing import Any

from convoy import DecisionInput, HumanTask, Next, SessionEnd, SessionInput
from convoy.observability import Tracing
from convoy.observability._spans import SPANS_NAMESPACE
from convoy.observability._tracing import TRACE_HEADER


class TraceWhereTraced(Tracing):
    """Tracing to the store, of the sessions (and decisions) whose trace the store keeps
    already (see the module docstring); every other session passes untraced."""

    def __init__(self) -> None:
        super().__init__(["store"])

    async def _kept(self, session_id: str, headers: Any) -> bool:
        """Whether the store keeps spans of the session's trace."""
        store = self.store
        return TRACE_HEADER in headers and store is not None and \
            bool(await store.kv_all(SPANS_NAMESPACE + session_id))

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
