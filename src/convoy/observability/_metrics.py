"""Prometheus metrics as an interceptor, per agent and per model, with one error taxonomy.

Every failure is labelled with its :func:`convoy.resilience.error_kind` (``timeout``,
``rate_limited``, ``server_error``, ``invalid_output``, ``handoff_invalid``, ``tool_error``,
``denied``, ``budget_exhausted``, ``loop_detected``, ``conflict``, ``unknown_outcome``, ...),
the taxonomy ``convoy run``'s summary counts too. No label holds a session id, and every
label has a bounded number of values (``max_label_values``; more are counted as
``"other"``), redacted before use.

Breaker states, tenants' daily budgets and retry-budget refusals are read from the
engine's interceptors when Prometheus scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from convoy._errors import StateConflict, UserError
from convoy.interceptors._base import (
    AgentRunEnd,
    AgentRunInput,
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
)
from convoy.models._messages import ModelResponse
from convoy.observability._redact import Redactor
from convoy.resilience._classify import error_kind, error_kind_of

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from convoy.engine._engine import Engine

#: Seconds: from a fast step to a slow model call.
STEP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                5.0, 10.0, 30.0, 60.0, 120.0)
SESSION_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                   300.0, 600.0, 1800.0)
OTHER = "other"
_BREAKER_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}

perf = time.perf_counter


class _Bounded:
    """Label values as Prometheus sees them: redacted, at most ``limit`` distinct values
    per label (then ``"other"``), and the metric's child for them, cached."""

    __slots__ = ("children", "limit", "metric", "redact", "seen")

    def __init__(self, metric: Any, labels: int, limit: int,
                 redact: Callable[[str], str]) -> None:
        self.metric = metric
        self.limit = limit
        self.redact = redact
        self.seen: list[set[str]] = [set() for _ in range(labels)]
        self.children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self.children.get(values)
        if child is None:
            bounded = []
            for seen, raw in zip(self.seen, values, strict=True):
                v = self.redact(raw)
                if v not in seen:
                    if len(seen) >= self.limit:
                        v = OTHER
                    else:
                        seen.add(v)
                bounded.append(v)
            if len(self.children) > 50_000:  # raw values churn (ids in names): stay bounded
                self.children.clear()
            child = self.children[values] = self.metric.labels(*bounded)
        return child


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
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        except ImportError:
            raise UserError("metrics need prometheus-client: pip install 'convoy[metrics]'"
                            ) from None
        if max_label_values < 1:
            raise UserError("Metrics: max_label_values must be >= 1")
        self.registry = registry if registry is not None else CollectorRegistry()
        redactor = Redactor() if redact is True else redact if isinstance(redact, Redactor) \
            else None
        self.redact: Callable[[str], str] = redactor.redact if redactor else _same
        r, ns, limit = self.registry, namespace, max_label_values

        def bounded(metric: Any, labels: Sequence[str]) -> _Bounded:
            return _Bounded(metric, len(labels), limit, self.redact)

        def counter(name: str, doc: str, labels: Sequence[str]) -> _Bounded:
            return bounded(Counter(name, doc, labels, namespace=ns, registry=r), labels)

        self.sessions = counter(
            "sessions", "Runs of sessions by how they ended (a run ends completed, with a "
            "terminal reason, waiting or interrupted) and the kind of error.",
            ("workflow", "tenant", "outcome", "error"))
        self.session_seconds = bounded(Histogram(
            "session_run_seconds", "Duration of one run of a session.",
            ("workflow", "outcome"), namespace=ns, registry=r, buckets=SESSION_BUCKETS),
            ("workflow", "outcome"))
        self.running = bounded(Gauge(
            "sessions_running", "Sessions running on this engine now.", ("workflow",),
            namespace=ns, registry=r), ("workflow",))
        self.agent_runs = counter(
            "agent_runs", "Agent invocations by outcome (ok, handoff, error) and error kind.",
            ("agent", "outcome", "error"))
        self.agent_seconds = bounded(Histogram(
            "agent_run_seconds", "Duration of one agent invocation.", ("agent",),
            namespace=ns, registry=r, buckets=SESSION_BUCKETS), ("agent",))
        self.steps = counter(
            "steps", "Steps that ran (replayed ones are not counted again) by kind, agent, "
            "target (the model, tool, target agent, step name or state operation), outcome "
            "and error kind.", ("kind", "agent", "target", "outcome", "error"))
        self.step_seconds = bounded(Histogram(
            "step_seconds", "Duration of one step, its retries included.",
            ("kind", "agent", "target"), namespace=ns, registry=r, buckets=STEP_BUCKETS),
            ("kind", "agent", "target"))
        self.tokens = counter("tokens", "Tokens of model calls.",
                              ("agent", "model", "direction"))
        self.cost = counter("cost_usd", "Cost of model calls in USD.", ("agent", "model"))
        self.retries = counter(
            "retries", "Attempts after the first, by the kind of error that made them.",
            ("kind", "agent", "target", "error"))
        self.attempt_errors = counter(
            "attempt_errors", "Attempts that failed (retried or not), by error kind.",
            ("kind", "agent", "target", "error"))
        self.conflicts = counter(
            "state_conflicts", "Stale compare-and-set writes of shared state refused, by "
            "the kind of namespace (before its first ':').", ("namespace",))
        self._engine: Engine | None = None
        # Attempts of the calls in flight, by input object: (attempts, last error kind).
        self._tries: dict[int, tuple[int, str]] = {}
        self.registry.register(_EngineCollector(self, ns))
        #: The interceptor that counts retries and failed attempts (stage ``attempt``).
        self.attempts = AttemptMetrics(self)

    async def start(self, engine: Engine) -> None:
        self._engine = engine

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

    async def session_run(self, input: SessionInput,
                          next: Next[SessionInput, SessionEnd]) -> SessionEnd:
        info = input.info
        if info.replay:
            return await next(input)
        wf = info.workflow
        running = self.running(wf)
        running.inc()
        t = perf()
        try:
            end = await next(input)
        except BaseException:
            running.dec()
            self.sessions(wf, info.tenant, "interrupted", "").inc()
            raise
        running.dec()
        status = end.status
        self.session_seconds(wf, status).observe(perf() - t)
        kind = "" if status in ("completed", "waiting") else \
            error_kind_of(end.error) or ""
        self.sessions(wf, info.tenant, status, kind).inc()
        return end

    async def agent_run(self, input: AgentRunInput,
                        next: Next[AgentRunInput, AgentRunEnd]) -> AgentRunEnd:
        name = input.agent.name
        t = perf()
        try:
            end = await next(input)
        except Exception as e:
            self.agent_runs(name, "error", error_kind(e)).inc()
            raise
        self.agent_seconds(name).observe(perf() - t)
        self.agent_runs(name, "ok" if end.handoff is None else "handoff", "").inc()
        return end

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        agent = input.agent.name
        model = input.model.name
        t = perf()
        try:
            resp = await next(input)
        except Exception as e:
            self.steps("model", agent, model, "error", error_kind(e)).inc()
            raise
        finally:
            self._tries.pop(id(input), None)
        self.step_seconds("model", agent, model).observe(perf() - t)
        self.steps("model", agent, model, "ok", "").inc()
        usage = resp.usage
        self.tokens(agent, model, "input").inc(usage.input_tokens)
        self.tokens(agent, model, "output").inc(usage.output_tokens)
        if resp.cost:
            self.cost(agent, model).inc(resp.cost)
        return resp

    async def _step(self, kind: str, agent: str, target: str, next: Next[Any, Any],
                    input: Any) -> Any:
        t = perf()
        try:
            out = await next(input)
        except Exception as e:
            self.steps(kind, agent, target, "error", error_kind(e)).inc()
            if isinstance(e, StateConflict):
                self.conflicts(e.namespace.split(":", 1)[0]).inc()
            raise
        finally:
            if kind == "tool":
                self._tries.pop(id(input), None)
        self.step_seconds(kind, agent, target).observe(perf() - t)
        self.steps(kind, agent, target, "ok", "").inc()
        return out

    def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        return self._step("tool", input.agent.name, input.tool.name, next, input)

    def handoff(self, input: HandoffInput, next: Next[HandoffInput, Any]) -> Any:
        return self._step("handoff", input.source.name, input.target.name, next, input)

    def effect(self, input: EffectInput, next: Next[EffectInput, Any]) -> Any:
        return self._step("effect", "", input.name, next, input)

    def state_op(self, input: StateInput, next: Next[StateInput, Any]) -> Any:
        return self._step("state", input.agent or "", input.op, next, input)


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


class AttemptMetrics(Interceptor):
    """Counts retries (by the kind of error that made them) and failed attempts (stage
    ``attempt``, inside ``retry``; the :class:`Metrics` it belongs to must be in the
    chain too)."""

    stage: Stage = "attempt"

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def _attempt(self, kind: str, agent: str, target: str, next: Next[Any, Any],
                       input: Any) -> Any:
        m = self.metrics
        tries = m._tries
        n, last = tries.get(id(input), (0, ""))
        if n:
            m.retries(kind, agent, target, last).inc()
        try:
            return await next(input)
        except Exception as e:
            k = error_kind(e)
            m.attempt_errors(kind, agent, target, k).inc()
            if len(tries) > 100_000:  # inputs of calls that never came back: stay bounded
                tries.clear()
            tries[id(input)] = (n + 1, k)
            raise

    def model_call(self, input: ModelCallInput,
                   next: Next[ModelCallInput, ModelResponse]) -> Any:
        return self._attempt("model", input.agent.name, input.model.name, next, input)

    def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        return self._attempt("tool", input.agent.name, input.tool.name, next, input)


class _EngineCollector:
    """What the engine's interceptors know, read at scrape time: breaker states, tenant
    budgets, retry-budget refusals."""

    def __init__(self, metrics: Metrics, namespace: str) -> None:
        self.metrics = metrics
        self.ns = namespace

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from convoy.cost._budget import Budgets
        from convoy.resilience._breaker import Breakers
        from convoy.resilience._retry import Retry

        engine = self.metrics._engine
        if engine is None:
            return
        redact = self.metrics.redact
        ns = self.ns
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
        today = None
        for ic in engine.runtime.interceptors:
            if isinstance(ic, Breakers):
                for key, breaker in list(ic.breakers.items())[:1000]:
                    name = redact(key)
                    state.add_metric([name], _BREAKER_STATES.get(breaker.state, 0.0))
                    rejected.add_metric([name], float(breaker.rejected))
            elif isinstance(ic, Budgets):
                today = today or ic.today().isoformat()
                for key, led in list(ic.ledgers.items())[:1000]:
                    if not key.endswith(today):
                        continue
                    tenant = redact(key.split(":", 2)[1] if key.count(":") >= 2 else key)
                    spent.add_metric([tenant], led.usd)
                    b = led.budget
                    if b.usd is not None:
                        limit.add_metric([tenant], b.usd)
                    ratios = [led.usd / b.usd if b.usd else 0.0,
                              led.tokens / b.tokens if b.tokens else 0.0]
                    used.add_metric([tenant], max(ratios))
            elif isinstance(ic, Retry):
                have_retry = True
                n_denied += ic.denied
        yield from (state, rejected, spent, limit, used)
        if have_retry:
            denied.add_metric([], float(n_denied))
            yield denied


def _same(text: str) -> str:
    return text


__all__ = ["AttemptMetrics", "Metrics", "MetricsServer"]
