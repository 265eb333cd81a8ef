"""What the engine does with stored sessions, by id or by listing: read, signal, cancel,
replay, retry. The :class:`~convoy.Engine` calls these for every tenant (``tenant=None``,
the operator's view), a :class:`~convoy.engine._tenant.Tenant` for its own.

Each function looks the session up in its tenant first, in the store (which filters on the
tenant itself, see :mod:`convoy.stores._protocol`), and then acts on that row only: a
session of another tenant is exactly an unknown id, with the same error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from convoy._errors import UserError
from convoy._text import check_name, quoted, short, storable_json
from convoy.definitions._workflow import registered_workflow
from convoy.durability._executor import ERASED_RESULT
from convoy.engine._cancel import CancelStatus, cancel, session
from convoy.engine._escalation import ESCALATION
from convoy.engine._results import (
    ReplayResult,
    SessionResult,
    StoredOutputUnreadable,
    _result_of,
    _stored_result,
    _unfinished_result,
    needs_master_key,
)
from convoy.engine._retry import retry_sessions, select_retryable
from convoy.engine._tenancy import unknown_session
from convoy.hitl._inbox import ESCALATED, Inbox
from convoy.privacy._seal import is_sealed
from convoy.stores._protocol import (
    RESERVED_SIGNALS,
    SEALED_SINCE,
    STATUSES,
    SessionFilter,
    SessionRow,
    StepRecord,
)

if TYPE_CHECKING:
    from convoy.engine._engine import Engine


async def result(engine: Engine, session_id: str, tenant: str | None) -> SessionResult[Any]:
    """Where a stored session stands. The output is validated into the workflow's output
    type when this process knows the workflow (registered or decorated), else it is the
    decoded JSON."""
    row = await session(engine, session_id, tenant)
    if row.unfinished:
        return _unfinished_result(row)
    wf = engine._workflows.get(row.workflow) or registered_workflow(row.workflow)
    if wf is not None:
        try:
            return _result_of(wf, row)
        except StoredOutputUnreadable:
            pass  # the output type changed since: the recorded JSON is the result
    return _stored_result(row, json.loads(row.output) if row.output else None)


async def journal(engine: Engine, session_id: str, tenant: str | None) -> list[StepRecord]:
    """Every journal record of a session, in the order written."""
    row = await session(engine, session_id, tenant)
    return await engine.store.journal(row.id, tenant=row.tenant)


async def sessions(engine: Engine, tenant: str | None, *, status: str | None,
                   workflow: str | None, limit: int, offset: int) -> list[SessionRow]:
    """Sessions, oldest first, matching every condition given."""
    if status is not None and status not in STATUSES:
        raise UserError(f"{quoted(status)} is not a session status; use one of "
                        f"{', '.join(STATUSES)}")
    await engine.open()
    return await engine.store.list_sessions(SessionFilter(
        status=status, workflow=workflow, tenant=tenant, limit=limit, offset=offset))


async def counts(engine: Engine, tenant: str | None) -> dict[str, int]:
    """Sessions by status."""
    await engine.open()
    return await engine.store.counts(tenant=tenant)


async def signal(engine: Engine, session_id: str, name: str, payload: Any,
                 tenant: str | None) -> None:
    """Send a signal, or answer an escalation (:data:`~convoy.ESCALATION`)."""
    check_name(name, "signal name")
    if name.startswith(RESERVED_SIGNALS) and name != ESCALATION:
        raise UserError(f"signal names starting {RESERVED_SIGNALS!r} are reserved for Convoy "
                        f"(send {ESCALATION!r} to answer an escalation; stop a session "
                        "with 'convoy cancel' or engine.cancel()): pick another name")
    data = storable_json(payload, f"the payload of signal {name!r}").decode()
    row = await session(engine, session_id, tenant)
    # (with the key, the store seals the payload under the session's keys)
    if engine.keys is None and (_names_a_subject(row) or await _read_sealed(engine, row)):
        raise _stored_in_the_clear(row, name)
    if name == ESCALATION:
        await _answer_escalation(engine, row, payload)
        engine._wake_event().set()
        return
    if not row.unfinished:
        raise UserError(f"session {quoted(session_id)} is {row.status}: signals go to "
                        "unfinished sessions")
    # (sent on condition that its session has no sealed record: one that reads a
    # subject's data meanwhile, run by another engine, gets nothing in the clear)
    seq = await engine.store.send_signal(row.id, name, data, tenant=row.tenant,
                                         sealed_labels=() if engine.keys is None else None)
    if seq == SEALED_SINCE:
        raise _stored_in_the_clear(row, name)
    if not seq:
        raise unknown_session(session_id, engine.store.url, tenant)
    engine._wake_event().set()


def _names_a_subject(row: SessionRow) -> bool:
    """Whether ``row``'s session is a data subject's, or read one's data (a sealed value
    in its row): what it is sent is sealed under the keys those name."""
    return row.subject is not None or any(is_sealed(v) for v in (row.input, row.output,
                                                                   row.error))


async def _read_sealed(engine: Engine, row: SessionRow) -> bool:
    """Whether a journal record of ``row``'s session is sealed (a data subject's data it
    read)."""
    journal = await engine.store.journal(row.id, tenant=row.tenant, left_out=[])
    return any(is_sealed(r.result) for r in journal)


def _stored_in_the_clear(row: SessionRow, name: str) -> UserError:
    return UserError(f"session {quoted(row.id)} holds a data subject's data: the payload "
                     f"of signal {name!r} would be stored in the clear; set "
                     "$CONVOY_MASTER_KEY_FILE to the store's master key file (in Python: "
                     "Engine(master_key=...)) and send it again")


#: Who decided, for an escalation answered by a signal whose payload names nobody.
SIGNAL_DECIDER = f"{ESCALATION} signal"


#: The keys an answer to an escalation may have besides "action" and "by", by action.
_ANSWER_KEYS = {"retry": (), "complete": ("result",), "fail": ("reason",)}


def _checked_answer(payload: Any) -> str:
    """The action of an answer to an escalation, or a UserError (one line) if the answer is
    not one: an unknown action, a key no answer has or not this action's, or a
    ``complete`` without the ``result`` it records."""
    action = payload.get("action") if isinstance(payload, dict) else None
    if action not in _ANSWER_KEYS:
        raise UserError(f"an answer to an escalation is {{'action': 'retry' | 'complete' "
                        f"| 'fail', ...}}, got {short(repr(payload), 200)}")
    for key in payload:
        if key in ("action", "by") or key in _ANSWER_KEYS[action]:
            continue
        owner = next((a for a, keys in _ANSWER_KEYS.items() if key in keys), None)
        if owner is not None:
            raise UserError(f"{key!r} goes with {owner!r}, not {action!r}, in an answer to "
                            "an escalation")
        raise UserError(f"an answer to an escalation has no key {short(repr(key), 60)}; "
                        f"with {action!r} it takes: "
                        f"{', '.join(('action', *_ANSWER_KEYS[action], 'by'))}")
    if action == "complete" and "result" not in payload:
        raise UserError("{'action': 'complete'} needs a 'result': the value the step that "
                        "escalated returns (a person checked that it took effect, or did it), "
                        "as in {'action': 'complete', 'result': 'manual-1'}")
    return str(action)


async def _answer_escalation(engine: Engine, row: SessionRow, payload: Any) -> None:
    """An :data:`~convoy.ESCALATION` signal is a person's decision: it goes through the
    inbox (the ``human_decision`` chain audits and traces it; the task's history keeps it),
    by ``payload["by"]``, else by :data:`SIGNAL_DECIDER`."""
    if row.status != "escalated":
        raise UserError(f"session {row.id!r} is {row.status}, not escalated")
    action = _checked_answer(payload)
    by = payload.get("by") or SIGNAL_DECIDER
    inbox, task = Inbox(engine, row.tenant), f"{row.id}:{ESCALATED}"
    if action == "retry":
        await inbox.approve(task, by=by)
    elif action == "complete":
        await inbox.edit(task, payload.get("result"), by=by)
    else:
        reason = payload.get("reason")
        await inbox.reject(task, by=by, comment=None if reason is None else str(reason))


async def replay(engine: Engine, session_id: str, tenant: str | None) -> ReplayResult:
    """Re-execute a finished session from its journal, calling no model and no tool."""
    row = await session(engine, session_id, tenant)
    if row.unfinished:
        raise UserError(f"session {quoted(session_id)} is still {row.status}; resume it first")
    wf = engine.workflow_named(row.workflow)
    if engine.keys is None and is_sealed(row.input):
        raise UserError(f"cannot replay {needs_master_key(row)}")
    value = wf.input_adapter.validate_json(row.input)
    recorded = await engine.store.load_journal(row.id, tenant=row.tenant)
    res, executor = await engine._execute(wf, row.id, row.tenant, value, row, recorded,
                                          replay_only=True)
    err = res.error or {}
    if res.status == "failed" and err.get("type") == "JournalError" and \
            ERASED_RESULT in str(err.get("message", "")):
        # (not a divergence of the code: a step's result is gone with its subject's key)
        raise UserError(f"cannot replay session {quoted(session_id)}: a step it replays "
                        f"read data that was erased ({err.get('message')}); its recorded "
                        "result stands as it is")
    out = None
    if res.status == "completed":
        out = wf.output_adapter.dump_json(res.output).decode()
    matches = res.status == row.status and (out == row.output if out else
                                            _same_error(res.error, row.error_record))
    if not matches and executor.exhausted and row.status in ("limit_exceeded", "cancelled"):
        # The recorded run was stopped from outside the steps (time limit, cancel)
        # where the journal ends: replaying up to there is the whole match.
        return ReplayResult(id=row.id, matches=True, status=row.status,
                            recorded_status=row.status, output=None,
                            recorded_output=row.output, steps=res.steps,
                            error=row.error_record, recorded_error=row.error_record,
                            stopped_at=executor.stopped_at)
    return ReplayResult(id=row.id, matches=matches, status=res.status,
                        recorded_status=row.status, output=out, recorded_output=row.output,
                        steps=res.steps, error=res.error, recorded_error=row.error_record)


async def retryable(engine: Engine, tenant: str | None, *, ids: Sequence[str],
                    status: str | Iterable[str] | None, error_type: str | None,
                    workflow: str | None, rerun_escalated: bool) -> list[SessionRow]:
    """The sessions a retry would run (see :func:`~convoy.engine._retry.select_retryable`)."""
    await engine.open()
    return await select_retryable(engine.store, ids=ids, status=status,
                                  error_type=error_type, workflow=workflow, tenant=tenant,
                                  param="ids", rerun_escalated=rerun_escalated)


async def retry_many(engine: Engine, session_ids: Iterable[str], tenant: str | None, *,
                     on_done: Callable[[SessionResult[Any]], None] | None,
                     rerun_escalated: bool, by: str | None,
                     param: str = "session_ids") -> list[SessionResult[Any]]:
    """Retry sessions that did not complete, each as a new session of its tenant
    (``param``: how errors name ``session_ids``)."""
    await engine.open()
    rows = await select_retryable(engine.store, ids=list(session_ids), tenant=tenant,
                                  param=param, rerun_escalated=rerun_escalated)
    return await retry_sessions(engine, rows, on_done=on_done, by=by)


def _same_error(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    if a is None or b is None:
        return a is b
    return bool(a.get("type") == b.get("type") and a.get("message") == b.get("message"))


class SessionControl:
    """The methods the :class:`~convoy.Engine` (every tenant) and a
    :class:`~convoy.Tenant` (one tenant) share: sessions by id, and listings. Through a
    ``Tenant``, a session of another tenant is exactly an unknown id."""

    __slots__ = ()

    def _scope(self) -> tuple[Engine, str | None]:
        raise NotImplementedError

    @property
    def inbox(self) -> Inbox:
        """The human tasks (of every tenant, or of this tenant): questions
        (``ctx.ask_human``), approvals of tool calls, escalations; list, read and decide
        them (see :class:`~convoy.Inbox`)."""
        return Inbox(*self._scope())

    async def session(self, session_id: str) -> SessionRow:
        """One session as the store holds it (status, owner, wait, usage, ...).

        Raises:
            UserError: no session has this id (in this tenant).
        """
        return await session(*self._at(session_id))

    async def result(self, session_id: str) -> SessionResult[Any]:
        """Where a session stands, as a :class:`~convoy.SessionResult`: the recorded result
        of a finished one (its output validated into the workflow's output type when this
        process knows the workflow, else the decoded JSON), or ``waiting``, ``pending`` or
        ``running``."""
        return await result(*self._at(session_id))

    async def journal(self, session_id: str) -> list[StepRecord]:
        """Every journal record of a session, in the order it was written."""
        return await journal(*self._at(session_id))

    async def sessions(self, *, status: str | None = None, workflow: str | None = None,
                       limit: int = 50, offset: int = 0) -> list[SessionRow]:
        """Sessions (of every tenant, or of this tenant), oldest first, optionally of one
        status or workflow; ``limit`` and ``offset`` page through them."""
        engine, tenant = self._scope()
        return await sessions(engine, tenant, status=status, workflow=workflow, limit=limit,
                              offset=offset)

    async def counts(self) -> dict[str, int]:
        """Sessions (of every tenant, or of this tenant) by status."""
        return await counts(*self._scope())

    async def signal(self, session_id: str, name: str, payload: Any = None) -> None:
        """Send the signal ``name`` to a session: it wakes the session if it waits for it
        (``ctx.wait_for``), or is kept for its next wait.

        ``ESCALATION`` (``"convoy.escalation"``) answers an escalated session:
        ``{"action": "retry"}`` runs the step that escalated again,
        ``{"action": "complete", "result": ...}`` records that step as done with that
        result (a person checked that it took effect), ``{"action": "fail", "reason":
        ...}`` ends the session as failed; an answer with any other key, or a
        ``complete`` without ``result``, raises :class:`~convoy.UserError` and changes
        nothing. It is a person's decision, made through the
        inbox (approve, edit or reject of the task ``SESSION:escalated``) by the payload's
        ``"by"`` (default ``"convoy.escalation signal"``): kept in the task's history, and
        seen by the ``human_decision`` hook (audited, traced).
        """
        engine, tenant = self._scope()
        await signal(engine, session_id, name, payload, tenant)

    async def cancel(self, session_id: str, *, by: str | None = None) -> CancelStatus:
        """Cancel an unfinished session; it ends ``cancelled`` and never runs again.

        ``by`` says who cancels it (default ``"engine OWNER"``, this engine's owner id):
        kept in the session's error record (``{"type": "Cancelled", "message":
        "cancelled by NAME", "by": NAME}``) by whichever engine ends it, and audited
        (a ``session`` entry, status ``cancelled``, ``by`` as actor) by an engine with
        :class:`~convoy.audit.AuditInterceptor` that ends it.

        One running on this engine stops at once; one that is pending or waiting, or whose
        engine died (its lease lapsed, or it was a process on this machine), is finished
        here. One that another live engine runs gets a durable cancel request: that engine
        stops it at its next lease renewal (every ``lease_seconds / 3``); if it died
        meanwhile, the engine that takes the session over ends it before running a step.

        Returns:
            ``"cancelled"`` (ended, or stopping on this engine) or ``"requested"`` (another
            engine stops it; :meth:`session` shows which, and when its lease runs out).

        Raises:
            UserError: no session has this id (in this tenant), or it already finished.
        """
        return await cancel(*self._at(session_id), by)

    async def replay(self, session_id: str) -> ReplayResult:
        """Re-execute a finished session from its journal, calling no model and no tool."""
        return await replay(*self._at(session_id))

    async def retryable(self, *, ids: Sequence[str] = (),
                        status: str | Iterable[str] | None = None,
                        error_type: str | None = None, workflow: str | None = None,
                        rerun_escalated: bool = False) -> list[SessionRow]:
        """The sessions :meth:`retry_many` would run, oldest first: finished without
        completing (see ``RETRYABLE``), not yet retried, and matching every condition given
        (``error_type`` is the error record's type, e.g. ``"ConnectionError"``). Escalated
        sessions only with ``rerun_escalated`` (see :meth:`retry`)."""
        engine, tenant = self._scope()
        return await retryable(engine, tenant, ids=ids, status=status,
                               error_type=error_type, workflow=workflow,
                               rerun_escalated=rerun_escalated)

    async def retry(self, session_id: str, *, rerun_escalated: bool = False,
                    by: str | None = None) -> SessionResult[Any]:
        """Run a session that finished without completing again, as a new session
        ``<id>.r1`` (a retry of ``x.r1`` is ``x.r2``) with ``parent=<id>``, the same input,
        tenant and headers, an empty journal, on the engine's current workflow code and
        version. The old session and its journal are kept. Raises
        :class:`~convoy.UserError` for a session that is unknown, unfinished, completed or
        already retried.

        An escalated session waits for a person to check whether the step that escalated
        took effect and answer (:meth:`signal` with ``ESCALATION``): a retry would run that
        step again, so it is refused unless ``rerun_escalated=True``. Then its escalation
        is closed first (answered ``fail`` by ``by``, default ``"engine OWNER"``: the
        session ends ``failed``, saying which retry took over), so no later answer runs
        the step once more."""
        engine, tenant = self._scope()
        return (await retry_many(engine, [session_id], tenant, on_done=None,
                                 rerun_escalated=rerun_escalated, by=by,
                                 param="session_id"))[0]

    async def retry_many(self, session_ids: Iterable[str], *,
                         on_done: Callable[[SessionResult[Any]], None] | None = None,
                         rerun_escalated: bool = False, by: str | None = None,
                         ) -> list[SessionResult[Any]]:
        """:meth:`retry` for many sessions, ``concurrency`` at once, results in order. The
        retries are created durably before any runs (``resume`` finishes them)."""
        engine, tenant = self._scope()
        return await retry_many(engine, session_ids, tenant, on_done=on_done,
                                rerun_escalated=rerun_escalated, by=by)

    def _at(self, session_id: str) -> tuple[Engine, str, str | None]:
        engine, tenant = self._scope()
        return engine, session_id, tenant


__all__ = ["SessionControl"]
