"""``convoy sessions list`` and ``convoy sessions show``."""

from __future__ import annotations

import time
from typing import Annotated, Any, NamedTuple

import typer

from convoy._text import quoted
from convoy.cli._common import (
    DEFAULT_DB,
    SESSION_ID,
    AllTenantsOption,
    DbOption,
    Scope,
    TenantOption,
    convoy_errors,
    count_option,
    fail,
    its_workflows,
    label,
    no_sessions_note,
    open_store,
    out,
    require_store,
    run_async,
    tenant_scope,
    unknown_session,
    workflow_names,
)
from convoy.cli._json import json_text
from convoy.cli._left_out import left_out_json, warn_left_out
from convoy.cli._render import (
    agent_configs,
    open_wait,
    print_session,
    session_times,
    sessions_table,
    spent,
    steps_taken,
)
from convoy.durability._executor import signals_refused
from convoy.engine._retry import retry_id
from convoy.stores import (
    DAMAGED,
    STATUSES,
    UNFINISHED,
    SessionFilter,
    SessionRow,
    Signal,
    StepRecord,
)
from convoy.stores._protocol import CANCEL_SIGNAL
from convoy.stores._rows import LeftOut, RowCheck, readable, row_name, stored_json

sessions_app = typer.Typer(
    name="sessions", no_args_is_help=True, rich_markup_mode="markdown",
    help="Inspect the sessions in a store (of the tenant 'default', --tenant NAME, or "
         "--all-tenants).\n\nExample: `convoy sessions list --status failed --tenant acme`")


@sessions_app.command("list")
def list_sessions(
    db: DbOption = DEFAULT_DB,
    status: Annotated[str | None, typer.Option(
        "--status", "-s", help=f"Only this status: {', '.join(STATUSES)}.")] = None,
    workflow: Annotated[str | None, typer.Option(
        "--workflow", "-w", metavar="NAME",
        help="Only the sessions of this workflow, by its name as 'sessions list' shows it "
             "(MODULE:FUNCTION, unless @convoy.workflow(name=...) gave it another).")] = None,
    limit: Annotated[int, count_option("--limit", "-n", least=1, help="Rows to show.")] = 50,
    offset: Annotated[int, count_option(
        "--offset", help="Skip this many sessions first (the oldest; with --newest, the "
        "newest).")] = 0,
    newest: Annotated[bool, typer.Option(
        "--newest", help="Newest first (the sessions a run just made), not oldest "
        "first.")] = False,
    tenant: TenantOption = None,
    all_tenants: AllTenantsOption = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print JSON instead: the sessions shown (each as 'sessions show "
        "--json' has it, without input, output and journal), the counts by status, the "
        "total, and the damaged rows left out.")] = False,
) -> None:
    """List sessions, oldest first (the order they were created in), or newest first.

    Waiting sessions show what they wait for (a signal, a time); the last line counts
    every session by status. Lists the sessions of the tenant 'default' unless --tenant
    NAME (or $CONVOY_TENANT) names another, or --all-tenants asks for every tenant's.

    Example: `convoy sessions list --status waiting --limit 20 --tenant acme`
    """
    if status is not None and status not in STATUSES:
        fail(f"--status {quoted(status)} is not a session status; use one of {', '.join(STATUSES)}")
    scope = tenant_scope(tenant, all_tenants)
    require_store(db)
    # (a session whose engine was killed: its steps as its journal counts them, as 'sessions
    # show' says)
    where = SessionFilter(status=status, workflow=workflow, tenant=scope.tenant, limit=limit,
                          offset=offset, newest=newest, journal_steps=True)
    left_out: list[LeftOut] = []
    rows, counts, known, cancels = run_async(_list(db, where, left_out))
    rows = readable(rows, session_times, left_out)  # (a time that cannot be shown)
    if workflow is not None and workflow not in known:
        fail(f"no sessions of workflow {quoted(workflow)}{scope.of} in {label(db)!r}"
             f"{its_workflows(known, scope, db)}")
    total = counts.get(status, 0) if status else sum(counts.values())
    if as_json:
        listed = readable(rows, lambda r: row_json(r, cancels.get(r.id)), left_out)
        typer.echo(json_text({"sessions": listed, "counts": counts,
                               "total": total, "damaged": left_out_json(left_out)}, indent=2))
        warn_left_out(left_out, "session")
        return
    if not rows:
        what = f" with status {quoted(status)}" if status else ""
        out.print(f"no sessions{scope.of}{what} in {label(db)}"
                  + (f" past the first {offset}" if offset else "") + scope.hint, markup=False)
        warn_left_out(left_out, "session")
        if not left_out:
            no_sessions_note(db, scope)
        return
    out.print(sessions_table(rows, tenants=scope.tenant is None, width=out.width,
                             cancelling=cancels.keys()))
    if workflow is None and total > len(rows):
        # (the rows left out as damaged are in the total: past them, maybe nothing more)
        if offset + len(rows) + len(left_out) < total:
            more = "use --limit N or --offset N for more" + (
                "" if newest else ", or --newest for the newest first")
        else:
            more = "none after these" + (
                " but the damaged rows left out (see the warning)" if left_out else "")
        out.print(f"showing {len(rows)} of {total:,} sessions (from the "
                  f"{'newest' if newest else 'oldest'}"
                  f"{f', skipping {offset}' if offset else ''}); {more}", markup=False,
                  soft_wrap=True)
    if counts and status is None:
        out.print("  ".join(f"{s}: {counts[s]:,}" for s in (*STATUSES, DAMAGED) if s in counts),
                  markup=False)
    warn_left_out(left_out, "session")


async def _list(db: str, where: SessionFilter, left_out: list[LeftOut]
                ) -> tuple[list[SessionRow], dict[str, int], list[str], dict[str, float]]:
    """The rows, the counts by status, the workflows (for an unknown ``--workflow``), and
    when a cancel was requested of each unfinished row that has a request standing. The
    rows as stored: a listing (a batch job's log) opens no data subject's value, with the
    master key or without; `sessions show ID` does, with it."""
    async with open_store(db) as store:
        known = (await workflow_names(store, where.tenant) if where.workflow is not None
                 else [])
        rows = await store.list_sessions(where, left_out=left_out)
        # One read for the page (not one per row: a round trip each on PostgreSQL).
        requests = await store.next_signals([r.id for r in rows if r.status in UNFINISHED],
                                            CANCEL_SIGNAL, tenant=where.tenant)
        cancels: dict[str, float] = {}
        for row in rows:
            at = _sent_at(requests.get(row.id)) if row.status in UNFINISHED else None
            if at is not None:
                cancels[row.id] = at
        return rows, await store.counts(tenant=where.tenant), known, cancels


@sessions_app.command("show")
def show_session(
    session_id: Annotated[str, typer.Argument(metavar="ID", help="Session id.",
                                              callback=SESSION_ID)],
    db: DbOption = DEFAULT_DB,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead.")] = False,
    tenant: TenantOption = None,
    all_tenants: AllTenantsOption = False,
) -> None:
    """Show one session: status, workflow, headers, owner or what it waits for, the
    journaled steps (with tokens and cost of model calls), output or error. A session of
    another tenant than --tenant (default: 'default') is an unknown id.

    Example: `convoy sessions show handle_ticket-3f2a9c1b7e4d --json`
    """
    scope = tenant_scope(tenant, all_tenants)
    require_store(db)
    shown = run_async(_show(db, session_id, scope))
    if shown is None:
        unknown_session(db, scope, session_id)
    row, steps, retried_as, cancel, queued = shown
    with convoy_errors():  # (a value edited in the store: one line)
        session_times(row)
        if as_json:
            typer.echo(json_text(session_json(row, steps, retried_as, cancel, queued),
                                  indent=2))
        else:
            print_session(out, row, steps, now=time.time(), retried_as=retried_as,
                          cancel_requested=cancel, signal_queued=queued, db=db)


class _Shown(NamedTuple):
    row: SessionRow
    steps: list[StepRecord]
    #: the session that retried it
    retried_as: SessionRow | None
    #: when a cancel request that waits for its engine was made
    cancel: float | None
    #: when the first signal queued for the session's open wait was sent
    queued: float | None


async def _show(db: str, session_id: str, scope: Scope) -> _Shown | None:
    """The session and what ``sessions show`` says of it (``None``: no such session)."""
    async with open_store(db, unseal=True) as store:
        row = await store.get_session(session_id, tenant=scope.tenant)
        if row is None:
            return None
        retry = await store.get_session(retry_id(row), tenant=row.tenant)
        if retry is not None and retry.parent != row.id:
            retry = None
        steps = await store.journal(session_id, tenant=row.tenant)
        request = queued = None
        if row.status in UNFINISHED:
            request = await store.next_signal(session_id, CANCEL_SIGNAL, tenant=row.tenant)
            wait = open_wait(steps)
            if wait is not None:
                queued = await store.next_signal(session_id, wait.target, tenant=row.tenant)
        return _Shown(row, steps, retry, _sent_at(request), _sent_at(queued))


#: What a signal's row must hold for ``sessions show`` to show when it was sent. Checked
#: here, not by the store: an engine only consumes a signal (a time edited into text does
#: not keep the session from its signal), and one whose payload does not decode is
#: refused by the waiting session, which waits on.
_SIGNAL_CHECK = RowCheck(((3, "at"),), ((0, "seq"),), ((1, "session_id"), (2, "name")))


def _sent_at(s: Signal | None) -> float | None:
    if s is None:
        return None
    _SIGNAL_CHECK((s.seq, s.session_id, s.name, s.at),
                  lambda: f"signal {row_name(s.seq)} of session {row_name(s.session_id)}")
    return s.at


def row_json(row: SessionRow, cancel_requested: float | None = None) -> dict[str, Any]:
    """A session's row as JSON: what ``sessions list --json`` prints of each
    (``cancel_requested``: when a cancel that waits for its engine was requested)."""
    return {
        "id": row.id, "workflow": row.workflow, "version": row.version, "tenant": row.tenant,
        "status": row.status, "created": row.created, "started": row.started,
        "finished": row.finished, "steps": row.steps, "active_s": row.active_s,
        "usage": {"input_tokens": row.input_tokens, "output_tokens": row.output_tokens},
        "cost": row.cost, "headers": row.header_map, "parent": row.parent,
        "subject": row.subject, "owner": row.owner, "lease_until": row.lease_until,
        "wake_at": row.wake_at,
        # (the first signal it waits for, and all: a gather's branches wait for several)
        "wait_name": (row.wait_names or (None,))[0], "wait_names": list(row.wait_names),
        "error": row.error_record,
        "cancel_requested": cancel_requested}


def session_json(row: SessionRow, steps: list[StepRecord],
                 retried_as: SessionRow | None = None,
                 cancel_requested: float | None = None,
                 signal_queued: float | None = None) -> dict[str, Any]:
    wait = open_wait(steps) if row.status in UNFINISHED else None
    tokens_in, tokens_out, cost = spent(row, steps)
    return {
        **row_json(row),
        "steps": steps_taken(row, steps),
        "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out}, "cost": cost,
        "retried_as": retried_as.id if retried_as is not None else None,
        "cancel_requested": cancel_requested,
        "signal_queued": signal_queued,
        "signals_refused": None if wait is None else signals_refused(wait),
        "input": _json(row.input, row.id, "input"),
        "output": _json(row.output, row.id, "output"),
        "journal": [{"key": r.key, "kind": r.kind, "target": r.target, "status": r.status,
                     "result": _json(r.result, row.id, "result", r.key),
                     # (a model call's record names its agent as its target)
                     "agent": r.taken_by,
                     "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
                     "cost": r.cost, "input_hash": r.input_hash, "config": r.config,
                     "at": r.at}
                    for r in steps],
        "agent_configs": agent_configs(steps),
    }


def _json(text: str | None, session_id: str, name: str, step: str | None = None) -> Any:
    """A stored value decoded (text that is not JSON as it is); one nested too deep to
    read is one line naming it."""
    if text is None:
        return None
    what = f"session {row_name(session_id)}" + ("" if step is None else
                                                 f" step {row_name(step)}")
    return stored_json(text, what, name, or_text=True)
