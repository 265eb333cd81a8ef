"""Prometheus metrics as an interceptor, per agent and per model, with one error taxonomy.

Every failure is labelled with its :func:`convoy.resilience.error_kind` (``timeout``,
``rate_limited``, ``server_error``, ``invalid_output``, ``handoff_invalid``, ``tool_error``,
``denied``, ``budget_exhausted``, ``loop_detected``, ``conflict``, ``unknown_outcome``, ...),
the taxonomy ``convoy run``'s summary counts too. No label holds a session id, and every
label has a bounded number of values (``max_label_values``; more are counted as
``"other"``), redacted before use.

Each series is one distinct set of bounded labels: every raw value counted as ``"other"``
adds to the one ``"other"`` series. A step adds to plain counters and a histogram's
buckets of its series (one dictionary lookup by its raw labels, cached, no lock);
``prometheus_client`` turns them into metric families when Prometheus scrapes, with what
the engine's interceptors know at that moment (breaker states, tenants' daily budgets,
retry-budget refusals).
"""

from __future__ import annotations

import socket
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from convoy._errors import ApprovalRequired, StateConflict, UserError
from convoy._numbers import is_whole
from convoy.interceptors._base import (
    AgentRunEnded,
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
from convoy.observability._attempts import PerAttempt, attempts_vary
from convoy.observability._kinds import state_kind
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
_MAX_SERIES = 100_000  # raw label values cached (they map to the bounded series)

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
    """One series of steps, bounded ``labels`` ``(kind, agent, target)``: the durations
    of those that succeeded, of those that ``failed`` (once one has), failures by error
    kind, how many calls waited for a person's approval (``approvals``), a model's tokens
    and cost."""

    __slots__ = ("approvals", "cost", "errors", "failed", "labels", "tokens_in",
                 "tokens_out")

    def __init__(self, labels: tuple[str, str, str]) -> None:
        super().__init__(STEP_NS)
        self.labels = labels
        self.errors: dict[str, int] = {}
        self.failed: _Hist | None = None
        self.approvals = 0
        self.tokens_in = self.tokens_out = 0
        self.cost = 0.0


class _Agent:
    """An agent's series, bounded ``labels`` ``(agent,)``: the durations of its runs by
    how they ended (``ok``, by a ``handoff``, ``failed``), failures by error kind."""

    __slots__ = ("errors", "failed", "handoff", "labels", "ok")

    def __init__(self, labels: tuple[str]) -> None:
        self.labels = labels
        self.ok, self.handoff, self.failed = (_Hist(SESSION_NS), _Hist(SESSION_NS),
                                              _Hist(SESSION_NS))
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
        if not is_whole(max_label_values) or max_label_values < 1:
            raise UserError(f"Metrics: max_label_values must be a whole number >= 1, got "
                            f"{max_label_values!r}")
        self.registry = registry if registry is not None else CollectorRegistry()
        self.namespace = namespace
        self.max_label_values = max_label_values
        redactor = Redactor() if redact is True else redact if isinstance(redact, Redactor) \
            else None
        self.redact: Callable[[str], str] = redactor.redact if redactor else _same
        self._seen: dict[str, set[str]] = {}
        # Caches of raw label values (bounded: cleared when full, losing no count): to
        # their bounded label, to the series of steps and agents they count in.
        self._cache_max = _MAX_SERIES
        self._labels: dict[tuple[str, str], str] = {}
        self._steps: dict[tuple[str, str, str], _Step] = {}
        self._agents: dict[str, _Agent] = {}
        # The series, by their bounded labels.
        self._step_series: dict[tuple[str, str, str], _Step] = {}
        self._agent_series: dict[str, _Agent] = {}
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
        if sum(ic is self for ic in engine.runtime.interceptors) > 1:
            raise UserError("these metrics are in the engine's interceptors twice (observe("
                            "metrics=...) puts them there once): every step would count "
                            "twice")
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

    def _bounded(self, name: str, raw: str) -> str:
        """:meth:`label`, cached."""
        key = (name, raw)
        labels = self._labels
        value = labels.get(key)
        if value is None:
            if len(labels) >= self._cache_max:  # raw values churn: keep memory bounded
                labels.clear()
            value = labels[key] = self.label(name, raw)
        return value

    def _step(self, kind: str, agent: str, target: str) -> _Step:
        key = (kind, agent, target)
        st = self._steps.get(key)
        if st is None:
            labels = (kind, self._bounded("agent", agent), self._bounded("target", target))
            st = self._step_series.get(labels)
            if st is None:
                st = self._step_series[labels] = _Step(labels)
            cache = self._steps
            if len(cache) >= self._cache_max:
                cache.clear()
            cache[key] = st
        return st

    # -- serving ----------------------------------------------------------------------------

    def serve(self, port: int = 9464, addr: str = "127.0.0.1") -> MetricsServer:
        """Serve ``/metrics`` over HTTP from a thread (``close()`` the result to stop).
        ``port`` 0: a free one (``MetricsServer.port``). A port outside 0-65535, or an
        ``addr`` that is not an address (or a host name that resolves to none: ``''``,
        ``'999.1.1.1'``, ``'127.0.0.1:9464'``), raises :class:`~convoy.UserError` (its
        ``__cause__`` the :class:`socket.gaierror`); an address or port that cannot be
        bound (not this machine's, taken), :class:`OSError`."""
        from prometheus_client import start_http_server

        if type(port) is not int or not 0 <= port <= 65535:
            raise UserError(f"metrics port {port!r}: a TCP port is a whole number from 0 to "
                            "65535 (0: a free one)")
        try:
            server, thread = start_http_server(port, addr, registry=self.registry)
        except socket.gaierror as e:
            raise UserError(_unresolved(addr, e)) from e
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
        input.run_taps.append(self._run_ended)
        t = perf_ns()
        try:
            end = await next(input)
        except BaseException:
            self._session_ended(info, None, 0)
            raise
        self._session_ended(info, end, perf_ns() - t)
        return end

    def _run_ended(self, ended: AgentRunEnded) -> None:
        """An agent run ended (a run tap: no hook around each run)."""
        _, _, agent, _, earlier, handoff, error, ns = ended
        if earlier:  # (counted by the run of the session that ended it)
            return
        name = agent.name
        if error is None:  # (``_agent_ok``, inlined: this runs on every agent run)
            a = self._agents.get(name) or self._agent(name)
            h = a.ok if handoff is None else a.handoff
            h.counts[bisect_left(SESSION_NS, ns)] += 1  # (as _Hist.observe; ``ns`` is
            h.sum += ns  # of a monotonic clock: never below 0)
        else:
            self._agent_failed(name, error, ns)

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        t = perf_ns()
        try:
            resp = await next(input)
        except BaseException as e:
            self._step_failed("model", input.agent.name, input.model.name, input, e,
                              perf_ns() - t)
            raise
        ns = perf_ns() - t
        # (``_model_ok``, inlined: this runs on every model call)
        agent, model = input.agent.name, input.model.name
        st = self._steps.get(("model", agent, model)) or self._step("model", agent, model)
        st.counts[bisect_left(STEP_NS, ns)] += 1  # (as _Hist.observe; ``ns`` is of a
        st.sum += ns  # monotonic clock: never below 0)
        usage = resp.usage
        st.tokens_in += usage.input_tokens
        st.tokens_out += usage.output_tokens
        st.cost += resp.cost
        if self._tries:
            self._tries.pop(id(input), None)
        return resp

    async def _timed(self, kind: str, agent: str, target: str, next: Next[Any, Any],
                     input: Any) -> Any:
        t = perf_ns()
        try:
            out = await next(input)
        except BaseException as e:
            self._step_failed(kind, agent, target, input, e, perf_ns() - t)
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
        return self._timed(state_kind(input.namespace), input.agent or "", input.op, next,
                           input)

    async def human_decision(self, input: DecisionInput,
                             next: Next[DecisionInput, HumanTask]) -> HumanTask:
        written = await next(input)
        self._decided(input)
        return written

    # -- what is counted: called by the hooks above, or by Tracing's when observe() puts
    # tracing and metrics in one hook per step (Tracing.metrics); durations in ns ----------

    def _session_began(self, wf: str) -> None:
        running = self._running
        wf = self._bounded("workflow", wf)
        running[wf] = running.get(wf, 0) + 1

    def _session_ended(self, info: SessionInfo, end: SessionEnd | None, ns: int) -> None:
        """A run of a session ended (``end`` is ``None`` when it was interrupted by an
        exception: a crash, a cancellation)."""
        wf = self._bounded("workflow", info.workflow)
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
        key = (wf, self._bounded("tenant", info.tenant), status, kind)
        self._sessions[key] = self._sessions.get(key, 0) + 1

    def _agent(self, name: str) -> _Agent:
        label = self._bounded("agent", name)
        a = self._agent_series.get(label)
        if a is None:
            a = self._agent_series[label] = _Agent((label,))
        cache = self._agents
        if len(cache) >= self._cache_max:
            cache.clear()
        cache[name] = a
        return a

    # An agent run that an earlier run of its session ended was counted then: the callers
    # leave it out (AgentRunEnded.ended_earlier; live tracing asks ended_earlier).

    def _agent_ok(self, name: str, handoff: bool, ns: int) -> None:
        a = self._agents.get(name) or self._agent(name)
        h = a.handoff if handoff else a.ok
        h.counts[bisect_left(SESSION_NS, ns)] += 1  # (as _Hist.observe)
        h.sum += ns if ns > 0 else 0

    def _agent_failed(self, name: str, exc: BaseException, ns: int) -> None:
        if isinstance(exc, Exception):  # (not a cancelled or parked run)
            a = self._agents.get(name) or self._agent(name)
            kind = error_kind(exc)
            a.errors[kind] = a.errors.get(kind, 0) + 1
            a.failed.observe(ns)

    def _model_ok(self, input: ModelCallInput, resp: ModelResponse, ns: int) -> None:
        # (inlined in ``model_call``: a change here goes there too)
        agent, model = input.agent.name, input.model.name
        st = self._steps.get(("model", agent, model)) or self._step("model", agent, model)
        st.counts[bisect_left(STEP_NS, ns)] += 1  # (as _Hist.observe; ``ns`` is of a
        st.sum += ns  # monotonic clock: never below 0)
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
                     exc: BaseException, ns: int) -> None:
        if isinstance(exc, ApprovalRequired):  # (it waits for a person: no failure)
            self._step(kind, agent, target).approvals += 1
        elif isinstance(exc, Exception):  # (not a cancelled or parked run)
            st = self._step(kind, agent, target)
            error = error_kind(exc)
            st.errors[error] = st.errors.get(error, 0) + 1
            failed = st.failed
            if failed is None:
                failed = st.failed = _Hist(STEP_NS)
            failed.observe(ns)
            if kind in ("model", "tool") and not attempts_vary(
                    input.session.runtime.interceptors):  # its one attempt (no hook saw it)
                key = (kind, st.labels[1], st.labels[2], error)
                self._attempt_errors[key] = self._attempt_errors.get(key, 0) + 1
            if isinstance(exc, StateConflict):
                space = self._bounded("namespace", exc.namespace.split(":", 1)[0])
                self._conflicts[space] = self._conflicts.get(space, 0) + 1
        if self._tries:
            self._tries.pop(id(input), None)


def _unresolved(addr: str, e: socket.gaierror) -> str:
    """What :meth:`Metrics.serve` says of an ``addr`` that resolves to no address, and what
    to pass instead (as ``convoy metrics serve --addr`` says it of its option)."""
    said = f"metrics address {addr!r} cannot be resolved ({e.strerror or e})"
    if not addr.strip():
        return (f"metrics address {addr!r} is empty: pass an address of this machine, such "
                "as addr='127.0.0.1' (this machine alone) or addr='0.0.0.0' (all of them)")
    host, _, after = addr.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")  # ([::1]:9464, as in a URL)
    host = host[1:-1] if bracketed else host
    if host and (bracketed or ":" not in host) and after.isdigit():  # (an IPv6 address
        # alone has colons of its own)
        return (f"{said}: pass the host alone, and the port as port=: "
                f"serve(port={after}, addr={host!r})")
    if addr.startswith("[") and addr.endswith("]") and ":" in addr:  # ([::1], from a URL)
        return f"{said}: pass the address without its brackets: addr={addr[1:-1]!r}"
    return (f"{said}: pass an IP address of this machine, such as addr='127.0.0.1' (this "
            "machine alone) or addr='0.0.0.0' (all of them), or a host name that resolves "
            "to one")


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
            key = (kind, m._bounded("agent", agent), m._bounded("target", target), last)
            m._retries[key] = m._retries.get(key, 0) + 1
        return n

    def _failed(self, kind: str, agent: str, target: str, input: Any, n: int,
                exc: Exception) -> None:
        """The attempt after ``n`` others failed with ``exc``."""
        m = self.metrics
        error = error_kind(exc)
        key = (kind, m._bounded("agent", agent), m._bounded("target", target), error)
        m._attempt_errors[key] = m._attempt_errors.get(key, 0) + 1
        tries = m._tries
        if len(tries) > _MAX_SERIES:  # inputs of calls that never came back
            tries.clear()
        tries[id(input)] = (n + 1, error)

    def model_call(self, input: ModelCallInput,
                   next: Next[ModelCallInput, ModelResponse]) -> Any:
        return self._attempt("model", input.agent.name, input.model.name, next, input)

    def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
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
            sessions.add_metric([wf, tenant, status, kind], n)
        yield sessions
        session_s = HistogramMetricFamily(f"{ns}_session_run_seconds", "Duration of one run "
                                          "of a session.", labels=["workflow", "outcome"])
        for (wf, status), h in list(m._session_hist.items()):
            hist(session_s, [wf, status], list(h.counts), h.sum, SESSION_BUCKETS)
        yield session_s
        running = GaugeMetricFamily(f"{ns}_sessions_running", "Sessions running on this "
                                    "engine now.", labels=["workflow"])
        for wf, n in list(m._running.items()):
            running.add_metric([wf], n)
        yield running
        agent_runs = CounterMetricFamily(
            f"{ns}_agent_runs", "Agent invocations that ended (replayed ones are not counted "
            "again) by outcome (ok, handoff, error) and error kind.",
            labels=["agent", "outcome", "error"])
        agent_s = HistogramMetricFamily(
            f"{ns}_agent_run_seconds", "Duration of one agent invocation that ended, by "
            "outcome (ok, handoff, error).", labels=["agent", "outcome"])
        for a in list(m._agent_series.values()):
            name, = a.labels
            for outcome, h in (("ok", a.ok), ("handoff", a.handoff), ("error", a.failed)):
                counts = list(h.counts)
                n = sum(counts)
                if n:
                    if outcome != "error":  # (errors: by kind, below)
                        agent_runs.add_metric([name, outcome, ""], n)
                    hist(agent_s, [name, outcome], counts, h.sum, SESSION_BUCKETS)
            for kind, n in list(a.errors.items()):
                agent_runs.add_metric([name, "error", kind], n)
        yield agent_runs
        yield agent_s
        steps = CounterMetricFamily(
            f"{ns}_steps", "Steps that ran (replayed ones are not counted again) by kind, "
            "agent, target (the model, tool, target agent, step name or state operation), "
            "outcome and error kind.", labels=["kind", "agent", "target", "outcome", "error"])
        step_s = HistogramMetricFamily(
            f"{ns}_step_seconds", "Duration of one step, its retries included, by outcome "
            "(ok, error).", labels=["kind", "agent", "target", "outcome"])
        tokens = CounterMetricFamily(f"{ns}_tokens", "Tokens of model calls.",
                                     labels=["agent", "model", "direction"])
        cost = CounterMetricFamily(f"{ns}_cost_usd", "Cost of model calls in USD.",
                                   labels=["agent", "model"])
        for st in list(m._step_series.values()):
            kind_, agent, target = st.labels
            counts = list(st.counts)
            steps.add_metric([kind_, agent, target, "ok", ""], sum(counts))
            for kind, n in list(st.errors.items()):
                steps.add_metric([kind_, agent, target, "error", kind], n)
            if st.approvals:
                steps.add_metric([kind_, agent, target, "approval_required", ""],
                                 st.approvals)
            hist(step_s, (*st.labels, "ok"), counts, st.sum, STEP_BUCKETS)
            failed = st.failed
            if failed is not None:
                hist(step_s, (*st.labels, "error"), list(failed.counts), failed.sum,
                     STEP_BUCKETS)
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
            for key, n in list(series.items()):
                fam.add_metric(list(key), n)
            yield fam
        conflicts = CounterMetricFamily(
            f"{ns}_state_conflicts", "Stale compare-and-set writes of shared state refused, "
            "by the kind of namespace (before its first ':').", labels=["namespace"])
        for space, n in list(m._conflicts.items()):
            conflicts.add_metric([space], n)
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
    label = m._bounded
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
    # By bounded label: breakers and tenants counted as "other" are one series (the worst
    # state, the largest share used; the sums of the rest).
    states: dict[str, float] = {}
    rejections: dict[str, float] = {}
    spent_by: dict[str, float] = {}
    limit_by: dict[str, float] = {}
    used_by: dict[str, float] = {}
    n_denied = 0
    have_retry = False
    for ic in engine.runtime.interceptors:
        if isinstance(ic, Breakers):
            for key, breaker in list(ic.breakers.items()):
                name = label("breaker", key)
                states[name] = max(states.get(name, 0.0),
                                   _BREAKER_STATES.get(breaker.state, 0.0))
                rejections[name] = rejections.get(name, 0.0) + breaker.rejected
        elif isinstance(ic, Budgets):
            today = ic.today().isoformat()
            for key, led in list(ic.ledgers.items()):
                parts = key.split(":")
                if len(parts) < 3 or parts[0] != "tenant" or parts[-1] != today:
                    continue
                tenant = label("tenant", ":".join(parts[1:-1]))
                spent_by[tenant] = spent_by.get(tenant, 0.0) + led.usd
                b = led.budget
                if b.usd is not None:
                    limit_by[tenant] = limit_by.get(tenant, 0.0) + b.usd
                used_by[tenant] = max(used_by.get(tenant, 0.0),
                                      led.usd / b.usd if b.usd else 0.0,
                                      led.tokens / b.tokens if b.tokens else 0.0)
        elif isinstance(ic, Retry):
            have_retry = True
            n_denied += ic.denied
    for fam, values in ((state, states), (rejected, rejections), (spent, spent_by),
                        (limit, limit_by), (used, used_by)):
        for name, value in values.items():
            fam.add_metric([name], value)
        yield fam
    if have_retry:
        denied.add_metric([], float(n_denied))
        yield denied


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _same(text: str) -> str:
    return text


__all__ = ["AttemptMetrics", "Metrics", "MetricsServer"]
