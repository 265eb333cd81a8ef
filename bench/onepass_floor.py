"""The floor of a one-pass observability design on W1 (issue 11): spans, metrics and audit
entries derived, when a run ends, from the journal records the engine writes anyway, by
one ``session_run`` interceptor with a journal tap, with no ``agent_run``/``model_call``
hook on the step path. A throw-away experiment: nothing here is in ``src/``.

Instructions per step (a busy host does not move them; the instructions of N=300 minus
those of N=100, over 1,000 steps, are one step's)::

    PYTHONHASHSEED=0 valgrind --tool=callgrind [--separate-threads=yes] \\
        --callgrind-out-file=/tmp/onepass-cg.NAME.300 \\
        .venv/bin/python bench/onepass_floor.py NAME 300

(``--separate-threads=yes``: the event loop's thread apart from the WAL checkpoint thread,
which runs by the clock and so, under valgrind, ~50x more often per session.)

CPU time per step (``time.process_time``: every thread), engines alternating in one
process (medians, and the median of each round's ratio to that round's bare run; the
system time per step too)::

    .venv/bin/python bench/onepass_floor.py --time --sessions 500 --runs 9 [--only a,b]

``--check`` runs a few sessions on each engine and checks what it wrote: the spans read
back through :func:`~convoy.observability._spans.load_chunks` (what ``convoy trace``
reads), the audit log verifies (:func:`~convoy.audit._verify.verify_log`), the
Prometheus scrape counts every step.

The workload is bench/resilience_overhead.py's W1 (5 agents in a pipeline, a zero-latency
fake model, SQLite journal), as bench/observability.py runs it. Engines (NAME):

* ``bare``: no interceptors.
* ``current``: today's ``[*observe(Tracing(["store"]), Metrics()), AuditInterceptor()]``.
* ``onepass``: :class:`OnePass`: audit entries (``entry_of``, ``audit_append`` fenced on
  the lease, riding the run's last commit, as ``AuditInterceptor`` does), spans (the
  session, each agent run, each model call) as one chunk in the store's span format
  (``kv_put_many`` into ``trace:<session>``, as ``Tracing``'s store exporter writes them,
  here per run, not waited for: it rides the run's last commit too), and metrics with
  ``prometheus_client`` (label children cached).
* parts of it, for where the cost is: ``op_tap`` (the tap collects the records, nothing
  is derived), ``op_audit``, ``op_spans``, ``op_metrics`` (one part each);
* cheaper variants: ``op_batched`` (span chunks batched across runs, every 2,048 spans or
  1 s, as ``Tracing`` does today: one write per ~186 W1 sessions instead of one per run);
  ``op_readtime`` (no span written at all: spans derived when read, from the journal,
  :func:`spans_at_read`; the run only sets the trace header); ``op_plainmetrics``
  (metrics as plain integers in the interceptor, turned into Prometheus families by a
  collector at scrape time, as ``Metrics`` does today); ``op_lean`` (read-time spans and
  plain metrics: audit is the only write);
* the audit's own parts: ``op_header`` (the trace header only, written with how the run
  ended), ``op_header_before`` (written before the run, with its first journal record, as
  ``Tracing`` does), ``op_audit_noappend`` (entries made, never appended),
  ``op_auditrun`` / ``op_auditrun_noappend`` (the run's steps as one entry of kind
  ``session``: one row and one leaf per run instead of one per step, the same hashes and
  references per step);
* ``op_floor``: run entries, read-time spans, plain metrics; ``op_runwrites``: the same
  with the span chunk written per run;
* ``op_sealed``: per-step entries (``entry_of``) appended not with each run but in
  batches, every 0.25 s or 1,024 entries, by one ``audit_append`` of their own commit (a
  "sealer"), read-time spans, plain metrics, the trace header with the first record;
  ``op_sealed_spans``: the same with span chunks batched as ``op_batched``;
  ``op_sealed_prom``: the same as ``op_sealed`` with ``prometheus_client`` metrics;
  ``op_sealed_reread``: the same as ``op_sealed``, but the sealer reads each ended
  session's records back from the store (``store.journal``) instead of holding its
  entries in memory: what a sealer that survives a crash between a run's end and the seal
  costs (an upper bound: one query per session where a real one would make one per batch).

What :class:`OnePass` leaves out against today's ``Tracing`` + ``Metrics`` +
``AuditInterceptor`` (none of it runs on W1, or it is noted what it would add):

* Start times. A journal record holds only when it was written (``at``): a model span
  here starts at the previous record's time (or the run's start), so it includes the
  agent loop's own work between steps. A real design would journal each step's start
  too (one clock read and one REAL column per record: a few hundred instructions per
  step, <0.5%). The requested model is not in the record either (the response's
  ``model`` is, and is empty for the fake model): it comes from a map of agent -> model
  given to the interceptor; a real one would journal it or read it from the agent's
  configuration (``config``, in every record): a dict lookup per step.
* Retry-attempt spans (``AttemptSpans``: a span per attempt when there are several) and
  attempt metrics: the journal holds the step's outcome only. W1 never retries. A real
  design would journal the attempts (a count and the error kinds in the completed record)
  or keep a per-attempt hook only in the retry interceptor's failure path: nothing on a
  step that succeeds first time.
* Tool, handoff, state, effect, wait and drawn-value spans: their records pass through the
  same derivation (one more branch per kind, with links for handoffs from the handoff
  record's key: a dict lookup per handoff); W1 journals model records only, so the cost on
  W1 is 0, and per extra record it is about what a model record costs here.
* Content capture (``capture_content``: redacted messages as attributes): off by default
  today and in ``current``; the records hold only fingerprints of prompts, so capture
  would need the prompt (re-built from the journal at read time: no run-time cost) or a
  hook.
* Redaction: today's root span redacts the session id and the tenant once (the tenant's
  in a cached shape); the session id here is written as is (Convoy makes it: a uuid). A
  user-given id would cost one ``Redactor.redact`` per run, as today's (~6k instructions
  per W1 step in the 2026-12-02 early-morning entry of bench/RESULTS.md, no measurable
  change with the redactor off in the 2026-12-01 night one: at most ~2%).
* Metrics' bounded labels (``max_label_values``, ``"other"``) and label redaction: done
  once per new label value (cache miss), none on W1's hits.
* The OpenTelemetry context attach around user code (tools, ``ctx.step``): none on W1.
* Sampling (``sample_rate``) and a caller's ``traceparent``: one header read per run.
* A run killed before its end appends no entry and writes no span; the run that resumes
  derives both from the journal records after the audit cursor (as ``AuditInterceptor``
  recovers): no cost on a run that is not a resume.
* Live spans for a run in flight: spans exist only when the run ends (or at read time).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any

from observability_parts import main as one
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from pydantic_core import to_json
from resilience_overhead import AGENTS, CHAIN, timed, w1

import convoy
from convoy.audit import AuditInterceptor
from convoy.audit._event import encode_event
from convoy.audit._interceptor import AUDIT_CURSOR, TRACE_HEADER
from convoy.audit._journal import entry_of
from convoy.interceptors._base import Next, SessionEnd, SessionInput
from convoy.observability import Metrics, Tracing, observe
from convoy.observability._metrics import SESSION_BUCKETS, STEP_BUCKETS
from convoy.observability._spans import (
    SPANS_FORMAT,
    format_traceparent,
    new_span_id,
    new_trace_id,
    parse_traceparent,
)
from convoy.stores._protocol import SPANS_NAMESPACE, StepRecord

time_ns = time.time_ns
_AUDIT_KINDS = {"model": "model_call", "tool": "tool_call", "handoff": "handoff",
                "effect": "effect", "wait": "signal", "state": "state"}
_bits = __import__("random").getrandbits

#: The model each W1 agent asks for (see the module docstring: not in the record).
MODELS = {a.name: a.model.name for a in CHAIN if isinstance(a.model, convoy.Model)}


class _Shapes:
    """Span shapes (name, kind, shared attributes) as the store's format 2 writes them:
    ``[id, name, kind, attrs]``, encoded once per process (as ``Shape.json``)."""

    def __init__(self) -> None:
        self.json: dict[tuple[Any, ...], tuple[int, str]] = {}

    def get(self, key: tuple[Any, ...], name: str, kind: str,
            attrs: dict[str, Any]) -> tuple[int, str]:
        found = self.json.get(key)
        if found is None:
            sid = len(self.json) + 1_000_000  # apart from Tracing's own ids
            found = self.json[key] = (sid, to_json([sid, name, kind, attrs]).decode())
        return found


def _error_type(record: StepRecord) -> str:
    try:
        return str(json.loads(record.result or "{}").get("type") or "unknown")
    except ValueError:
        return "unknown"


def _finish(text: str | None) -> str | None:
    """The finish reason of a journaled model response (``"finish":"..."``), no parse."""
    if not text:
        return None
    i = text.find('"finish":"')
    if i < 0:
        return None
    j = text.find('"', i + 10)
    return text[i + 10:j]


def _response_model(text: str | None) -> str:
    if not text or not text.startswith('{"model":"'):
        return ""
    return text[10:text.find('"', 10)]


class _Series:
    """A label set's cached ``prometheus_client`` children."""

    __slots__ = ("cost", "duration", "ok", "tokens_in", "tokens_out")
    cost: Any
    duration: Any
    ok: Any
    tokens_in: Any
    tokens_out: Any


class _Plain:
    """A label set's plain counts (``op_plainmetrics``): a histogram's buckets, the
    count of steps that failed, tokens and cost, turned into families when scraped."""

    __slots__ = ("buckets", "cost", "failed", "sum", "tokens_in", "tokens_out")

    def __init__(self, n: int) -> None:
        self.buckets = [0] * (n + 1)
        self.sum = 0.0
        self.failed = 0
        self.tokens_in = self.tokens_out = 0
        self.cost = 0.0


_STEP_NS = tuple(round(b * 1e9) for b in STEP_BUCKETS)
_SESSION_NS = tuple(round(b * 1e9) for b in SESSION_BUCKETS)


class _PlainCollector:
    """Turns :class:`OnePass`'s plain counts into metric families at scrape time."""

    def __init__(self, op: OnePass) -> None:
        self.op = op

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        op = self.op
        steps = CounterMetricFamily("convoy_steps", "Steps by outcome",
                                    labels=["kind", "agent", "outcome"])
        tokens = CounterMetricFamily("convoy_tokens", "Tokens", labels=["agent", "direction"])
        cost = CounterMetricFamily("convoy_cost_usd", "Cost", labels=["agent"])
        dur = HistogramMetricFamily("convoy_step_duration_seconds", "Step durations",
                                    labels=["kind", "agent"])
        for (kind, agent), p in op._plain.items():
            ok = sum(p.buckets)
            steps.add_metric([kind, agent, "ok"], ok)
            steps.add_metric([kind, agent, "error"], p.failed)
            tokens.add_metric([agent, "input"], p.tokens_in)
            tokens.add_metric([agent, "output"], p.tokens_out)
            cost.add_metric([agent], p.cost)
            acc, cum = 0, []
            for b, c in zip([*STEP_BUCKETS, float("inf")], p.buckets, strict=True):
                acc += c
                cum.append((str(b) if b != float("inf") else "+Inf", acc))
            dur.add_metric([kind, agent], cum, p.sum)
        yield from (steps, tokens, cost, dur)


class OnePass(convoy.Interceptor):
    """Spans, metrics and audit entries from a run's journal records, when it ends.

    ``spans``: ``"run"`` (one chunk per run, riding its last commit), ``"batched"``
    (chunks batched across runs as ``Tracing`` does), ``"read"`` (none written: derived
    when read), ``None`` (no tracing). ``metrics``: ``"prometheus"``, ``"plain"``, ``None``.
    """

    stage = "trace"

    def __init__(self, *, audit: bool | str = True, spans: str | None = "run",
                 metrics: str | None = "prometheus", derive: bool = True,
                 header: bool | str = False, append: bool = True,
                 models: dict[str, str] = MODELS) -> None:
        self.audit = audit
        self.header: bool | str = header or bool(audit) or spans is not None
        self.append = append
        self.spans = spans
        self.metrics = metrics
        self.derive = derive
        self.models = models
        self.store: Any = None
        self.engine: Any = None
        self._versions: set[tuple[str, str, str]] = set()
        self._shapes = _Shapes()
        self._chat_attrs: dict[str, tuple[int, str]] = {}
        self._agent_attrs: dict[str, tuple[int, str]] = {}
        self._pending: list[tuple[str, str, str]] = []
        self._pending_spans = 0
        self._sealing: list[bytes] = []
        self._to_seal: list[tuple[str, str]] = []
        self._sealer: asyncio.Task[None] | None = None
        self._writes: list[Any] = []
        self._flusher: asyncio.Task[None] | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self._series: dict[tuple[str, str], _Series] = {}
        self._plain: dict[tuple[str, str], _Plain] = {}
        self._sessions: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._agent_hist: dict[tuple[str, str], Any] = {}
        self._session_plain: dict[tuple[str, str], _Plain] = {}
        if metrics == "prometheus":
            r = self.registry
            self.m_steps = Counter("convoy_steps", "Steps by outcome",
                                   ["kind", "agent", "outcome"], registry=r)
            self.m_step_s = Histogram("convoy_step_duration_seconds", "Step durations",
                                      ["kind", "agent"], buckets=STEP_BUCKETS, registry=r)
            self.m_tokens = Counter("convoy_tokens", "Tokens", ["agent", "direction"],
                                    registry=r)
            self.m_cost = Counter("convoy_cost_usd", "Cost", ["agent"], registry=r)
            self.m_agent_s = Histogram("convoy_agent_run_duration_seconds", "Agent runs",
                                       ["agent", "outcome"], buckets=SESSION_BUCKETS,
                                       registry=r)
            self.m_sessions = Counter("convoy_sessions", "Session runs by status",
                                      ["workflow", "status"], registry=r)
            self.m_session_s = Histogram("convoy_session_duration_seconds", "Session runs",
                                         ["workflow"], buckets=SESSION_BUCKETS, registry=r)
        elif metrics == "plain":
            self.registry.register(_PlainCollector(self))

    async def start(self, engine: convoy.Engine) -> None:
        self.engine = engine
        self.store = engine.store
        if self.spans == "batched" or self.audit in ("batched", "reread"):
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        self._write_pending()
        self._seal()
        if self._sealer is not None:
            await self._sealer
        if self._to_seal and self.store is not None:
            await self._reseal()
        writes, self._writes = self._writes, []
        await asyncio.gather(*writes)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(0.25 if self.audit in ("batched", "reread") else 1.0)
            self._write_pending()
            self._seal()
            if self._to_seal and self._sealer is None:
                await self._reseal()

    async def _reseal(self) -> None:
        """``op_sealed_reread``: the sealer reads the journal records of the sessions whose
        runs ended since the last time back from the store (one query per session; a real
        one would read every record after a durable per-tenant cursor in one query, so a
        crash between a run's end and the seal loses no entry), makes their entries and
        appends them in one append of their own commit."""
        try:
            todo, self._to_seal = self._to_seal, []
            bodies: list[bytes] = []
            store = self.store
            for sid, trace_id in todo:
                for r in await store.journal(sid):
                    body = entry_of(r, sid, r.at, trace_id, None)
                    if body is not None:
                        bodies.append(body)
            if bodies:
                self._writes.append(store.audit_append("default", bodies, wait=True))
                if len(self._writes) >= 64:
                    self._writes[:] = [f for f in self._writes if not f.done()]
        finally:
            self._sealer = None

    def _seal(self) -> None:
        """``op_sealed``: append the entries of the runs that ended since the last time,
        in one append (one head move, one ``executemany``) of its own commit. Unfenced:
        a real sealer would read the committed journal records after a per-tenant cursor
        instead (so a run that lost its lease cannot add its entries twice)."""
        bodies, self._sealing = self._sealing, []
        if bodies and self.store is not None:
            self._writes.append(self.store.audit_append("default", bodies, wait=True))
            if len(self._writes) >= 64:
                self._writes[:] = [f for f in self._writes if not f.done()]

    def _write_pending(self) -> None:
        pending, self._pending = self._pending, []
        self._pending_spans = 0
        if pending and self.store is not None:
            self._writes.append(self.store.kv_put_many(pending, wait=True))
            if len(self._writes) >= 64:
                self._writes[:] = [f for f in self._writes if not f.done()]

    async def session_run(self, input: SessionInput,
                          next: Next[SessionInput, SessionEnd]) -> SessionEnd:
        i = input.info
        if i.replay:
            return await next(input)
        if self.audit:
            seen = (i.tenant, i.workflow, i.version)
            if seen not in self._versions:  # as AuditInterceptor: one config_change
                self._versions.add(seen)
        records: list[StepRecord] = []
        input.journal_taps.append(records.append)
        headers = input.headers
        kept = headers.get(TRACE_HEADER)
        root = parse_traceparent(kept)
        early = None
        if self.header == "before" and root is None:
            # As Tracing does: written with the run's first journal record, same commit.
            early = new_trace_id(), new_span_id()
            headers[TRACE_HEADER] = format_traceparent(*early)
        t0 = time.time()
        end = await next(input)
        if not self.derive:
            return end
        if end.status == "interrupted" and (end.error or {}).get("type") == "LeaseLost":
            return end
        t1 = time.time()
        sid = i.session_id
        if early is not None:
            trace_id, root_span = early
        elif self.header:
            if root is None:
                trace_id, root_span = new_trace_id(), new_span_id()
                # Written with how the run ended, in the same commit.
                headers[TRACE_HEADER] = format_traceparent(trace_id, root_span)
            else:
                trace_id, root_span = root
        if self.audit == "run":
            body = self._run_entry(i, end, records, trace_id)
            if body is not None and self.append:
                self.store.audit_append(i.tenant, [body], wait=False,
                                        fence=(sid, self.engine.owner))
                if end.status != "completed":
                    headers[AUDIT_CURSOR] = repr(records[-1].at)
        elif self.audit:
            owner = self.engine.owner
            bodies = []
            for r in records if self.audit != "reread" else ():
                body = entry_of(r, sid, r.at, trace_id, None)
                if body is not None:
                    bodies.append(body)
            if self.audit == "reread":
                # Only the session is kept: the sealer reads its records back.
                self._to_seal.append((sid, trace_id))
                if len(self._to_seal) >= 205 and self._sealer is None:
                    self._sealer = asyncio.get_running_loop().create_task(self._reseal())
            elif bodies and self.audit == "batched":
                # Sealed later, many runs' entries in one append (see ``op_sealed``).
                self._sealing.extend(bodies)
                if len(self._sealing) >= 1024:
                    self._seal()
            elif bodies and self.append:
                self.store.audit_append(i.tenant, bodies, wait=False, fence=(sid, owner))
                if end.status != "completed":
                    headers[AUDIT_CURSOR] = repr(records[-1].at)
        if self.spans == "run" or self.spans == "batched":
            self._spans(i, end, records, trace_id, root_span, root is not None, t0, t1)
        if self.metrics == "prometheus":
            self._prometheus(i.workflow, end, records, t0, t1)
        elif self.metrics == "plain":
            self._plain_counts(i.workflow, end, records, t0, t1)
        return end

    def _run_entry(self, i: Any, end: SessionEnd, records: list[StepRecord],
                   trace_id: str) -> bytes | None:
        """``op_auditrun``: the run's steps as one entry (one row, one leaf) of kind
        ``session``, a valid :class:`~convoy.audit.AuditEvent` that holds what each
        step's own entry holds: ``hashes`` ``KEY.prompt``/``KEY.output`` (``blake2b:``
        fingerprint, ``sha256:`` of the journaled result, as ``entry_of``), ``refs``
        ``KEY``: ``"kind actor target status decision tokens config at"``."""
        hashes: dict[str, str] = {}
        refs: dict[str, str] = {"trace_id": trace_id}
        last = None
        for r in records:
            if r.status == "started":
                continue
            last = r
            key = r.key
            ok = r.status == "completed"
            if r.input_hash:
                hashes[key + ".prompt"] = "blake2b:" + r.input_hash
            text = r.result
            if ok:
                hashes[key + ".output"] = "sha256:" + sha256((text or "").encode()).hexdigest()
            decision = ("tools" if text and '"tool_calls":' in text else "answer") \
                if r.kind == "model" and ok else "-"
            refs[key] = f"{_AUDIT_KINDS.get(r.kind, r.kind)} {r.agent or r.target} " \
                        f"{_response_model(text) or '-'} {'ok' if ok else _error_type(r)} " \
                        f"{decision} {r.input_tokens}+{r.output_tokens} {r.config or '-'} " \
                        f"{r.at!r}"
        if last is None:
            return None
        return encode_event("session", end.status, last.at, i.session_id, None, i.workflow,
                            None, hashes, refs)

    # -- spans --------------------------------------------------------------------------------

    def _spans(self, i: Any, end: SessionEnd, records: list[StepRecord], trace_id: str,
               root_span: str, resumed: bool, t0: float, t1: float) -> None:
        wf, version, tenant = i.workflow, i.version, i.tenant
        shape_id, shape_json = self._shapes.get(
            ("session", wf, version, tenant), f"invoke_workflow {wf}", "internal",
            {"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": wf,
             "convoy.workflow.version": version, "convoy.tenant": tenant})
        shapes = {shape_id: shape_json}
        sid = i.session_id
        status = end.status
        root_attrs: dict[str, Any] = {"gen_ai.conversation.id": sid, "convoy.session.id": sid,
                                      "convoy.session.resumed": resumed,
                                      "convoy.session.status": status}
        root_status = "ok" if status == "completed" else \
            "unset" if status in ("waiting", "interrupted") else "error"
        start0, end0 = int(t0 * 1e9), int(t1 * 1e9)
        rows: list[list[Any]] = [[shape_id, root_span, None, start0, end0, root_status,
                                  root_attrs, None]]
        # Agent runs: the records of one run share the parent position of their keys.
        prev = start0
        run_scope: str | None = None
        run_row: list[Any] | None = None
        chat_attrs, agent_attrs, models = self._chat_attrs, self._agent_attrs, self.models
        shapes_get = self._shapes.get
        for r in records:
            at = int(r.at * 1e9)
            key = r.key
            scope = key[:key.rfind("/")]
            agent = r.agent or r.target
            if scope != run_scope:
                a = agent_attrs.get(agent)
                if a is None:
                    a = agent_attrs[agent] = shapes_get(
                        ("agent", agent), f"invoke_agent {agent}", "internal",
                        {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent})
                shapes[a[0]] = a[1]
                run_scope = scope
                run_row = [a[0], (_bits(64) or 1).to_bytes(8, "big").hex(), root_span, prev,
                           at, "ok", {"convoy.step.key": key,
                                      "convoy.agent.depth": scope.count("/")}, None]
                rows.append(run_row)
            else:
                assert run_row is not None
                run_row[4] = at
            if r.kind == "model":
                c = chat_attrs.get(agent)
                if c is None:
                    model = models.get(agent, "")
                    provider, _, name = model.partition(":")
                    c = chat_attrs[agent] = shapes_get(
                        ("chat", agent, model), f"chat {name}", "client",
                        {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
                         "gen_ai.request.model": name, "gen_ai.agent.name": agent})
                shapes[c[0]] = c[1]
                attrs: dict[str, Any] = {"convoy.step.key": key}
                if r.status == "completed":
                    text = r.result
                    resp_model = _response_model(text)
                    if resp_model:
                        attrs["gen_ai.response.model"] = resp_model
                    attrs["gen_ai.usage.input_tokens"] = r.input_tokens
                    attrs["gen_ai.usage.output_tokens"] = r.output_tokens
                    finish = _finish(text)
                    if finish:
                        attrs["gen_ai.response.finish_reasons"] = (finish,)
                    if r.cost:
                        attrs["convoy.cost_usd"] = r.cost
                    st, extra = "ok", None
                else:
                    kind = _error_type(r)
                    attrs["error.type"] = kind
                    st, extra = "error", [kind, None, None]
                    assert run_row is not None
                    run_row[5] = "error"
                assert run_row is not None
                rows.append([c[0], (_bits(64) or 1).to_bytes(8, "big").hex(), run_row[1],
                             prev, at, st, attrs, extra])
            prev = at
        text = f'{{"v":{SPANS_FORMAT},"trace_id":"{trace_id}","shapes":' \
               f'[{",".join(shapes.values())}],"spans":{to_json(rows).decode()}}}'
        item = (SPANS_NAMESPACE + sid, f"{start0:020d}-{root_span}", text)
        if self.spans == "run":
            self.store.kv_put_many([item], wait=False)  # rides the run's last commit
        else:
            self._pending.append(item)
            self._pending_spans += len(rows)
            if self._pending_spans >= 2048:
                self._write_pending()

    # -- metrics ------------------------------------------------------------------------------

    def _prometheus(self, wf: str, end: SessionEnd, records: list[StepRecord], t0: float,
                    t1: float) -> None:
        series = self._series
        prev = t0
        run_scope: str | None = None
        run_start = t0
        run_agent = ""
        for r in records:
            at = r.at
            agent = r.agent or r.target
            key = r.key
            scope = key[:key.rfind("/")]
            if scope != run_scope:
                if run_scope is not None:
                    self._agent_observe(run_agent, "ok", prev - run_start)
                run_scope, run_start, run_agent = scope, prev, agent
            s = series.get((r.kind, agent))
            if s is None:
                s = series[(r.kind, agent)] = _Series()
                s.ok = self.m_steps.labels(r.kind, agent, "ok")
                s.duration = self.m_step_s.labels(r.kind, agent)
                s.tokens_in = self.m_tokens.labels(agent, "input")
                s.tokens_out = self.m_tokens.labels(agent, "output")
                s.cost = self.m_cost.labels(agent)
            if r.status == "completed":
                s.ok.inc()
                s.duration.observe(at - prev)
                if r.input_tokens:
                    s.tokens_in.inc(r.input_tokens)
                if r.output_tokens:
                    s.tokens_out.inc(r.output_tokens)
                if r.cost:
                    s.cost.inc(r.cost)
            elif r.status == "failed":
                self.m_steps.labels(r.kind, agent, _error_type(r)).inc()
            prev = at
        if run_scope is not None:
            self._agent_observe(run_agent, "ok" if end.status == "completed" else end.status,
                                prev - run_start)
        ss = self._sessions.get((wf, end.status))
        if ss is None:
            ss = self._sessions[(wf, end.status)] = (
                self.m_sessions.labels(wf, end.status), self.m_session_s.labels(wf))
        ss[0].inc()
        ss[1].observe(t1 - t0)

    def _agent_observe(self, agent: str, outcome: str, seconds: float) -> None:
        h = self._agent_hist.get((agent, outcome))
        if h is None:
            h = self._agent_hist[(agent, outcome)] = self.m_agent_s.labels(agent, outcome)
        h.observe(seconds)

    def _plain_counts(self, wf: str, end: SessionEnd, records: list[StepRecord], t0: float,
                      t1: float) -> None:
        plain = self._plain
        prev = int(t0 * 1e9)
        bisect = _bisect
        for r in records:
            at = int(r.at * 1e9)
            agent = r.agent or r.target
            p = plain.get((r.kind, agent))
            if p is None:
                p = plain[(r.kind, agent)] = _Plain(len(_STEP_NS))
            if r.status == "completed":
                ns = at - prev
                p.buckets[bisect(_STEP_NS, ns)] += 1
                p.sum += ns / 1e9
                p.tokens_in += r.input_tokens
                p.tokens_out += r.output_tokens
                p.cost += r.cost
            elif r.status == "failed":
                p.failed += 1
            prev = at
        # (agent runs: one more bucket count per run, as the steps'; the session's:)
        sp = self._session_plain.get((wf, end.status))
        if sp is None:
            sp = self._session_plain[(wf, end.status)] = _Plain(len(_SESSION_NS))
        ns = int((t1 - t0) * 1e9)
        sp.buckets[bisect(_SESSION_NS, ns)] += 1
        sp.sum += ns / 1e9


from bisect import bisect_left as _bisect  # noqa: E402


async def spans_at_read(store: Any, session_id: str, models: dict[str, str] = MODELS,
                        ) -> list[dict[str, Any]]:
    """``op_readtime``: a session's spans derived when read, from its journal records and
    its row (what ``convoy trace`` or an OTLP tailer would do instead of reading chunks)."""
    row = await store.get_session(session_id)
    records = await store.load_journal(session_id)
    trace = parse_traceparent(row.header_map.get(TRACE_HEADER))
    trace_id, root_span = trace if trace else (new_trace_id(), new_span_id())
    spans: list[dict[str, Any]] = [{
        "name": f"invoke_workflow {row.workflow}", "trace_id": trace_id,
        "span_id": root_span, "parent_id": None, "start": int((row.started or 0) * 1e9),
        "end": int((row.finished or 0) * 1e9), "status": row.status}]
    prev = spans[0]["start"]
    scope_span: dict[str, str] = {}
    for r in sorted(records.values() if isinstance(records, dict) else records,
                    key=lambda r: r.at):
        scope = r.key[:r.key.rfind("/")]
        agent = r.agent or r.target
        if scope not in scope_span:
            scope_span[scope] = new_span_id()
            spans.append({"name": f"invoke_agent {agent}", "span_id": scope_span[scope],
                          "parent_id": root_span, "start": prev})
        at = int(r.at * 1e9)
        if r.kind == "model":
            spans.append({"name": f"chat {models.get(agent, '').partition(':')[2]}",
                          "span_id": new_span_id(), "parent_id": scope_span[scope],
                          "start": prev, "end": at,
                          "gen_ai.usage.input_tokens": r.input_tokens,
                          "gen_ai.usage.output_tokens": r.output_tokens})
        prev = at
    return spans


CHAINS: dict[str, Callable[[], list[convoy.Interceptor]]] = {
    "bare": list,
    "current": lambda: [*observe(Tracing(["store"]), Metrics()), AuditInterceptor()],
    "onepass": lambda: [OnePass()],
    "op_tap": lambda: [OnePass(derive=False)],
    "op_audit": lambda: [OnePass(spans=None, metrics=None)],
    "op_spans": lambda: [OnePass(audit=False, metrics=None)],
    "op_metrics": lambda: [OnePass(audit=False, spans=None)],
    "op_batched": lambda: [OnePass(spans="batched")],
    "op_readtime": lambda: [OnePass(spans="read")],
    "op_plainmetrics": lambda: [OnePass(metrics="plain")],
    "op_lean": lambda: [OnePass(spans="read", metrics="plain")],
    "op_auditrun": lambda: [OnePass(audit="run", spans=None, metrics=None)],
    "op_header": lambda: [OnePass(audit=False, spans=None, metrics=None, header=True)],
    "op_header_before": lambda: [OnePass(audit=False, spans=None, metrics=None,
                                         header="before")],
    "op_auditrun_noappend": lambda: [OnePass(audit="run", spans=None, metrics=None,
                                             append=False)],
    "op_audit_noappend": lambda: [OnePass(spans=None, metrics=None, append=False)],
    "op_sealed": lambda: [OnePass(audit="batched", spans="read", metrics="plain",
                                  header="before")],
    "op_sealed_reread": lambda: [OnePass(audit="reread", spans="read", metrics="plain",
                                         header="before")],
    "op_sealed_prom": lambda: [OnePass(audit="batched", spans="read", header="before")],
    "op_sealed_spans": lambda: [OnePass(audit="batched", spans="batched", metrics="plain",
                                        header="before")],
    "op_floor": lambda: [OnePass(audit="run", spans="read", metrics="plain")],
    "op_runwrites": lambda: [OnePass(audit="run", spans="run", metrics="plain")],
}


async def timing(names: list[str], sessions: int, runs: int, warmup: int) -> dict[str, Any]:
    tick = time.process_time
    with tempfile.TemporaryDirectory(prefix="convoy-onepass-") as tmp:
        es = {n: convoy.Engine(Path(tmp) / f"{n}.db", interceptors=CHAINS[n](),
                               concurrency=1000) for n in names}
        for e in es.values():
            await e.open()
        samples: dict[str, list[float]] = {n: [] for n in es}
        system: dict[str, list[float]] = {n: [] for n in es}
        try:
            for n, e in es.items():
                await timed(e, f"warm-{n}", warmup, tick)
            for r in range(runs):
                for n, e in es.items():
                    gc.collect()
                    before = os.times()
                    samples[n].append(await timed(e, f"{n}-{r}", sessions, tick))
                    after = os.times()
                    system[n].append((after.system - before.system) / (sessions * AGENTS)
                                     * 1e6)
        finally:
            for e in es.values():
                await e.aclose()
    med = {n: statistics.median(xs) for n, xs in samples.items()}
    bare = med["bare"]
    return {"workload": f"W1, {AGENTS} agents, zero latency, journaling on",
            "clock": "process_time", "sessions_per_run": sessions, "runs": runs,
            "us_per_step": {n: round(v, 1) for n, v in med.items()},
            "added_pct": {n: round(100 * (v - bare) / bare, 1) for n, v in med.items()
                          if n != "bare"},
            "paired_added_pct": {n: round(100 * (statistics.median(
                x / b for x, b in zip(samples[n], samples["bare"], strict=True)) - 1), 1)
                for n in es if n != "bare"},
            "us_per_step_system": {n: round(statistics.median(xs), 1)
                                   for n, xs in system.items()},
            "samples": {n: [round(x, 1) for x in xs] for n, xs in samples.items()}}


async def check() -> None:
    """What each engine wrote is what today's readers read."""
    from prometheus_client import generate_latest

    from convoy.audit._verify import verify_log
    from convoy.observability._spans import load_chunks

    with tempfile.TemporaryDirectory() as tmp:
        for name in ("onepass", "op_batched", "op_readtime", "op_plainmetrics", "op_floor",
                     "op_runwrites", "op_sealed", "op_sealed_spans", "op_sealed_reread"):
            engine = convoy.Engine(Path(tmp) / f"{name}.db", interceptors=CHAINS[name]())
            await engine.open()
            sids = []
            for k in range(3):
                res = await engine.run(w1, f"check {k}")
                assert res.ok, res
                sids.append(res.id)
            op = next(ic for ic in engine.runtime.interceptors if isinstance(ic, OnePass))
            await op.close()
            store = engine.store
            if op.spans in ("run", "batched"):
                chunks = await store.kv_all(SPANS_NAMESPACE + sids[0])
                spans = load_chunks(chunks.values())
                names = sorted(s["name"] for s in spans)
                assert len(spans) == 1 + 2 * AGENTS, names
                chat = next(s for s in spans if s["name"].startswith("chat"))
                assert chat["attrs"]["gen_ai.usage.input_tokens"] == 50, chat
                assert chat["attrs"]["gen_ai.request.model"] == "fake", chat
                print(name, "spans:", names[:3], "...", chat["attrs"])
            else:
                spans = await spans_at_read(store, sids[0])
                assert len(spans) == 1 + 2 * AGENTS, spans
                row = await store.get_session(sids[0])
                assert row is not None
                trace = parse_traceparent(row.header_map[TRACE_HEADER])
                assert trace is not None and spans[0]["trace_id"] == trace[0]
                print(name, "spans at read time:", len(spans))
            from convoy.audit._log import AuditLog
            report = await verify_log(AuditLog(store), "default")
            print(name, "audit:", report)
            text = generate_latest(op.registry).decode()
            line = next(ln for ln in text.splitlines() if ln.startswith("convoy_steps")
                        and 'agent="agent0"' in ln and "ok" in ln)
            assert line.endswith(" 3.0"), line
            print(name, "metrics:", line)
            await engine.aclose()


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] in CHAINS and sys.argv[2].isdigit():
        asyncio.run(one(sys.argv[1], int(sys.argv[2]), CHAINS))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--time", action="store_true")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--sessions", type=int, default=300)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--only", default="bare,current,onepass")
    a = ap.parse_args()
    if a.check:
        asyncio.run(check())
        return
    names = [n for n in a.only.split(",") if n]
    if "bare" not in names:
        names.insert(0, "bare")
    unknown = [n for n in names if n not in CHAINS]
    if unknown:
        ap.error(f"unknown engines {unknown}; known: {', '.join(CHAINS)}")
    print(json.dumps(asyncio.run(timing(names, a.sessions, a.runs, a.warmup))))


if __name__ == "__main__":
    main()
