"""The command line traces a person's decision where the store keeps the session's trace.

A decision recorded on the command line (``convoy inbox answer|approve|reject``, an
escalation's answer) runs none of the application's interceptors. When the session's
trace is kept in the store (``Tracing(exporters=["store"])``, ``--trace store``: ``convoy
trace SESSION`` prints it), the decision's ``human_decision`` span is kept there too, in
the session's trace, as the application's :class:`~convoy.observability.Tracing` would
make it. A session traced elsewhere only (OTLP, the console) gets no span from here: the
command line does not know where the application exports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from convoy import DecisionInput, Engine, HumanTask, Interceptor, Next

if TYPE_CHECKING:
    from convoy.observability import Tracing


class TraceWhereTraced(Interceptor):
    """Makes the span of a decision on a session whose spans the store keeps (see the
    module docstring), with a :class:`~convoy.observability.Tracing` to the store made
    the first time one is needed."""

    stage = "trace"

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._tracing: Tracing | None = None

    async def start(self, engine: Engine) -> None:
        self._engine = engine

    async def close(self) -> None:
        if self._tracing is not None:
            await self._tracing.close()  # the span is written before the store closes

    async def human_decision(self, input: DecisionInput,
                             next: Next[DecisionInput, HumanTask]) -> HumanTask:
        from convoy.observability._tracing import SPANS_NAMESPACE, TRACE_HEADER

        assert self._engine is not None
        if TRACE_HEADER not in input.headers or not await self._engine.store.kv_all(
                SPANS_NAMESPACE + input.session_id):
            return await next(input)
        if self._tracing is None:
            from convoy.observability import Tracing

            tracing = Tracing(["store"])
            await tracing.start(self._engine)
            self._tracing = tracing
        out: HumanTask = await self._tracing.human_decision(input, next)
        return out
