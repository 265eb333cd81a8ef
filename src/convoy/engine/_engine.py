"""The embedded engine: runs sessions durably in one asyncio process on SQLite."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from convoy.interceptors._accounting import StepTimings, UsageAccounting
from convoy.runtime._context import Context
from convoy._errors import (
    ConvoyError,
    SessionTerminated,
    TerminalReason,
    UnknownOutcomeError,
    UserError,
    error_to_record,
)
from convoy.interceptors._base import Interceptor
from convoy.runtime._limits import Limits
from convoy.models._messages import Usage
from convoy.cost._pricing import PriceTable
from convoy.engine._runtime import Runtime
from convoy.runtime._session import SessionState
from convoy.stores._sqlite import UNFINISHED, Durability, SessionRow, SQLiteStore
from convoy.definitions._tools import readable_validation_error
from convoy.definitions._workflow import Workflow, load_workflow
from convoy.models._base import Model

OutT = TypeVar("OutT")


@dataclass(slots=True, kw_only=True)
class SessionResult(Generic[OutT]):
    """How a session ended. ``output`` is set when ``status == "completed"``."""

    id: str
    status: TerminalReason
    output: OutT | None = None
    error: dict[str, Any] | None = None
    steps: int = 0
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "completed"


@dataclass(slots=True, kw_only=True)
class ReplayResult:
    """``convoy replay``: did re-executing the journal reach the recorded result?"""

    id: str
    matches: bool
    status: str
    recorded_status: str
    output: str | None
    recorded_output: str | None
    steps: int
    error: dict[str, Any] | None = None
    recorded_error: dict[str, Any] | None = None


class Engine:
    """Runs workflows durably.

    Args:
        db: path of the SQLite store (created if missing).
        models: named model instances, e.g. ``{"sim:": SimModel(script)}``; agents whose
            ``model`` string matches use them. Other strings go through ``infer_model``.
        model: run every agent on this model instead of its own (e.g. ``"sim:"``).
        interceptors: extra interceptors, outermost first; they sit inside step timing and
            outside usage accounting.
        limits: per-session bounds (steps, handoffs, depth, wall clock, loops).
        concurrency: sessions running at once; more wait their turn (backpressure).
        durability: ``"process"`` survives a crash of the process; ``"power"`` also survives
            power loss (fsync on every commit batch).
        prices: the price table for cost accounting.
    """

    def __init__(self, db: str | Path = "convoy.db", *, models: Mapping[str, Model] | None = None,
                 model: str | Model | None = None, interceptors: Sequence[Interceptor] = (),
                 limits: Limits | None = None, concurrency: int = 1000,
                 durability: Durability = "process", prices: PriceTable | None = None,
                 workflows: Iterable[Workflow[Any, Any]] = ()) -> None:
        if concurrency < 1:
            raise UserError(f"concurrency must be >= 1, got {concurrency}")
        self.store = SQLiteStore(db, durability=durability)
        self.timings = StepTimings()
        self.accounting = UsageAccounting(prices)
        self.runtime = Runtime(self.store, limits=limits or Limits(),
                               interceptors=[self.timings, *interceptors, self.accounting],
                               models=models or {}, model_override=model,
                               prices=self.accounting.prices)
        self.concurrency = concurrency
        self._slots: asyncio.Semaphore | None = None
        self._workflows: dict[str, Workflow[Any, Any]] = {w.name: w for w in workflows}

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> None:
        if self.store.is_open:
            return
        self.store.open()
        for ic in self.runtime.interceptors:
            ic.bind(self.runtime)

    async def aclose(self) -> None:
        await self.store.aclose()
        models = {id(m): m for m in self.runtime.models.values()}
        if isinstance(self.runtime.override, Model):
            models[id(self.runtime.override)] = self.runtime.override
        for m in models.values():
            await m.aclose()

    async def __aenter__(self) -> Engine:
        self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def register(self, wf: Workflow[Any, Any]) -> None:
        self._workflows[wf.name] = wf

    def workflow_named(self, name: str) -> Workflow[Any, Any]:
        wf = self._workflows.get(name)
        if wf is None:
            wf = self._workflows[name] = load_workflow(name)
        return wf

    # -- running -------------------------------------------------------------------------

    async def run(self, wf: Workflow[Any, OutT], input: Any, *, session_id: str | None = None,
                  tenant: str = "default") -> SessionResult[OutT]:
        """Start a session and wait for its end. The session is durable from the moment it
        starts: after a crash, :meth:`resume` finishes it.

        A ``session_id`` that already exists is never run twice: a finished session returns
        its recorded result, an unfinished one resumes from its journal.
        """
        self.open()
        self.register(wf)
        value = _validate_input(wf, input)
        if session_id is not None:
            row = self.store.get_session(session_id)
            if row is not None:  # never run a known session twice
                return await self._known(wf, row)
        sid = session_id or uuid.uuid4().hex
        # Not awaited on its own: the first journal commit (or the final one) carries it.
        self.store.create_session(sid, wf.name, wf.version, tenant,
                                  _dump_input(wf, value), wait=False)
        return await self._admit(wf, sid, tenant, value, time.time())

    async def run_many(self, wf: Workflow[Any, OutT], inputs: Iterable[Any], *,
                       tenant: str = "default", ids: Iterable[str] | None = None,
                       on_done: Callable[[SessionResult[OutT]], None] | None = None,
                       ) -> list[SessionResult[OutT]]:
        """Run many sessions with at most ``concurrency`` at once; results in input order.

        Every session is created durably before any runs, so a crash loses none of them.
        Ids that already exist are not started twice: a finished session returns its stored
        result, an unfinished one resumes from its journal.
        """
        self.open()
        self.register(wf)
        values = [_validate_input(wf, x) for x in inputs]
        sids = list(ids) if ids is not None else [uuid.uuid4().hex for _ in values]
        if len(sids) != len(values):
            raise UserError(f"run_many got {len(values)} inputs but {len(sids)} ids")
        existing = self.store.get_sessions(sids)
        self.store.create_sessions_now([(sid, wf.name, wf.version, tenant, _dump_input(wf, v))
                                        for sid, v in zip(sids, values, strict=True)
                                        if sid not in existing])
        now = time.time()
        jobs = []
        done: list[SessionResult[OutT]] = []
        for sid, v in zip(sids, values, strict=True):
            row = existing.get(sid)
            if row is None:
                jobs.append((sid, tenant, v, now, False))  # new: nothing to replay
            elif row.status not in UNFINISHED:
                done.append(_result_of(wf, row))
            elif row.workflow != wf.name or row.version != wf.version:
                done.append(await self._fail_version(wf, row, on_done))
            else:  # started before (a crash, a stop): resume it from its journal
                jobs.append((sid, row.tenant, wf.input_adapter.validate_json(row.input),
                             row.started or now, True))
        results = await self._pool(wf, jobs, on_done)
        order = {sid: i for i, sid in enumerate(sids)}
        return sorted([*done, *results], key=lambda r: order[r.id])

    async def _known(self, wf: Workflow[Any, OutT], row: SessionRow) -> SessionResult[OutT]:
        if row.workflow != wf.name:
            raise UserError(f"session {row.id!r} belongs to workflow {row.workflow!r}, not "
                            f"{wf.name!r}; pick another session id")
        if row.status not in UNFINISHED:
            return _result_of(wf, row)
        if row.version != wf.version:
            return await self._fail_version(wf, row)
        value = wf.input_adapter.validate_json(row.input)
        return await self._admit(wf, row.id, row.tenant, value, row.started or time.time(),
                                 replay=self.store.load_journal(row.id))

    async def resume(self, *, on_done: Callable[[SessionResult[Any]], None] | None = None
                     ) -> list[SessionResult[Any]]:
        """Finish every pending or running session in the store (after a crash or a stop).

        Completed steps replay from the journal: no model or tool is called twice.
        """
        self.open()
        rows = self.store.unfinished()
        results: list[SessionResult[Any]] = []
        by_wf: dict[str, list[SessionRow]] = {}
        for row in rows:
            by_wf.setdefault(row.workflow, []).append(row)
        workflows = {name: self.workflow_named(name) for name in by_wf}  # all import, or none run
        for name, group in by_wf.items():
            wf = workflows[name]
            jobs = []
            for row in group:
                if row.version != wf.version:
                    results.append(await self._fail_version(wf, row, on_done))
                    continue
                jobs.append((row.id, row.tenant, wf.input_adapter.validate_json(row.input),
                             row.started or time.time(), True))
            results.extend(await self._pool(wf, jobs, on_done))
        return results

    async def replay(self, session_id: str) -> ReplayResult:
        """Re-execute a finished session from its journal, calling no model and no tool."""
        self.open()
        row = self.store.get_session(session_id)
        if row is None:
            raise UserError(f"no session {session_id!r} in {self.store.path}")
        if row.status in ("pending", "running"):
            raise UserError(f"session {session_id!r} is still {row.status}; resume it first")
        wf = self.workflow_named(row.workflow)
        value = wf.input_adapter.validate_json(row.input)
        journal = self.store.load_journal(session_id)
        res = await self._execute(wf, session_id, row.tenant, value, row.started or row.created,
                                  replay=journal, replay_only=True, persist=False)
        out = None
        if res.status == "completed":
            out = wf.output_adapter.dump_json(res.output).decode()
        matches = res.status == row.status and (out == row.output if out else
                                                _same_error(res.error, row.error_record))
        return ReplayResult(id=session_id, matches=matches, status=res.status,
                            recorded_status=row.status, output=out, recorded_output=row.output,
                            steps=res.steps, error=res.error, recorded_error=row.error_record)

    # -- internals -----------------------------------------------------------------------

    async def _pool(self, wf: Workflow[Any, OutT],
                    jobs: list[tuple[str, str, Any, float, bool]],
                    on_done: Callable[[SessionResult[OutT]], None] | None,
                    ) -> list[SessionResult[OutT]]:
        results: list[SessionResult[OutT] | None] = [None] * len(jobs)
        it = iter(enumerate(jobs))

        async def worker() -> None:
            for i, (sid, tenant, value, started, known) in it:
                replay = self.store.load_journal(sid) if known else None
                res = await self._admit(wf, sid, tenant, value, started, replay=replay)
                results[i] = res
                if on_done is not None:
                    on_done(res)

        async with asyncio.TaskGroup() as tg:
            for _ in range(min(self.concurrency, len(jobs))):
                tg.create_task(worker())
        return [r for r in results if r is not None]

    async def _admit(self, wf: Workflow[Any, OutT], sid: str, tenant: str, value: Any,
                     started: float, replay: Mapping[str, Any] | None = None,
                     ) -> SessionResult[OutT]:
        slots = self._slots
        if slots is None:
            slots = self._slots = asyncio.Semaphore(self.concurrency)
        async with slots:
            return await self._execute(wf, sid, tenant, value, started, replay=replay)

    async def _execute(self, wf: Workflow[Any, OutT], sid: str, tenant: str, value: Any,
                       started: float, *, replay: Mapping[str, Any] | None = None,
                       replay_only: bool = False, persist: bool = True) -> SessionResult[OutT]:
        rt = self.runtime
        state = SessionState(rt, sid, tenant, wf.name, started,
                             replay=dict(replay) if replay else None, replay_only=replay_only)
        if persist:
            self.store.mark_running(sid)
        t0 = time.perf_counter()
        status: TerminalReason = "completed"
        output: Any = None
        output_json: str | None = None
        error: dict[str, Any] | None = None
        try:
            remaining = None if state.deadline is None else state.deadline - time.time()
            async with asyncio.timeout(remaining):
                output = await wf.fn(Context(state), value)
            output = wf.output_adapter.validate_python(output)
            output_json = wf.output_adapter.dump_json(output).decode()
        except TimeoutError:
            status = "limit_exceeded"
            error = {"type": "LimitExceeded", "message": f"session {sid!r} ran past "
                     f"max_seconds={rt.limits.max_seconds}", "reason": status}
            output = None
        except SessionTerminated as e:
            status, error, output = e.reason, error_to_record(e), None
        except UnknownOutcomeError as e:
            status, error, output = "escalated", error_to_record(e), None
        except ValidationError as e:
            status, output = "failed", None
            error = {"type": "OutputValidationError", "message": f"workflow {wf.name!r} returned"
                     f" an invalid output: {readable_validation_error(e)}"}
        except (ConvoyError, Exception) as e:
            status, error, output = "failed", error_to_record(e), None
        if persist:
            await self.store.finish_session(sid, status, output_json, error, state.steps,
                                            state.usage.input_tokens, state.usage.output_tokens,
                                            state.cost)
        return SessionResult(id=sid, status=status, output=output, error=error,
                             steps=state.steps, usage=state.usage, cost=state.cost,
                             duration_s=time.perf_counter() - t0)

    async def _fail_version(self, wf: Workflow[Any, Any], row: SessionRow,
                            on_done: Callable[[SessionResult[Any]], None] | None = None,
                            ) -> SessionResult[Any]:
        err = {"type": "NonDeterminismError", "message": (
            f"session {row.id!r} started on version {row.version!r} of workflow "
            f"{row.workflow!r} but the code is now version {wf.version!r} of {wf.name!r}; run "
            "it with the old code, or start a new session")}
        await self.store.finish_session(row.id, "failed", None, err, 0, 0, 0, 0.0)
        res: SessionResult[Any] = SessionResult(id=row.id, status="failed", error=err)
        if on_done is not None:
            on_done(res)
        return res

    # -- sync shims ----------------------------------------------------------------------

    def run_sync(self, wf: Workflow[Any, OutT], input: Any, **kw: Any) -> SessionResult[OutT]:
        """Blocking :meth:`run`, for scripts and notebooks without an event loop."""
        return asyncio.run(self._closing(self.run(wf, input, **kw)))

    async def _closing(self, aw: Awaitable[SessionResult[OutT]]) -> SessionResult[OutT]:
        try:
            return await aw
        finally:
            await self.aclose()



def _result_of(wf: Workflow[Any, OutT], row: SessionRow) -> SessionResult[OutT]:
    """The stored result of a finished session."""
    return SessionResult(
        id=row.id, status=row.status,  # type: ignore[arg-type]
        output=wf.output_adapter.validate_json(row.output) if row.output else None,
        error=row.error_record, steps=row.steps, usage=Usage(row.input_tokens, row.output_tokens),
        cost=row.cost, duration_s=(row.finished or 0) - (row.started or row.created))


def _validate_input(wf: Workflow[Any, Any], value: Any) -> Any:
    try:
        if isinstance(value, str | bytes) and wf.input_type is not str:
            return wf.input_adapter.validate_json(value)
        return wf.input_adapter.validate_python(value)
    except ValidationError as e:
        raise UserError(f"input does not match workflow {wf.name!r} input type: "
                        f"{readable_validation_error(e)}") from None


def _dump_input(wf: Workflow[Any, Any], value: Any) -> str:
    return wf.input_adapter.dump_json(value).decode()


def _same_error(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    if a is None or b is None:
        return a is b
    return bool(a.get("type") == b.get("type") and a.get("message") == b.get("message"))


__all__ = ["Engine", "ReplayResult", "SessionResult"]
