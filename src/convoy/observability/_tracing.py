"""Tracing as an interceptor: one OpenTelemetry trace per session.

Spans, parent first: the session's run (``invoke_workflow WORKFLOW``), each agent
invocation (``invoke_agent AGENT``), and in it each model call (``chat MODEL``), tool call
(``execute_tool TOOL``), handoff (``handoff A -> B``), ``ctx.step`` (``step NAME``) and
shared-state operation (``state.OP KIND``), and, with :attr:`Tracing.attempts` in the
chain, each retry attempt (``attempt N``) under its step. A person's decision on a human
task (``human_decision``) is a span of the session's trace too, made when the person
decides, under the session's first span (the session may be parked, or never resume).
A handoff's target agent links to the source agent's span and to the handoff's. The
trace id and the session's first span are kept in the session's headers
(``convoy.trace``), so a resumed session continues its trace: its new run is a child of
the first, and an agent whose steps it replays from the journal is marked
``convoy.replay``. Message content is not recorded unless ``capture_content``, and every
string that may carry personal data goes through a
:class:`~convoy.observability.Redactor` first.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from convoy._errors import ApprovalRequired, SessionTerminated, UserError
from convoy._numbers import is_number, is_whole
from convoy._trace_context import (
    TRACE_HEADER,
    decision_span_id,
    step_span_id,
    trace_id_of,
    trace_ids,
)
from convoy.interceptors._base import (
    AgentRunEnd,
    AgentRunInput,
    DecisionInput,
    EffectInput,
    HandoffInput,
    Interceptor,
    ModelCallInput,
    Next,
    SessionEnd,
    SessionInput,
    Stage,
    StateInput,
    ToolCallInput,
    ended_earlier,
)
from convoy.models._messages import ModelResponse
from convoy.observability._attempts import PerAttempt
from convoy.observability._genai_messages import agent_output, input_messages, output_messages
from convoy.observability._kinds import state_kind
from convoy.observability._redact import Redactor
from convoy.observability._scrub import bounded, scrub
from convoy.observability._spans import (
    BUDGET_EXHAUSTED,
    CURRENT,
    SCHEMA_URL,
    SPANS_NAMESPACE,
    UNTRACED,
    Attrs,
    Holds,
    Shape,
    SpanData,
    chunk_text,
    finish_reason,
    format_traceparent,
    holds_of,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    traceparent_sampled,
)
from convoy.observability._unhooked import UnhookedSteps
from convoy.privacy._withheld import WITHHELD
from convoy.resilience._classify import budget_refused, error_kind, error_kind_of

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from convoy.engine._engine import Engine
    from convoy.hitl._task import HumanTask
    from convoy.models._base import Model
    from convoy.observability._export import CountingExporter
    from convoy.observability._metrics import Metrics
    from convoy.stores._protocol import Store

#: The kv namespace of a session's spans in the store: ``trace:<session id>``.
_TEXT_LIMIT = 4096
_ERROR_LIMIT = 500

time_ns = time.time_ns


class Tracing(Interceptor):
    """Traces every session with OpenTelemetry (see the module docstring for the spans).

    Args:
        exporters: where ended spans go: ``"store"`` (the engine's store: ``convoy trace
            SESSION`` prints the waterfall), ``"otlp"`` (OTLP over HTTP, configured by the
            standard ``OTEL_EXPORTER_OTLP_*`` variables), ``"console"``, or any
            OpenTelemetry SDK ``SpanExporter`` (batched) or ``SpanProcessor`` (as is).
        capture_content: record messages, tool arguments and results (redacted) as
            ``gen_ai.input.messages``, ``gen_ai.output.messages``,
            ``gen_ai.tool.call.arguments`` and ``gen_ai.tool.call.result``.
        redact: the :class:`~convoy.observability.Redactor` every attribute that may carry
            personal data goes through (``True``: a default one; ``False``: none).
        service_name: the ``service.name`` resource attribute; by default
            ``$OTEL_SERVICE_NAME``, else a ``service.name`` in ``$OTEL_RESOURCE_ATTRIBUTES``,
            else ``"convoy"`` (``$OTEL_RESOURCE_ATTRIBUTES`` applies in every case).
        resource_attributes: more resource attributes.
        flush_every: the store gets ended spans in batches: every ``flush_every`` spans,
            every ``flush_interval`` seconds, and when the engine closes (a crash loses at
            most what was not written yet, as with any batching span processor). An
            engine with a master key (data subjects) writes a run's spans with the commit
            that records how the run ended instead, sealed like the session's other data
            (a run going on writes what it ended so far at those moments too).
        flush_interval: see ``flush_every``.
        sample_rate: the share of sessions traced (by trace id; a caller's
            ``traceparent`` decides by its sampled flag). The decision is kept in the
            session's ``convoy.trace`` header, so every run of a session decides alike. An
            untraced session costs a check per step, and its log records carry its
            tenant and session id only.
        live: record spans as the session runs (``True``), or derive them from the
            session's journal when they are read (``False``: ``convoy trace``; nothing
            is recorded per step, so tracing costs the run next to nothing). By default
            (``None``) spans are derived when the store is the only exporter and content
            is not captured, and live otherwise. Derived spans have what the journal
            has, and a retried step's attempts (:attr:`attempts` keeps them as they
            run): no state versions, no span per run of a resumed session (one session
            span), no replay marks and no parent for your own code's spans (see
            docs/how-to/observability.md); pass ``live=True`` for those.

    Put :attr:`attempts` in the chain too (``convoy.observability.observe`` does) for a
    span per retry attempt.
    """

    stage: Stage = "trace"

    def __init__(self, exporters: Sequence[str | SpanExporter | SpanProcessor] = ("store",),
                 *, capture_content: bool = False, redact: Redactor | bool = True,
                 service_name: str | None = None,
                 resource_attributes: Mapping[str, str] | None = None,
                 flush_every: int = 2048, flush_interval: float = 1.0,
                 sample_rate: float = 1.0, live: bool | None = None) -> None:
        if isinstance(exporters, str):
            exporters = (exporters,)
        if exporters is None:
            raise UserError("Tracing: exporters=None: give a list of exporters ('store', "
                            "'otlp', 'console', SDK exporters), or () for none")
        for e in exporters:
            if isinstance(e, str) and e not in ("store", "otlp", "console"):
                raise UserError(f"Tracing: unknown exporter {e!r}; use 'store', 'otlp', "
                                "'console' or an OpenTelemetry SpanExporter")
            if not isinstance(e, str) and not _is_exporter(e):
                raise UserError(f"Tracing: exporter {repr(e)[:60]} ({type(e).__name__}) is "
                                "not 'store', 'otlp', 'console', an OpenTelemetry "
                                "SpanExporter or SpanProcessor")
        if any(e != "store" for e in exporters):  # (spans that leave with a resource)
            from convoy.observability._otlp_env import otlp_problem, resource_problem

            problem = (otlp_problem() if "otlp" in exporters else None) or \
                resource_problem()
            if problem is not None:
                raise UserError(f"Tracing: {problem}")
        if not is_whole(flush_every) or flush_every < 1:
            raise UserError(f"Tracing: flush_every must be a whole number >= 1, got "
                            f"{flush_every!r}")
        if not is_number(flush_interval) or not 0 < flush_interval < math.inf:
            raise UserError(f"Tracing: flush_interval must be a number of seconds > 0, got "
                            f"{flush_interval!r}")
        if not is_number(sample_rate) or not 0.0 <= sample_rate <= 1.0:
            raise UserError(f"Tracing: sample_rate must be a number in [0, 1], got "
                            f"{sample_rate!r}")
        self.sample_rate = sample_rate
        self._threshold = int(sample_rate * (1 << 64))
        self.exporters = tuple(exporters)
        if live is False and (self.exporters != ("store",) or capture_content):
            raise UserError("Tracing(live=False): spans derived from the journal are read "
                            "from the store only, without content: use exporters=['store'] "
                            "and capture_content=False, or live=True")
        #: Record spans as sessions run (``True``), derive them when read (``False``), or
        #: decide by the exporters (``None``; see :attr:`derived`).
        self.live = live
        self.to_store = "store" in self.exporters
        self.capture_content = capture_content
        self.redactor: Redactor | None = (Redactor() if redact is True else
                                          redact if isinstance(redact, Redactor) else None)
        self.service_name = service_name
        self.resource_attributes = dict(resource_attributes or {})
        self.flush_every = flush_every
        self.flush_interval = flush_interval
        self.store: Store | None = None
        self._holds: Holds | None = None  # (see error_text)
        # Chunks of ended spans the store has not got yet: (session id, key, JSON text).
        self._pending: list[tuple[str, str, str]] = []
        self._pending_spans = 0
        # Each run's spans written as it ends, in its session's name (sealed by the store
        # as its data), not batched with other runs': set when the engine seals.
        self._per_run = False
        # Writes of spans not committed yet (:meth:`flush` waits for them).
        self._writes: list[asyncio.Future[None]] = []
        # Runs going on now, whose ended spans the flusher takes too.
        self._runs: set[_Run] = set()
        self._flusher: asyncio.Task[None] | None = None
        self.processors: list[SpanProcessor] = []
        self._counted: list[CountingExporter] = []
        #: An exporter's flush outlasted its bound at close (:meth:`shutdown` waits no more).
        self._stuck = False
        self._resource: Resource | None = None
        self._scope: InstrumentationScope | None = None
        self._models: dict[Model, tuple[str, str, str]] = {}
        # What the spans of a kind share with others of its agent, model or tool.
        self._shapes: dict[tuple[Any, ...], Shape] = {}
        self._chats: dict[tuple[Model, str], Shape] = {}
        self._agents: dict[str, Shape] = {}
        #: The interceptor that records retry attempts (stage ``attempt``).
        self.attempts = AttemptSpans(self)
        #: Metrics these hooks record too (:func:`~convoy.observability.observe` sets it
        #: when given both: one hook per step for both, the :class:`Metrics` itself then
        #: not in the chain).
        self.metrics: Metrics | None = None
        if any(not isinstance(e, str) or e != "store" for e in self.exporters):
            self._sdk_processors()  # fail now if the SDK is missing, not at engine start
        self._keep = self.to_store or bool(self.processors)  # ended spans go somewhere

    @property
    def derived(self) -> bool:
        """Whether spans are derived from the journal when read (``live``): nothing is
        recorded per step, so the chains skip every step hook (:attr:`unhooked`)."""
        return self.live is False or (self.live is None and self.exporters == ("store",)
                                      and not self.capture_content)

    @property
    def unhooked(self) -> frozenset[str]:  # type: ignore[override]
        return _UNHOOKED if self.derived else frozenset()

    # -- lifecycle --------------------------------------------------------------------------

    def _sdk_processors(self) -> None:
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import SpanProcessor
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        except ImportError:
            raise UserError("exporting spans needs the OpenTelemetry SDK: "
                            "pip install 'convoy[otel]'") from None
        import convoy

        if self.processors:
            return
        from convoy.observability._export import (
            CountingExporter,
            console_exporter,
            otlp_where,
        )

        procs: list[SpanProcessor] = []
        for e in self.exporters:
            if e == "store":
                continue
            if e == "otlp":
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
                otlp = OTLPSpanExporter()
                counted = CountingExporter(otlp, otlp_where(otlp))
            elif e == "console":
                counted = CountingExporter(console_exporter(), "the console")
            elif isinstance(e, ConsoleSpanExporter):  # (the command line's, to stderr)
                counted = CountingExporter(e, "the console")
            elif isinstance(e, SpanProcessor):
                procs.append(e)
                continue
            else:
                counted = CountingExporter(e, type(e).__name__)  # type: ignore[arg-type]
            self._counted.append(counted)
            procs.append(BatchSpanProcessor(counted))
        given = {**self.resource_attributes}
        if self.service_name is not None:
            given["service.name"] = self.service_name
        resource = Resource.create(given)  # (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES)
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = Resource.create({**given, "service.name": "convoy"})
        self._resource = resource
        self._scope = InstrumentationScope("convoy", convoy.__version__, SCHEMA_URL)
        self.processors = procs
        atexit.register(self.shutdown)

    async def start(self, engine: Engine) -> None:
        tracings = sum(isinstance(ic, Tracing) for ic in engine.runtime.interceptors)
        if tracings > 1:  # (each would record every span, nested in the other's)
            raise UserError(
                f"the engine's interceptors hold {tracings} Tracing interceptors (one given "
                "twice, two, or one beside observe(..., logs=True), which adds one when it "
                "is given none): every span would be recorded twice; give the engine one, "
                "with every exporter (Tracing(exporters=['store', 'otlp'])), and pass it to "
                "observe(tracing, ...)")
        self._holds = holds_of(engine.store)
        if self.metrics is not None:
            if any(ic is self.metrics for ic in engine.runtime.interceptors):
                raise UserError("these metrics are recorded by the tracing interceptor "
                                "(observe(tracing, metrics) wires them in): do not add them "
                                "to the engine's interceptors again, every step would count "
                                "twice")
            await self.metrics.start(engine)
        if self.to_store:
            self.store = engine.store
            self._per_run = engine.keys is not None
            self._flusher = asyncio.get_running_loop().create_task(self._flush_now_and_then())

    async def close(self) -> None:
        """Write what the store has not got yet and flush every exporter (the engine may
        open again: they stay usable)."""
        if self._flusher is not None:
            self._flusher.cancel()
            with suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self.flush()
        self.store = None
        # Off the event loop, and bounded: the SDK exports on the calling thread, and a
        # collector that trickles its answer holds an export past any read's timeout
        # (what it has not taken by then counts as lost: :attr:`spans_lost`).
        bound = self._export_bound()
        for p in self.processors:
            if not await _off_the_loop(p.force_flush, bound):
                self._stuck = True  # (its exit's shutdown does not wait for it again)

    async def _flush_now_and_then(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            self._write_pending()

    async def flush(self) -> None:
        """Write the ended spans the store has not got yet, and wait for the commit."""
        self._write_pending()
        writes, self._writes = self._writes, []
        await asyncio.gather(*writes)

    def _write_pending(self) -> None:
        for run in list(self._runs):  # runs going on: what they ended so far
            if run.spans:
                self._batch(run)
        pending, self._pending = self._pending, []
        self._pending_spans = 0
        if pending and self.store is not None:
            # One write for all (one commit), not one per run.
            self._write([(SPANS_NAMESPACE + sid, key, text) for sid, key, text in pending],
                        wait=True)

    def _write(self, items: list[tuple[str, str, str]], *, wait: bool) -> None:
        assert self.store is not None
        writes = self._writes
        if len(writes) >= 64:  # forget the committed ones
            writes[:] = [f for f in writes if not f.done()]
        writes.append(self.store.kv_put_many(items, wait=wait))

    def _batch(self, run: _Run) -> None:
        """Hand the spans ``run`` ended so far to the exporters: one chunk for the store
        (made now, so the spans waiting for the next write are one string per run, not
        objects the garbage collector walks again and again), keyed so chunks sort by
        time. An engine that seals writes it now, nobody waiting: it joins the store's
        next commit (the one that records how the run ended, for a run that ended), and
        the store seals it as the session's data while the run is this engine's."""
        spans, run.spans = run.spans, []
        if self.processors:
            assert self._resource is not None and self._scope is not None
            for span in spans:
                rs = span.to_readable(self._resource, self._scope)
                for p in self.processors:
                    p.on_end(rs)
        if self.to_store:
            first = spans[0]
            chunk = (run.session_id, f"{first.start:020d}-{first.span_id}", chunk_text(spans))
            if self._per_run and self.store is not None:
                self._write([(SPANS_NAMESPACE + chunk[0], chunk[1], chunk[2])], wait=False)
                return
            self._pending.append(chunk)
            self._pending_spans += len(spans)
            if self._pending_spans >= self.flush_every:
                self._write_pending()  # not waited for: the store commits them in order

    def shutdown(self) -> None:
        """Flush and shut every exporter down (at exit), each within its exporter's
        timeout: an export a collector holds up is left behind."""
        procs, self.processors = self.processors, []
        self._keep = self.to_store
        # (an export a collector held past the bound at close holds its processor still)
        bound = 0.1 if self._stuck else self._export_bound()
        for p in procs:
            thread = threading.Thread(target=p.shutdown, daemon=True,
                                      name="convoy-span-shutdown")
            thread.start()
            thread.join(bound)

    def _export_bound(self) -> float:
        """How long a flush of every exporter may take: the longest export timeout, and a
        second."""
        return max((c.timeout for c in self._counted), default=10.0) + 1.0

    @property
    def spans_lost(self) -> list[tuple[str, int]]:
        """``(where, how many)`` of the spans an exporter failed to deliver so far (a
        collector down, refusing or too slow: the SDK drops such a batch and only logs
        it); empty when every export succeeded. Spans given to a ``SpanProcessor`` and the
        store's are not counted here."""
        return [(c.where, c.lost + c.in_flight) for c in self._counted
                if c.lost + c.in_flight]

    # -- helpers ----------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        r = self.redactor
        return r.redact(text) if r is not None else text

    def text(self, value: Any, limit: int = _TEXT_LIMIT) -> str:
        """Content as an attribute: redacted (each string before it is escaped, see
        :mod:`~convoy.observability._scrub`), as JSON text, bounded."""
        r = self.redactor
        if r is not None:
            value = scrub(value, r.redact, limit)
        s = value if isinstance(value, str) else json.dumps(value, default=str,
                                                             ensure_ascii=False)
        return s[:limit]

    def error_text(self, text: str, run: _Run | None = None) -> str:
        """An error's message as an attribute: redacted, then bounded; withheld in a run of
        a data subject's session, or of a session that read a subject's data (shared
        state: :data:`WITHHELD`)."""
        if run is not None and (run.subject or (
                self._holds is not None and self._holds(run.session_id))):
            return WITHHELD
        r = self.redactor
        return bounded(text, r.redact, _ERROR_LIMIT) if r is not None else \
            text[:_ERROR_LIMIT]

    def ended(self, span: SpanData) -> None:
        span.end = time_ns()
        run = span.run
        if self._keep:
            run.spans.append(span)
            if run.closed:  # (a span that ends after its run did: not seen in practice)
                self._batch(run)

    def _close(self, run: _Run) -> None:
        """``run``'s session span has ended: its spans go to the exporters."""
        run.closed = True
        self._runs.discard(run)
        if run.spans:
            self._batch(run)

    def failed(self, span: SpanData, exc: BaseException) -> None:
        """Mark ``span`` as ended by ``exc``: an error (with its kind), or an interruption
        (a parked or cancelled run, a lost lease); a tool call that waits for a person's
        approval is neither (``convoy.approval.required``)."""
        if isinstance(exc, ApprovalRequired):
            span.attrs["convoy.approval.required"] = True
        elif isinstance(exc, Exception | SessionTerminated):
            kind = error_kind(exc)
            message = self.error_text(str(exc), span.run)
            span.status = "error"
            span.attrs["error.type"] = kind
            if budget_refused(exc):  # (retryable, not retried)
                span.attrs[BUDGET_EXHAUSTED] = True
            span.note(f"{kind}: {message}", event=("exception", time_ns(), {
                "exception.type": type(exc).__name__, "exception.message": message}))
        else:
            span.attrs["convoy.interrupted"] = type(exc).__name__

    def _sampled(self, trace_id: str) -> bool:
        """Whether a session of this trace is traced (``sample_rate``): by the trace id's
        low 64 bits."""
        return self.sample_rate >= 1.0 or int(trace_id[16:], 16) < self._threshold

    def shape(self, key: tuple[Any, ...], make: Callable[[], Shape]) -> Shape:
        """The shape ``key`` names, made by ``make()`` the first time."""
        found = self._shapes.get(key)
        if found is None:
            if len(self._shapes) > 10_000:  # names that churn: stay bounded
                self._shapes.clear()
                self._agents.clear()
                self._chats.clear()
            found = self._shapes[key] = make()
        return found

    def _agent_shape(self, name: str) -> Shape:
        shape = self._agents[name] = self.shape(("agent", name), lambda: Shape(
            f"invoke_agent {name}", {"gen_ai.operation.name": "invoke_agent",
                                     "gen_ai.agent.name": name}))
        return shape

    def _chat_shape(self, model: Model, agent: str) -> Shape:
        """The shape of ``agent``'s calls to ``model``."""
        span_name, provider, name = self.model_names(model)
        shape = self._chats[(model, agent)] = self.shape(("chat", model, agent), lambda: Shape(
            span_name, {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
                        "gen_ai.request.model": name, "gen_ai.agent.name": agent}, "client"))
        return shape

    def model_names(self, model: Model) -> tuple[str, str, str]:
        """``(span name, provider, model)`` for a model instance."""
        names = self._models.get(model)
        if names is None:
            provider, _, name = model.name.partition(":")
            if not name:
                provider, name = "convoy", model.name
            names = self._models[model] = (f"chat {name}", provider, name)
        return names

    # -- the session ------------------------------------------------------------------------

    def session_run(self, input: SessionInput,
                    next: Next[SessionInput, SessionEnd]) -> Any:
        # (Not a coroutine itself: a session it does not trace costs it no frame.)
        info = input.info
        if info.replay:  # ``convoy replay`` writes nothing, spans included
            return next(input)
        headers = input.headers
        kept = headers.get(TRACE_HEADER)
        root = parse_traceparent(kept)
        parent_id: str | None
        if root is not None:  # a resumed session: its trace goes on under its first span
            trace_id, parent_id = root
            traced = traceparent_sampled(kept)  # as its first run decided
        else:
            value = headers.get("traceparent")
            caller = parse_traceparent(value)
            if caller is not None:
                trace_id, parent_id = caller
                traced = traceparent_sampled(value)  # the caller's sampled flag
            else:
                # A session whose runs so far were not traced live (resumed) goes on in the
                # trace its steps were derived in, the one ``convoy trace`` and its audit
                # entries name: its id does not change. (Under no span of those runs:
                # they were never exported; this run's is the session's first kept span.)
                trace_id = trace_ids(headers, info.session_id)[0] if info.resumed else \
                    new_trace_id()
                parent_id = None
                traced = self._sampled(trace_id)
            if not traced:  # kept, so the session's later runs decide alike
                headers[TRACE_HEADER] = format_traceparent(trace_id, new_span_id(), False)
        if not traced:
            return self._untraced(input, next)
        return self._session_run(input, next, trace_id, parent_id, root is not None)

    async def _untraced(self, input: SessionInput,
                        next: Next[SessionInput, SessionEnd]) -> SessionEnd:
        """A run of a session sampling left out: no spans, but its log records still carry
        its tenant and id."""
        token = UNTRACED.set((input.info.tenant, input.info.session_id))
        try:
            m = self.metrics
            end: SessionEnd = await (next(input) if m is None else m.session_run(input, next))
            return end
        finally:
            UNTRACED.reset(token)

    async def _session_run(self, input: SessionInput, next: Next[SessionInput, SessionEnd],
                           trace_id: str, parent_id: str | None, resumed: bool) -> SessionEnd:
        info = input.info
        span_id = new_span_id()
        if not resumed:
            input.headers[TRACE_HEADER] = format_traceparent(trace_id, span_id)
        run = _Run(self, info.session_id, info.tenant)
        run.subject = info.subject is not None
        sid = run.root_sid
        wf, version, tenant = info.workflow, info.version, info.tenant
        shape = self.shape(("session", wf, version, tenant), lambda: Shape(
            f"invoke_workflow {self.redact(wf)}", {
                "gen_ai.operation.name": "invoke_workflow",
                "gen_ai.workflow.name": self.redact(wf),
                "convoy.workflow.version": version, "convoy.tenant": self.redact(tenant)}))
        span = SpanData.root(run, shape, trace_id, span_id, parent_id, {
            "gen_ai.conversation.id": sid, "convoy.session.id": sid,
            "convoy.session.resumed": resumed})
        self._runs.add(run)
        m = self.metrics
        if m is not None:
            m._session_began(wf)
        input.journal_taps.append(UnhookedSteps(self, span, input.journal))
        token = CURRENT.set(span)
        try:
            end = await next(input)
        except BaseException as e:
            self.failed(span, e)
            self.ended(span)
            self._close(run)
            if m is not None:
                m._session_ended(info, None, 0)
            raise
        finally:
            CURRENT.reset(token)
        span.attrs["convoy.session.status"] = end.status
        if end.status == "completed":
            span.status = "ok"
        elif end.status not in ("waiting", "interrupted"):
            kind = error_kind_of(end.error) or end.status
            span.status = "error"
            span.attrs["error.type"] = kind
            if budget_refused(end.error):  # (as ``failed`` marks it)
                span.attrs[BUDGET_EXHAUSTED] = True
            error = end.error or {}
            text = self.error_text(str(error.get("message", "")), run)
            span.note(f"{end.status}: {text}", event=("exception", time_ns(), {
                "exception.type": str(error.get("type") or kind), "exception.message": text}))
        self.ended(span)
        self._close(run)
        if m is not None:
            m._session_ended(info, end, span.end - span.start)
        return end

    # -- agents -----------------------------------------------------------------------------

    # Every hook below hands a step of a session it does not trace straight on (no frame
    # of its own; to the metrics' hook if any), and runs a traced one in a coroutine that
    # records its span and metrics.

    def agent_run(self, input: AgentRunInput,
                  next: Next[AgentRunInput, AgentRunEnd]) -> Any:
        parent = CURRENT.get()
        if parent is None:  # (its metrics, if any, count it by their run tap)
            return next(input)
        return self._agent_run(parent, input, next)

    async def _agent_run(self, parent: SpanData, input: AgentRunInput,
                         next: Next[AgentRunInput, AgentRunEnd]) -> AgentRunEnd:
        name = input.agent.name
        shape = self._agents.get(name)
        if shape is None:
            shape = self._agent_shape(name)
        key = input.key
        attrs: Attrs = {"convoy.step.key": key, "convoy.agent.depth": input.depth}
        if input.replaying:
            attrs["convoy.replay"] = True
        if self.capture_content:
            attrs["gen_ai.input.messages"] = self.text(input_messages(input.messages))
        run = parent.run
        span = SpanData(parent, shape, attrs, name, key)
        if input.handoff_from is not None:
            self._handed_over(span, input)
        token = CURRENT.set(span)
        try:
            end = await next(input)
        except BaseException as e:
            CURRENT.reset(token)
            self.failed(span, e)
            self.ended(span)
            if self.metrics is not None and not (
                    input.replaying and ended_earlier(input.context, input.key)):
                self.metrics._agent_failed(input.agent.name, e, span.end - span.start)
            raise
        CURRENT.reset(token)
        if end.handoff is not None:
            attrs["convoy.handoff.to"] = end.handoff.name
            hkey = end.handoff_key or ""
            run.handoffs[hkey] = (span.span_id, run.handoff_spans.pop(hkey, ""))
        elif self.capture_content:
            attrs["gen_ai.output.messages"] = self.text(agent_output(end.output))
        span.status = "ok"
        self.ended(span)
        if self.metrics is not None and not (
                input.replaying and ended_earlier(input.context, input.key)):
            self.metrics._agent_ok(input.agent.name, end.handoff is not None,
                                   span.end - span.start)
        return end

    def _handed_over(self, span: SpanData, input: AgentRunInput) -> None:
        """Link the span of an agent a handoff started to its source's and the handoff's."""
        assert input.handoff_from is not None
        attrs = span.attrs
        attrs["convoy.handoff.from"] = input.handoff_from.name
        came = span.run.handoffs.pop(input.handoff_key or "", None)
        if came is None:
            return
        source_span, handoff_span = came
        span.note(link=(source_span, {"convoy.link": "handoff_source"}))
        # Mirrored as attributes: not every backend keeps span links.
        attrs["convoy.handoff.source_span_id"] = source_span
        if handoff_span:
            span.note(link=(handoff_span, {"convoy.link": "handoff"}))
            attrs["convoy.handoff.span_id"] = handoff_span

    # -- steps ------------------------------------------------------------------------------

    def model_call(self, input: ModelCallInput,
                   next: Next[ModelCallInput, ModelResponse]) -> Any:
        parent = CURRENT.get()
        if parent is None:
            m = self.metrics
            return next(input) if m is None else m.model_call(input, next)
        return self._model_call(parent, input, next)

    async def _model_call(self, parent: SpanData, input: ModelCallInput,
                          next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        agent = input.agent.name
        requested = input.model  # (a fallback or a router changes ``input.model``)
        shape = self._chats.get((requested, agent))
        if shape is None:
            shape = self._chat_shape(requested, agent)
        key = input.key
        attrs: Attrs = {"convoy.step.key": key, "convoy.agent.config": input.agent.config_id}
        if self.capture_content:
            attrs["gen_ai.input.messages"] = self.text(input_messages(input.request.messages))
        span = SpanData(parent, shape, attrs, agent, key)
        token = CURRENT.set(span)
        try:
            resp = await next(input)
        except BaseException as e:
            CURRENT.reset(token)
            self.failed(span, e)
            if span.attempts > 1:
                attrs["convoy.attempts"] = span.attempts
            self.ended(span)
            if self.metrics is not None:
                self.metrics._step_failed("model", agent, input.model.name, input, e,
                                          span.end - span.start)
            raise
        CURRENT.reset(token)
        usage = resp.usage
        if resp.model and resp.model != requested.name:
            attrs["gen_ai.response.model"] = resp.model
        attrs["gen_ai.usage.input_tokens"] = usage.input_tokens
        attrs["gen_ai.usage.output_tokens"] = usage.output_tokens
        if resp.finish_reason:
            attrs["gen_ai.response.finish_reasons"] = (finish_reason(resp.finish_reason),)
        if resp.cost:
            attrs["convoy.cost_usd"] = resp.cost
        if resp.cached:
            attrs["convoy.cached"] = True
        if span.attempts > 1:
            attrs["convoy.attempts"] = span.attempts
        if self.capture_content:
            attrs["gen_ai.output.messages"] = self.text(output_messages(resp))
        span.status = "ok"
        self.ended(span)
        if self.metrics is not None:
            self.metrics._model_ok(input, resp, span.end - span.start)
        return resp

    def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        parent = CURRENT.get()
        if parent is None:
            m = self.metrics
            return next(input) if m is None else m.tool_call(input, next)
        tool = input.tool.name
        agent = input.agent.name
        writes = input.tool.writes
        shape = self.shape(("tool", tool, agent, writes), lambda: Shape(
            f"execute_tool {tool}", {
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool,
                "gen_ai.tool.type": "function", "gen_ai.agent.name": agent,
                "convoy.tool.writes": writes}))
        attrs: Attrs = {"convoy.step.key": input.key,
                        "convoy.agent.config": input.agent.config_id}
        if self.capture_content:
            attrs["gen_ai.tool.call.arguments"] = self.text(input.args.model_dump(mode="json"))
        span = SpanData(parent, shape, attrs, agent, input.key)
        return self._user_code(span, next, input, ("tool", agent, tool),
                               "gen_ai.tool.call.result")

    def handoff(self, input: HandoffInput, next: Next[HandoffInput, Any]) -> Any:
        parent = CURRENT.get()
        if parent is None:
            m = self.metrics
            return next(input) if m is None else m.handoff(input, next)
        return self._handoff(parent, input, next)

    async def _handoff(self, parent: SpanData, input: HandoffInput,
                       next: Next[HandoffInput, Any]) -> Any:
        source, target = input.source.name, input.target.name
        shape = self.shape(("handoff", source, target), lambda: Shape(
            f"handoff {source} -> {target}", {"gen_ai.agent.name": source,
                                             "convoy.handoff.to": target}))
        attrs: Attrs = {"convoy.step.key": input.key,
                        "convoy.agent.config": input.source.config_id}
        if self.capture_content:
            attrs["convoy.handoff.payload"] = self.text(_plain(input.payload))
        span = SpanData(parent, shape, attrs, source, input.key)
        m = self.metrics
        try:
            out = await next(input)
        except BaseException as e:
            self.failed(span, e)
            self.ended(span)
            if m is not None:
                m._step_failed("handoff", source, target, input, e, span.end - span.start)
            raise
        parent.run.handoff_spans[input.key] = span.span_id
        span.status = "ok"
        self.ended(span)
        if m is not None:
            m._step_ok("handoff", source, target, input, span.end - span.start)
        return out

    def effect(self, input: EffectInput, next: Next[EffectInput, Any]) -> Any:
        parent = CURRENT.get()
        if parent is None:
            m = self.metrics
            return next(input) if m is None else m.effect(input, next)
        name, idempotent = input.name, input.idempotent
        shape = self.shape(("step", name, idempotent), lambda: Shape(
            "step " + self.redact(name), {"convoy.step.name": self.redact(name),
                                          "convoy.step.idempotent": idempotent}))
        span = SpanData(parent, shape, {"convoy.step.key": input.key}, parent.agent,
                        input.key)
        parent.run.stepped.add(input.key)
        return self._user_code(span, next, input, ("effect", "", name))

    def state_op(self, input: StateInput, next: Next[StateInput, Any]) -> Any:
        parent = CURRENT.get()
        if parent is None:
            m = self.metrics
            return next(input) if m is None else m.state_op(input, next)
        return self._state_op(parent, input, next)

    async def _state_op(self, parent: SpanData, input: StateInput,
                        next: Next[StateInput, Any]) -> Any:
        op, kind = input.op, input.namespace.split(":", 1)[0]
        shape = self.shape(("state", op, kind), lambda: Shape(
            f"state.{op} {self.redact(kind)}", {"convoy.state.op": op}))
        attrs: Attrs = {"convoy.state.namespace": self.redact(input.namespace),
                        "convoy.step.key": input.key}
        if input.state_key:
            attrs["convoy.state.key"] = self.redact(input.state_key)
        if input.expected_version is not None:
            attrs["convoy.state.expected_version"] = input.expected_version
        span = SpanData(parent, shape, attrs, input.agent, input.key)
        m = self.metrics
        token = CURRENT.set(span)
        try:
            out = await next(input)
        except BaseException as e:
            CURRENT.reset(token)
            self.failed(span, e)
            self.ended(span)
            if m is not None:
                m._step_failed(state_kind(input.namespace), input.agent or "", op, input, e,
                               span.end - span.start)
            raise
        CURRENT.reset(token)
        version = getattr(out, "version", None)
        if isinstance(version, int):
            attrs["convoy.state.version"] = version
        span.status = "ok"
        self.ended(span)
        if m is not None:
            m._step_ok(state_kind(input.namespace), input.agent or "", op, input,
                       span.end - span.start)
        return out

    # -- a person's decision ----------------------------------------------------------------

    def human_decision(self, input: DecisionInput,
                       next: Next[DecisionInput, HumanTask]) -> Any:
        kept = input.headers.get(TRACE_HEADER)
        root = parse_traceparent(kept)
        if root is None and self.derived:  # (the trace of its journal, derived when read)
            root = trace_ids(input.headers, input.session_id)[:2]
        elif root is None or not traceparent_sampled(kept):  # the session is not traced
            m = self.metrics
            return next(input) if m is None else m.human_decision(input, next)
        return self._human_decision(input, next, *root)

    async def _human_decision(self, input: DecisionInput,
                              next: Next[DecisionInput, HumanTask], trace_id: str,
                              parent_id: str) -> HumanTask:
        kind = input.kind
        shape = self.shape(("human_decision", kind), lambda: Shape(
            "human_decision", {"convoy.task.kind": kind}))
        run = _Run(self, input.session_id, input.tenant)  # a run of its own: one span
        attrs: Attrs = {"convoy.task.id": self.redact(input.task_id),
                        "convoy.decision.action": input.action,
                        "gen_ai.conversation.id": run.root_sid,
                        "convoy.session.id": run.root_sid}
        if input.step_key is not None:
            attrs["convoy.step.key"] = input.step_key
        if self.capture_content:
            attrs["convoy.decision.by"] = self.text(input.by)
            attrs["convoy.decision.value"] = self.text(input.decision.get("value"))
        span = SpanData.root(run, shape, trace_id,
                             decision_span_id(trace_id, input.task_id, input.at), parent_id,
                             attrs)
        m = self.metrics
        try:
            written = await next(input)
        except BaseException as e:
            self.failed(span, e)
            self.ended(span)
            self._close(run)
            raise
        span.status = "ok"
        self.ended(span)
        self._close(run)
        if m is not None:
            m._decided(input)
        return written

    async def _user_code(self, span: SpanData, next: Next[Any, Any], input: Any,
                         series: tuple[str, str, str], result: str | None = None) -> Any:
        """Run a tool or ``ctx.step`` in ``span``, which OpenTelemetry sees as the current
        span too, so spans the user's code makes nest under it; with content captured,
        the value it returns is the attribute ``result``. ``series``: its metrics' kind,
        agent and target."""
        m = self.metrics
        token = CURRENT.set(span)
        otel = _attach(span)
        try:
            out = await next(input)
        except BaseException as e:
            self.failed(span, e)
            self.ended(span)
            if m is not None:
                m._step_failed(*series, input, e, span.end - span.start)
            raise
        finally:
            _detach(otel)
            CURRENT.reset(token)
        if result is not None and self.capture_content:
            span.attrs[result] = self.text(_plain(out))
        span.status = "ok"
        self.ended(span)
        if m is not None:
            m._step_ok(*series, input, span.end - span.start)
        return out


#: The hooks spans derived when read do without (every one but a person's decision's: a
#: session's trace ids are derived from its headers and id, :func:`trace_ids`).
_UNHOOKED = frozenset({"session_run", "agent_run", "model_call", "tool_call", "handoff",
                       "effect", "state_op"})


class AttemptSpans(PerAttempt):
    """A span per retry attempt, under its step's span (stage ``attempt``, inside
    ``retry``): every attempt that failed, and every attempt after the first. A call that
    succeeds at once has none (its step's span says it all), and so has every call of an
    engine where nothing retries (no interceptor at the ``retry``, ``fallback`` or
    ``custom`` stage hooks model or tool calls): a step is then one attempt, and the
    chains skip these hooks.

    With spans derived when read (:attr:`Tracing.derived`), a retried step's attempts
    are the only spans recorded as the session runs: kept in the store (one write per
    retried step) under the id its step's derived span will have
    (:func:`~convoy._trace_context.step_span_id`)."""

    def __init__(self, tracing: Tracing) -> None:
        super().__init__()
        self.tracing = tracing
        # Attempts so far of the derived steps being retried, by input object (kept with
        # it, so its id is not reused meanwhile): a retry passes the same input again.
        self._tries: dict[int, tuple[Any, SpanData, int]] = {}

    def _span(self, step: SpanData, n: int, start: int, target: str) -> SpanData:
        shape = self.tracing.shape(("attempt", n), lambda: Shape(
            f"attempt {n}", {"convoy.attempt": n}))
        span = SpanData(step, shape, {"convoy.attempt.target": target,
                                      "convoy.step.key": step.key}, step.agent, step.key)
        span.start = start
        return span

    def _failed(self, step: SpanData, n: int, start: int, target: str,
                exc: BaseException) -> None:
        span = self._span(step, n, start, target)
        self.tracing.failed(span, exc)
        self.tracing.ended(span)

    def _retried(self, step: SpanData, n: int, start: int, target: str) -> None:
        span = self._span(step, n, start, target)
        span.status = "ok"
        self.tracing.ended(span)

    def model_call(self, input: ModelCallInput,
                   next: Next[ModelCallInput, ModelResponse]) -> Any:
        step = CURRENT.get()
        if step is None:
            if self.tracing.derived:
                return self._derived("model", input.model.name, next, input)
            m = self.tracing.metrics
            return next(input) if m is None else m.attempts.model_call(input, next)
        return self._attempt(step, "model", input.agent.name, input.model.name, next, input)

    def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        step = CURRENT.get()
        if step is None:
            if self.tracing.derived:
                return self._derived("tool", input.tool.name, next, input)
            m = self.tracing.metrics
            return next(input) if m is None else m.attempts.tool_call(input, next)
        return self._attempt(step, "tool", input.agent.name, input.tool.name, next, input)

    async def _attempt(self, step: SpanData, kind: str, agent: str, target: str,
                       next: Next[Any, Any], input: Any) -> Any:
        n = step.attempts = step.attempts + 1
        m = self.tracing.metrics
        before = 0 if m is None else m.attempts._began(kind, agent, target, input)
        start = time_ns()
        try:
            out = await next(input)
        except BaseException as e:
            self._failed(step, n, start, target, e)
            if m is not None and isinstance(e, Exception):
                m.attempts._failed(kind, agent, target, input, before, e)
            raise
        if n > 1:
            self._retried(step, n, start, target)
        return out

    async def _derived(self, kind: str, target: str, next: Next[Any, Any],
                       input: ModelCallInput | ToolCallInput) -> Any:
        """An attempt of a step whose span is derived when read: kept if it failed or
        came after one that did, each in a run of its own (written when it ends)."""
        tries = self._tries
        held = tries.get(id(input))
        step, n = (held[1], held[2] + 1) if held is not None and held[0] is input else \
            (None, 1)
        start = time_ns()
        try:
            out = await next(input)
        except BaseException as e:
            if not isinstance(e, Exception):  # (a parked or cancelled run: not an attempt)
                tries.pop(id(input), None)
                raise
            if step is None:
                step = self._step(kind, input)
            if len(tries) >= _MAX_TRIES:  # inputs of calls that never came back
                tries.clear()
            tries[id(input)] = (input, step, n)
            self._failed(step, n, start, target, e)
            self._kept(step)
            raise
        if step is not None:
            tries.pop(id(input), None)
            self._retried(step, n, start, target)
            self._kept(step)
        return out

    def _step(self, kind: str, input: ModelCallInput | ToolCallInput) -> SpanData:
        """A stand-in for the derived span of ``input``'s step (never ended nor kept): the
        parent of its attempts' spans."""
        s = input.session
        tracing = self.tracing
        trace_id = trace_id_of(s.headers, s.id)
        run = _Run(tracing, s.id, s.tenant)
        run.subject = s.subject is not None
        shape = tracing.shape(("derived step", kind), lambda: Shape(kind, {}))
        step = SpanData.root(run, shape, trace_id, step_span_id(trace_id, input.key), None, {})
        step.agent, step.key = input.agent.name, input.key
        return step

    def _kept(self, step: SpanData) -> None:
        run = step.run
        if run.spans:
            self.tracing._batch(run)


#: Derived steps being retried, at most: a step whose last attempt failed stays held (with
#: its input) until this many are, then all are forgotten (an attempt of one still being
#: retried then counts from 1 again).
_MAX_TRIES = 1_000


class _Run:
    """One traced run of a session: its ended spans not exported yet, and the handoffs
    whose target has not started yet."""

    __slots__ = ("closed", "handoff_spans", "handoffs", "root_sid", "session_id", "spans",
                 "stepped", "subject", "tenant")

    def __init__(self, tracing: Tracing, session_id: str, tenant: str) -> None:
        self.spans: list[SpanData] = []  # ended, not handed to the exporters yet
        self.closed = False
        self.session_id = session_id
        self.tenant = tenant
        self.root_sid = tracing.redact(session_id)
        self.handoffs: dict[str, tuple[str, str]] = {}  # handoff key -> (agent, handoff span)
        self.handoff_spans: dict[str, str] = {}
        self.stepped: set[str] = set()  # keys of the ctx.step effects with a span
        self.subject = False  # a data subject's session: error messages are withheld


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if callable(dump) else value


try:  # user code's own OpenTelemetry spans nest under Convoy's tool and step spans
    from opentelemetry import context as _otel_context
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context
    _FLAGS = TraceFlags(TraceFlags.SAMPLED)
except ImportError:  # pragma: no cover - the API comes with the SDK
    _otel_context = None  # type: ignore[assignment]


def _attach(span: SpanData) -> object | None:
    if _otel_context is None:
        return None
    ctx = SpanContext(int(span.trace_id, 16), int(span.span_id, 16), is_remote=False,
                      trace_flags=_FLAGS)
    return _otel_context.attach(set_span_in_context(NonRecordingSpan(ctx)))


def _detach(token: object | None) -> None:
    if token is not None:
        _otel_context.detach(token)  # type: ignore[arg-type]


async def _off_the_loop(fn: Callable[[], object], seconds: float) -> bool:
    """``fn()`` in a daemon thread (one left behind does not hold the process at its
    exit), waited for ``seconds`` at most: whether it returned in time."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def finished() -> None:
        if not done.done():
            done.set_result(None)

    def run() -> None:
        try:
            fn()
        except Exception:  # (an exporter's failure: counted by it, and logged by the SDK)
            pass
        finally:
            with suppress(RuntimeError):  # (the loop closed since: nobody waits)
                loop.call_soon_threadsafe(finished)

    threading.Thread(target=run, daemon=True, name="convoy-span-flush").start()
    try:
        await asyncio.wait_for(done, seconds)
    except TimeoutError:
        return False
    return True


__all__ = ["SPANS_NAMESPACE", "TRACE_HEADER", "AttemptSpans", "Tracing"]


def _is_exporter(e: object) -> bool:
    """Whether ``e`` is an OpenTelemetry ``SpanExporter`` or ``SpanProcessor`` object (not
    its class)."""
    try:
        from opentelemetry.sdk.trace import SpanProcessor
        from opentelemetry.sdk.trace.export import SpanExporter
    except ImportError:  # (no SDK: nothing given can be one)
        return False
    return isinstance(e, SpanExporter | SpanProcessor)
