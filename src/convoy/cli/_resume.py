"""``convoy resume``: run every unfinished session of a store that can run now."""

from __future__ import annotations

import typer

from convoy import Engine
from convoy._command import word
from convoy._text import plural
from convoy.cli._common import (
    DEFAULT_DB,
    INTERRUPTED,
    RUN_FAILURE,
    AllTenantsOption,
    BusyTimeoutOption,
    ConcurrencyOption,
    DbOption,
    ImportOption,
    ModelOption,
    Scope,
    StopGraceOption,
    TenantOption,
    TraceOption,
    build_engine,
    convoy_errors,
    err,
    import_modules,
    label,
    out,
    require_convoy_store,
    say,
    tenant_scope,
    warn_lost_spans,
)
from convoy.cli._interceptors import (
    InterceptorsOption,
    session_interceptors,
    session_options,
)
from convoy.cli._loading import unloadable
from convoy.cli._logs import LogFormatOption
from convoy.cli._progress import session_progress
from convoy.cli._render import (
    drained_summary,
    exit_on_store_errors,
    print_failures,
    say_abandoned,
    summary_table,
)
from convoy.cli._stats import RunStats, withhold_messages
from convoy.cli._stop import STOP_GRACE_S, Stopped, stop_signals


def resume(
    concurrency: ConcurrencyOption = 64,
    model: ModelOption = None,
    db: DbOption = DEFAULT_DB,
    imports: ImportOption = None,
    busy_timeout: BusyTimeoutOption = 10.0,
    stop_grace: StopGraceOption = STOP_GRACE_S,
    trace: TraceOption = None,
    log_format: LogFormatOption = "text",
    interceptors: InterceptorsOption = None,
    tenant: TenantOption = None,
    all_tenants: AllTenantsOption = False,
) -> None:
    """Run every unfinished session that can run now (after a crash or Ctrl-C, a due
    timer, a signal), and count the ones left: waiting for a timer or a signal, owned by
    another live engine, or started on another version of their workflow.

    Steps already in a session's journal are replayed, not re-run: no model or tool is
    called twice. Workflows are imported by the name they were started with, so run this
    from the same directory (or PYTHONPATH) as 'convoy run'; for workflows with explicit
    names, '--import MODULE' imports the module that defines them.

    Resumes the sessions of the tenant --tenant names (default: 'default'), or of every
    tenant with --all-tenants (the operator's restart after a crash).

    A session that must run but whose workflow this process cannot load (its module not
    imported, or a script's `__main__:NAME` workflow) does not stop the others: they run,
    and one line per such workflow says how many sessions it left and how to load it.

    --interceptors MODULE:NAME (or $CONVOY_INTERCEPTORS) names the application's
    interceptors (retries, budgets, timeouts, breakers, ...) to run the sessions with;
    without it they run with none of them.

    Exit codes: 0 when every session that could run now ran (even if some failed; those
    waiting for a timer or a signal stay waiting); 1 when a store error stopped the
    resume, or when sessions due now were left because their workflow cannot be loaded
    here (run again with what the line says); 2 on usage errors (nothing ran); 130 when
    interrupted (Ctrl-C), 143 when stopped by SIGTERM.

    Example: `convoy resume --db convoy.db --concurrency 32 --import myapp.flows`
    """
    with stop_signals(say) as stop:  # first: SIGINT and SIGTERM stop it as Ctrl-C does
        scope = tenant_scope(tenant, all_tenants)
        import_modules(imports)
        require_convoy_store(db, nothing="resume")
        engine = build_engine(db, concurrency=concurrency, model=model,
                              busy_timeout=busy_timeout,
                              interceptors=session_interceptors(interceptors, trace,
                                                                log_format=log_format))
        stop.drain_on_stop(engine.drain, stop_grace, lambda: engine.in_flight)
        stats = RunStats()  # (also what a stop that cancels it reports)
        try:
            with convoy_errors():
                resumed = stop.run(_resume(engine, scope, scope.command(
                    "resume --import MODULE", db), stats))
        except (Stopped, KeyboardInterrupt) as e:
            ran = drained_summary(out, e, f"convoy resume · {label(db)}{scope.of}", db=db,
                                  scope=scope, cut=stats)
            again = " ".join(["resume", *(f"--import {word(m)}" for m in imports or ())])
            opts = session_options(interceptors, trace, model, log_format)
            say_abandoned(stop, scope.command(again, db, options=opts))
            err.print("interrupted: every session it ran had ended before the stop (the "
                      "summary above)" if ran is not None and not ran.left else
                      f"interrupted: run {scope.command(again, db, options=opts)} again to "
                      "finish", markup=False, soft_wrap=True)
            raise typer.Exit(e.exit_code if isinstance(e, Stopped) else INTERRUPTED) from None
    if resumed is None:
        out.print(f"nothing to resume: no unfinished sessions{scope.of} in {label(db)}"
                  f"{scope.hint}", markup=False)
        return
    stats, codeless, unloaded = resumed
    for name, n in codeless.items():
        out.print(f"left waiting: {plural(n, 'session')} of workflow {name!r}, which nothing here "
                  "defines; none is due yet (to resume them once one is, --import the "
                  "module that defines it)", markup=False, soft_wrap=True)
    out.print(summary_table(f"convoy resume · {label(db)}{scope.of}", stats))
    print_failures(out, stats, db=db, scope=scope)
    warn_lost_spans(engine)
    for name, (n, why) in unloaded.items():
        err.print(f"error: cannot resume {plural(n, 'session')} of workflow {name!r}: {why}",
                  markup=False, soft_wrap=True)
    sealed = stats.left["key"]
    if sealed:  # (the others ran)
        err.print(f"error: cannot resume {plural(sealed, 'session')} of data subjects: their input "
                  "and journal are sealed, and no master key is configured here; set "
                  "$CONVOY_MASTER_KEY_FILE to the store's master key file and run "
                  "this command again", markup=False, soft_wrap=True)
    exit_on_store_errors(stats)
    if unloaded or sealed:
        raise typer.Exit(RUN_FAILURE)


async def _resume(engine: Engine, scope: Scope, again: str, stats: RunStats
                  ) -> tuple[RunStats, dict[str, int], dict[str, tuple[int, str]]] | None:
    """What the resume did; the workflows nothing here defines whose sessions it left
    waiting (name -> sessions); and those it cannot load whose sessions were due, left
    unfinished (name -> (sessions, why and how to load it)). ``None`` when nothing was
    unfinished."""
    async with engine:
        rows = await engine.store.unfinished(tenant=scope.tenant)
        if not rows:
            return None
        now = engine.clock()
        codeless: dict[str, int] = {}
        unloaded: dict[str, tuple[int, str]] = {}
        # A workflow that cannot be loaded here must not stop the others: the engine runs
        # those it can load. Sessions that wait for what has not come yet need none.
        for name, why in unloadable({r.workflow for r in rows}, "resume", again).items():
            due = sum(r.workflow == name and not r.parked_at(now) for r in rows)
            if due:
                unloaded[name] = (due, why)
            else:
                codeless[name] = sum(r.workflow == name for r in rows)
        due = sum(not r.parked_at(now) for r in rows) - sum(n for n, _ in unloaded.values())
        stats.start()
        with session_progress(due, "resuming") as on_done:
            results = await scope.view(engine).resume(on_done=stats.tally(due, on_done))
        for res in results:
            stats.add(res)
        await withhold_messages(engine, stats)
        stats.stop()  # (before the engine closes: its exporters' flush is no session's time)
    return stats, codeless, unloaded
