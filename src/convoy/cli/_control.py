"""``convoy signal`` and ``convoy cancel``: act on one session of a store."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from convoy import ESCALATION, Engine
from convoy.cli._common import (
    DEFAULT_DB,
    AllTenantsOption,
    BusyTimeoutOption,
    DbOption,
    Scope,
    TenantOption,
    build_engine,
    fail,
    out,
    require_store,
    run_async,
    tenant_scope,
)


def signal(
    session_id: Annotated[str, typer.Argument(metavar="SESSION", help="Session id.")],
    name: Annotated[str, typer.Argument(
        metavar="NAME", help=f"The signal, as the workflow's ctx.wait_for names it, or "
        f"{ESCALATION!r} to answer an escalated session.")],
    payload: Annotated[str | None, typer.Option(
        "--payload", "-p", metavar="JSON",
        help="The signal's value, as JSON (default: null).")] = None,
    db: DbOption = DEFAULT_DB,
    busy_timeout: BusyTimeoutOption = 10.0,
    tenant: TenantOption = None,
    all_tenants: AllTenantsOption = False,
) -> None:
    """Send a signal to a session: it wakes the session if it waits for it, or is kept
    for its next wait. A 'convoy worker' runs the woken session (or 'convoy resume').

    An escalated session is answered with the signal 'convoy.escalation' and a payload
    '{"action": "retry"}' (run the step again), '{"action": "complete", "result": ...}'
    (a person did it: record that result) or '{"action": "fail", "reason": "..."}'.

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
    scope = tenant_scope(tenant, all_tenants)
    require_store(db)
    run_async(_signal(build_engine(db, busy_timeout=busy_timeout), scope, session_id, name,
                      value))
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
) -> None:
    """Cancel an unfinished session: it ends as 'cancelled' and never runs again.

    A session that another live engine is running must be cancelled there. Only sessions
    of the tenant --tenant names (default: 'default'), or of every tenant with
    --all-tenants.

    Example: `convoy cancel handle_ticket-3f2a9c1b7e4d --tenant acme`
    """
    scope = tenant_scope(tenant, all_tenants)
    require_store(db)
    run_async(_cancel(build_engine(db, busy_timeout=busy_timeout), scope, session_id))
    out.print(f"cancelled session {session_id}", markup=False)


async def _cancel(engine: Engine, scope: Scope, session_id: str) -> None:
    async with engine:
        await scope.view(engine).cancel(session_id)
