"""Retries: a finished session that did not complete runs again as a new session.

The new session is linked to the old one (``SessionRow.parent``) and gets the id
``<old>.r1`` (a retry of ``x.r1`` is ``x.r2``), so retrying is idempotent: a crash after
the retries were created leaves them pending for ``resume``, and two processes retrying
the same session address the same new session. The old session, its journal and its
result are never touched. A retry runs the workflow code (and version) this engine has
now, from the old session's input, with an empty journal.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from convoy._errors import UserError
from convoy._text import quoted, readable_validation_error
from convoy.engine._results import SessionResult, needs_master_key
from convoy.engine._tenancy import lookup_id, no_session
from convoy.privacy._seal import is_sealed
from convoy.stores._protocol import NewSession, SessionFilter, SessionRow, SessionStatus, Store

if TYPE_CHECKING:
    from convoy.engine._engine import Engine

#: The statuses of sessions a retry may run again: finished, but not completed.
RETRYABLE: tuple[SessionStatus, ...] = ("failed", "escalated", "budget_exhausted",
                                        "loop_detected", "limit_exceeded", "cancelled")
_ATTEMPT = re.compile(r"(.+)\.r(\d+)")
_PAGE = 1000


def retry_id(row: SessionRow) -> str:
    """The id the retry of ``row`` gets: ``<id>.r1``, or the next attempt number for a
    session that is itself a retry."""
    m = _ATTEMPT.fullmatch(row.id) if row.parent is not None else None
    return f"{m[1]}.r{int(m[2]) + 1}" if m else f"{row.id}.r1"


async def select_retryable(store: Store, *, ids: Sequence[str] = (),
                           status: str | Iterable[str] | None = None,
                           error_type: str | None = None, workflow: str | None = None,
                           tenant: str | None = None, param: str = "ids",
                           rerun_escalated: bool = False,
                           flag: str = "rerun_escalated=True") -> list[SessionRow]:
    """Sessions a retry would run again (in the order of ``ids``, else oldest first):
    finished without completing, never retried, and matching every condition given (of
    ``tenant`` only, when given: another tenant's id is an unknown id). ``param``: how
    errors name ``ids`` (``"session_id"``: the one id given).

    An escalated session waits for a person's answer (after an ``UnknownOutcomeError``,
    whether its step took effect): it is selected only with ``rerun_escalated`` (how the
    caller says so: ``flag``), by default not at all, and named (by id or status) it is
    refused.

    Raises:
        UserError: an unknown status, or an id that is unknown, not retryable (unfinished
            or completed), escalated (without ``rerun_escalated``) or already retried.
    """
    statuses = _statuses(status, rerun_escalated, flag)
    if ids:
        found = await store.get_sessions([lookup_id(sid, param) for sid in ids],
                                         tenant=tenant)
        for n, sid in enumerate(ids):
            row = found.get(sid)
            if row is None:
                raise no_session(sid, store.url, tenant,
                                 param if param == "session_id" else f"{param}[{n}]")
            if row.status not in RETRYABLE:
                raise UserError(f"session {quoted(sid)} is {row.status}; a retry runs sessions "
                                "that "
                                f"finished without completing ({', '.join(RETRYABLE)})")
            if row.status == "escalated" and not rerun_escalated:
                raise UserError(_open_escalation(row, flag))
        rows = [found[sid] for sid in dict.fromkeys(ids)]  # in the order given
    else:
        rows = []
        for st in statuses:
            offset = 0
            while True:
                page = await store.list_sessions(SessionFilter(
                    status=st, workflow=workflow, tenant=tenant, limit=_PAGE, offset=offset))
                rows.extend(page)
                offset += len(page)
                if len(page) < _PAGE:
                    break
    rows = [r for r in rows if r.status in statuses and (workflow is None or r.workflow ==
            workflow) and (error_type is None or (r.error_record or {}).get("type") ==
                           error_type)]
    retried = await _retries(store, rows)
    if ids:
        for row in rows:
            if row.id in retried:
                done = retried[row.id]
                raise UserError(f"session {row.id!r} was already retried as {done.id!r} "
                                f"({done.status}); retry that one instead")
    fresh = [r for r in rows if r.id not in retried]
    return fresh if ids else sorted(fresh, key=lambda r: (r.created, r.id))


def _statuses(status: str | Iterable[str] | None, rerun_escalated: bool,
              flag: str) -> tuple[str, ...]:
    if status is None:
        return RETRYABLE if rerun_escalated else tuple(
            s for s in RETRYABLE if s != "escalated")
    wanted = (status,) if isinstance(status, str) else tuple(status)
    for s in wanted:
        if s not in RETRYABLE:
            raise UserError(f"{quoted(s)} is not a status a retry runs; use one of "
                            f"{', '.join(RETRYABLE)}")
    if "escalated" in wanted and not rerun_escalated:
        raise UserError(f"escalated sessions wait for a person's answer (whether the step "
                        f"that escalated took effect); a retry runs that step again: pass "
                        f"{flag} to retry them anyway (it closes their escalations)")
    return wanted


def _open_escalation(row: SessionRow, flag: str) -> str:
    """Why the escalated session ``row`` is not retried without ``flag``: one line."""
    kind = (row.error_record or {}).get("type", "an escalation")
    return (f"session {quoted(row.id)} is escalated and its escalation is open ({kind}): a "
            f"person must check whether the step that escalated took effect and answer it "
            f"(retry, complete or fail); a retry "
            f"runs that step again: pass {flag} to retry it anyway (that closes the "
            f"escalation)")


async def close_escalations(engine: Engine, rows: Sequence[SessionRow],
                            retries: Sequence[str], by: str) -> None:
    """Before the escalated ones of ``rows`` are retried (as ``retries``): their escalation
    is answered ``fail`` by ``by`` (a decision in the inbox, audited), so nobody can answer
    it later and run the step that escalated once more."""
    from convoy.hitl._inbox import ESCALATED, Inbox

    for row, new in zip(rows, retries, strict=True):
        if row.status == "escalated":
            await Inbox(engine, row.tenant).reject(
                f"{row.id}:{ESCALATED}", by=by,
                comment=f"retried as {new!r}, which runs the step that escalated again; "
                        "this escalation was closed so that no answer runs it once more")


async def _retries(store: Store, rows: Sequence[SessionRow]) -> dict[str, SessionRow]:
    """The existing retry of each of ``rows`` that has one, by the retried session's id
    (a retry is a session of the same tenant)."""
    nxt = {retry_id(r): r for r in rows}
    found = await store.get_sessions(list(nxt))
    return {nxt[sid].id: row for sid, row in found.items()
            if row.parent == nxt[sid].id and row.tenant == nxt[sid].tenant}


async def retry_sessions(engine: Engine, rows: Sequence[SessionRow], *,
                         on_done: Callable[[SessionResult[Any]], None] | None = None,
                         by: str | None = None) -> list[SessionResult[Any]]:
    """Create the retries of ``rows`` (pending, durably, before any runs) and run them on
    the engine's current workflow code; results in the order of ``rows``. The escalation
    of an escalated one is closed first, by ``by`` (default ``"engine OWNER"``): see
    :func:`close_escalations`.

    Raises:
        UserError: a workflow cannot be imported, or an old input does not match the
            current input type (nothing is created then).
    """
    plans: list[tuple[SessionRow, NewSession, Any]] = []
    taken = await engine.store.get_sessions([retry_id(r) for r in rows])
    for row in rows:
        wf = engine.workflow_named(row.workflow)
        if engine.keys is None and is_sealed(row.input):
            raise UserError(f"cannot retry {needs_master_key(row)}")
        try:
            value = wf.input_adapter.validate_json(row.input)
        except ValidationError as e:
            raise UserError(f"cannot retry session {row.id!r}: its input does not match "
                            f"version {wf.version!r} of workflow {wf.name!r}: "
                            f"{readable_validation_error(e)}") from None
        sid = retry_id(row)
        while sid in taken and taken[sid].parent != row.id:  # an unrelated session's id
            sid = f"{sid}.r1"
            taken.update(await engine.store.get_sessions([sid]))
        plans.append((row, NewSession(
            id=sid, workflow=wf.name, version=wf.version, tenant=row.tenant,
            input=wf.input_adapter.dump_json(value).decode(), headers=row.header_map,
            parent=row.id, subject=row.subject), value))
    await close_escalations(engine, rows, [new.id for _, new, _ in plans],
                            f"engine {engine.owner}" if by is None else by)
    await engine.store.create_sessions([new for _, new, _ in plans])
    groups: dict[tuple[str, str], list[tuple[NewSession, Any]]] = {}
    for _, new, value in plans:
        groups.setdefault((new.workflow, new.tenant), []).append((new, value))
    by_id: dict[str, SessionResult[Any]] = {}
    for (name, tenant), group in groups.items():
        results = await engine.run_many(engine.workflow_named(name), [v for _, v in group],
                                        ids=[n.id for n, _ in group], tenant=tenant,
                                        on_done=on_done)
        by_id.update((r.id, r) for r in results)
    return [by_id[new.id] for _, new, _ in plans]


__all__ = ["RETRYABLE", "close_escalations", "retry_id", "retry_sessions", "select_retryable"]
