"""``convoy signal`` and ``convoy cancel``: act on one session of a store."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from convoy import ESCALATION, Engine, UserError
from convoy.cli._audited import AUDIT_CURSOR
from convoy.cli._common import (
    DEFAULT_DB,
    AllTenantsOption,
    BusyTimeoutOption,
    DbOption,
    ImportOption,
    Scope,
    TenantOption,
    build_engine,
    err,
    fail,
    import_modules,
    out,
    require_store,
    run_async,
    tenant_scope,
)
from convoy.cli._deciders import decider_engine, who_decides
from convoy.stores import SessionRow, StepRecord


def signal(
    session_id: Annotated[str, typer.Argument(metavar="SESSION", help="Session id.")],
    name: Annotated[str, typer.Argument(
        metavar="NAME", help=f"The signal, as the workflow's ctx.wait_for names it, or "
        f"{ESCALATION!r} to answer an escalated session.")],
    payload: Annotated[str | None, typer.Option(
        "--payload", "-p", metavar="JSON",
        help="The signal's value, as JSON (default: null).")] = None,
    by: Annotated[str | None, typer.Option(
        "--by", envvar="CONVOY_USER", show_envvar=True, metavar="NAME",
        help="Who answers an escalation (recorded with the decision, audited where the "
             "store audits the tenant). Default: the login name.")] = None,
    db: DbOption = DEFAULT_DB,
    busy_timeout: BusyTimeoutOption = 10.0,
    tenant: TenantOption = None,
    all_tenants: AllTenantsOption = False,
) -> None:
    """Send a signal to a session: it wakes the session if it waits for it, or is kept
    for its next wait. A 'convoy worker' runs the woken session (or 'convoy resume').

    An escalated session is answered with the signal 'convoy.escalation' and a payload
    '{"action": "retry"}' (run the step again), '{"action": "complete", "result": ...}'
    (a person did it: record that result) or '{"action": "fail", "reason": "..."}'; it is
    a decision by --by, kept in the inbox ('convoy inbox show SESSION:escalated') and
    audited as 'convoy inbox' decisions are.

    Only sessions of the tenant --tenant names (default: 'default'), or of every tenant
    with --all-tenants: another tenant's session is an unknown id.

    Example: `convoy signal handle_ticket-3f2a9c1b7e4d approve --payload true`
    """
    value: Any = None
    if payload is not None:
        try:
            value = json.loads(payload)
        except json.JSONDecodeError as e:
            fail(f"--payload is not JSON: {e.msg} at column {e.colno} (quote strings: "
                 """--payload '"yes"')""")
    if name == ESCALATION:
        if isinstance(value, dict) and not value.get("by"):
            value = {**value, "by": who_decides(by)}
        engine, scope = decider_engine(db, busy_timeout, tenant, all_tenants)
    else:
        if by is not None and by != os.environ.get("CONVOY_USER"):
            fail(f"--by names who answers an escalation ({ESCALATION!r}); a signal "
                 f"{name!r} records no decider")
        scope = tenant_scope(tenant, all_tenants)
        require_store(db)
        engine = build_engine(db, busy_timeout=busy_timeout)
    run_async(_signal(engine, scope, session_id, name, value))
    if name == ESCALATION:
        action = value.get("action") if isinstance(value, dict) else value
        out.print(f"answered the escalation of session {session_id}: {action}"
                  + ("" if action == "fail" else "; 'convoy worker' or 'convoy resume' "
                     "continues it"), markup=False)
    else:
        out.print(f"sent signal {name!r} to session {session_id}; 'convoy worker' or "
                  "'convoy resume' continues it", markup=False)


async def _signal(engine: Engine, scope: Scope, session_id: str, name: str, value: Any
                  ) -> None:
    async with engine:
        await scope.view(engine).signal(session_id, name, value)


def cancel(
    session_id: Annotated[str, typer.Argument(metavar="SESSION", help="Session id.")],
    db: DbOption = DEFAULT_DB,
    busy_timeout: BusyTimeoutOption = 10.0,
    tenant: TenantOption = None,
    all_tenants: AllTenantsOption = False,
    imports: ImportOption = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Cancel a killed session of an audited tenant even when its "
        "workflow cannot be loaded here (the steps its killed run journaled stay "
        "unaudited).")] = False,
) -> None:
    """Cancel an unfinished session: it ends as 'cancelled' and never runs again.

    A session that another live engine is running must be cancelled there. Only sessions
    of the tenant --tenant names (default: 'default'), or of every tenant with
    --all-tenants.

    A session whose run was killed ends in a run of its own that executes nothing, with
    its workflow imported (as 'convoy resume' imports it; '--import MODULE' for
    workflows with explicit names) at the version it was started on: where the store
    audits its tenant, the steps the killed run journaled are appended to the audit log.
    If the workflow cannot be loaded there, the cancel is refused (--force cancels it
    without those entries).

    Example: `convoy cancel handle_ticket-3f2a9c1b7e4d --tenant acme`
    """
    scope = tenant_scope(tenant, all_tenants)
    import_modules(imports)
    require_store(db)
    run_async(_cancel(build_engine(db, busy_timeout=busy_timeout), scope, session_id, force))
    out.print(f"cancelled session {session_id}", markup=False)


async def _cancel(engine: Engine, scope: Scope, session_id: str, force: bool) -> None:
    async with engine:
        view = scope.view(engine)
        row = await view.session(session_id)
        loaded, why, advice = True, "", ""
        if row.status in ("running", "pending"):
            # A killed (or not yet resumed) run ends in a run of its own when the
            # session's workflow is here at its version: its hooks see it (audit appends
            # what the killed run journaled).
            try:
                wf = engine.workflow_named(row.workflow)
            except UserError as e:
                loaded, why = False, str(e).split(";")[0]
            except Exception as e:  # the application's import code, whatever it raised
                loaded, why = False, f"importing it failed: {type(e).__name__}: {e}"
            else:
                if wf.version != row.version:
                    loaded = False
                    why = (f"the one imported here is at version {wf.version!r}, the "
                           f"session at {row.version!r}")
                    advice = f"cancel it where version {row.version!r} runs"
        killed = row.status == "running" and (row.lease_until or 0.0) <= engine.clock()
        # Steps journaled after the session's audit cursor (a killed run's, or the step a
        # person's answer to its escalation completed), in an audited tenant.
        lost = not loaded and (killed or row.status == "pending") and \
            (AUDIT_CURSOR in row.header_map or await engine.store.audit_size(row.tenant) > 0) \
            and _past_cursor(row, await engine.store.load_journal(row.id, tenant=row.tenant))
        if lost and not force:
            raise UserError(
                f"session {row.id!r} has journaled steps to audit (its tenant is audited), "
                f"but its workflow {row.workflow!r} cannot run here ({why}), so cancelling "
                "it here would leave them unaudited. "
                + (advice or "Pass --import MODULE (or run from the application's "
                   "directory)") + ", or pass --force to cancel it anyway")
        await view.cancel(session_id)
        if lost:
            err.print(f"warning: steps session {row.id} journaled are not audited (--force)",
                      markup=False, soft_wrap=True)


def _past_cursor(row: SessionRow, journal: Mapping[str, StepRecord]) -> bool:
    """Whether the session journaled steps after its audit cursor (none: every step)."""
    try:
        cursor = float(row.header_map.get(AUDIT_CURSOR, "-inf"))
    except ValueError:
        cursor = -math.inf
    return any(r.at > cursor and r.status != "started" for r in journal.values())
