"""The embedded engine: runs sessions durably in one asyncio process, on a store.

Ownership: every session an engine runs is claimed in the store with a lease that the
engine renews while it runs; if the engine dies, the lease expires and another engine (or
``convoy resume``) takes the session over from its journal. A session whose owner is a dead
process on this machine is taken over at once. Writes from an engine that lost a session
are refused by the store, so a session never runs twice at once.

Waiting: a session that sleeps past ``park_after`` or waits for a signal is *parked*: its
coroutine unwinds, it holds no memory and no concurrency slot, and the store keeps its
timer. :meth:`Engine.serve` (``convoy worker``) wakes it when its timer is due or its
signal arrives; :meth:`Engine.resume` runs whatever is due now.

Tenants: every session belongs to one tenant. The engine is the operator's view of every
tenant; :meth:`Engine.tenant` gives one tenant's view (:class:`~convoy.Tenant`), which reaches
nothing of another tenant. Session ids are unique in a store: a new session never takes an
id another tenant's session has, even one being started at the same moment by this engine.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import replace
from functools import partial
from inspect import CO_COROUTINE
from pathlib import Path
from types import BuiltinMethodType, MethodType
from typing import Any, TypeVar, cast, overload

from pydantic import ValidationError
from pydantic_core import from_json, to_json

from convoy._errors import (
    AuditError,
    ConvoyError,
    NonDeterminismError,
    SessionTerminated,
    StoreError,
    UnknownOutcomeError,
    UserError,
    error_to_record,
    message_of,
)
from convoy._text import (
    holds_huge_int,
    huge_int,
    plural,
    quoted,
    readable_validation_error,
    short,
    storable_json,
)
from convoy.cost._pricing import PriceTable
from convoy.definitions._workflow import (
    Workflow,
    check_workflow,
    load_workflow,
    registered_workflow,
    script_workflow,
)
from convoy.durability._executor import (
    Draining,
    JournaledExecutor,
    NonDeterminismWarning,
    OnNonDeterminism,
    journal_tap_of,
)
from convoy.durability._signals import LeaseLost, Parked, SessionInterrupted
from convoy.engine._backoff import Backoff, delay_after
from convoy.engine._cancel import (
    CANCELLED,
    cancelled_record,
    ended_by_request,
    honour_requests,
)
from convoy.engine._control import SessionControl
from convoy.engine._deadlines import Deadlines
from convoy.engine._escalation import ESCALATION
from convoy.engine._owners import new_owner, owner_is_dead
from convoy.engine._raised import described, raised_of
from convoy.engine._results import (
    ReplayResult,
    ResultStatus,
    SessionResult,
    StoredOutputUnreadable,
    _result_of,
    _stored_result,
    _unfinished_result,
    _version_skip,
    _workflow_skip,
    needs_master_key,
    unreadable,
)
from convoy.engine._runtime import Runtime, _run_session
from convoy.engine._stored import StoredWorkflow
from convoy.engine._subjects import SubjectRights
from convoy.engine._tenancy import (
    DEFAULT_TENANT,
    check_session_id,
    check_tenant,
    taken_session,
)
from convoy.engine._tenant import Tenant
from convoy.hitl._rules import Escalation
from convoy.hitl._task import check_namespace
from convoy.interceptors._accounting import StateStats, StepTimings, UsageAccounting
from convoy.interceptors._base import Interceptor, SessionEnd, SessionInfo, SessionInput
from convoy.models._base import Model
from convoy.privacy._keys import KeyRing, MasterKey, SubjectKey
from convoy.privacy._seal import is_sealed
from convoy.privacy._sealed_store import sealing
from convoy.privacy._withheld import SessionText, log_raised, withheld
from convoy.runtime._agent_loop import run_tap_of
from convoy.runtime._context import Context
from convoy.runtime._limits import Limits
from convoy.runtime._session import SessionState
from convoy.security._guard import ToolGuard
from convoy.security._policy import ProvenancePolicy
from convoy.state._access import DirectAccess
from convoy.state._handle import State
from convoy.stores._protocol import (
    NewSession,
    SessionFilter,
    SessionOutcome,
    SessionRow,
    SessionStatus,
    StepRecord,
    Store,
    joined_wait_names,
)
from convoy.stores._rows import DamagedRow
from convoy.stores._sqlite import Durability
from convoy.stores._url import store_from_url

OutT = TypeVar("OutT")
T = TypeVar("T")

log = logging.getLogger("convoy")


#: ``serve(until_idle=True)`` waits for a signal's timeout due within this many seconds
#: (a short one is part of the work); one further away leaves its session waiting.
IDLE_HORIZON = 60.0

#: As ``serve`` stops, how long it may take to give back the sessions it holds to run
#: again later (see ``_backoff``); a store that fails longer leaves their leases to lapse.
GIVE_BACK_SECONDS = 5.0


class Engine(SessionControl, SubjectRights):
    """Runs workflows durably: the operator's view of every tenant's sessions.

    Code that serves one tenant gets :meth:`tenant` (a :class:`~convoy.Tenant`) instead:
    the same methods, confined to that tenant.

    Args:
        store: a :class:`~convoy.stores.Store`, or a store URL: the path of a SQLite file
            (created if missing) or ``postgresql://user:password@host:port/dbname`` (see
            :func:`~convoy.stores.store_from_url`). Default: ``$CONVOY_DB``, else
            ``convoy.db``.
        models: named model instances, e.g. ``{"sim:": SimModel(script)}``; agents whose
            ``model`` string matches use them. Other strings go through ``infer_model``.
        model: run every agent on this model instead of its own (e.g. ``"sim:"``). A
            string is made into a model when the engine opens, so a missing API key or a
            bad option raises :class:`~convoy.UserError` from ``open()`` (``async with``)
            before any session starts; an agent's own model string is made at its first
            call, and a failure there fails that session.
        interceptors: interceptors around every step and session; the engine orders them
            by their ``stage`` (see :mod:`convoy.interceptors`).
        limits: per-session bounds (steps, handoffs, depth, active time, age, loops).
        concurrency: sessions running at once; more wait their turn (backpressure).
            Parked (waiting) sessions take no slot.
        durability: for a SQLite path: ``"process"`` survives a crash of the process;
            ``"power"`` also survives power loss (fsync on every commit batch).
        prices: the price table for cost accounting.
        workflows: workflows this engine can resume by name (besides the ones it runs).
        deps: handed to every tool as ``ToolContext.deps``.
        lease_seconds: how long a claim on a session lasts without renewal; another engine
            takes over a session this long after its owner died. Also how long a step's
            outcome the store failed to journal, with a transient error (the database
            restarting, a lost connection), is written again, backing off, before the run
            stops: a step that ran is not left to run again (or, not idempotent, to be
            escalated) for a short outage.
        park_after: a ``ctx.sleep`` longer than this (seconds) parks the session.
        on_nondeterminism: ``"error"`` (default) or ``"warn"`` when a resumed session asks
            a journaled step with a different input, or finishes leaving journal entries
            unused.
        escalation: the :class:`~convoy.Escalation` rules of every agent that has none of
            its own: which failures go to a person (an inbox task) instead of failing.
        tenant_scopes: per tenant, the most its sessions' agents may be granted: a tool
            scope is granted only if the agent's ``scopes`` and the tenant's cap both
            cover it (tenants not named are not capped).
        provenance: the rules that hold side-effecting tool calls whose arguments come
            from untrusted content (:class:`~convoy.ProvenancePolicy`); default: one with its
            ``default_rules``.
        master_key: the key that wraps data subjects' keys (see docs/how-to/privacy.md).
            Default: ``$CONVOY_MASTER_KEY`` or the file ``$CONVOY_MASTER_KEY_FILE`` names; with
            neither, sessions cannot name a subject (and nothing is sealed).
    """

    def __init__(self, store: str | Path | Store | None = None, *,
                 models: Mapping[str, Model] | None = None, model: str | Model | None = None,
                 interceptors: Sequence[Interceptor] = (), limits: Limits | None = None,
                 concurrency: int = 1000, durability: Durability = "process",
                 prices: PriceTable | None = None, workflows: Iterable[Workflow[Any, Any]] = (),
                 deps: Any = None, lease_seconds: float = 30.0, park_after: float = 1.0,
                 on_nondeterminism: OnNonDeterminism = "error",
                 escalation: Escalation | None = None,
                 tenant_scopes: Mapping[str, Collection[str]] | None = None,
                 provenance: ProvenancePolicy | None = None,
                 master_key: MasterKey | None = None) -> None:
        if concurrency < 1:
            raise UserError(f"concurrency must be >= 1, got {concurrency}")
        if not (math.isfinite(lease_seconds) and lease_seconds > 0) or not park_after >= 0:
            raise UserError("lease_seconds must be a number of seconds > 0 and park_after "
                            f">= 0, got {lease_seconds!r} and {park_after!r}")
        if on_nondeterminism not in ("error", "warn"):
            raise UserError(f"on_nondeterminism must be 'error' or 'warn', got "
                            f"{on_nondeterminism!r}")
        if escalation is not None and not isinstance(escalation, Escalation):
            raise UserError(f"escalation must be a convoy.Escalation, got {escalation!r}")
        if master_key is not None and not isinstance(master_key, MasterKey):
            raise UserError("master_key must be a convoy.MasterKey (MasterKey.from_text(TEXT) "
                            f"reads a key's text), got a {type(master_key).__name__}")
        for name in tenant_scopes or {}:
            check_tenant(name)
        #: Scopes and approvals, checked before every tool call that declares them.
        self.tool_guard = ToolGuard(tenant_scopes)
        if provenance is not None and not isinstance(provenance, ProvenancePolicy):
            raise UserError(f"provenance must be a convoy.ProvenancePolicy, got {provenance!r}")
        #: Provenance rules, checked before side-effecting tool calls.
        self.provenance = provenance if provenance is not None else ProvenancePolicy()
        plain: Store = store if isinstance(store, Store) else store_from_url(
            store, durability=durability)
        master = master_key if master_key is not None else MasterKey.from_env()
        #: Subject keys (``None``: no master key configured, nothing is sealed).
        self.keys = None if master is None else KeyRing(plain, master)
        self.store: Store = plain if self.keys is None else sealing(plain, self.keys)
        self.timings = StepTimings()
        self.accounting = UsageAccounting(prices)
        #: Shared-state reads, writes and conflicts of the sessions this engine ran.
        self.state_stats = StateStats()
        self.runtime = Runtime(self.store, limits=limits or Limits(),
                               interceptors=[self.timings, self.tool_guard, self.provenance,
                                             *interceptors,
                                             self.accounting, self.state_stats],
                               models=models or {}, model_override=model,
                               prices=self.accounting.prices, deps=deps,
                               escalation=escalation)
        self.runtime.wake = self._poke
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.park_after = park_after
        self.on_nondeterminism: OnNonDeterminism = on_nondeterminism
        self.owner = new_owner()
        self._workflows: dict[str, Workflow[Any, Any]] = {
            w.name: w for w in map(check_workflow, workflows)}
        self._slots: asyncio.Semaphore | None = None
        self._wake: asyncio.Event | None = None
        self._renewer: asyncio.Task[None] | None = None
        # The sessions this engine runs: their tasks, ``None`` once the workflow has
        # returned and the run records how it ended (no cancel may interrupt that).
        self._running: dict[str, asyncio.Task[Any] | None] = {}
        self._deadlines = Deadlines()  # of the sessions running here (their max_seconds)
        # Sessions with ids chosen by the caller that this engine is creating and running,
        # by id: their tenant. Until its row is committed, only this tells another start of
        # the same id (same owner: the store cannot tell them apart) that it is taken.
        self._starting: dict[str, str] = {}
        self._worker_runs: set[str] = set()  # sessions ``serve`` is running (its claims)
        # Sessions a cancelled run is giving back (see ``_in_background``): the task.
        self._giving_back: dict[str, asyncio.Future[None]] = {}
        # The sessions this engine is stopping (cancelled), and who cancelled each.
        self._cancelling: dict[str, str] = {}
        self._stopped_by_request: set[str] = set()  # see ``honour_requests``
        self._draining = Draining()  # see ``drain``
        self._unreadable: UserError | None = None  # see ``_run_claimed``
        self._backoff = Backoff()  # sessions the store failed to record, by ``serve``
        # Sessions a run left held here as a crash would (see ``_crashed_out``): tenants.
        self._left_held: dict[str, str] = {}
        self._serving = 0  # ``serve`` loops running
        self._serving_until_idle = 0  # of which ``until_idle``
        self._open = False
        self._opening: asyncio.Lock | None = None

    @property
    def injection_signals(self) -> Counter[str]:
        """Known injection patterns found in the untrusted content sessions read, by
        pattern name (a signal for dashboards; the provenance policy is the defence)."""
        return self.runtime.injection_signals

    @property
    def clock(self) -> Callable[[], float]:
        """The wall clock the engine and its store share (epoch seconds); tests replace the
        store's clock to fake time."""
        return getattr(self.store, "clock", time.time)

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Open the store and start the interceptors (``async with`` does this)."""
        if self._open:
            return
        if self._opening is None:  # sessions started at once open the engine once
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._open:
                return
            _check_clock(self.clock())
            await self.store.open()
            started: list[Interceptor] = []
            try:
                for ic in self.runtime.interceptors:
                    await ic.start(self)
                    started.append(ic)
                if isinstance(self.runtime.override, str):
                    # The model every agent runs on, made now (after the interceptors,
                    # which may name routes): a missing API key or a bad option is one
                    # error here, not a failed session each.
                    self.runtime.resolve(self.runtime.override)
            except BaseException:
                for ic in reversed(started):
                    await ic.close()
                await self.store.aclose()
                raise
            self._open = True
            self._renewer = asyncio.get_running_loop().create_task(self._renew_leases())

    async def aclose(self) -> None:
        """Stop renewing leases, close interceptors (exporters flush), commit and close the
        store, close the models."""
        while self._giving_back:  # (each bounded by GIVE_BACK_SECONDS)
            await asyncio.gather(*set(self._giving_back.values()), return_exceptions=True)
        # The caller's own cancellation (Ctrl-C: ``asyncio.run`` cancels its task, which a
        # run of code with no await in it sees only here) is raised once the engine is
        # closed: swallowed with the renewer's, a command interrupted after its work exited
        # 0 as if nothing had happened.
        interrupted = False
        if self._renewer is not None:
            renewer = self._renewer
            renewer.cancel()
            while not renewer.done():
                try:
                    await asyncio.wait([renewer])
                except asyncio.CancelledError:
                    interrupted = True
            with suppress(asyncio.CancelledError):
                renewer.result()
            self._renewer = None
        if self._open:
            for ic in reversed(self.runtime.interceptors):
                await ic.close()
        await self.store.aclose()
        models = {id(m): m for m in self.runtime.models.values()}
        if isinstance(self.runtime.override, Model):
            models[id(self.runtime.override)] = self.runtime.override
        for m in models.values():
            await m.aclose()
        self._open = False
        self._opening = None
        self._slots = None  # bound to this event loop; the next open may run on another
        self._wake = None
        if interrupted:
            raise asyncio.CancelledError

    async def __aenter__(self) -> Engine:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _renew_leases(self) -> None:
        interval = self.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            if not self._running:
                continue
            try:
                await self.store.renew(self.owner, self.lease_seconds)
                # Cancel requests for sessions running here (``convoy cancel`` elsewhere).
                await honour_requests(self, self._stopped_by_request)
            except StoreError as e:  # the next round tries again; leases last 3 rounds
                log.warning("could not renew the session leases (%s); trying again in %g s",
                            _store_reason(str(e)), interval)

    def register(self, wf: Workflow[Any, Any]) -> None:
        """Make ``wf`` resumable by this engine under its name (:meth:`run` registers the
        workflow it runs)."""
        self._workflows[check_workflow(wf).name] = wf

    def workflow_named(self, name: str) -> Workflow[Any, Any]:
        """The workflow registered (or decorated in an imported module) under ``name``, or
        the one ``"module:attribute"`` names."""
        wf = self._workflows.get(name) or registered_workflow(name)
        if wf is None:
            wf = load_workflow(name)
        self._workflows[name] = wf
        return wf

    def tenant(self, name: str) -> Tenant:
        """One tenant's view of this engine: :meth:`run`, :meth:`resume`, :meth:`signal`,
        :meth:`sessions` and the rest, confined to the tenant ``name``. A session of another
        tenant is exactly an unknown id through it. Cheap: make one per request.

        Raises:
            UserError: ``name`` is not a valid tenant name (1 to 64 letters, digits, ``.``,
                ``_`` or ``-``, starting and ending with a letter or digit).
        """
        return Tenant(self, name)

    def _scope(self) -> tuple[Engine, str | None]:
        return self, None

    def drain(self) -> None:
        """Stop gracefully: start no more steps, and no more sessions.

        The steps in flight finish and their outcomes are journaled (a tool call, a
        ``ctx.step`` effect, a model call); a session's next step does not start, and its
        run ends there, unfinished: the session is released ``pending``, and a later run
        (:meth:`resume`, another engine's :meth:`serve`) goes on from that step, running
        nothing twice. :meth:`run_many` and :meth:`resume` start none of the sessions they
        have not started yet (each is left unfinished, released); :meth:`serve` claims no
        more and returns once the sessions it runs have stopped. A step that never ends
        holds its session: cancel the task that awaits the engine after a grace period
        (the command line's stop gives 30 seconds). For a process that is stopping (a
        supervisor's SIGTERM) or a deploy; the engine stays open for the callers' results.
        """
        self._draining.on = True
        self._wake_event().set()

    @property
    def draining(self) -> bool:
        """Whether :meth:`drain` was called."""
        return self._draining.on

    @property
    def in_flight(self) -> list[str]:
        """The ids of the sessions whose runs are under way on this engine now, in the
        order they started: those a :meth:`drain` waits for, and whose steps in flight a
        cancel of the task that awaits the engine cuts off (each is then left unfinished,
        for a later run)."""
        return [sid for sid, task in self._running.items() if task is not None]

    def _wake_event(self) -> asyncio.Event:
        if self._wake is None:
            self._wake = asyncio.Event()
        return self._wake

    def _poke(self) -> None:
        """Something became runnable (a state write woke a parked session): the serve
        loop claims it now instead of at its next poll."""
        self._wake_event().set()

    # -- shared state --------------------------------------------------------------------

    @overload
    def state(self, namespace: str, *, tenant: str = DEFAULT_TENANT, type: type[T]
              ) -> State[T]: ...
    @overload
    def state(self, namespace: str, *, tenant: str = DEFAULT_TENANT, type: None = None
              ) -> State[Any]: ...

    def state(self, namespace: str, *, tenant: str = DEFAULT_TENANT, type: Any = None
              ) -> State[Any]:
        """A namespace of ``tenant``'s shared state, outside any session: to seed, inspect
        or correct what sessions share (``ctx.state`` in workflow code). Reads and writes
        go to the store directly (no journal); writes are compare-and-set, and wake the
        sessions waiting for a change. Open the engine first (``async with``).

        Raises:
            UserError: ``tenant`` is not a valid tenant name.
        """
        check_tenant(tenant)
        check_namespace(namespace)
        return State(namespace, DirectAccess(self.store, tenant, self._poke), type)

    # -- running -------------------------------------------------------------------------

    async def run(self, wf: Workflow[Any, OutT], input: Any, *, session_id: str | None = None,
                  tenant: str = DEFAULT_TENANT, headers: Mapping[str, str] | None = None,
                  subject: str | None = None) -> SessionResult[OutT]:
        """Start a session of ``tenant`` and run it until it ends or parks. The session is
        durable from the moment it starts: after a crash, :meth:`resume` finishes it.

        A ``session_id`` that already exists is never run twice: a finished session returns
        its recorded result, an unfinished one resumes from its journal (unless another
        engine owns it: then the result says ``running``). Session ids are unique in a
        store: an id that a session of another tenant has raises :class:`UserError`.

        ``input`` is a value of the workflow's input type; a string is a string where that
        type takes one (``Optional[str]``, a ``Literal``, ``Any``), and is read as JSON
        text where it does not (a model, a list). A value that is neither raises
        :class:`UserError`.

        ``subject`` names the data subject (a person) the session holds personal data
        about: its input, output, step results and state writes are sealed under the
        subject's key, and :meth:`erase` removes them (see docs/how-to/privacy.md).
        """
        self.register(wf)
        check_tenant(tenant)
        if session_id is not None:
            check_session_id(session_id, hint=" (or none: session_id=None makes one up)")
        await self.open()
        value = _validate_input(wf, input)
        await self._subject_key(tenant, subject)
        if session_id is None:
            sid = uuid.uuid4().hex
        else:
            row = await self.store.get_session(session_id)
            if row is not None:  # never run a known session twice
                if row.tenant != tenant:
                    raise taken_session(session_id)
                return await self._known(wf, row)
            early = self._start(session_id, tenant)
            if early is not None:
                return early
            sid = session_id
        try:
            new = NewSession(id=sid, workflow=wf.name, version=wf.version, tenant=tenant,
                             input=_dump_input(wf, value), headers=dict(headers or {}),
                             subject=subject)
            if subject is None:
                # Not awaited on its own: the first journal commit (or the final one)
                # carries it.
                self.store.create_session(new, owner=self.owner, lease_s=self.lease_seconds)
            else:  # created only while the store holds the key it is sealed under (sealed
                # again under a new one if another process erased the subject meanwhile)
                await self.store.create_sessions([new], owner=self.owner,
                                                 lease_s=self.lease_seconds)
            return await self._admit(wf, sid, tenant, value, None, None, new=new)
        finally:
            if session_id is not None:
                self._starting.pop(sid, None)

    async def _subject_key(self, tenant: str, subject: str | None) -> SubjectKey | None:
        """Have the subject's key ready (made on first use) before its session starts; the
        key (``None`` without a subject)."""
        if subject is None:
            return None
        from convoy.privacy._subject_names import check_subject

        check_subject(subject)
        if self.keys is None:
            raise no_master_key(subject)
        return await self.keys.load(tenant, subject, create=True, fresh=True)

    def _start(self, sid: str, tenant: str) -> SessionResult[Any] | None:
        """Mark a new session with a chosen id as being started here; if it already is
        (its row may not be committed yet), what this start of it returns instead."""
        held = self._starting.get(sid)
        if held is None:
            self._starting[sid] = tenant
            return None
        if held != tenant:
            raise taken_session(sid)
        return SessionResult(id=sid, status="running")

    async def run_many(self, wf: Workflow[Any, OutT], inputs: Iterable[Any], *,
                       tenant: str = DEFAULT_TENANT, ids: Iterable[str] | None = None,
                       on_done: Callable[[SessionResult[OutT]], None] | None = None,
                       subject: str | None = None) -> list[SessionResult[OutT]]:
        """Run many sessions of ``tenant`` with at most ``concurrency`` at once; results in
        input order. ``subject``: the data subject every one of them is about (as for
        :meth:`run`).

        Every session is created (and claimed) durably before any runs, so a crash loses
        none of them. Ids that already exist are not started twice: a finished session
        returns its stored result (one whose stored output does not read back as the
        workflow's output type: its status, no output, and a ``StoredOutputUnreadable``
        error record that says so; :meth:`run` raises it), an unfinished one resumes from
        its journal. An id that a session of another tenant has raises :class:`UserError`
        before anything runs.
        """
        self.register(wf)
        check_tenant(tenant)
        given = None if ids is None else [check_session_id(sid, f"ids[{n}]")
                                          for n, sid in enumerate(ids)]
        await self.open()
        values = [_validate_input(wf, x) for x in inputs]
        await self._subject_key(tenant, subject)
        sids = given if given is not None else [uuid.uuid4().hex for _ in values]
        if len(sids) != len(values):
            raise UserError(f"run_many got {len(values)} inputs but {len(sids)} ids")
        if ids is not None and len(set(sids)) != len(sids):
            dup = next(sid for i, sid in enumerate(sids) if sid in sids[:i])
            raise UserError(f"run_many got the session id {dup!r} more than once")
        existing = await self.store.get_sessions(sids)
        for row in existing.values():
            if row.tenant != tenant:
                raise taken_session(row.id)
        started: list[str] = []
        busy: dict[str, SessionResult[Any]] = {}
        try:
            if ids is not None:
                for sid in sids:
                    if sid not in existing:
                        res = self._start(sid, tenant)
                        if res is None:
                            started.append(sid)
                        else:
                            busy[sid] = res
            return await self._run_many(wf, sids, values, tenant, existing, busy, on_done,
                                        subject)
        finally:
            for sid in started:
                self._starting.pop(sid, None)

    async def _run_many(self, wf: Workflow[Any, OutT], sids: list[str], values: list[Any],
                        tenant: str, existing: dict[str, SessionRow],
                        busy: dict[str, SessionResult[Any]],
                        on_done: Callable[[SessionResult[OutT]], None] | None,
                        subject: str | None) -> list[SessionResult[OutT]]:
        created = {sid: NewSession(id=sid, workflow=wf.name, version=wf.version,
                                   tenant=tenant, input=_dump_input(wf, v), subject=subject)
                   for sid, v in zip(sids, values, strict=True)
                   if sid not in existing and sid not in busy}
        made = await self.store.create_sessions(list(created.values()), owner=self.owner,
                                                lease_s=self.lease_seconds)
        taken: set[str] = set()  # (the sessions a run took: it gives them back itself)
        try:
            if made < len(created):
                await self._created_elsewhere(created, existing, tenant)
            return await self._run_created(wf, sids, values, tenant, existing, busy,
                                           on_done, created, taken)
        except BaseException:  # (also raised before any started: an id of another flow)
            self._give_back_unstarted([sid for sid in created if sid not in taken])
            raise

    async def _created_elsewhere(self, created: dict[str, NewSession],
                                 existing: dict[str, SessionRow], tenant: str) -> None:
        """Some sessions ``run_many`` created were there already: another engine created
        them after this one read their ids (a ``convoy run`` of the same inputs at the same
        time). They move from ``created`` (claimed here, run as new) to ``existing`` (run
        only once claimed), so this engine does not run a session another one owns (up to
        its first fenced write, its steps that need none run again) nor report it as run."""
        rows = await self.store.get_sessions(list(created))
        for sid, row in rows.items():
            if row.owner != self.owner:
                del created[sid]
                existing[sid] = row
        for row in rows.values():  # (as for an id there at the read: not run, not read)
            if row.owner != self.owner and row.tenant != tenant:
                raise taken_session(row.id)

    async def _run_created(self, wf: Workflow[Any, OutT], sids: list[str],
                           values: list[Any], tenant: str, existing: dict[str, SessionRow],
                           busy: dict[str, SessionResult[Any]],
                           on_done: Callable[[SessionResult[OutT]], None] | None,
                           created: dict[str, NewSession], taken: set[str],
                           ) -> list[SessionResult[OutT]]:
        jobs: list[_Job] = []
        done: list[SessionResult[OutT]] = []
        for sid, v in zip(sids, values, strict=True):
            row = existing.get(sid)
            if sid in busy:  # being started by another call on this engine
                done.append(busy[sid])
                if on_done is not None:
                    on_done(busy[sid])
                continue
            if row is None:
                jobs.append(_Job(sid, tenant, v, None, new=created[sid]))  # claimed
            else:
                early = await self._known_in_batch(wf, row)
                if early is None and self.keys is None and is_sealed(row.input):
                    early = _workflow_skip(row, needs_master_key(row), "MasterKeyNeeded")
                if early is not None:
                    done.append(early)
                    if on_done is not None:
                        on_done(early)
                else:
                    jobs.append(_Job(sid, row.tenant, _UNTYPED, row))  # (read once claimed)
        results = await self._pool(wf, jobs, on_done, taken)
        order = {sid: i for i, sid in enumerate(sids)}
        return sorted([*done, *results], key=lambda r: order[r.id])

    async def _known_in_batch(self, wf: Workflow[Any, OutT], row: SessionRow
                              ) -> SessionResult[OutT] | None:
        """:meth:`_known_early` for a session of a batch (``run_many``, ``resume``): a
        stored output that does not read back is its result's error, not the batch's end
        (the others were created and claimed: raising left them owned, never run)."""
        try:
            return await self._known_early(wf, row)
        except StoredOutputUnreadable as e:
            res: SessionResult[OutT] = _stored_result(row, None)
            res.error = {"type": type(e).__name__, "message": str(e), "retryable": False}
            return res

    async def _known_early(self, wf: Workflow[Any, OutT], row: SessionRow
                           ) -> SessionResult[OutT] | None:
        """The result for a known session that must not run now, or ``None`` to run it."""
        if row.workflow != wf.name:
            fix = (f": {script_workflow(row.workflow)}" if row.workflow.startswith("__main__:")
                   else "; pick another session id")
            raise UserError(f"session {row.id!r} belongs to workflow {row.workflow!r}, not "
                            f"{wf.name!r}{fix}")
        if not row.unfinished:
            return _result_of(wf, row)
        if row.version != wf.version and not await self._adopt_version(wf, row):
            return _version_skip(wf, row)
        return None

    async def _known(self, wf: Workflow[Any, OutT], row: SessionRow) -> SessionResult[OutT]:
        early = await self._known_early(wf, row)
        if early is not None:
            return early
        claimed = await self._claim(row)
        if claimed is None:
            now = await self._unclaimed(row)
            return _unfinished_result(now) if now.unfinished else _result_of(wf, now)
        if await ended_by_request(self, wf, claimed):
            return await self._ended_here(wf, claimed)
        read = await self._read_claimed(wf, claimed)
        if isinstance(read, SessionResult):  # escalated
            return read
        return await self._admit(wf, claimed.id, claimed.tenant, read[0], claimed, read[1])

    async def _adopt_version(self, wf: Workflow[Any, Any], row: SessionRow) -> bool:
        """A session of another version that journaled nothing simply starts on this one
        (one whose journal does not read back journaled something: it is not adopted)."""
        try:
            if await self.store.load_journal(row.id):
                return False
        except DamagedRow:
            return False
        await self.store.set_version(row.id, wf.version)
        return True

    async def _claim(self, row: SessionRow, *, waiting: bool = False) -> SessionRow | None:
        """Own ``row``'s session if it is runnable (``waiting``: if it waits, too)."""
        if row.id in self._running or row.id in self._starting:  # this engine runs it now
            return None
        await self._given_back_yet(row.id)
        self._left_held.pop(row.id, None)  # (taken up here: by a resume, say)
        if row.owner is not None and row.owner != self.owner and row.status == "running":
            await self._expire_if_dead(row.owner)
        if waiting:  # (only then: a store of another make may not know the argument)
            return await self.store.claim(row.id, self.owner, self.lease_seconds,
                                          tenant=row.tenant, waiting=True)
        return await self.store.claim(row.id, self.owner, self.lease_seconds, tenant=row.tenant)

    async def _unclaimed(self, row: SessionRow) -> SessionRow:
        """The row of a session read as runnable that this engine could not claim, read
        again: another engine runs it, or has finished (or parked) it since it was read,
        which the caller reports as it is now, not as running elsewhere. The row as read
        if it cannot be read again (a store error, a damaged row, purged)."""
        if row.id in self._running or row.id in self._starting:  # (this engine runs it)
            return row
        try:
            now = await self.store.get_session(row.id)
        except (StoreError, DamagedRow):
            return row
        return row if now is None else now

    async def _claimed_journal(self, sid: str) -> dict[str, StepRecord]:
        """The journal of a session this engine just claimed. If it cannot be read (a
        store error; a master key that does not open a subject's data it holds), the claim
        is given up before the error goes on: the session is not held by this engine
        until its lease lapses. A damaged record (:class:`DamagedRow`) keeps the claim:
        the caller escalates that session (:meth:`_read_claimed`)."""
        try:
            return await self.store.load_journal(sid)
        except DamagedRow:
            raise
        except BaseException:
            with suppress(Exception):
                await self.store.release(sid, self.owner)
            raise

    async def _read_claimed(self, wf: Workflow[Any, Any], row: SessionRow
                            ) -> tuple[Any, dict[str, StepRecord]] | SessionResult[Any]:
        """The input (as ``wf`` takes it) and journal of a session this engine claimed. If
        they cannot be read here (the input is not what ``wf`` takes now, a stored value
        is damaged), the session is escalated for a person instead
        (:class:`~convoy._errors.SessionUnreadable`), and its result is returned: one
        session that cannot be read does not stop the others."""
        unopened = getattr(self.store, "unopened", None)  # (a sealing store's damaged row)
        problem: Exception | None = unopened(row.id) if unopened is not None else None
        if problem is None:
            try:
                row.header_map  # noqa: B018  (damaged headers raise: read before it runs)
                # Any error of the input type's validation is this input's, not the
                # engine's: a validator of new code may raise a TypeError on an old input.
                value = wf.input_adapter.validate_json(row.input)
            except Exception as e:
                problem = e
        if problem is None:
            try:
                return value, await self._claimed_journal(row.id)
            except DamagedRow as e:  # (any other error gave the claim up and goes on)
                problem = e
        record = error_to_record(unreadable(wf, row, problem))
        try:
            status = await self._end_in_a_run(wf, row, SessionEnd(status="escalated",
                                                                   error=record))
        except BaseException:  # (a session hook's error: given back, as a run's is)
            with suppress(Exception):
                await self.store.release(row.id, self.owner)
            raise
        res = _unfinished_result(row)  # (not read back: its row may not open)
        if status == "escalated":
            res.status, res.error = "escalated", record
        else:  # (the store failed as it wrote it: left unfinished, given back)
            res.status = "pending"
        return res

    async def _ended_here(self, wf: Workflow[Any, OutT], row: SessionRow
                          ) -> SessionResult[OutT]:
        """The result of a claimed session that a cancel request ended
        (:func:`~convoy.engine._cancel.ended_by_request`): as stored, or, if its row does
        not open (a damaged sealed value), as the request ended it."""
        try:
            res = await self._stored(wf, row.id)
        except DamagedRow:
            res = _unfinished_result(row)
            res.status, res.error = "cancelled", dict(CANCELLED)
            return res
        res.already_finished = False  # (ended here, by this call)
        return res

    async def _stored(self, wf: Workflow[Any, OutT], sid: str) -> SessionResult[OutT]:
        """The result of a session as the store holds it now."""
        row = await self.store.get_session(sid)
        if row is None:  # purged at once
            return SessionResult(id=sid, status="cancelled", error=dict(CANCELLED))
        return _result_of(wf, row) if not row.unfinished else _unfinished_result(row)

    def _stop_running(self, sid: str, by: str) -> bool:
        """Cancel the session ``sid`` if this engine is running it (it ends ``cancelled``,
        ``by`` recorded as who cancelled it); ``False`` if it does not, or if its run has
        ended and records how."""
        task = self._running.get(sid)
        if task is None:
            return False
        self._cancelling[sid] = by
        task.cancel()
        return True

    async def _sweep_dead_owners(self, tenant: str | None) -> None:
        owners = {r.owner for r in await self.store.list_sessions(
            SessionFilter(status="running", tenant=tenant, limit=10_000),
            left_out=[])  # (a damaged row: its claim says so, as it runs or does not)
            if r.owner and r.owner != self.owner}
        for owner in owners:
            await self._expire_if_dead(owner)

    async def _expire_if_dead(self, owner: str) -> None:
        if owner_is_dead(owner):
            await self.store.expire_owner(owner)

    async def resume(self, *, on_done: Callable[[SessionResult[Any]], None] | None = None
                     ) -> list[SessionResult[Any]]:
        """Run every unfinished session that can run now (after a crash, a stop, or when a
        timer is due or a signal arrived), and report the others. Only the sessions it runs
        need their workflow (registered, or importable by name): one that waits for what
        has not come yet is reported as waiting either way, and one whose workflow this
        process cannot load stays unfinished while the others run.

        Completed steps replay from the journal: no model or tool is called twice. The
        results of sessions that did not run say why: ``waiting`` (a timer not yet due or
        no signal yet), ``running`` (another live engine owns it), or their status with an
        error: ``VersionMismatch`` for a workflow version this code does not have,
        ``WorkflowNotFound`` for a workflow it cannot load (the message says how to). A
        session another engine finished after this one read it is its stored result
        (``already_finished``).
        """
        return await self._resume(None, on_done)

    async def _resume(self, tenant: str | None,
                      on_done: Callable[[SessionResult[Any]], None] | None
                      ) -> list[SessionResult[Any]]:
        await self.open()
        rows = await self.store.unfinished(tenant=tenant)
        now = self.clock()
        results = [_unfinished_result(r) for r in rows if r.parked_at(now)]  # (no code needed)
        by_wf: dict[str, list[SessionRow]] = {}
        for row in rows:
            if not row.parked_at(now):
                by_wf.setdefault(row.workflow, []).append(row)
        # Load every workflow first, and run what loads: a session whose code is not here
        # (a retired workflow, a script's) must not hold up the others after a crash.
        workflows: dict[str, Workflow[Any, Any]] = {}
        for name, group in by_wf.items():
            try:
                workflows[name] = self.workflow_named(name)
            except UserError as e:
                results.extend(_workflow_skip(row, str(e)) for row in group)
        for name, group in by_wf.items():
            if name not in workflows:
                continue
            wf = workflows[name]
            jobs: list[_Job] = []
            for row in group:
                early = await self._known_in_batch(wf, row)
                if early is None and self.keys is None and is_sealed(row.input):
                    early = _workflow_skip(row, needs_master_key(row), "MasterKeyNeeded")
                if early is not None:
                    results.append(early)
                    continue
                jobs.append(_Job(row.id, row.tenant, _UNTYPED, row))  # (read once claimed)
            ran = await self._pool(wf, jobs, on_done)
            results.extend(ran)
        return results

    async def serve(self, *, until_idle: bool = False, poll_interval: float = 1.0,
                    on_wait: Callable[[list[SessionRow]], None] | None = None) -> None:
        """Run sessions as they become runnable: new ones, due timers, signalled waits, and
        sessions of engines that died. Runs until cancelled, or with ``until_idle`` until
        no session of a registered workflow can run any more: those left wait for a signal
        (or a person), without a timeout or with one more than :data:`IDLE_HORIZON`
        seconds away; a session that waits for a timer alone (``ctx.sleep``) is waited
        for, however far off it is due.

        ``on_wait`` (with ``until_idle``): called with the sessions that keep it from
        returning (timers not yet due, sessions another engine runs) each time it finds
        nothing it can run now but them, so a caller can say what it waits for.

        A transient :class:`StoreError` (a lost connection) does not stop it: it tries
        again after a doubling delay, and so does a session whose end the store failed to
        record, or whose run a session hook refused (logged; ``until_idle`` does not wait
        for such a session: it is left ``pending``). An error that stops it (a store
        error that is not transient as it claims or reads sessions, or out of a session
        hook; an :class:`AuditError` out of a session hook) is raised as itself (see
        :mod:`~convoy.engine._raised`).

        A ``BaseException`` that is not an ``Exception`` (a ``KeyboardInterrupt``, a
        ``SystemExit``, an application's own) out of a run it started stops it too, and is
        raised: nothing is written for that run, as if the process had crashed there, and
        its session, unfinished (its journaled steps replay, none runs twice), is given back
        as ``serve`` stops, for the next worker (this one, called again). One a run outside
        ``serve`` left so (:meth:`run`, :meth:`resume`, whose caller caught it) stays held
        by this engine, which no other takes over while its lease is renewed: ``serve``
        runs it again (``until_idle`` waits for it, and returns, or raises what its run
        raises again).
        """
        await self._serve(None, until_idle, poll_interval, on_wait)

    async def _serve(self, tenant: str | None, until_idle: bool, poll_interval: float,
                     on_wait: Callable[[list[SessionRow]], None] | None = None) -> None:
        await self.open()
        self._serving += 1
        self._serving_until_idle += until_idle
        unstarted: dict[str, str] = {}  # claimed, their runs not started yet
        try:
            await self._serve_loop(tenant, until_idle, poll_interval, on_wait, unstarted)
        except BaseExceptionGroup as eg:  # (its task group's: the error itself)
            raise raised_of(eg) from None
        finally:
            self._serving -= 1
            self._serving_until_idle -= until_idle
            if unstarted:  # (runs its stopping task group cancelled before they started,
                # another session's error stopping it in their round: nothing else gives
                # their sessions back)
                await self._bounded(asyncio.gather(*map(self._release, unstarted)))
            if not self._serving:  # give back what waits to run again (see ``_backoff``)
                await self._give_back_held()
        if self._unreadable is not None:  # (see ``_run_claimed``)
            raise self._unreadable

    async def _serve_loop(self, tenant: str | None, until_idle: bool, poll_interval: float,
                          on_wait: Callable[[list[SessionRow]], None] | None,
                          unstarted: dict[str, str]) -> None:
        wake = self._wake_event()
        backoff = self._backoff
        sweep = [0.0]  # when to look for owners that died on this machine next
        failures, retry_at = 0, 0.0  # the store's failures in a row; when to try it again
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        async with asyncio.TaskGroup() as tg:
            while True:
                if task is not None and task.cancelling() > cancels:
                    # A cancel a library swallowed, honoured: Python 3.11's wait_for loses
                    # one that comes as what it waits for is done (psycopg_pool's wait for a
                    # connection does, as the store comes back), and this loop would
                    # otherwise never end.
                    raise asyncio.CancelledError
                wake.clear()
                if self._draining.on:  # (see ``drain``: claim no more, wait for the rest)
                    if not self._running:
                        break
                    await wake.wait()
                    continue
                nxt: float | None = retry_at
                if self._left_held:
                    self._take_up_left_held(tenant)
                if self.clock() >= retry_at:
                    try:
                        if failures:  # back: take up what the failed calls left held
                            await self._adopt_held(tenant)
                        idle, nxt = await self._serve_round(tg, tenant, until_idle, on_wait,
                                                            sweep, unstarted)
                    except StoreError as e:  # (a lost connection: wait, then try again)
                        if not e.transient:
                            raise
                        if self._draining.on:  # (stopping: nothing is tried again)
                            continue
                        failures += 1
                        delay = delay_after(failures, self.lease_seconds / 3)
                        retry_at = nxt = self.clock() + delay
                        log.warning("the store failed (%s); the worker tries it again in "
                                    "%g s", _store_reason(str(e)), delay)
                    else:
                        if idle:
                            return
                        failures = 0
                due = backoff.next_due() if len(backoff) else None
                if due is not None:
                    nxt = due if nxt is None else min(nxt, due)
                timeout = poll_interval if nxt is None else \
                    max(0.0, min(poll_interval, nxt - self.clock()))
                with suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await wake.wait()

    async def _serve_round(self, tg: asyncio.TaskGroup, tenant: str | None, until_idle: bool,
                           on_wait: Callable[[list[SessionRow]], None] | None,
                           sweep: list[float], unstarted: dict[str, str],
                           ) -> tuple[bool, float | None]:
        """One round of ``serve``: claim what can run and start it (``unstarted``: what it
        claimed, until each run starts). Returns whether ``until_idle`` is met, and when
        the next timer is due (``None``: none is)."""
        backoff = self._backoff
        free = self.concurrency - len(self._running)
        workflows = {n: w.version for n, w in self._workflows.items()}
        rows: list[SessionRow] = []
        if free > 0 and workflows:
            if self.clock() >= sweep[0]:  # owners that died on this machine
                sweep[0] = self.clock() + self.lease_seconds / 3
                await self._sweep_dead_owners(tenant)
            rows = await self.store.claim_runnable(
                self.owner, self.lease_seconds, workflows=workflows, limit=free,
                tenant=tenant)
        started = 0
        for row in rows:
            if row.id in backoff:  # given back, claimed again: held until it is due
                continue
            wf = self._workflows[row.workflow]
            unstarted[row.id] = row.tenant
            tg.create_task(self._run_claimed(wf, row, unstarted))
            started += 1
        if until_idle and not started and not self._running and len(rows) < free:
            # (every session the claim found is held back here, and the limit did not
            # leave any out)
            # (of its workflows at their versions here: a session of another version
            # waits for an engine that has that one, not for this one to be idle)
            left = [r for r in await self.store.unfinished(
                tenant=tenant, left_out=[])  # (damaged: escalated once claimed)
                    if workflows.get(r.workflow) == r.version]
            soon = self.clock() + IDLE_HORIZON
            # (Sessions a session hook refused: not waited for, nor tried again once
            # nothing else runs. A signal's timer is its timeout.)
            keep = [r for r in left if not (r.status == "waiting" and (
                r.wake_at is None or (r.wait_name is not None and r.wake_at > soon))) and
                    not backoff.refused(r.id)]
            if not keep:
                return True, None
            if on_wait is not None:
                on_wait(keep)
        if len(backoff) and free > len(rows):
            for sid, of in backoff.take(self.clock(), free - len(rows), tenant):
                tg.create_task(self._run_again(sid, of))
        return False, await self.store.next_wake(tenant=tenant)

    async def _adopt_held(self, tenant: str | None) -> None:
        """After the store failed: the sessions it left held by this engine that this
        engine does not run (a claim committed whose answer was lost, a release that
        failed) run again now, as sessions given back do (:meth:`_run_again`)."""
        now = self.clock()
        for r in await self.store.list_sessions(
                SessionFilter(status="running", tenant=tenant, limit=10_000), left_out=[]):
            if r.owner == self.owner and r.id not in self._running and \
                    r.id not in self._backoff and r.id not in self._starting and \
                    r.id not in self._giving_back:
                self._backoff.hold(r.id, r.tenant, now)

    def _crashed_out(self, sid: str, tenant: str, e: BaseException) -> None:
        """A run of ``sid`` that ``e`` escaped: if it is not an ``Exception`` (nor a
        cancel, whose run gives its session back), the session is left as a crash leaves
        it (``running``, held by this engine, its journal as far as it got) and the run
        raises it; a ``serve`` takes it up again (:meth:`_take_up_left_held`), or gives it
        back as it stops (:meth:`_give_back_held`)."""
        if not isinstance(e, (Exception, asyncio.CancelledError)):
            self._left_held[sid] = tenant
            self._wake_event().set()

    def _take_up_left_held(self, tenant: str | None) -> None:
        """The sessions runs left held here as a crash would (of ``tenant``, when given)
        run again now, from their journal, as sessions given back do (:meth:`_run_again`):
        ``serve`` does not claim what its own engine holds, and this engine's lease
        renewals keep other engines off them."""
        now = self.clock()
        for sid, of in list(self._left_held.items()):
            if tenant is not None and of != tenant:
                continue
            del self._left_held[sid]
            if sid not in self._running and sid not in self._backoff and \
                    sid not in self._starting and sid not in self._giving_back:
                self._backoff.hold(sid, of, now)

    async def _run_again(self, sid: str, tenant: str) -> None:
        """Run a session :meth:`_back_off` gave back, now due: claimed again (this engine
        may still hold it), unless it ended meanwhile, another engine runs it, or this
        engine no longer has its workflow at its version (then it is given back)."""
        await self._given_back_yet(sid)
        try:
            row = await self.store.claim(sid, self.owner, self.lease_seconds, tenant=tenant)
        except StoreError as e:
            self._back_off(sid, tenant, self._backoff.written(sid), error_to_record(e))
            self._wake_event().set()
            return
        wf = None if row is None else self._workflows.get(row.workflow)
        if row is None or wf is None or wf.version != row.version:
            self._backoff.forget(sid)
            if row is not None:
                with suppress(StoreError, LeaseLost):
                    await self.store.release(sid, self.owner)
            return
        try:
            await self._run_claimed(wf, row)
        finally:
            self._backoff.settled(sid)

    async def _give_back_held(self) -> None:
        """As ``serve`` stops: give back the sessions waiting to run again (it may hold
        them: claimed again before they were due), and those runs left held as a crash
        would (:meth:`_crashed_out`), for a later worker; all at once, for at most
        :data:`GIVE_BACK_SECONDS` (a store still failing: their leases lapse instead,
        rather than the stop waiting out a store timeout for each)."""
        held, self._backoff = self._backoff.ids(), Backoff()
        held += [sid for sid in self._left_held if sid not in held]
        self._left_held.clear()

        async def give_back(sid: str) -> None:
            await self._given_back_yet(sid)  # (its run's own, with its counts, first)
            await self._release(sid)

        if held:
            await self._bounded(asyncio.gather(*map(give_back, held)))

    async def _run_claimed(self, wf: Workflow[Any, Any], row: SessionRow,
                           unstarted: dict[str, str] | None = None) -> None:
        if unstarted is not None:
            unstarted.pop(row.id, None)
        self._worker_runs.add(row.id)
        try:
            await self._run_claimed_here(wf, row)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():  # (the worker's own stop)
                raise
            # A hook raised it (nobody cancelled this run): an error like any other.
            await self._after_error(row, "CancelledError (from a session hook: nobody "
                                         "cancelled the run)")
        except BaseException as e:  # (before its run took it: reading it, a request's end)
            self._crashed_out(row.id, row.tenant, e)
            raise
        finally:
            self._worker_runs.discard(row.id)
        self._wake_event().set()

    async def _run_claimed_here(self, wf: Workflow[Any, Any], row: SessionRow) -> None:
        if self.keys is None and is_sealed(row.input):
            # A data subject's session, and no master key here: nothing of it can be read.
            # Given up, and the engine stops as a drain does: a worker without the key
            # would claim it again and again (``serve`` raises once the rest has stopped).
            with suppress(StoreError, LeaseLost):
                await self.store.release(row.id, self.owner)
            if self._unreadable is None:
                self._unreadable = UserError(f"cannot run {needs_master_key(row)}")
            self.drain()
            return
        try:
            if not await ended_by_request(self, wf, row):
                read = await self._read_claimed(wf, row)
                if not isinstance(read, SessionResult):
                    await self._admit(wf, row.id, row.tenant, read[0], row, read[1])
        except StoreError as e:  # (reading it: a lost connection; given back, or held)
            if not e.transient:
                raise
            self._back_off(row.id, row.tenant, self._backoff.written(row.id),
                           error_to_record(e))
        except AuditError:  # (the log's, not the session's: as a store error, it stops)
            raise
        except Exception as e:  # (a session hook's: one session's error stops no worker)
            await self._after_error(row, self._described(e, row.id, row.subject))

    async def _after_error(self, row: SessionRow, reason: str) -> None:
        """A worker's run that raised ``reason``: said in one line, with the end it wrote
        (a hook that raised after ``next``, a cancel's run), or held back as
        :meth:`_refused` holds a refusal back (unless it did), so that the worker does not
        claim it again at once, over and over."""
        backoff = self._backoff
        held = backoff.waiting(row.id)  # (by :meth:`_refused`, which said why, or by a
        said = held and backoff.refused(row.id)  # store that failed to write the end)
        delay = None
        if not held and self._serving and not self._draining.on:
            # (before a give-back in flight lands: a claim in between finds it held; a
            # due one's count goes on; marked refused, which ``until_idle`` does not wait
            # for, only once the session is known not to have ended: it may have parked)
            delay = self._hold(row.id, row.tenant, backoff.written(row.id))
        await self._given_back_yet(row.id)  # (a cancelled run's: written behind it)
        try:
            now = await self.store.get_session(row.id)
        except StoreError:
            now = None
        if now is not None and now.status not in ("pending", "running"):
            if delay is not None:
                backoff.forget(row.id)
            log.warning("session %s: its run raised %s; its end was written all the same: "
                        "%s", quoted(row.id), reason, now.status)
        elif delay is not None:
            backoff.refuse(row.id)
            log.warning("session %s: its run raised %s; %s", quoted(row.id), reason,
                        self._again(delay))
        elif not said:
            log.warning("session %s: its run raised %s", quoted(row.id), reason)

    # -- internals -----------------------------------------------------------------------

    async def _pool(self, wf: Workflow[Any, OutT], jobs: list[_Job],
                    on_done: Callable[[SessionResult[OutT]], None] | None,
                    taken: set[str] | None = None) -> list[SessionResult[OutT]]:
        """Run ``jobs``, ``concurrency`` at a time; ``taken``: the ids of those a worker
        took (their runs give their sessions back, if they must)."""
        results: list[SessionResult[OutT] | None] = [None] * len(jobs)
        it = iter(enumerate(jobs))

        async def worker() -> None:
            for i, job in it:
                if taken is not None:
                    taken.add(job.sid)
                if self._draining.on:  # (see ``drain``)
                    results[i] = await self._left_by_drain(job)
                    continue
                row, journal, value = job.row, None, job.value
                if job.new is None:
                    assert row is not None
                    claimed = await self._claim(row)
                    if claimed is None:
                        now = await self._unclaimed(row)
                        results[i] = _unfinished_result(now) if now.unfinished else \
                            await self._known_in_batch(wf, now)
                        continue
                    read = await self._ended_here(wf, claimed) \
                        if await ended_by_request(self, wf, claimed) else \
                        await self._read_claimed(wf, claimed)
                    if isinstance(read, SessionResult):  # ended by a request, or escalated
                        results[i] = read
                        if on_done is not None:
                            on_done(read)
                        continue
                    row, (value, journal) = claimed, read
                res = await self._admit(wf, job.sid, job.tenant, value, row, journal,
                                        new=job.new)
                results[i] = res
                if on_done is not None:
                    on_done(res)

        try:
            async with asyncio.TaskGroup() as tg:
                for _ in range(min(self.concurrency, len(jobs))):
                    tg.create_task(worker())
        except BaseExceptionGroup as eg:  # (the error itself, to its caller)
            raise raised_of(eg) from None
        return [r for r in results if r is not None]

    def _give_back_unstarted(self, sids: list[str]) -> None:
        """``run_many`` stopped (a session's error, its caller's cancel): the sessions it
        created (claimed as they were) and no run took are given back, for a later run,
        not held while this engine renews its leases; in the background
        (:meth:`_in_background`). (A run gives back its own session: a second release,
        fenced on this engine, would free a claim of it this engine made since.)"""
        async def give_back_all() -> None:  # (started once earlier give-backs are done)
            await asyncio.gather(*map(self._release, sids))

        if sids:
            self._in_background(sids, give_back_all())

    async def _left_by_drain(self, job: _Job) -> SessionResult[Any]:
        """A job a draining engine does not start: a session ``run_many`` created (and
        claimed) is released, for a later run."""
        if job.new is None:
            assert job.row is not None
            return _unfinished_result(job.row)
        row = None
        with suppress(StoreError, LeaseLost):  # (a store down: its lease lapses instead)
            await self.store.release(job.sid, self.owner)
            row = await self.store.get_session(job.sid)
        return _unfinished_result(row) if row is not None else SessionResult(
            id=job.sid, status="pending")

    async def _admit(self, wf: Workflow[Any, OutT], sid: str, tenant: str, value: Any,
                     row: SessionRow | None, journal: dict[str, StepRecord] | None, *,
                     new: NewSession | None = None) -> SessionResult[OutT]:
        """Run a claimed session within the concurrency limit. (Its steps are inlined
        rather than delegated: every frame here lives as long as the session runs.)"""
        slots = self._slots
        if slots is None:
            slots = self._slots = asyncio.Semaphore(self.concurrency)
        # Not ``async with slots``: that would hold a bound ``__aexit__`` per session.
        try:
            await slots.acquire()
        except asyncio.CancelledError:  # (claimed, waiting for a slot: given back)
            self._in_background([sid], self._leave_unfinished(sid, self.owner, new))
            raise
        try:
            task = asyncio.current_task()
            if task is not None:
                self._running[sid] = task
            try:
                state, executor = self._prepare(wf, sid, tenant, row, journal, False, new)
                t0 = time.perf_counter()
                try:
                    end = await self._session(wf, state, executor, value, journal, new)
                except (Exception, asyncio.CancelledError) as e:
                    self._running[sid] = None  # (a session hook's own error; a run
                    by = self._cancelled_by(sid, e)  # cancelled by its caller)
                    if by is None:
                        await self._given_back(state, new, e)
                        raise
                    end = SessionEnd(status="cancelled", error=cancelled_record(by))
                except BaseException as e:  # (as a crash: nothing is written)
                    self._crashed_out(sid, tenant, e)
                    raise
                # Ended: a cancel now (a request honoured at a lease renewal, a local one)
                # would interrupt the write of how, and reach this run's caller.
                self._running[sid] = None
                try:
                    status = await self._settle(sid, self.owner, state, end, new)
                except asyncio.CancelledError:  # (the caller's, as the end is written)
                    self._in_background([sid], self._settled_later(state, end, new))
                    raise
                if state.end_taps is not None and any(state.end_taps):
                    _tell_ended(state, end, status)
                return _result(state, end, status, t0)
            finally:
                self._running.pop(sid, None)
        finally:
            slots.release()

    async def _release(self, sid: str) -> None:
        """Give up this engine's claim on ``sid`` (fenced on it); a store that fails lets
        the lease lapse instead."""
        with suppress(StoreError, LeaseLost):
            await self.store.release(sid, self.owner)

    async def _given_back_yet(self, sid: str) -> None:
        """Wait for a give-back of ``sid`` in flight (:meth:`_in_background`) before this
        engine claims it: its late release, fenced on this engine, would free the claim.
        (One that failed was logged as it ended.)"""
        giving_back = self._giving_back.get(sid)
        if giving_back is not None:
            with suppress(Exception):
                await asyncio.shield(giving_back)

    def _cancelled_by(self, sid: str, e: BaseException) -> str | None:
        """Who cancelled session ``sid`` through this engine (:meth:`cancel`), if ``e`` is
        that cancel, reaching the run outside the workflow (in a session hook, which
        awaited something): the run ends ``cancelled`` as it would inside."""
        if not isinstance(e, asyncio.CancelledError):
            return None
        by = self._cancelling.pop(sid, None)
        task = asyncio.current_task()
        if by is not None and task is not None:
            task.uncancel()
        return by

    async def _bounded(self, give_back: Awaitable[Any]) -> None:
        """Await ``give_back`` for at most :data:`GIVE_BACK_SECONDS`: a store that hangs
        lets the lease lapse instead, rather than a cancelled run (a caller's timeout, a
        hard stop) waiting it out."""
        with suppress(TimeoutError):
            async with asyncio.timeout(GIVE_BACK_SECONDS):
                await give_back

    async def _kept_end(self, state: SessionState, new: NewSession | None) -> bool:
        """If the workflow's run had ended before a session hook raised after ``next``,
        write that end as it would have been (a cancel honoured, an output kept, a wait
        parked: a resume ran a cancelled session again) and tell the end taps."""
        ended: SessionEnd | None = getattr(state, "body_end", None)
        if ended is None:
            return False
        status = await self._settle(state.id, self.owner, state, ended, new)
        if state.end_taps is not None and any(state.end_taps):
            _tell_ended(state, ended, status)
        return True

    def _in_background(self, sids: list[str], give_back: Awaitable[Any]) -> None:
        """Give sessions back after their run was cancelled, without keeping its caller
        waiting on the store (a timeout around ``run`` is not stretched by a store that is
        locked or hangs). The engine claims none of them again until it is done (a late
        release would free the new claim), and :meth:`aclose` waits for it; each takes at
        most :data:`GIVE_BACK_SECONDS`."""
        earlier = {self._giving_back[sid] for sid in sids if sid in self._giving_back}
        task = asyncio.ensure_future(self._after(earlier, give_back))
        for sid in sids:
            self._giving_back[sid] = task

        def done(t: asyncio.Future[None]) -> None:
            for sid in sids:
                if self._giving_back.get(sid) is t:
                    del self._giving_back[sid]
            if not t.cancelled() and t.exception() is not None:
                log.warning("sessions %s could not be given back (%s); their leases lapse "
                            "instead", ", ".join(sids), t.exception())

        task.add_done_callback(done)

    async def _after(self, earlier: set[asyncio.Future[None]],
                     give_back: Awaitable[Any]) -> None:
        """``give_back``, once the give-backs of the same sessions already in flight are
        done (a second one overtaking the first would write its counts first, then the
        first's, fenced, would not be written)."""
        try:
            if earlier:
                await asyncio.gather(*earlier, return_exceptions=True)
        except BaseException:  # (cancelled first: never started, its lease lapses)
            if inspect.iscoroutine(give_back):
                give_back.close()
            raise
        await self._bounded(give_back)

    async def _given_back(self, state: SessionState, new: NewSession | None,
                          e: BaseException) -> None:
        """:meth:`_give_back`, in the background (:meth:`_in_background`: at most
        :data:`GIVE_BACK_SECONDS`); awaited, unless the run was cancelled. A cancel that
        lands while it is awaited (a caller's timeout) leaves it going on."""
        self._in_background([state.id], self._give_back(state, new, e))
        if not isinstance(e, asyncio.CancelledError):
            with suppress(Exception):  # (one that failed is logged as it ends)
                await asyncio.shield(self._giving_back[state.id])

    async def _give_back(self, state: SessionState, new: NewSession | None,
                         e: BaseException) -> None:
        """A session hook raised out of a run (a policy that refuses it, a bug, a tap it
        added that is refused), or the run's caller cancelled it (a request's timeout, a
        sibling's error in ``run_many``'s task group): the run raises it, and the session
        is given back unfinished with its counts so far, not held by this engine until
        its lease lapses (then run by another into the same error). Its end taps are told
        ``pending``; if the workflow's run had ended, that end is written instead
        (:meth:`_kept_end`)."""
        if await self._kept_end(state, new):
            return
        if not isinstance(e, (asyncio.CancelledError, StoreError, AuditError)):
            # (not a store's error, nor the audit log's: no session refused those)
            self._refused(state.id, state.tenant, e, state.subject)
        if state.floor is not None:
            _floored(state, state.floor)
        usage = state.usage
        await self._leave_unfinished(state.id, self.owner, new, SessionOutcome(
            status="pending", steps=state.steps, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens, cost=state.cost))
        if state.end_taps is not None and any(state.end_taps):
            _tell_ended(state, SessionEnd(status="interrupted", error=error_to_record(e)),
                        "pending")

    async def _settled_later(self, state: SessionState, end: SessionEnd,
                             new: NewSession | None) -> None:
        """Write how a run ended after its caller cancelled it as the write was under way
        (a timeout): its end is kept, not the session held until its lease lapses and
        then run again."""
        error = end.error
        status = await self._settle(state.id, self.owner, state, end, new)
        if status == "running":  # (refused, fenced: the cancelled write did commit?)
            with suppress(StoreError):
                row = await self.store.get_session(state.id)
                if row is not None and row.status == end.status and row.owner is None:
                    status, end.error = end.status, error  # (not the refusal's)
        if state.end_taps is not None and any(state.end_taps):
            _tell_ended(state, end, status)

    async def _end_in_a_run(self, wf: Workflow[Any, Any] | None, row: SessionRow,
                            end: SessionEnd) -> str:
        """Finish a session this engine claimed with ``end`` through a run that executes
        nothing: its session hooks see it end (audit appends what a killed run journaled,
        tracing and metrics see the outcome). Its counts are the row's, or, when the
        journal holds more (a run that was killed never recorded its own), the journal's:
        what a run that resumed the session would have counted. The run needs the
        session's workflow only to give the hooks its input typed: without it (or at
        another version, or an input it does not take), they see the input as stored
        (JSON). What of the session cannot be read back (a damaged journal row, damaged
        headers) the hooks do not see, rather than it keeping the session from ending (a
        cancel, an escalation: :meth:`_read_claimed`). Returns the status written
        (``pending`` if the store failed and the session was given back)."""
        value: Any = _UNTYPED
        if wf is not None and wf.version == row.version and not is_sealed(row.input):
            with suppress(Exception):  # (not what the code takes now: as stored)
                value = wf.input_adapter.validate_json(row.input)
        if wf is None or value is _UNTYPED:
            try:
                value = from_json(row.input) if row.input else None
            except ValueError:
                value = row.input
            wf = cast(Workflow[Any, Any], StoredWorkflow(row.workflow, row.version))
        try:
            journal = await self.store.load_journal(row.id, tenant=row.tenant)
        except DamagedRow:
            journal = {}
        try:
            row.header_map  # noqa: B018
        except DamagedRow:
            row = replace(row, headers="{}")
        state, executor = self._prepare(wf, row.id, row.tenant, row, journal, False, None)
        assert state.floor is not None  # (a row's session: what it had, its journal's too)
        _floored(state, state.floor)

        async def ends(*_: Any) -> SessionEnd:
            return end

        try:
            ran = await self._session(wf, state, executor, value, journal, None, body=ends)
        except (Exception, asyncio.CancelledError):  # (a hook's, before ``next`` or after)
            # The end is a request's (a cancel) or the engine's (an escalation), not work
            # a hook refuses: written all the same, then the error goes on. (Not written,
            # a worker would claim the session again and again, the cancel never landing.)
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # (this run's caller's: it stops)
                raise
            state.body_end = end
            await self._kept_end(state, None)
            raise
        status = await self._settle(row.id, self.owner, state, ran, None)
        if state.end_taps is not None and any(state.end_taps):
            _tell_ended(state, ran, status)
        return status

    async def _execute(self, wf: Workflow[Any, OutT], sid: str, tenant: str, value: Any,
                       row: SessionRow | None, journal: dict[str, StepRecord] | None, *,
                       replay_only: bool = False,
                       ) -> tuple[SessionResult[OutT], JournaledExecutor]:
        """Run a session outside the concurrency limit (replay)."""
        state, executor = self._prepare(wf, sid, tenant, row, journal, replay_only, None)
        t0 = time.perf_counter()
        end = await self._session(wf, state, executor, value, journal, None)
        status = await self._settle(sid, executor.owner, state, end, None)
        if state.end_taps is not None and any(state.end_taps) and \
                executor.owner is not None:  # (a replay writes nothing)
            _tell_ended(state, end, status)
        return _result(state, end, status, t0), executor

    def _prepare(self, wf: Workflow[Any, Any], sid: str, tenant: str, row: SessionRow | None,
                 journal: dict[str, StepRecord] | None, replay_only: bool,
                 new: NewSession | None) -> tuple[SessionState, JournaledExecutor]:
        owner = None if replay_only else self.owner
        executor = JournaledExecutor(self.store, sid, owner, journal=journal,
                                     replay_only=replay_only, park_after=self.park_after,
                                     clock=self.clock, on_nondeterminism=self.on_nondeterminism)
        executor.draining = self._draining
        executor.outcome_patience = self.lease_seconds
        if replay_only and row is not None and row.status in ("limit_exceeded", "cancelled"):
            # (stopped from outside: a timer due after that had not fired; a session that
            # ended through its own code went past every timer it journaled)
            executor.ended = row.finished
        headers = row.header_map if row is not None else \
            dict(new.headers) if new is not None and new.headers else {}
        state = SessionState(self.runtime, sid, tenant, wf.name, executor=executor,
                             version=wf.version,
                             active_s=row.active_s if row is not None else 0.0,
                             created=row.created if row is not None else None,
                             replay_only=replay_only, resumed=bool(journal), headers=headers,
                             agents=wf.agents,
                             subject=row.subject if row is not None else
                             new.subject if new is not None else None)
        if state.subject is not None and self.keys is not None:
            key = self.keys.peek(tenant, state.subject)  # loaded as its row was opened
            executor.fingerprint_key = None if key is None else key.mac
        if row is not None and not replay_only:
            # A resumed run counts the session's totals again as it replays its steps; one
            # that stops before it replayed them all (its code diverged) writes no less
            # than the session had, its row's or its journal's (:func:`_floored`).
            records = journal.values() if journal else ()
            state.floor = (max(row.steps, len(records)),
                           max(row.input_tokens, sum(r.input_tokens for r in records)),
                           max(row.output_tokens, sum(r.output_tokens for r in records)),
                           max(row.cost, sum(r.cost for r in records)))
        return state, executor

    def _session(self, wf: Workflow[Any, Any], state: SessionState,
                 executor: JournaledExecutor, value: Any,
                 journal: dict[str, StepRecord] | None, new: NewSession | None,
                 body: Callable[..., Awaitable[SessionEnd]] | None = None,
                 ) -> Awaitable[SessionEnd]:
        """The run: the workflow itself (or ``body``), through the session hooks if any."""
        rt = self.runtime
        run_body = self._body if body is None else body
        if rt.session_chain.call is _run_session:  # no session hooks: no inputs to build
            return run_body(wf, state, executor, value)
        owner = executor.owner
        headers = dict(state.headers)

        async def proceed(si: SessionInput) -> SessionEnd:
            state.headers = si.headers
            if owner is not None and si.headers != headers:
                # Not awaited: the write joins the run's next commit (its first journal
                # write, fenced on the same lease), so a trace id costs no commit of its
                # own; if it fails, that write fails with it and the run is interrupted.
                # (No done callback: it would wait in the loop's ready queue, and a lone
                # session's next write would then not commit in the caller.)
                self.store.update_headers(state.id, owner, si.headers)
            state.written_headers = dict(si.headers)
            ends = si.end_taps
            if ends:  # (refused now, not once the run is over)
                _called("end_taps", ends)
            if ends is not first and state.end_taps is not None and \
                    all(ends is not e for e in state.end_taps):
                state.end_taps.append(ends)  # (a hook's own SessionInput: its list too)
            taps = si.journal_taps
            if taps:
                executor.tap = journal_tap_of(_called("journal_taps", taps), state.id,
                                              of_subject=state.subject is not None)
            if si.run_taps and not executor.replay_only:  # (a replay ends no run)
                state.run_tap = run_tap_of(_called("run_taps", si.run_taps))
            ended = state.body_end = await run_body(wf, state, executor, value)
            return ended

        info = SessionInfo(session_id=state.id, tenant=state.tenant, workflow=wf.name,
                           version=wf.version, resumed=bool(journal),
                           replay=executor.replay_only, subject=state.subject)
        si = SessionInput(info=info, input=value, headers=dict(headers), proceed=proceed,
                          journal=dict(journal) if journal else {})
        # Its end taps (filled by the hooks, before ``next`` or after it returned) are told
        # even when a hook ends the run without calling ``next``.
        first = si.end_taps
        state.end_taps = [first]
        return rt.session_chain.call(si)

    async def _body(self, wf: Workflow[Any, Any], state: SessionState,
                    executor: JournaledExecutor, value: Any) -> SessionEnd:
        sid = state.id
        deadline = state.deadline
        state.input = value
        # The engine's deadlines, not ``asyncio.timeout``: the same cancellation, without
        # five objects per session in flight (see ``_deadlines``).
        limit = None if deadline is None else self._deadlines.enter(deadline - self.clock())
        expired = False
        try:
            if limit is None:
                output = await wf.fn(Context(state), value)
            else:
                try:
                    output = await wf.fn(Context(state), value)
                except BaseException as e:
                    expired = self._deadlines.expired(limit)
                    self._deadlines.leave(limit, e)
                    raise
                expired = self._deadlines.expired(limit)
                self._deadlines.leave(limit)
            try:
                output = wf.output_adapter.validate_python(output)
            except ValidationError as e:
                return SessionEnd(status="failed", error={
                    "type": "OutputValidationError", "message": f"workflow {wf.name!r} "
                    f"returned an invalid output: {readable_validation_error(e)}"})
            left = executor.leftover
            if left:
                msg = (f"session {sid!r} finished but never asked for journaled "
                       f"{plural(len(left), 'step', number=False)} "
                       f"{', '.join(left[:5])}{' ...' if len(left) > 5 else ''}; the workflow "
                       "changed in a way that breaks determinism (bump its version)")
                if self.on_nondeterminism == "error":
                    raise NonDeterminismError(msg, key=left[0])
                warnings.warn(msg, NonDeterminismWarning, stacklevel=1)
            try:  # (as it is written: here, so that every hook sees the end it gets)
                state.output_json = (output, storable_json(
                    output, "output", wf.output_adapter.dump_json).decode())
            except (ValueError, UserError) as e:  # (no JSON holds it: the session fails)
                return SessionEnd(status="failed", error=_unstorable(wf.name, e))
            return SessionEnd(status="completed", output=output)
        except Parked as p:
            return SessionEnd(status="waiting", error={
                "wake_at": p.wake_at, "wait_names": list(p.wait_names),
                "wait_name": p.wait_names[0] if p.wait_names else None})
        except SessionInterrupted as e:
            if e.refused_step:  # (counted before the executor refused it: not taken)
                state.steps -= 1
            return SessionEnd(status="interrupted", error=_interrupt_record(e))
        except TimeoutError as e:
            if expired:
                return SessionEnd(status="limit_exceeded", error={
                    "type": "LimitExceeded", "reason": "limit_exceeded", "message":
                    f"session {sid!r} ran past its time limit "
                    f"({self.runtime.limits.describe_time()})"})
            return SessionEnd(status="failed", error=self._error(executor, e))
        except SessionTerminated as e:
            return SessionEnd(status=e.reason, error=self._error(executor, e))
        except UnknownOutcomeError as e:
            return SessionEnd(status="escalated", error=self._error(executor, e))
        except asyncio.CancelledError:
            by = self._cancelling.pop(sid, None)
            if by is None:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            return SessionEnd(status="cancelled", error=cancelled_record(by))
        except (ConvoyError, Exception) as e:
            return SessionEnd(status="failed", error=self._error(executor, e))

    def _output_json(self, workflow: str, output: Any) -> str:
        """``output`` as the session's row holds it (its workflow's type's JSON)."""
        wf = self._workflows.get(workflow)
        return storable_json(output, "output",
                             wf.output_adapter.dump_json if wf else to_json).decode()

    @staticmethod
    def _error(executor: JournaledExecutor, e: BaseException) -> dict[str, Any]:
        rec = error_to_record(e)
        if executor.failed_key is not None and "key" not in rec:
            rec["key"] = executor.failed_key
        return rec

    async def _settle(self, sid: str, owner: str | None, state: SessionState,
                      end: SessionEnd, new: NewSession | None) -> str:
        """Persist how the run ended; the status to report. (The caller tells the session
        hooks' end taps: :func:`_tell_ended`.)"""
        if owner is None:  # replay: nothing is written
            return end.status
        if state.floor is not None:
            _floored(state, state.floor)
        usage = state.usage
        written = state.written_headers
        if written is not None and state.headers != written:
            # A session hook set headers after the run (an audit cursor): written with how
            # it ended, in the same commit (a fenced write nobody awaits joins the next).
            self.store.update_headers(sid, owner, state.headers)
        outcome = SessionOutcome(status=cast(SessionStatus, end.status), error=end.error,
                                 steps=state.steps, input_tokens=usage.input_tokens,
                                 output_tokens=usage.output_tokens, cost=state.cost)
        # A worker's: the failures of this session's writes so far (see ``_backoff``).
        failures = self._backoff.written(sid) if self._serving else 0
        try:
            if end.status == "interrupted":
                if (end.error or {}).get("type") == "LeaseLost":
                    # On the engine that took it over. Give up what this one still held
                    # of it (the release writes nothing: the session is another's now;
                    # a sealing store forgets the keys of the session's subjects).
                    with suppress(StoreError, LeaseLost):
                        await self.store.release(sid, owner)
                    return "running"
                self._back_off(state.id, state.tenant, failures, end.error)
                await self._leave_unfinished(sid, owner, new, outcome)
                return "pending"
            if end.status == "waiting":
                err = end.error or {}
                outcome.error = None  # (``end.error`` says what it waits for: end taps)
                await self.store.park(sid, owner, outcome, wake_at=err.get("wake_at"),
                                      wait_name=joined_wait_names(err.get("wait_names") or ()))
                return "waiting"
            if end.status == "completed":
                made = state.output_json
                if made is not None and made[0] is end.output and \
                        self.runtime.session_chain.call is _run_session:
                    outcome.output = made[1]  # (the workflow's own, as its run ended)
                else:  # (session hooks may have changed it, in place or not)
                    try:
                        outcome.output = self._output_json(state.workflow, end.output)
                    except (ValueError, UserError) as e:  # (no JSON holds a hook's output)
                        end.status, end.output = "failed", None
                        end.error = outcome.error = _unstorable(state.workflow, e)
                        outcome.status = "failed"
            await self.store.finish(sid, owner, outcome)
        except LeaseLost as e:
            end.error = _interrupt_record(e)
            return "running"
        except StoreError as e:
            end.error = error_to_record(e)
            self._back_off(state.id, state.tenant, failures, end.error)
            await self._leave_unfinished(sid, owner, new, outcome)
            return "pending"
        return end.status

    def _back_off(self, sid: str, tenant: str, failures: int,
                  error: dict[str, Any] | None) -> None:
        """A worker's session the store failed to record (``error``), about to be given
        back: it runs here again after a delay (:mod:`~convoy.engine._backoff`), not at
        once, and the ``convoy`` logger warns of it. (Recorded before the session is given
        back: a claim of it in between finds it held.)"""
        if not self._serving or self._draining.on:  # (``run``, ``resume``: the caller has
            return  # the result; a worker that stops runs nothing again)
        delay = self._hold(sid, tenant, failures)
        log.warning("session %s could not be recorded (%s); it runs again in %g s",
                    quoted(sid), _store_reason(str((error or {}).get("message") or
                                                   "a store error")), delay)

    def _hold(self, sid: str, tenant: str, failures: int, *, refused: bool = False
              ) -> float:
        """Hold ``sid`` back after its ``failures``-th failure in a row (see
        :mod:`~convoy.engine._backoff`): the delay, in seconds, before it runs again."""
        return self._backoff.failed(sid, tenant, failures, self.clock(),
                                    self.lease_seconds / 3, refused=refused)

    def _refused(self, sid: str, tenant: str, e: BaseException, subject: str | None
                 ) -> None:
        """A worker's session whose run a session hook refused (raised before the workflow
        ended), about to be given back: held back as :meth:`_back_off` holds a session
        the store failed to record, so a hook that keeps refusing it (a policy, a check
        whose service is down) does not have it claimed and refused in a loop; the worker
        serves the rest meanwhile."""
        if sid not in self._worker_runs or self._draining.on:  # (``run``, ``resume``:
            return  # the caller has the error; a worker that stops runs nothing again)
        delay = self._hold(sid, tenant, self._backoff.written(sid), refused=True)
        log.warning("session %s: a session hook refused its run (%s); %s", quoted(sid),
                    self._described(e, sid, subject), self._again(delay))

    def _described(self, e: BaseException, sid: str, subject: str | None) -> str:
        """``e`` in one line, as a worker's warning (a log line) names it; in the session
        of data subject ``subject``, or one whose run here read a subject's data, without
        its message (:func:`~convoy.privacy._withheld.withheld`), as its spans and JSON
        log lines do: the message may quote the subject's data."""
        # (a sealing store's; also of a run that ended since: a hook raised after it)
        read = getattr(self.store, "read_personal_data", None)
        if subject is not None or (read is not None and read(sid)):
            return withheld(e)
        return SessionText(described(e))

    def _again(self, delay: float) -> str:
        """When a session held back as :meth:`_refused` holds it runs again, as a warning
        says it: serving until idle does not wait for it."""
        if self._serving_until_idle < self._serving:
            return f"it runs again in {delay:g} s"
        return (f"it runs again in {delay:g} s if this worker still serves then (serving "
                "until idle does not wait for it: it is left pending)")

    async def _leave_unfinished(self, sid: str, owner: str, new: NewSession | None,
                                outcome: SessionOutcome | None = None) -> None:
        """After an interrupted run or a store failure: make sure the session exists (its
        creation may have been in the failed commit) and give it up, with its counts so
        far (``outcome``), so a later resume runs it. If the store is still failing, the
        lease expires instead."""
        with suppress(StoreError, LeaseLost):
            if new is not None:
                await self.store.create_sessions([new])
            await self.store.release(sid, owner, outcome)

    # -- sync shims ----------------------------------------------------------------------

    def run_sync(self, wf: Workflow[Any, OutT], input: Any, **kw: Any) -> SessionResult[OutT]:
        """Blocking :meth:`run`, for scripts and notebooks without an event loop. Each call
        opens and closes the engine, so it can be called again."""
        return asyncio.run(self._closing(self.run(wf, input, **kw)))

    async def _closing(self, aw: Awaitable[SessionResult[OutT]]) -> SessionResult[OutT]:
        try:
            return await aw
        finally:
            await self.aclose()


#: An input not yet read: a known session's, read from its row once it is claimed.
_UNTYPED: Any = object()


class _Job:
    """A session to run: ``new`` ones (the session as created) were claimed when created;
    others are claimed by the worker right before they run (a lease is held only while a
    session can run)."""

    __slots__ = ("new", "row", "sid", "tenant", "value")

    def __init__(self, sid: str, tenant: str, value: Any, row: SessionRow | None, *,
                 new: NewSession | None = None) -> None:
        self.sid, self.tenant, self.value, self.row, self.new = sid, tenant, value, row, new


#: The end of the year 9999 in seconds since the epoch: past it, no time can be shown.
_LAST_TIME = 253_402_300_799.0


def _check_clock(now: float) -> None:
    """Refuse a store clock that reads past the year 9999 (a clock in milliseconds): every
    row it stamped would be a time no command can show."""
    if isinstance(now, int | float) and not now <= _LAST_TIME:
        raise UserError(f"the store's clock reads {now!r}, past the year 9999: a store's "
                        "clock returns seconds since the epoch (like time.time), not "
                        "milliseconds")


def _called(which: str, taps: Sequence[Callable[[T], None]]) -> Sequence[Callable[[T], None]]:
    """``taps``, each a plain callable: an ``async def`` one would do nothing (taps are
    called, not awaited). (Its code's flags, not ``inspect.iscoroutinefunction``, and each
    function or class looked at once: this runs on every session run.)"""
    for tap in taps:
        kind = type(tap)
        if kind is partial:  # (what it calls: a partial of an async function is one)
            while type(tap) is partial:
                tap = tap.func  # noqa: PLW2901
            kind = type(tap)
        if kind in _PLAIN_TAPS:  # (a builtin's method, a class looked at)
            continue
        func = tap.__func__ if kind is MethodType else tap  # type: ignore[attr-defined]
        code = getattr(func, "__code__", None)
        plain: Any = code
        if code is None:  # (an object with a ``__call__``)
            code = getattr(getattr(kind, "__call__", None), "__code__", None)  # noqa: B004
            plain = kind
        elif code in _PLAIN_TAPS:
            continue
        if code is not None and code.co_flags & CO_COROUTINE:
            name = getattr(tap, "__qualname__", None) or type(tap).__qualname__
            raise UserError(f"SessionInput.{which}: {name} is an async function; taps are "
                            "called, not awaited: make it a plain one")
        if len(_PLAIN_TAPS) < 10_000:
            _PLAIN_TAPS.add(plain)
    return taps


def _tell_ended(state: SessionState, end: SessionEnd, status: str) -> None:
    """Tell the session hooks' end taps how the run ended, as written (``status``): a copy
    of ``end`` (a tap changes nothing of the caller's result). One that raises is logged,
    and the others are told all the same; an ``async`` one (added after ``next``: the end
    is written) is logged and not called."""
    taps = [tap for listed in state.end_taps or () for tap in listed]
    if not taps:
        return
    told = SessionEnd(status=status, output=end.output if status == "completed" else None,
                      error=None if end.error is None else dict(end.error))
    for tap in taps:
        try:
            _called("end_taps", (tap,))
        except UserError as e:
            log.error("%s; it was not told how session %s ended (%s)", e, quoted(state.id),
                      status)
            continue
        try:
            tap(told)
        except Exception:
            log_raised(log, "an end tap raised on the end of a run of session %s (%s); the "
                       "session ended as written", quoted(state.id), status,
                       of_subject=state.subject is not None)


#: The code of the functions, and the classes, of taps seen to be plain (not ``async
#: def``): not looked at again.
_PLAIN_TAPS: set[Any] = {BuiltinMethodType}


def _unstorable(workflow: str, e: Exception) -> dict[str, Any]:
    """The error of a session whose output JSON cannot hold."""
    return {"type": "OutputSerializationError", "retryable": False,
            "message": f"workflow {workflow!r} returned an output that cannot be stored as "
            f"JSON ({message_of(e)}): return JSON data (dicts, lists, text, numbers), or "
            "values its return type serializes"}


def _floored(state: SessionState, floor: tuple[int, int, int, float]) -> None:
    """Raise ``state``'s totals to ``floor``, those the session had when its run began,
    where lower (:attr:`SessionState.floor`: a resumed run that stopped before it replayed
    every step it had journaled)."""
    steps, tokens_in, tokens_out, cost = floor
    usage = state.usage
    state.steps = max(state.steps, steps)
    usage.input_tokens = max(usage.input_tokens, tokens_in)
    usage.output_tokens = max(usage.output_tokens, tokens_out)
    state.cost = max(state.cost, cost)


def _result(state: SessionState, end: SessionEnd, status: str, t0: float
            ) -> SessionResult[Any]:
    return SessionResult(id=state.id, status=cast(ResultStatus, status),
                         output=end.output if status == "completed" else None,
                         error=end.error if status != "waiting" else None,
                         steps=state.steps, usage=state.usage,
                         cost=state.cost, duration_s=time.perf_counter() - t0)


def _store_reason(message: str) -> str:
    """A store error's message as a worker's warning quotes it: on one line, short, without
    the advice to try again or to resume the session later (the worker tries again
    itself)."""
    for advice in _ADVICE:
        message = message.split(advice, 1)[0]
    return short(message, 240)


#: Where a store error's advice to the user begins (SQLite's, PostgreSQL's).
_ADVICE = ("; the session is left unfinished", "; try again")


def _interrupt_record(e: SessionInterrupted) -> dict[str, Any]:
    cause = e.cause
    if cause is not None:
        return {**error_to_record(cause), "interrupted": True}
    return {"type": type(e).__name__, "message": message_of(e), "interrupted": True}


def _validate_input(wf: Workflow[Any, Any], value: Any) -> Any:
    """``value`` as the workflow's input type (:meth:`Workflow.read_input`), or one clear
    :class:`UserError`."""
    try:
        return wf.read_input(value)
    except ValidationError as e:
        if isinstance(value, str | bytes) and holds_huge_int(value):
            raise UserError(f"input: {huge_int()}") from None
        raise UserError(f"input does not match workflow {wf.name!r} input type: "
                        f"{readable_validation_error(e)}") from None


def _dump_input(wf: Workflow[Any, Any], value: Any) -> str:
    return storable_json(value, "input", wf.input_adapter.dump_json).decode()


def no_master_key(subject: str) -> UserError:
    """The error of a session that names a data subject where no master key is set."""
    return UserError(f"session names the data subject {subject!r} but no master key is "
                     "configured: set $CONVOY_MASTER_KEY_FILE to a key file ('convoy keygen "
                     "FILE' makes one; in Python: Engine(master_key=...))")


__all__ = ["ESCALATION", "Engine", "ReplayResult", "SessionResult", "no_master_key"]
