"""``convoy retry``: run finished sessions that did not complete again, as new sessions."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.cells import cell_len
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from convoy import Engine
from convoy._command import word
from convoy._text import plural, printable, quoted
from convoy.cli._common import (
    DEFAULT_DB,
    INTERRUPTED,
    USAGE_ERROR,
    AllTenantsOption,
    BusyTimeoutOption,
    ConcurrencyOption,
    DbOption,
    ImportOption,
    ModelOption,
    Scope,
    StopGraceOption,
    TenantOption,
    build_engine,
    convoy_errors,
    each_session_id,
    err,
    fail,
    import_modules,
    its_workflows,
    label,
    open_store,
    out,
    require_convoy_store,
    run_async,
    say,
    tenant_scope,
    unknown_session,
    workflow_names,
)
from convoy.cli._deciders import ByOption, who_decides
from convoy.cli._interceptors import (
    InterceptorsOption,
    session_interceptors,
    session_options,
)
from convoy.cli._loading import continuing, unloadable
from convoy.cli._logs import LogFormatOption
from convoy.cli._progress import session_progress
from convoy.cli._render import (
    drained_summary,
    error_summary,
    exit_if_strict,
    exit_on_store_errors,
    print_failures,
    say_abandoned,
    status_text,
    summary_table,
)
from convoy.cli._stats import RunStats, withhold_messages
from convoy.cli._stop import STOP_GRACE_S, Stopped, stop_signals
from convoy.engine._retry import RETRYABLE, retry_id, select_retryable
from convoy.privacy._keys import MASTER_KEY_FILE_ENV, MasterKey
from convoy.privacy._seal import is_sealed
from convoy.stores import SessionRow


def retry(
    session_ids: Annotated[list[str] | None, typer.Argument(
        metavar="ID", help="Retry these sessions.", show_default=False,
        callback=each_session_id)] = None,
    status: Annotated[list[str] | None, typer.Option(
        "--status", "-s", metavar="STATUS", help=f"Only sessions with this status (repeatable): "
        f"{', '.join(RETRYABLE)}.")] = None,
    error_type: Annotated[str | None, typer.Option(
        "--error-type", "-e", metavar="TYPE",
        help="Only sessions whose error has this type, e.g. ConnectionError or "
             "VersionMismatch ('convoy sessions show ID' shows it).")] = None,
    workflow: Annotated[str | None, typer.Option(
        "--workflow", "-w", metavar="NAME",
        help="Only the sessions of this workflow, by its name as 'sessions list' shows it "
             "(MODULE:FUNCTION, unless @convoy.workflow(name=...) gave it another).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", "-n", help="List the sessions that would be retried; run and write "
        "nothing (the store is opened read-only).")
    ] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit 1 unless every retry completed.")] = False,
    rerun_escalated: Annotated[bool, typer.Option(
        "--rerun-escalated", help="Also retry escalated sessions. An escalated session "
        "waits for a person to check whether the step that escalated took effect (a payment, "
        "an email) and answer it. Its retry is a new session from the start: every step "
        "runs again, the side effects the session had already applied too, not only the "
        "one that escalated (to run only that step again, approve the escalation: 'convoy "
        "inbox approve ID:escalated'). The escalation is closed first (answered 'fail' by "
        "--by), so no later answer runs the step once more.")
    ] = False,
    by: ByOption = None,
    concurrency: ConcurrencyOption = 64,
    model: ModelOption = None,
    db: DbOption = DEFAULT_DB,
    imports: ImportOption = None,
    busy_timeout: BusyTimeoutOption = 10.0,
    stop_grace: StopGraceOption = STOP_GRACE_S,
    interceptors: InterceptorsOption = None,
    log_format: LogFormatOption = "text",
    tenant: TenantOption = None,
    all_tenants: AllTenantsOption = False,
) -> None:
    """Run finished sessions that did not complete (failed, budget_exhausted,
    loop_detected, limit_exceeded, cancelled; escalated only with --rerun-escalated) again,
    each as a new session.

    A retry of session X is a new session X.r1 (a retry of X.r1 is X.r2) with X's input,
    tenant and headers, linked to X ('convoy sessions show' prints the lineage both ways);
    X and its journal are kept as they are. Retries run the workflow code (and version) you
    have now, from the start. A session already retried is not selected again: retry its
    retry. Select by IDs, or by --status, --error-type and --workflow (all must match),
    among the sessions of the tenant --tenant names (default: 'default'), or of every
    tenant with --all-tenants; a retry belongs to its session's tenant. Workflows with
    explicit names need '--import MODULE': if a selected session's workflow cannot be
    loaded here, nothing is retried (a dry run says the same), one line says how to load it.

    --interceptors MODULE:NAME (or $CONVOY_INTERCEPTORS) names the application's
    interceptors (retries, budgets, timeouts, breakers, ...) to run the sessions with;
    without it they run with none of them.

    Exit codes: 0 when the retries ran (even if some failed again, unless --strict); 1
    when a store error stopped them (run 'convoy resume' to finish), or with --strict when
    a retry did not complete; 2 on usage errors (and when a selected session's workflow
    cannot be loaded here); 130 when interrupted (Ctrl-C), 143 when stopped by SIGTERM:
    the steps in flight finish first (--stop-grace), and 'convoy resume' finishes the
    retries already created.

    Example: `convoy retry --status failed --error-type ConnectionError --dry-run`
    """
    if not session_ids and not status and error_type is None and workflow is None:
        fail("say which sessions to retry: IDs, or --status, --error-type or --workflow "
             "(e.g. 'convoy retry --status failed --dry-run')")
    scope = tenant_scope(tenant, all_tenants)
    import_modules(imports)
    chain = session_interceptors(interceptors, log_format=log_format)  # (checked in a dry run too)
    require_convoy_store(db, nothing="retry")
    rows = run_async(_select(db, scope, session_ids or [], status, error_type, workflow,
                             write=not dry_run, rerun_escalated=rerun_escalated))
    who = who_decides(by) if any(r.status == "escalated" for r in rows) else None
    if not rows:
        out.print("nothing to retry: no session that finished without completing matches "
                  "(sessions already retried are not selected again)", markup=False)
        return
    # Checked first, so that a dry run says what the retry would (which creates nothing
    # then): a session can be retried only where its workflow loads.
    again = " ".join([*(f"--status {word(s)}" for s in status or []),
                      *([] if error_type is None else [f"--error-type {word(error_type)}"]),
                      *([] if workflow is None else [f"--workflow {word(workflow)}"]),
                      *(["--dry-run"] if dry_run else []), "--import MODULE"])
    unloaded = unloadable({r.workflow for r in rows}, "retry", scope.command(
        "retry", db, operands=session_ids or [], options=again))
    for name, why in unloaded.items():
        n = sum(r.workflow == name for r in rows)
        err.print(f"error: cannot retry {plural(n, 'session')} of workflow {name!r}: {why}",
                  markup=False, soft_wrap=True)
    if unloaded:
        raise typer.Exit(USAGE_ERROR)
    _refuse_sealed(rows, dry_run)
    if dry_run:
        out.print(_plan_table(rows, tenants=scope.tenant is None, width=out.width))
        out.print(f"{plural(len(rows), 'session')} would be retried; run the same command "
                  "without --dry-run to retry them", markup=False)
        return
    # From here SIGINT and SIGTERM stop it gracefully: the steps in flight finish first.
    with stop_signals(say) as stop:
        engine = build_engine(db, concurrency=concurrency, model=model,
                              busy_timeout=busy_timeout, interceptors=chain)
        stop.drain_on_stop(engine.drain, stop_grace, lambda: engine.in_flight)
        stats = RunStats()  # (also what a stop that cancels it reports)
        try:
            with convoy_errors():
                stop.run(_retry(engine, scope, rows, who, stats))
        except (Stopped, KeyboardInterrupt) as e:
            ran = drained_summary(out, e, f"convoy retry · {label(db)}{scope.of}", db=db,
                                  scope=scope, cut=stats)
            opts = session_options(interceptors, None, model, log_format)
            _, resume, note = continuing([r.workflow for r in rows],
                                         lambda args: scope.command(args, db, options=opts))
            say_abandoned(stop, resume)
            err.print("interrupted: every retry had ended before the stop (the summary "
                      "above)" if ran is not None and not ran.left else
                      "interrupted: the retries already created are saved; "
                      f"{resume} finishes them{note}", markup=False, soft_wrap=True)
            raise typer.Exit(e.exit_code if isinstance(e, Stopped) else INTERRUPTED) from None
    out.print(summary_table(f"convoy retry · {label(db)}{scope.of}", stats))
    print_failures(out, stats, db=db, scope=scope)
    exit_on_store_errors(stats)
    if strict:
        exit_if_strict(stats, "retries")


async def _select(db: str, scope: Scope, ids: list[str], status: list[str] | None,
                  error_type: str | None, workflow: str | None, *,
                  write: bool, rerun_escalated: bool) -> list[SessionRow]:
    """The sessions to retry, from the store opened to ``write`` the retries next (then
    migrated as the engine would), or read-only for a dry run (nothing written); a data
    subject's error read with the master key when it is set (``--error-type`` matches it,
    the plan shows it). Without the key, a note says how many sessions' errors stayed
    sealed, so unmatched."""
    async with open_store(db, write=write, unseal=True) as store:
        if workflow is not None:
            known = await workflow_names(store, scope.tenant)
            if workflow not in known:
                fail(f"no sessions of workflow {quoted(workflow)}{scope.of} in {label(db)!r}"
                     f"{its_workflows(known, scope, db)}")
        for sid in ids:  # (said as every command says it, before the engine's own words)
            if sid.strip() and await store.get_session(sid, tenant=scope.tenant) is None:
                unknown_session(db, scope, sid)
        rows = await select_retryable(store, ids=ids, status=status, workflow=workflow,
                                      tenant=scope.tenant, rerun_escalated=rerun_escalated,
                                      flag="--rerun-escalated")
    if error_type is None:
        return rows
    sealed = sum(is_sealed(r.error) for r in rows)
    if sealed:
        one = sealed == 1
        its = "its error is" if one else "their errors are"
        how = ("its subject was erased" if one else "their subjects were erased") \
            if MasterKey.from_env() is not None else \
            f"set ${MASTER_KEY_FILE_ENV} to the master key to read {'it' if one else 'them'}"
        err.print(f"note: {plural(sealed, 'session')} of data subjects not matched against "
                  f"--error-type: {its} sealed ({how})", markup=False, soft_wrap=True)
    return [r for r in rows if (r.error_record or {}).get("type") == error_type]


async def _retry(engine: Engine, scope: Scope, rows: list[SessionRow],
                 by: str | None, stats: RunStats) -> RunStats:
    async with engine:
        stats.start()
        with session_progress(len(rows), "retrying") as on_done:
            results = await scope.view(engine).retry_many(
                [r.id for r in rows], on_done=stats.tally(len(rows), on_done), by=by,
                rerun_escalated=any(r.status == "escalated" for r in rows))
        for res in results:
            stats.add(res)
            stats.outcomes[res.status] += 1
        await withhold_messages(engine, stats)
        stats.stop()  # (before the engine closes: its exporters' flush is no session's time)
    return stats


def _refuse_sealed(rows: list[SessionRow], dry_run: bool) -> None:
    """Without the master key, a data subject's session cannot be retried (its input is
    sealed): said first, for the whole selection (a dry run says the same), so that
    nothing is retried when some of it cannot be."""
    sealed = [r for r in rows if r.subject is not None]
    if not sealed or MasterKey.from_env() is not None:
        return
    ids = ", ".join(quoted(r.id) for r in sealed[:3]) + (", ..." if len(sealed) > 3 else "")
    fail(f"cannot retry {plural(len(sealed), 'session')} of data subjects ({ids}): "
         f"{'its input is' if len(sealed) == 1 else 'their inputs are'} sealed; set "
         f"${MASTER_KEY_FILE_ENV} to the store's master key file"
         + (", or select without them" if len(sealed) < len(rows) else "")
         + ("; nothing would be retried" if dry_run else "; nothing was retried"))


def _plan_table(rows: list[SessionRow], *, tenants: bool, width: int | None = None
                ) -> Table:
    """What a retry would do, a session a row. Where the terminal (``width``) cannot give
    the error :data:`_ERROR_ROOM` cells beside the other columns (kept whole), a list:
    each session, its tenant, workflow and status and what it is retried as on a line,
    its error under it (the table gave the error one cell: a letter a line)."""
    cols = ("session", *(["tenant"] if tenants else []), "workflow", "status", "error",
            "retry as")
    # (Text: shown as written, never read as markup; printable: never obeyed)
    cells = [{"session": Text(printable(r.id)), "tenant": Text(r.tenant),
              "workflow": Text(printable(r.workflow)), "status": status_text(r.status),
              "retry as": Text(printable(retry_id(r))),
              "error": Text(error_summary(r.error_record, withheld=r.subject is not None,
                                          width=60))} for r in rows]
    whole = sum(max(cell_len(c), *(row[c].cell_len for row in cells)) + 3
                for c in cols if c != "error")
    if width is not None and whole + 3 + _ERROR_ROOM + 1 > width:
        t = Table(box=None, show_header=False, pad_edge=False)
        t.add_column(overflow="fold")
        for row in cells:
            parts: list[str | Text] = [Text(row["session"].plain, style="bold"), " → ",
                                       row["retry as"], " · "]
            if tenants:
                parts += [row["tenant"], " · "]
            t.add_row(Text.assemble(*parts, row["workflow"], " · ", row["status"]))
            t.add_row(Padding(row["error"], (0, 0, 0, 2)))
        return t
    t = Table()
    for col in cols:
        t.add_column(col, no_wrap=col != "error", overflow="fold")
    for row in cells:
        t.add_row(*(row[c] for c in cols))
    return t


#: The least cells the error column of ``retry --dry-run``'s table gets.
_ERROR_ROOM = 20
