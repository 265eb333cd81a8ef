"""Prometheus metrics as an interceptor, per agent and per model, with one error taxonomy.

Every failure is labelled with its :func:`convoy.resilience.error_kind` (``timeout``,
``rate_limited``, ``server_error``, ``invalid_output``, ``handoff_invalid``, ``tool_error``,
``denied``, ``budget_exhausted``, ``loop_detected``, ``conflict``, ``unknown_outcome``, ...),
the taxonomy ``convoy run``'s summary counts too. No label holds a session id, and every
label has a bounded number of values (``max_label_values``; more are counted as
``"other"``), redacted before use.

A step adds to plain counters and a histogram's buckets of its own series (one dictionary
lookup, no lock); ``prometheus_client`` turns them into metric families when Prometheus
scrapes, with what the engine's interceptors know at that moment (breaker states, tenants'
daily budgets, retry-budget refusals).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from convoy._errors import StateConflict, UserError
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
    SessionInfo,
    SessionInput,
    Stage,
    StateInput,
    ToolCallInput,
)
from convoy.models._messages import ModelResponse
from convoy.observability._attempts import PerAttempt
from convoy.observability._redact import Redactor
from convoy.resilience._classify import error_kind, error_kind_of

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from convoy.engine._engine import Engine
    from convoy.hitl._task import HumanTask

#: Seconds: from a fast step to a slow model call.
STEP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                5.0, 10.0, 30.0, 60.0, 120.0)
SESSION_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                   300.0, 600.0, 1800.0)
OTHER = "other"
_BREAKER_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_MAX_SERIES = 100_000

perf_ns = time.perf_counter_ns


class _Hist:
    """A histogram of durations: ``counts[i]`` observations in bucket ``i`` of ``bounds``
    (integer nanoseconds: no float arithmetic per observation), and their ``sum``. The
    series of steps and agents are histograms too: their hooks add to ``counts`` and
    ``sum`` inline (a step that succeeded is one observation, so its count is the
    bucket counts' total)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[int, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0

    def observe(self, ns: int) -> None:
        """Count a duration of ``ns`` nanoseconds (0 if a wall clock went back)."""
        self.counts[bisect_left(self.bounds, ns)] += 1  # (below 0: the first bucket)
        self.sum += ns if ns > 0 else 0


def _ns(bounds: Sequence[float]) -> tuple[int, ...]:
    return tuple(round(b * 1e9) for b in bounds)


STEP_NS, SESSION_NS = _ns(STEP_BUCKETS), _ns(SESSION_BUCKETS)


class _Step(_Hist):
    """One series of steps, ``labels`` ``(kind, agent, target)``: the durations of those
    that succeeded, failures by error kind, a model's tokens and cost."""

    __slots__ = ("cost", "errors", "labels", "tokens_in", "tokens_out")

    def __init__(self, labels: tuple[str, ...]) -> None:
        super().__init__(STEP_NS)
        self.labels = labels
        self.errors: dict[str, int] = {}
        self.tokens_in = self.tokens_out = 0
        self.cost = 0.0


class _Agent(_Hist):
    """An agent's series, ``labels`` ``(agent,)``: the durations of its runs that ended
    (ok or by a handoff), failures by error kind. ``counts`` has one more item than the
    histogram's buckets, last: the runs that ended by a handoff; a scrape copies the list
    at once, so its ok runs (all minus those) never go back."""

    __slots__ = ("errors", "labels")

    def __init__(self, labels: tuple[str, ...]) -> None:
        super().__init__(SESSION_NS)
        self.counts.append(0)
        self.labels = labels
        self.errors: dict[str, int] = {}


class Metrics(Interceptor):
    """Prometheus metrics of every session, agent run and step (see the module docstring).

    Args:
        registry: the ``prometheus_client`` registry to register in (default: a new one,
            served by :meth:`serve`, :meth:`asgi_app` and :meth:`wsgi_app`).
        namespace: the metric name prefix.
        max_label_values: distinct values kept per label before ``"other"``.
        redact: the :class:`~convoy.observability.Redactor` label values go through
            (``True``: a default one; ``False``: none).

    Put :attr:`attempts` in the chain too (``convoy.observability.observe`` does) to count
    retries and failed attempts.
    """

    stage: Stage = "trace"

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 namespace: str = "convoy", max_label_values: int = 200,
                 redact: Redactor | bool = True) -> None:
        try:
            from prometheus_client import CollectorRegistry
        except ImportError:
            raise UserError("metrics need prometheus-client: pip install 'convoy[metrics]'"
                            ) from None
        if max_label_values < 1:
            raise UserError("Metrics: max_label_values must be >= 1")
        self.registry = registry if registry is not None else CollectorRegistry()
        self.namespace = namespace
        self.max_label_values = max_label_values
        redactor = Redactor() if redact is True else redact if isinstance(redact, Redactor) \
            else None
        self.redact: Callable[[str], str] = redactor.redact if redactor else _same
        self._seen: dict[str, set[str]] = {}
        # The series, by raw label values; each keeps its bounded, redacted labels.
        self._steps: dict[tuple[str, str, str], _Step] = {}
        self._agents: dict[str, _Agent] = {}
        self._sessions: dict[tuple[str, str, str, str], int] = {}
        self._session_hist: dict[tuple[str, str], _Hist] = {}
        self._running: dict[str, int] = {}
        self._retries: dict[tuple[str, str, str, str], int] = {}
        self._attempt_errors: dict[tuple[str, str, str, str], int] = {}
        self._conflicts: dict[str, int] = {}
        self._decisions: dict[tuple[str, str], int] = {}  # (action, task kind): bounded
        # Attempts of the calls in flight, by input object: (attempts, last error kind).
        self._tries: dict[int, tuple[int, str]] = {}
        self._engine: Engine | None = None
        self.registry.register(_Collector(self))
        #: The interceptor that counts retries and failed attempts (stage ``attempt``).
        self.attempts = AttemptMetrics(self)

    async def start(self, engine: Engine) -> None:
        self._engine = engine
        await self.attempts.start(engine)

    # -- labels -----------------------------------------------------------------------------

    def label(self, name: str, raw: str) -> str:
        """The value Prometheus sees for label ``name``: redacted, or ``"other"`` past
        ``max_label_values`` distinct values."""
        value = self.redact(raw)
        seen = self._seen.setdefault(name, set())
        if value not in seen:
            if len(seen) >= self.max_label_values:
                return OTHER
            seen.add(value)
        return value

    def _step(self, kind: str, agent: str, target: str) -> _Step:
        key = (kind, agent, target)
        st = self._steps.get(key)
        if st is None:
            if len(self._steps) > _MAX_SERIES:  # raw values churn: keep memory bounded
                self._steps.clear()
            st = self._steps[key] = _Step(
                (kind, self.label("agent", agent), self.label("target", target)))
        return st

    # -- serving ----------------------------------------------------------------------------

    def serve(self, port: int = 9464, addr: str = "127.0.0.1") -> MetricsServer:
        """Serve ``/metrics`` over HTTP from a thread (``close()`` the result to stop)."""
        from prometheus_client import start_http_server

        server, thread = start_http_server(port, addr, registry=self.registry)
        return MetricsServer(server, thread)

    def asgi_app(self) -> Any:
        """An ASGI app that serves these metrics (mount it at ``/metrics``)."""
        from prometheus_client import make_asgi_app

        return make_asgi_app(registry=self.registry)

    def wsgi_app(self) -> Any:
        """A WSGI app that serves these metrics (mount it at ``/metrics``)."""
        from prometheus_client import make_wsgi_app

        return make_wsgi_app(registry=self.registry)

    def text(self) -> str:
        """The metrics in the Prometheus text format, as a scrape would get them."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()

    # -- hooks ------------------------------------------------------------------------------

    def session_run(self, input: SessionInput, next: Next[SessionInput, SessionEnd]) -> Any:
        if input.info.replay:
            return next(input)
        return self._session_run(input, next)

    async def _session_run(self, input: SessionInput,
                           next: Next[SessionInput, SessionEnd]) -> SessionEnd:
        info = input.info
        self._session_began(info.workflow)
        t = perf_ns()
        try:
            end = await next(input)
        except BaseException:
            self._session_ended(info, None, 0)
            raise
        self._session_ended(info, end, perf_ns() - t)
        return end

    async def agent_run(self, input: AgentRunInput,
                        next: Next[AgentRunInput, AgentRunEnd]) -> AgentRunEnd:
        t = perf_ns()
        try:
            end = await next(input)
        except BaseException as e:
            self._agent_failed(input.agent.name, e)
            raise
        self._agent_ok(input.agent.name, end.handoff is not None, perf_ns() - t)
        return end

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        t = perf_ns()
        try:
            resp = await next(input)
        except BaseException as e:
            self._step_failed("model", input.agent.name, input.model.name, input, e)
            raise
        self._model_ok(input, resp, perf_ns() - t)
        return resp

    async def _timed(self, kind: str, agent: str, target: str, next: Next[Any, Any],
                     input: Any) -> Any:
        t = perf_ns()
        try:
            out = await next(input)
        except BaseException as e:
            self._step_failed(kind, agent, target, input, e)
            raise
        self._step_ok(kind, agent, target, input, perf_ns() - t)
        return out

    def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        return self._timed("tool", input.agent.name, input.tool.name, next, input)

    def handoff(self, input: HandoffInput, next: Next[HandoffInput, Any]) -> Any:
        return self._timed("handoff", input.source.name, input.target.name, next, input)

    def effect(self, input: EffectInput, next: Next[EffectInput, Any]) -> Any:
        return self._timed("effect", "", input.name, next, input)

    def state_op(self, input: StateInput, next: Next[StateInput, Any]) -> Any:
        return self._timed("state", input.agent or "", input.op, next, input)

    async def human_decision(self, input: DecisionInput,
                             next: Next[DecisionInput, HumanTask]) -> HumanTask:
        written = await next(input)
        self._decided(input)
        return written

    # -- what is counted: called by the hooks above, or by Tracing's when observe() puts
    # tracing and metrics in one hook per step (Tracing.metrics); durations in ns ----------

    def _session_began(self, wf: str) -> None:
        running = self._running
        running[wf] = running.get(wf, 0) + 1

    def _session_ended(self, info: SessionInfo, end: SessionEnd | None, ns: int) -> None:
        """A run of a session ended (``end`` is ``None`` when it was interrupted by an
        exception: a crash, a cancellation)."""
        wf = info.workflow
        self._running[wf] -= 1
        if end is None:
            status, kind = "interrupted", ""
        else:
            status = end.status
            h = self._session_hist.get((wf, status))
            if h is None:
                h = self._session_hist[(wf, status)] = _Hist(SESSION_NS)
            h.observe(ns)
            kind = "" if status in ("completed", "waiting") else error_kind_of(end.error) or ""
        key = (wf, info.tenant, status, kind)
        self._sessions[key] = self._sessions.get(key, 0) + 1

    def _agent(self, name: str) -> _Agent:
        a = self._agents[name] = _Agent((self.label("agent", name),))
        return a

    def _agent_ok(self, name: str, handoff: bool, ns: int) -> None:
        a = self._agents.get(name) or self._agent(name)
        counts = a.counts
        counts[bisect_left(SESSION_NS, ns)] += 1  # (as _Hist.observe)
        a.sum += ns if ns > 0 else 0
        if handoff:
            counts[-1] += 1

    def _agent_failed(self, name: str, exc: BaseException) -> None:
        if isinstance(exc, Exception):  # (not a cancelled or parked run)
            errors = (self._agents.get(name) or self._agent(name)).errors
            kind = error_kind(exc)
            errors[kind] = errors.get(kind, 0) + 1

    def _model_ok(self, input: ModelCallInput, resp: ModelResponse, ns: int) -> None:
        agent, model = input.agent.name, input.model.name
        st = self._steps.get(("model", agent, model)) or self._step("model", agent, model)
        st.counts[bisect_left(STEP_NS, ns)] += 1  # (as _Hist.observe)
        st.sum += ns if ns > 0 else 0
        usage = resp.usage
        st.tokens_in += usage.input_tokens
        st.tokens_out += usage.output_tokens
        st.cost += resp.cost
        if self._tries:
            self._tries.pop(id(input), None)

    def _step_ok(self, kind: str, agent: str, target: str, input: Any, ns: int) -> None:
        self._step(kind, agent, target).observe(ns)
        if self._tries:
            self._tries.pop(id(input), None)

    def _decided(self, input: DecisionInput) -> None:
        key = (input.action, input.kind)
        self._decisions[key] = self._decisions.get(key, 0) + 1

    def _step_failed(self, kind: str, agent: str, target: str, input: Any,
                     exc: BaseException) -> None:
        if isinstance(exc, Exception):  # (not a cancelled or parked run)
            st = self._step(kind, agent, target)
            error = error_kind(exc)
            st.errors[error] = st.errors.get(error, 0) + 1
            if not self.attempts.needed and kind in ("model", "tool"):  # its one attempt
                key = (kind, agent, target, error)
                self._attempt_errors[key] = self._attempt_errors.get(key, 0) + 1
            if isinstance(exc, StateConflict):
                ns = exc.namespace.split(":", 1)[0]
                self._conflicts[ns] = self._conflicts.get(ns, 0) + 1
        if self._tries:
            self._tries.pop(id(input), None)


class MetricsServer:
    """A running ``/metrics`` endpoint (:meth:`Metrics.serve`)."""

    def __init__(self, server: Any, thread: Any) -> None:
        self._server = server
        self._thread = thread
        self.port: int = server.server_address[1]

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class AttemptMetrics(PerAttempt):
    """Counts retries (by the kind of error that made them) and failed attempts (stage
    ``attempt``, inside ``retry``; the :class:`Metrics` it belongs to must be in the
    chain too). In an engine where nothing retries, a step is one attempt: it steps
    aside, and :class:`Metrics` counts a failed step as a failed attempt."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    async def _attempt(self, kind: str, agent: str, target: str, next: Next[Any, Any],
                       input: Any) -> Any:
        n = self._began(kind, agent, target, input)
        try:
            return await next(input)
        except Exception as e:
            self._failed(kind, agent, target, input, n, e)
            raise

    def _began(self, kind: str, agent: str, target: str, input: Any) -> int:
        """An attempt of ``input`` starts: count it as a retry if one failed before it;
        the attempts before it."""
        m = self.metrics
        if not m._tries:
            return 0
        n, last = m._tries.get(id(input), (0, ""))
        if n:
            key = (kind, agent, target, last)
            m._retries[key] = m._retries.get(key, 0) + 1
        return n

    def _failed(self, kind: str, agent: str, target: str, input: Any, n: int,
                exc: Exception) -> None:
        """The attempt after ``n`` others failed with ``exc``."""
        m = self.metrics
        error = error_kind(exc)
        key = (kind, agent, target, error)
        m._attempt_errors[key] = m._attempt_errors.get(key, 0) + 1
        tries = m._tries
        if len(tries) > _MAX_SERIES:  # inputs of calls that never came back
            tries.clear()
        tries[id(input)] = (n + 1, error)

    def model_call(self, input: ModelCallInput,
                   next: Next[ModelCallInput, ModelResponse]) -> Any:
        if not self.needed:
            return next(input)
        return self._attempt("model", input.agent.name, input.model.name, next, input)

    def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        if not self.needed:
            return next(input)
        return self._attempt("tool", input.agent.name, input.tool.name, next, input)


class _Collector:
    """Turns the series into metric families when Prometheus scrapes (in the server's
    thread: every dictionary is copied in one step before it is read)."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        m = self.m
        ns = m.namespace
        label = m.label

        def hist(fam: Any, labels: Sequence[str], counts: list[int], total: int,
                 bounds: Sequence[float]) -> None:
            cumulative, acc = [], 0
            for bound, c in zip((*bounds, float("inf")), counts, strict=True):
                acc += c
                cumulative.append((_le(bound), acc))
            fam.add_metric(list(labels), cumulative, total / 1e9)

        sessions = CounterMetricFamily(
            f"{ns}_sessions", "Runs of sessions by how they ended (completed, a terminal "
            "reason, waiting or interrupted) and the kind of error.",
            labels=["workflow", "tenant", "outcome", "error"])
        for (wf, tenant, status, kind), n in list(m._sessions.items()):
            sessions.add_metric([label("workflow", wf), label("tenant", tenant), status,
                                 kind], n)
        yield sessions
        session_s = HistogramMetricFamily(f"{ns}_session_run_seconds", "Duration of one run "
                                          "of a session.", labels=["workflow", "outcome"])
        for (wf, status), h in list(m._session_hist.items()):
            hist(session_s, [label("workflow", wf), status], list(h.counts), h.sum,
                 SESSION_BUCKETS)
        yield session_s
        running = GaugeMetricFamily(f"{ns}_sessions_running", "Sessions running on this "
                                    "engine now.", labels=["workflow"])
        for wf, n in list(m._running.items()):
            running.add_metric([label("workflow", wf)], n)
        yield running
        agent_runs = CounterMetricFamily(
            f"{ns}_agent_runs", "Agent invocations by outcome (ok, handoff, error) and error "
            "kind.", labels=["agent", "outcome", "error"])
        agent_s = HistogramMetricFamily(f"{ns}_agent_run_seconds", "Duration of one agent "
                                        "invocation.", labels=["agent"])
        for a in list(m._agents.values()):
            name, = a.labels
            *counts, handoffs = list(a.counts)
            for outcome, n in (("ok", sum(counts) - handoffs), ("handoff", handoffs)):
                if n:
                    agent_runs.add_metric([name, outcome, ""], n)
            for kind, n in list(a.errors.items()):
                agent_runs.add_metric([name, "error", kind], n)
            hist(agent_s, a.labels, counts, a.sum, SESSION_BUCKETS)
        yield agent_runs
        yield agent_s
        steps = CounterMetricFamily(
            f"{ns}_steps", "Steps that ran (replayed ones are not counted again) by kind, "
            "agent, target (the model, tool, target agent, step name or state operation), "
            "outcome and error kind.", labels=["kind", "agent", "target", "outcome", "error"])
        step_s = HistogramMetricFamily(f"{ns}_step_seconds", "Duration of one step that "
                                       "succeeded, its retries included.",
                                       labels=["kind", "agent", "target"])
        tokens = CounterMetricFamily(f"{ns}_tokens", "Tokens of model calls.",
                                     labels=["agent", "model", "direction"])
        cost = CounterMetricFamily(f"{ns}_cost_usd", "Cost of model calls in USD.",
                                   labels=["agent", "model"])
        for st in list(m._steps.values()):
            kind_, agent, target = st.labels
            counts = list(st.counts)
            steps.add_metric([kind_, agent, target, "ok", ""], sum(counts))
            for kind, n in list(st.errors.items()):
                steps.add_metric([kind_, agent, target, "error", kind], n)
            hist(step_s, st.labels, counts, st.sum, STEP_BUCKETS)
            if kind_ == "model":
                tokens.add_metric([agent, target, "input"], st.tokens_in)
                tokens.add_metric([agent, target, "output"], st.tokens_out)
                cost.add_metric([agent, target], st.cost)
        yield from (steps, step_s, tokens, cost)
        for name, doc, series in (
                ("retries", "Attempts after the first, by the kind of error that made them.",
                 m._retries),
                ("attempt_errors", "Attempts that failed (retried or not), by error kind.",
                 m._attempt_errors)):
            fam = CounterMetricFamily(f"{ns}_{name}", doc,
                                      labels=["kind", "agent", "target", "error"])
            for (kind, agent, target, err), n in list(series.items()):
                fam.add_metric([kind, label("agent", agent), label("target", target), err], n)
            yield fam
        conflicts = CounterMetricFamily(
            f"{ns}_state_conflicts", "Stale compare-and-set writes of shared state refused, "
            "by the kind of namespace (before its first ':').", labels=["namespace"])
        for space, n in list(m._conflicts.items()):
            conflicts.add_metric([label("namespace", space)], n)
        yield conflicts
        decisions = CounterMetricFamily(
            f"{ns}_human_decisions", "Decisions people made on human tasks (written), by "
            "action and kind of task.", labels=["action", "kind"])
        for (action, kind), n in list(m._decisions.items()):
            decisions.add_metric([action, kind], n)
        yield decisions
        yield from _engine_families(m, ns)


def _engine_families(m: Metrics, ns: str) -> Iterator[Any]:
    """What the engine's interceptors know now: breaker states, tenants' daily budgets,
    retry-budget refusals."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from convoy.cost._budget import Budgets
    from convoy.resilience._breaker import Breakers
    from convoy.resilience._retry import Retry

    engine = m._engine
    if engine is None:
        return
    label = m.label
    state = GaugeMetricFamily(f"{ns}_circuit_breaker_state", "Circuit breaker state: "
                              "0 closed, 1 half-open, 2 open.", labels=["breaker"])
    rejected = CounterMetricFamily(f"{ns}_circuit_breaker_rejected", "Calls an open "
                                   "breaker rejected.", labels=["breaker"])
    spent = GaugeMetricFamily(f"{ns}_budget_spent_usd", "USD spent against a tenant's "
                              "daily budget today.", labels=["tenant"])
    limit = GaugeMetricFamily(f"{ns}_budget_limit_usd", "A tenant's daily budget in USD.",
                              labels=["tenant"])
    used = GaugeMetricFamily(f"{ns}_budget_used_ratio", "Share of a tenant's daily budget "
                             "spent today (tokens or USD, whichever is further).",
                             labels=["tenant"])
    denied = CounterMetricFamily(f"{ns}_retry_budget_denied", "Retries the retry budget "
                                 "refused.", labels=[])
    n_denied = 0
    have_retry = False
    for ic in engine.runtime.interceptors:
        if isinstance(ic, Breakers):
            for key, breaker in list(ic.breakers.items()):
                name = label("breaker", key)
                state.add_metric([name], _BREAKER_STATES.get(breaker.state, 0.0))
                rejected.add_metric([name], float(breaker.rejected))
        elif isinstance(ic, Budgets):
            today = ic.today().isoformat()
            for key, led in list(ic.ledgers.items()):
                parts = key.split(":")
                if len(parts) < 3 or parts[0] != "tenant" or parts[-1] != today:
                    continue
                tenant = label("tenant", ":".join(parts[1:-1]))
                spent.add_metric([tenant], led.usd)
                b = led.budget
                if b.usd is not None:
                    limit.add_metric([tenant], b.usd)
                used.add_metric([tenant], max(led.usd / b.usd if b.usd else 0.0,
                                              led.tokens / b.tokens if b.tokens else 0.0))
        elif isinstance(ic, Retry):
            have_retry = True
            n_denied += ic.denied
    yield from (state, rejected, spent, limit, used)
    if have_retry:
        denied.add_metric([], float(n_denied))
        yield denied


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _same(text: str) -> str:
    return text


__all__ = ["AttemptMetrics", "Metrics", "MetricsServer"]
