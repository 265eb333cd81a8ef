"""Cancelling a session, wherever it runs.

A session this engine runs stops at once; one that is pending or waiting (owned by nobody)
is finished here; one that another live engine runs (or that an engine which died on
another machine holds until its lease lapses) gets a durable *cancel request*: an
unconsumed :data:`~convoy.stores._protocol.CANCEL_SIGNAL` signal. Nobody else can send or
wait for that name (signal names starting ``convoy.`` are reserved). The request is
honoured by

- the owner, at its next lease renewal: it asks the store for the sessions it runs that
  have one, then who asked for each (:func:`honour_requests`: two queries, however many
  sessions), and stops them; they end ``cancelled`` as a local cancel does;
- an engine that claims the session later (its owner died and the lease lapsed, it parked
  and woke): it ends it ``cancelled`` in a run that executes nothing, so session hooks
  (audit, tracing, metrics) see it end (:func:`ended_by_request`). A new session is never
  looked up: nobody can have asked to cancel a session before it existed.

Why no request is left unhonoured while its session waits: a session parks in one
statement that also looks for a request (the store's ``park``; writes to a session's row
are serialised: SQLite has one writer, PostgreSQL's ``park`` and ``send_signal`` both lock
the row first), and ``cancel`` reads the session again *after* its request is committed.
So either the request committed before the park (the park leaves the session runnable,
``pending``, and the engine that claims it sees the request), or the park committed
before the request, and then before ``cancel``'s second read, which finds the session
parked, owned by nobody, and finishes it itself. A claim that commits after the request
reads the signals after its claim, so it sees the request; one that committed before it
leaves the session running under an owner whose renewals see it.
"""

from __future__ import annotations

import json
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Literal

from convoy._errors import UserError
from convoy._text import check_name, json_object, quoted
from convoy.definitions._workflow import Workflow
from convoy.durability._signals import LeaseLost
from convoy.engine._runtime import _run_session
from convoy.engine._tenancy import lookup_id, no_session, unknown_session
from convoy.interceptors._base import SessionEnd
from convoy.stores._protocol import CANCEL_SIGNAL, SessionOutcome, SessionRow

if TYPE_CHECKING:
    from convoy.engine._engine import Engine

#: What :func:`cancel` did: ``"cancelled"`` (the session ended, or is stopping on this
#: engine) or ``"requested"`` (another engine runs it and stops it at its next lease
#: renewal; if that engine died, the engine that takes the session over ends it).
CancelStatus = Literal["cancelled", "requested"]

#: The error record of a session cancelled by nobody known (one purged as it ended).
CANCELLED: dict[str, Any] = {"type": "Cancelled", "message": "cancelled"}


def cancelled_record(by: str) -> dict[str, Any]:
    """The error record of a session ``by`` cancelled."""
    return {"type": "Cancelled", "message": f"cancelled by {by}", "by": by}


def requester(payload: str | None) -> str:
    """Who made a cancel request, as its payload (``{"by": NAME}``) says (``"unknown"``
    for one edited by hand)."""
    by = json_object(payload).get("by")
    return by if isinstance(by, str) and by else "unknown"


#: The longest name of who cancels that is recorded (a person's or a service's name).
MAX_BY = 200


def checked_by(by: str, doing: str = "cancels") -> str:
    """``by``, the name of who cancels (or erases, purges: ``doing``), checked: shown
    later as it is, so no control character, bidi override, nor more than
    :data:`MAX_BY` characters."""
    name = check_name(by, f"name of who {doing} (by)")
    if len(name) > MAX_BY:
        raise UserError(f"the name of who {doing} (by) is {len(name):,} characters long; "
                        f"give a name of at most {MAX_BY}")
    return name


async def cancel(engine: Engine, session_id: str, tenant: str | None,
                 by: str | None = None) -> CancelStatus:
    """Cancel a session (see the module docstring); ``by``: who cancels it (recorded in
    its error record, audited), by default ``"engine OWNER"``."""
    who = f"engine {engine.owner}" if by is None else checked_by(by)
    if tenant is None and engine._stop_running(session_id, who):
        return "cancelled"  # the operator's view needs no store read to stop a session it runs
    row = await session(engine, session_id, tenant)
    if engine._stop_running(row.id, who):
        return "cancelled"
    if not row.unfinished:
        raise UserError(f"session {quoted(session_id)} is already {row.status}")
    if await _end_here(engine, row, who):
        return "cancelled"
    # Running on another live engine: a durable request, then a second read (the module
    # docstring says why it must come after the write).
    # (Once: a request that waits already stands for this one too.)
    if await engine.store.next_signal(row.id, CANCEL_SIGNAL, tenant=row.tenant) is None:
        payload = json.dumps({"by": who})
        if not await engine.store.send_signal(row.id, CANCEL_SIGNAL, payload,
                                              tenant=row.tenant):
            raise unknown_session(session_id, engine.store.url, tenant)  # purged meanwhile
    row = await session(engine, session_id, tenant)
    if row.status == "cancelled" or engine._stop_running(row.id, who):
        return "cancelled"  # its owner honoured it already, or this engine claimed it since
    if not row.unfinished:
        raise UserError(f"session {quoted(session_id)} is already {row.status}")
    if row.status == "running" or not await _end_here(engine, row, who):
        return "requested"  # its owner (the one read first, or one that claimed it since)
    return "cancelled"


async def session(engine: Engine, session_id: str, tenant: str | None) -> SessionRow:
    """The stored session ``session_id`` of ``tenant`` (any tenant for ``None``)."""
    await engine.open()
    row = await engine.store.get_session(lookup_id(session_id), tenant=tenant)
    if row is None:
        raise no_session(session_id, engine.store.url, tenant)
    return row


async def _end_here(engine: Engine, row: SessionRow, by: str) -> bool:
    """Finish an unfinished session that no live engine runs as ``cancelled`` by ``by``;
    ``False`` if another engine runs it (it claimed it, even since ``row`` was read)."""
    owner: str | None = None
    claimed: SessionRow | None = None
    # Session hooks that see a run end (with the session's workflow if this engine has it
    # at its version, to give them its input typed; else the input as stored)?
    hooked = engine.runtime.session_chain.call is not _run_session
    if row.status == "running" or (row.status in ("pending", "waiting") and hooked):
        claimed = await engine._claim(row, waiting=row.status == "waiting")
        if claimed is None and row.status == "running":
            return False
        owner = None if claimed is None else engine.owner
    if claimed is not None and hooked:
        # A run that died (or never ran), or a session that waits, ends here, in a run of
        # its own: the session hooks see it (audit appends who cancelled it, and the
        # steps a killed run journaled).
        try:
            await end_cancelled(engine, engine._workflows.get(row.workflow), claimed, by)
        except BaseException:
            with suppress(Exception, LeaseLost):  # (fenced: a kept end stays as written)
                await _give_back(engine, row)
            raise
        return True
    counted = row if claimed is None else claimed  # (a give-back may have counted more)
    try:
        await engine.store.finish(row.id, owner, SessionOutcome(
            status="cancelled", error=cancelled_record(by), steps=counted.steps,
            input_tokens=counted.input_tokens, output_tokens=counted.output_tokens,
            cost=counted.cost), tenant=row.tenant)
    except LeaseLost:
        return False  # woken and claimed meanwhile: that engine runs it now
    return True


async def _give_back(engine: Engine, row: SessionRow) -> None:
    """Give up the claim on a session this engine could not end (its stored values do not
    read): as it was read before the claim, waiting for its signal or timer again, or
    unfinished for any engine to take."""
    if row.status == "waiting":
        await engine.store.park(row.id, engine.owner, SessionOutcome(
            status="waiting", steps=row.steps, input_tokens=row.input_tokens,
            output_tokens=row.output_tokens, cost=row.cost),
            wake_at=row.wake_at, wait_name=row.wait_name)
    else:
        await engine.store.release(row.id, engine.owner)


async def end_cancelled(engine: Engine, wf: Workflow[Any, Any] | None,
                        row: SessionRow, by: str) -> None:
    """End a session this engine claimed as ``cancelled`` by ``by``, in a run that
    executes nothing (its workflow gives the session hooks its input typed, if it still
    takes it; else they see it as stored)."""
    # (An input this workflow no longer takes, the hooks see as stored: a pydantic error
    # out of the run is a hook's, raised once the end is written, not a cue to run again.)
    await engine._end_in_a_run(wf, row, SessionEnd(status="cancelled",
                                                   error=cancelled_record(by)))


async def ended_by_request(engine: Engine, wf: Workflow[Any, Any], row: SessionRow) -> bool:
    """For a session this engine has just claimed (never a new one): if a cancel request
    waits for it, end it ``cancelled`` instead of running it. If the store cannot be read,
    the claim is given up before the error goes on."""
    try:
        request = await engine.store.next_signal(row.id, CANCEL_SIGNAL)
    except BaseException:
        with suppress(Exception):
            await engine.store.release(row.id, engine.owner)
        raise
    if request is None:
        return False
    try:
        await end_cancelled(engine, wf, row, requester(request.payload))
    except BaseException:
        with suppress(Exception):
            await engine.store.release(row.id, engine.owner)
        raise
    return True


async def honour_requests(engine: Engine, stopped: set[str]) -> None:
    """Stop the sessions this engine runs that have a cancel request (after a renewal).
    ``stopped``: the ones already stopped by a request, still unwinding; each is stopped
    once (a second cancellation would hit it while it records how it ended)."""
    stopped.intersection_update(engine._running)
    # One not (yet, or any more) in ``_running`` is claimed here but not running: it is
    # asked again next round, or its claim ends it (``ended_by_request``).
    asked = [sid for sid in await engine.store.owned_signalled(engine.owner, CANCEL_SIGNAL)
             if sid not in stopped and sid in engine._running]
    if not asked:
        return
    requests = await engine.store.next_signals(asked, CANCEL_SIGNAL)  # who asked: one query
    for sid in asked:
        request = requests.get(sid)
        if engine._stop_running(sid, requester(None if request is None else request.payload)):
            stopped.add(sid)


__all__ = ["CANCELLED", "CancelStatus", "cancel", "cancelled_record", "end_cancelled",
           "ended_by_request", "honour_requests", "requester", "session"]
