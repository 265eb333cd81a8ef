"""``convoy replay``: re-execute a finished session from its journal and compare."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from convoy import Engine, ReplayResult, UserError
from convoy._text import plural, quoted, short
from convoy.cli._common import (
    DEFAULT_DB,
    RUN_FAILURE,
    SESSION_ID,
    AllTenantsOption,
    DbOption,
    ImportOption,
    Scope,
    TenantOption,
    build_engine,
    err,
    fail,
    import_modules,
    out,
    require_session,
    require_store,
    run_async,
    tenant_scope,
)
from convoy.cli._json import json_text
from convoy.cli._loading import cannot_load
from convoy.cli._render import (
    _state_waited_for,
    _task_waited_for,
    fmt_time,
    status_text,
    waited_for,
)
from convoy.stores import SessionRow


def replay(
    session_id: Annotated[str, typer.Argument(metavar="ID", help="Session id.",
                                              callback=SESSION_ID)],
    db: DbOption = DEFAULT_DB,
    imports: ImportOption = None,
    tenant: TenantOption = None,
    all_tenants: AllTenantsOption = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print JSON instead: whether it matches, both statuses, outputs "
        "and errors, the steps replayed (same exit codes).")] = False,
) -> None:
    """Re-execute a finished session from its journal and compare the result.

    No model and no tool is called: every step comes from the journal, so this checks that
    the current workflow code still reaches the recorded result (e.g. after a code change).
    Prints "same result" (exit 0) or "DIVERGED" with both results (exit 1). A cancelled
    session replays up to where it was cancelled (no timer fired, no signal made up), and
    reaching that point is the same result. Workflows
    with explicit names need '--import MODULE'. Only sessions of the tenant --tenant names
    (default: 'default'), or of every tenant with --all-tenants.

    Example: `convoy replay handle_ticket-3f2a9c1b7e4d`
    """
    scope = tenant_scope(tenant, all_tenants)
    import_modules(imports)
    require_store(db)
    engine = build_engine(db, read_only=True)
    rr = run_async(_replay(engine, scope, session_id, db))
    if as_json:
        typer.echo(json_text(_as_json(rr), ensure_ascii=False))
        if not rr.matches:
            raise typer.Exit(RUN_FAILURE)
        return
    if rr.matches:
        upto = "" if rr.stopped_at is None else \
            f"replayed up to step {rr.stopped_at}, where it was {_stopped(rr.status)}; "
        out.print(Text.assemble(f"session {rr.id}: ", ("same result", "bold green"),
                                f" ({rr.status}, {upto}{plural(rr.steps, 'step')} replayed "
                                "from the journal)"))
        return
    out.print(Text.assemble(f"session {rr.id}: ", ("DIVERGED", "bold red"),
                            f" ({plural(rr.steps, 'step')} replayed)"))
    t = Table.grid(padding=(0, 2))
    t.add_column()
    t.add_column()
    t.add_column(overflow="fold")
    for label, status, value, error in (
            ("recorded", rr.recorded_status, rr.recorded_output, rr.recorded_error),
            ("replayed", rr.status, rr.output, rr.error)):
        # An error whole (it says why the replay diverged: the step, what changed, what to
        # do); an output as far as a line or two shows it (--json has all of it).
        detail = short(value, 300) if value is not None else \
            f"{error.get('type', 'error')}: {error.get('message', '')}" if error else "-"
        t.add_row(Text(label, style="bold"), status_text(status), Text(detail))
    out.print(t)
    raise typer.Exit(RUN_FAILURE)


def _as_json(rr: ReplayResult) -> dict[str, Any]:
    """``replay --json``: the result, its outputs as the JSON values they are."""
    def value(text: str | None) -> Any:
        try:
            return None if text is None else json.loads(text)
        except ValueError:  # (a stored value Convoy did not write: as it is)
            return text

    return {"id": rr.id, "matches": rr.matches, "steps": rr.steps,
            "stopped_at": rr.stopped_at,
            "recorded": {"status": rr.recorded_status, "output": value(rr.recorded_output),
                         "error": rr.recorded_error},
            "replayed": {"status": rr.status, "output": value(rr.output), "error": rr.error}}


async def _replay(engine: Engine, scope: Scope, session_id: str, db: str) -> ReplayResult:
    async with engine:
        await require_session(engine, scope, session_id, db)
        view = scope.view(engine)
        row = await view.session(session_id)
        if row.status == "waiting":
            fail(f"session {quoted(session_id)} has not finished: it waits for "
                 f"{_until(row, scope, db)}; replay re-executes a finished session")
        if not row.unfinished:
            try:
                wf = engine.workflow_named(row.workflow)
            except UserError as e:
                again = scope.command("replay", db, operands=[session_id],
                                      options="--import MODULE")
                fail(f"cannot replay session {quoted(session_id)} of workflow "
                     f"{quoted(row.workflow)}: "
                     f"{cannot_load(e, 'replay', again)}")
            if wf.version != row.version:
                err.print(f"warning: session {session_id} ran version {row.version!r} of "
                          f"{row.workflow}; the code is now version {wf.version!r}",
                          markup=False, style="yellow")
        return await view.replay(session_id)


def _stopped(status: str) -> str:
    """How a session that replays up to where it stopped was stopped."""
    return "cancelled" if status == "cancelled" else "stopped by its limit"


def _until(row: SessionRow, scope: Scope, db: str) -> str:
    """What a waiting session waits for, and what ends the wait."""
    name = row.wait_name
    timer = "" if row.wake_at is None else f", until {fmt_time(row.wake_at)}"
    if name is None:
        return f"a timer (it wakes at {fmt_time(row.wake_at)})"
    if len(row.wait_names) > 1:  # (a gather's branches: any of them wakes it)
        return (f"{' or '.join(map(waited_for, row.wait_names))}{timer} (any of them wakes "
                "it)")
    task = _task_waited_for(row)
    if task is not None:
        answer = scope.command("inbox show", db, operands=[task])
        return f"{waited_for(name)}{timer}: {answer} shows how to answer it"
    if _state_waited_for(row) is not None:
        return f"{waited_for(name)}{timer} (a write of that key wakes it)"
    send = scope.command("signal", db, operands=[row.id, name], options="--payload JSON")
    return f"{waited_for(name)}{timer} ({send} sends it)"
