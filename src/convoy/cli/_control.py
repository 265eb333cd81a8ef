"""``convoy signal`` and ``convoy cancel``: act on one session of a store."""

from __future__ import annotations

import json
import math
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any

import typer

from convoy import ESCALATION, Engine, UserError
from convoy._command import command, word
from convoy._files import read_stdin
from convoy._text import check_name, escaped
from convoy.cli._common import (
    DEFAULT_DB,
    SESSION_ID,
    AllTenantsOption,
    BusyTimeoutOption,
    DbOption,
    ImportOption,
    Scope,
    TenantOption,
    WriteBusyTimeoutOption,
    build_engine,
    err,
    fail,
    import_modules,
    json_value,
    out,
    require_convoy_store,
    require_session,
    run_async,
    say,
    tenant_scope,
)
from convoy.cli._deciders import by_typed, checked_by, decider_engine, who_decides
from convoy.cli._interceptors import (
    CancelInterceptorsOption,
    DecisionInterceptorsOption,
    app_interceptors,
)
from convoy.cli._loading import continues, continuing, in_script, script_engine
from convoy.cli._render import other_wait
from convoy.cli._stop import not_kept, read_or_stop
from convoy.stores import SessionRow


def _continues(row: SessionRow, db: str) -> str:
    """What runs a session a signal woke."""
    return continues(row.workflow, lambda args: command(args, db=db, tenant=row.tenant))



def signal(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(metavar="SESSION", help="Session id.",
                                              callback=SESSION_ID)],
    name: Annotated[str, typer.Argument(
        metavar="NAME", help=f"The signal, as the workflow's ctx.wait_for names it, or "
        f"{ESCALATION!r} to answer an escalated session.")],
    payload: Annotated[str | None, typer.Option(
        "--payload", "-p", metavar="JSON",
        help="The signal's value, as JSON (default: null).")] = None,
    payload_file: Annotated[Path | None, typer.Option(
        "--payload-file", metavar="FILE",
        help="Read the signal's value (JSON) from this file instead ('-': standard input), "
             "for a value too large for the command line.")] = None,
    by: Annotated[str | None, typer.Option(
        "--by", envvar="CONVOY_USER", show_envvar=True, metavar="NAME", callback=checked_by,
        help="Who answers an escalation (recorded with the decision, audited where the "
             "store audits the tenant). Default: the login name.")] = None,
    db: DbOption = DEFAULT_DB,
    busy_timeout: WriteBusyTimeoutOption = 10.0,
    tenant: TenantOption = None,
    all_tenants: AllTenantsOption = False,
    interceptors: DecisionInterceptorsOption = None,
) -> None:
    """Send a signal to a session: it wakes the session if it waits for it, or is kept
    for its next wait of that name (a session that waits for something else now, another
    signal say, gets it all the same, with a warning naming what it waits for). A
    'convoy worker' runs the woken session (or 'convoy resume').
    A payload the wait's type does not take (say "maybe" for a yes/no) is consumed
    without ending the wait: the command that runs the session warns of it, and the
    session waits on for a valid signal.

    An escalated session is answered with the signal 'convoy.escalation' and a payload
    '{"action": "retry"}' (run the step again), '{"action": "complete", "result": ...}'
    (a person did it: record that result) or '{"action": "fail", "reason": "..."}'; it is
    a decision by --by, kept in the inbox ('convoy inbox show SESSION:escalated') and
    audited as 'convoy inbox' decisions are.

    Only sessions of the tenant --tenant names (default: 'default'), or of every tenant
    with --all-tenants: another tenant's session is an unknown id.

    Example: `convoy signal handle_ticket-3f2a9c1b7e4d approve --payload true`
    """
    if ctx.args:  # words after the name (the command allows them for this line)
        value_given = " ".join(ctx.args)
        try:
            json.loads(value_given)
        except ValueError:
            value_given = "JSON"
        fail("the signal's value goes in --payload, not after its name: "
             + command("signal", operands=[session_id, name],
                       options=f"--payload {word(value_given)}", db=db, tenant=tenant,
                       all_tenants=all_tenants))
    try:
        check_name(name, "signal name")
    except UserError as e:
        fail(str(e))
    value: Any = None
    if payload is not None and payload_file is not None:
        fail("give the signal's value once: --payload JSON or --payload-file FILE")
    if payload_file is not None:
        # (a stop while it reads, a pipe whose writer keeps it open, ends it at once)
        again = not_kept(payload_file, "payload", many=False, redo="send it")
        text = read_or_stop(lambda: read_text(payload_file, "--payload-file"),
                            f"interrupted before the signal was sent: nothing was done{again}",
                            say)
        value = json_value(text, "--payload-file", """'"yes"' in the file""")
    elif payload is not None:
        value = json_value(payload, "--payload", """--payload '"yes"'""")
    if name == ESCALATION:
        if isinstance(value, dict):
            value = {**value, "by": _decider(value.get("by"), by)}
        engine, scope = decider_engine(db, busy_timeout, tenant, all_tenants, interceptors)
    else:
        if by is not None and by_typed():  # ($CONVOY_USER: a default, not a request)
            fail(f"--by names who answers an escalation ({ESCALATION!r}); a signal "
                 f"{name!r} records no decider")
        scope = tenant_scope(tenant, all_tenants)
        # (--interceptors is for a decision: a plain signal records none, and a shell's
        # $CONVOY_INTERCEPTORS must not stop it where the module does not import)
        require_convoy_store(db, nothing="signal")
        engine = build_engine(db, busy_timeout=busy_timeout)
    row = run_async(_signal(engine, scope, session_id, name, value, db))
    if name == ESCALATION:
        action = value.get("action") if isinstance(value, dict) else value
        out.print(f"answered the escalation of session {session_id}: {action}"
                  + ("" if action == "fail" else f"; {_continues(row, db)}"),
                  markup=False, soft_wrap=True)
    elif (other := other_wait(row, name, db)) is not None:
        # (sent all the same: a signal is kept for the session's next wait of its name)
        out.print(f"sent signal {name!r} to session {session_id} (kept until it waits for "
                  "that signal)", markup=False, soft_wrap=True)
        err.print(f"warning: session {escaped(session_id)} waits for {other}", markup=False,
                  style="yellow", soft_wrap=True)
    else:
        out.print(f"sent signal {name!r} to session {session_id}; {_continues(row, db)}",
                  markup=False, soft_wrap=True)



def read_text(path: Path, option: str) -> str:
    """The UTF-8 text of the file ``option`` names (``-``: standard input), or one line and
    exit 2 saying why not."""
    try:
        data = read_stdin() if str(path) == "-" else path.read_bytes()
    except IsADirectoryError:
        fail(f"{option} {str(path)!r} is a directory; name a file")
    except OSError as e:
        fail(f"{option} {str(path)!r}: {e.strerror or e}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        fail(f"{option} {str(path)!r} is not UTF-8 text: {e.reason} at byte {e.start + 1}")


async def _signal(engine: Engine, scope: Scope, session_id: str, name: str, value: Any,
                  db: str) -> SessionRow:
    async with engine:
        await require_session(engine, scope, session_id, db)
        await scope.view(engine).signal(session_id, name, value)
        return await scope.view(engine).session(session_id)


def cancel(
    session_id: Annotated[str, typer.Argument(metavar="SESSION", help="Session id.",
                                              callback=SESSION_ID)],
    db: DbOption = DEFAULT_DB,
    busy_timeout: BusyTimeoutOption = 10.0,
    tenant: TenantOption = None,
    all_tenants: AllTenantsOption = False,
    imports: ImportOption = None,
    by: Annotated[str | None, typer.Option(
        "--by", envvar="CONVOY_USER", show_envvar=True, metavar="NAME", callback=checked_by,
        help="Who cancels (recorded with the session: 'cancelled by NAME'; audited where "
             "the store audits the tenant). Default: the login name.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", hidden=True, help="No longer needed: accepted and ignored.")] = False,
    interceptors: CancelInterceptorsOption = None,
) -> None:
    """Cancel an unfinished session: it ends as 'cancelled' and never runs again.

    Who cancels (--by, else the login name) is kept in the session's error record,
    whichever engine ends it ('convoy sessions show' prints 'cancelled by NAME'), and
    where the store audits the tenant, a 'session' entry names them ('convoy audit list
    --kind session').

    A session that another live engine is running (a 'convoy worker' elsewhere) gets a
    durable cancel request: that engine stops it at its next lease renewal (within its
    lease, 30 s by default), and if it died meanwhile, the engine that takes the session
    over ends it before running a step. The command does not wait for that; 'convoy
    sessions show ID' shows the request until it is honoured, and 'convoy sessions list'
    shows the session as 'running (cancel requested)'. Cancelling again records no
    second request. Only sessions of the tenant --tenant names (default: 'default'), or of
    every tenant with --all-tenants.

    A session whose run was killed (or that never ran) ends in a run of its own that
    executes nothing: where the store audits its tenant, the steps the killed run
    journaled are appended to the audit log. Its workflow is imported if it can be (as
    'convoy resume' imports it; '--import MODULE' for workflows with explicit names), so
    that the interceptors that see that run end (audit, tracing, your own) get its input
    typed; it need not be. --interceptors MODULE:NAME (or $CONVOY_INTERCEPTORS) runs
    that end through the application's interceptors, as 'convoy resume' runs sessions.

    Example: `convoy cancel handle_ticket-3f2a9c1b7e4d --tenant acme`
    """
    who = who_decides(by)
    scope = tenant_scope(tenant, all_tenants)
    import_modules(imports)
    app = app_interceptors(interceptors)
    require_convoy_store(db, nothing="cancel")
    message = run_async(_cancel(build_engine(db, busy_timeout=busy_timeout,
                                             interceptors=app), scope, session_id, db, who))
    out.print(message, markup=False, soft_wrap=True)


async def _cancel(engine: Engine, scope: Scope, session_id: str, db: str, by: str) -> str:
    """Cancel the session; the line that says what happened."""
    async with engine:
        await require_session(engine, scope, session_id, db)
        view = scope.view(engine)
        row = await view.session(session_id)
        if row.status in ("running", "pending"):
            # Its workflow, if it imports: the run that ends a killed session gives the
            # session hooks its input typed (they see it as stored otherwise).
            with suppress(Exception):
                engine.workflow_named(row.workflow)
        worker, resume, note = continuing(
            [row.workflow], lambda args: command(args, db=db, tenant=row.tenant))
        script = in_script(row.workflow)
        next_engine = script_engine(row.workflow) if script else f"{worker} or {resume}{note}"
        if await view.cancel(session_id, by=by) == "cancelled":
            return f"cancelled session {session_id}"
        row = await view.session(session_id)
        if row.status == "cancelled":  # its engine was quick
            return f"cancelled session {session_id}"
        if row.owner is None or row.lease_until is None:  # parked meanwhile: runnable
            return (f"cancel requested: session {session_id} is {row.status}; the engine "
                    f"that runs it next ({next_engine}) cancels it")
        # Its owner renews before its lease runs out, or the lease lapses and the engine
        # that takes the session over cancels it: either way within the lease left.
        left = max(1, math.ceil(row.lease_until - engine.clock()))
        return (f"cancel requested: session {session_id} is running on engine {row.owner}, "
                f"which stops it at its next lease renewal (within about {left} s; if that "
                "engine died, the engine that takes the session over cancels it; if it "
                + (f"parks first, the engine that runs it next does: {next_engine})" if script
                   else f"parks first, the engine that runs it next, {next_engine}, does)"))


def _decider(given: object, by: str | None) -> str:
    """Who answers an escalation: the payload's ``"by"`` (checked as ``--by`` is: a name
    a terminal shows as it is), else ``--by`` (or ``$CONVOY_USER``, or the login name). A
    payload's and a typed ``--by`` that differ name two people: refused."""
    if given is None or given == "":
        return who_decides(by)
    if not isinstance(given, str):
        fail(f"the payload's \"by\" is {type(given).__name__} {given!r}: give who answers "
             "as text (or leave it out: --by NAME, default the login name)")
    try:
        name = check_name(given, "the payload's \"by\"")
    except UserError as e:
        fail(str(e))
    if by is not None and by_typed() and by != name:
        fail(f"--by {by!r} and the payload's \"by\" {name!r} name two people: give who "
             "answers once")
    return name
