"""One phase of a chaos experiment: run every input once on a fresh store, then measure.

A phase runs in this process (:func:`run_phase`) or in a child process (``python -c
'from convoy.chaos._worker import run; run()' CONFIG.json``) that the experiment may
SIGKILL; either way its results are read back from the store (:func:`measure`), so a
phase that was killed and resumed is measured exactly like one that was not.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from convoy._stats import percentile
from convoy.chaos._faults import FaultInjector, FaultSpec
from convoy.definitions._workflow import Workflow, load_workflow
from convoy.engine._engine import Engine
from convoy.interceptors._base import Interceptor
from convoy.interceptors._named import load_interceptors
from convoy.models import infer_model
from convoy.models._base import Model
from convoy.resilience import Breakers, Retry, RetryPolicy, Timeout, protections
from convoy.stores import UNFINISHED, NewSession, SessionFilter, SessionRow, SQLiteStore


@dataclass(frozen=True, kw_only=True)
class PhaseConfig:
    """Everything a (possibly separate) process needs to run one phase. JSON-able."""

    name: str
    workflow: str
    db: str
    inputs: str                      # a JSONL file, one workflow input per line
    faults: str = "none"             # a FaultSpec string
    seed: int = 0
    protect: bool = True
    call_timeout: float = 2.0
    tool_timeout: float = 30.0
    concurrency: int = 64
    model: str | None = None
    tenant: str = "default"
    deadline_s: float | None = None  # stop the phase after this long; unfinished stay so
    fault_log: str | None = None     # appended one line per injected fault (survives SIGKILL)
    stats: str | None = None         # written at a clean exit
    interceptors: str | None = None  # the application's, MODULE:NAME (loaded by the phase)
    cwd: str = field(default_factory=os.getcwd)

    def dump(self, path: Path) -> None:
        """Write the config as JSON, for a phase run in a child process."""
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> PhaseConfig:
        """Read a config written by :meth:`dump`."""
        return cls(**json.loads(path.read_text()))

    def session_id(self, i: int) -> str:
        """The session id of input line ``i`` (stable, so a resumed phase runs no input twice)."""
        return f"{self.name}-{i}"


def chaos_interceptors(config: PhaseConfig, injector: FaultInjector | None) -> list[Interceptor]:
    """``protections(...)`` (when on) with short retry delays and the given timeouts, the
    application's interceptors (``config.interceptors``, loaded anew: a function of them
    gives the phase its own), then the injector, innermost (its stage is the last)."""
    chain: list[Interceptor] = []
    if config.protect:
        chain = protections(retry=RetryPolicy(max_attempts=4, initial_delay=0.05, max_delay=2.0),
                            call_timeout=config.call_timeout, tool_timeout=config.tool_timeout)
    if config.interceptors is not None:
        chain.extend(load_interceptors(config.interceptors, option="interceptors"))
    if injector is not None:
        chain.append(injector)
    return chain


def _fault_logger(path: str) -> tuple[Callable[[str, str, str], None], Callable[[], None]]:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def log(kind: str, session_id: str, key: str) -> None:
        os.write(fd, f"{kind} {session_id} {key}\n".encode())

    return log, lambda: os.close(fd)


def run_phase(config: PhaseConfig, wf: Workflow[Any, Any] | None = None, *,
              on_ready: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run (or finish) every session of the phase; returns counters of this process.

    Sessions already finished in the store are left alone; unfinished ones resume from
    their journal. ``on_ready`` is called once every session exists durably. Blocking:
    it runs its own event loop.
    """
    wf = wf if wf is not None else load_workflow(config.workflow)
    lines = [ln for ln in Path(config.inputs).read_text().splitlines() if ln.strip()]
    values = [wf.input_adapter.validate_json(ln) for ln in lines]
    spec = FaultSpec.parse(config.faults)
    hook, close = _fault_logger(config.fault_log) if config.fault_log else (None, None)
    injector = FaultInjector(spec, seed=config.seed, on_fault=hook) if spec.any else None
    interceptors = chaos_interceptors(config, injector)
    # (the application's, a list: the objects the phases before this one counted on)
    before = _counters(interceptors, None, 0)
    try:
        ran, timed_out = asyncio.run(_run(config, wf, values, interceptors, on_ready))
    finally:
        if close is not None:
            close()
    stats = _counters(interceptors, injector, ran)
    for name in ("retries", "retries_denied", "timeouts", "breaker_rejections"):
        stats[name] -= before[name]  # this phase's
    stats["timed_out"] = timed_out
    if config.stats:
        Path(config.stats).write_text(json.dumps(stats))
    return stats


async def _run(config: PhaseConfig, wf: Workflow[Any, Any], values: list[Any],
               interceptors: list[Interceptor], on_ready: Callable[[], None] | None
               ) -> tuple[int, bool]:
    models: dict[str, Model] = {}
    if config.model:
        models[config.model] = infer_model(config.model)
    engine = Engine(config.db, models=models, model=config.model, interceptors=interceptors,
                    concurrency=config.concurrency, workflows=[wf])
    async with engine:
        store = engine.store
        todo: list[tuple[str, Any]] = []
        for i, v in enumerate(values):
            sid = config.session_id(i)
            row = await store.get_session(sid)
            if row is None or row.unfinished:
                todo.append((sid, v))
        await store.create_sessions([
            NewSession(id=sid, workflow=wf.name, version=wf.version, tenant=config.tenant,
                       input=wf.input_adapter.dump_json(v).decode()) for sid, v in todo])
        if on_ready is not None:
            on_ready()
        timed_out = False
        if todo:
            try:
                async with asyncio.timeout(config.deadline_s):
                    await engine.run_many(wf, [v for _, v in todo], ids=[s for s, _ in todo],
                                          tenant=config.tenant)
            except TimeoutError:
                timed_out = True  # the sessions still running stay 'running' in the store
    return len(todo), timed_out


def _counters(chain: list[Interceptor], injector: FaultInjector | None, ran: int
              ) -> dict[str, Any]:
    out: dict[str, Any] = {"sessions_run": ran, "retries": 0, "retries_denied": 0,
                           "timeouts": 0, "breaker_rejections": 0,
                           "faults": dict(injector.injected) if injector else {}}
    for ic in chain:
        if isinstance(ic, Retry):
            out["retries"] += ic.retries
            out["retries_denied"] += ic.denied
        elif isinstance(ic, Timeout):
            out["timeouts"] += ic.timeouts
        elif isinstance(ic, Breakers):
            out["breaker_rejections"] += sum(b.rejected for b in ic.breakers.values())
    return out


# -- measuring --------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class PhaseMetrics:
    """What a phase's store says about its sessions."""

    sessions: int
    completed: int
    statuses: dict[str, int]
    p50_s: float
    p99_s: float
    mean_cost: float
    max_cost: float
    errors: dict[str, int]

    @property
    def unfinished(self) -> int:
        """Sessions still pending, running or waiting."""
        return sum(self.statuses.get(s, 0) for s in UNFINISHED)

    @property
    def success_rate(self) -> float:
        """Completed sessions over all sessions (0 when there are none)."""
        return self.completed / self.sessions if self.sessions else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The metrics with ``success_rate`` and ``unfinished``, for the experiment journal."""
        d = asdict(self)
        d["success_rate"] = self.success_rate
        d["unfinished"] = self.unfinished
        return d


def measure(db: str | Path) -> PhaseMetrics:
    """Sessions, success, latency (first start to finish, downtime included; an unfinished
    session counts the time it has been running so far) and cost."""
    rows = asyncio.run(all_sessions(db))
    now = time.time()
    statuses: Counter[str] = Counter(r.status for r in rows)
    latencies = sorted((r.finished if r.finished is not None else now) - r.started
                       for r in rows if r.started is not None)
    costs = [r.cost for r in rows]
    errors: Counter[str] = Counter()
    for r in rows:
        rec = r.error_record
        if rec:
            errors[str(rec.get("type", "error"))] += 1
    return PhaseMetrics(sessions=len(rows), completed=statuses["completed"],
                        statuses=dict(statuses), p50_s=percentile(latencies, 50),
                        p99_s=percentile(latencies, 99),
                        mean_cost=sum(costs) / len(costs) if costs else 0.0,
                        max_cost=max(costs, default=0.0), errors=dict(errors))


async def all_sessions(db: str | Path, page: int = 1000) -> list[SessionRow]:
    """Every session of the store at ``db``, oldest first."""
    rows: list[SessionRow] = []
    store = SQLiteStore(db)
    await store.open()
    try:
        while True:
            batch = await store.list_sessions(SessionFilter(limit=page, offset=len(rows)))
            rows.extend(batch)
            if len(batch) < page:
                return rows
    finally:
        await store.aclose()


def read_fault_log(path: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    if path.exists():
        for line in path.read_text().splitlines():
            if line:
                counts[line.split(" ", 1)[0]] += 1
    return counts
