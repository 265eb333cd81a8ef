"""``convoy worker``: run sessions as they become runnable (new, due, signalled, orphaned)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import partial
from types import ModuleType
from typing import Annotated, Any

import typer
from rich.text import Text

from convoy import (
    Engine,
    Interceptor,
    Next,
    SessionEnd,
    SessionInput,
    StoreError,
    UserError,
    Workflow,
)
from convoy._command import word
from convoy._text import escaped, plural, quoted
from convoy.cli._common import (
    DEFAULT_DB,
    INTERRUPTED,
    AllTenantsOption,
    BusyTimeoutOption,
    ConcurrencyOption,
    DbOption,
    ModelOption,
    Scope,
    StopGraceOption,
    TenantOption,
    TraceOption,
    build_engine,
    cannot_listen,
    check_db_path,
    convoy_errors,
    err,
    fail,
    host_in_url,
    import_modules,
    label,
    out,
    say,
    tenant_scope,
    warn_lost_spans,
)
from convoy.cli._interceptors import (
    InterceptorsOption,
    session_interceptors,
    session_options,
)
from convoy.cli._logs import LogFormatOption
from convoy.cli._render import (
    error_summary,
    fmt_time,
    say_abandoned,
    status_text,
    waited_for,
)
from convoy.cli._stop import STOP_GRACE_S, Stopped, stop_signals
from convoy.stores import SessionRow


class SessionLog(Interceptor):
    """Prints one line as how each run of a session ended is written, with the status
    written (``pending`` for a run whose end the store failed to write: it runs again), and
    counts the ends by it. The error of a session that holds a data subject's data (its
    own subject's, or what it read of another's: ``holds``, the sealing store's
    ``holds_personal_data``, its stored error is sealed) is its type alone."""

    stage = "timing"

    def __init__(self) -> None:
        self.ends: Counter[str] = Counter()
        self.holds: Callable[[str], bool] | None = None
        #: Called once standard output is closed (its reader exited: ``| head``).
        self.on_closed: Callable[[], None] | None = None
        self.closed = False
        #: Why standard output could not be written, when not its reader gone (a full
        #: disk, closed), or ``None``.
        self.unwritable: str | None = None

    async def session_run(self, input: SessionInput,
                          next: Next[SessionInput, SessionEnd]) -> SessionEnd:
        try:
            return await next(input)
        finally:  # (also when a hook inside raised: its run's end is written all the same)
            sid = input.info.session_id
            # (asked before the end is written: the store forgets what the run read then)
            withheld = input.info.subject is not None or (
                self.holds is not None and self.holds(sid))
            input.end_taps.append(partial(self._written, sid, withheld))

    def _written(self, sid: str, withheld: bool, end: SessionEnd) -> None:
        """How a run ended, as written (an end tap)."""
        self.ends[end.status] += 1
        try:
            out.print(Text.assemble((sid, "bold"), "  ", status_text(end.status), "  ",
                                    _detail(end, withheld=withheld)))
        except (SystemExit, OSError) as e:  # (rich, on a broken pipe; a full disk, a
            # closed standard output: its output goes nowhere from now on, said as it exits)
            if isinstance(e, OSError) and self.unwritable is None:
                self.unwritable = e.strerror or str(e)
            if not self.closed:
                self.closed = True
                if self.on_closed is not None:
                    self.on_closed()  # (a graceful stop: nobody reads what it would say)


def _detail(end: SessionEnd, *, withheld: bool) -> str:
    e = end.error or {}
    if end.status == "waiting":
        names = [n for n in e.get("wait_names") or () if isinstance(n, str) and n]
        return f"waits for {escaped(' or '.join(map(waited_for, names)))}" if names \
            else "waits"
    if end.status == "completed" or not e:
        return ""
    return error_summary(e, withheld=withheld)


class WaitNotice:
    """With ``--until-idle``: one line on stderr when the worker finds nothing to run now
    but sessions that keep it from being idle (timers not yet due, for one), and another
    only when what it waits for changes (the next due time), not one at each poll."""

    def __init__(self, clock: Callable[[], float], later: str, owner: str = "") -> None:
        self.clock = clock
        self.later = later  # what runs them later: 'convoy worker' or 'convoy resume'
        self.owner = owner  # this worker's engine: the sessions it holds to run again
        self.said: object = None

    def __call__(self, rows: list[SessionRow]) -> None:
        held = {r.id for r in rows if r.status == "running" and r.owner == self.owner}
        if held:  # (a store call for each failed: this worker runs them again when due)
            rows = [r for r in rows if r.id not in held]
            if not rows:
                key: object = ("held", len(held))
                if key != self.said:
                    self.said = key
                    err.print(f"waiting to run {plural(len(held), 'session')} again: the "
                              f"store failed as this worker ran "
                              f"{'it' if len(held) == 1 else 'them'}, and it tries again "
                              "after a delay; Ctrl-C to stop", markup=False, soft_wrap=True)
                return
        due = sorted(r.wake_at for r in rows if r.wake_at is not None)
        if due:
            key = due[0]
            whose = ("1 session's timer, due at" if len(due) == 1 else
                     f"{len(due):,} sessions' timers, the next due at")
            them = "it" if len(due) == 1 else "them"
            line = (f"waiting for {whose} {fmt_time(due[0])} (in "
                    f"{_until(due[0] - self.clock())}); Ctrl-C stops the worker and leaves "
                    f"{them} waiting, for a later {self.later} to run once due")
        else:
            statuses = Counter(r.status for r in rows)
            key = tuple(sorted(statuses.items()))
            line = (f"waiting for {plural(len(rows), 'session')} this worker cannot run now "
                    f"({', '.join(f'{s} {n}' for s, n in sorted(statuses.items()))}: another "
                    "engine runs them); Ctrl-C to stop")
        if key != self.said:
            self.said = key
            err.print(line, markup=False, soft_wrap=True)


def _until(seconds: float) -> str:
    """How far off a due time is: ``45 s``, ``59 min``, ``5.2 h``, ``3.0 days``."""
    s = max(0.0, seconds)
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def workflows_in(modules: list[ModuleType]) -> list[Workflow[Any, Any]]:
    """The workflows the modules define at top level (each once)."""
    found: dict[str, Workflow[Any, Any]] = {}
    for m in modules:
        for value in vars(m).values():
            if isinstance(value, Workflow):
                found.setdefault(value.name, value)
    return list(found.values())


def _poll_interval(value: float) -> float:
    """``--poll-interval``'s check, in one message for every value it refuses (``nan``,
    which compares false with both bounds, was refused as being above the largest)."""
    if not 0.01 <= value <= 3600:
        fail(f"--poll-interval must be a number of seconds from 0.01 to 3600, got {value:g}")
    return value


def worker(
    modules: Annotated[list[str] | None, typer.Argument(
        metavar="MODULE", show_default=False,
        help="Modules that define the workflows to serve, e.g. 'myapp.flows' (importable "
             "from the current directory or PYTHONPATH).")] = None,
    imports: Annotated[list[str] | None, typer.Option(
        "--import", metavar="MODULE",
        help="A module to serve, as an argument names one (as 'convoy resume --import' "
             "takes it). Repeatable.")] = None,
    until_idle: Annotated[bool, typer.Option(
        "--until-idle", help="Return once no session of these workflows can run any more "
        "(left: those waiting for a signal or a person, and those an interceptor's "
        "session hook refused). Sessions waiting for a timer "
        "(ctx.sleep) are waited for, however far off it is due: the worker says so in one "
        "line; Ctrl-C stops it and leaves them waiting.")] = False,
    concurrency: ConcurrencyOption = 64,
    model: ModelOption = None,
    db: DbOption = DEFAULT_DB,
    poll_interval: Annotated[float, typer.Option(
        "--poll-interval", metavar="SECONDS", callback=_poll_interval,
        help="How often to look for sessions other processes made runnable (0.01 to "
             "3600 seconds).")] = 1.0,
    busy_timeout: BusyTimeoutOption = 10.0,
    stop_grace: StopGraceOption = STOP_GRACE_S,
    trace: TraceOption = None,
    log_format: LogFormatOption = "text",
    interceptors: InterceptorsOption = None,
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", metavar="PORT", min=0, max=65535,
        help="Serve this worker's Prometheus metrics on http://127.0.0.1:PORT/metrics "
             "(--metrics-addr to listen elsewhere; 0: a free port, printed at start).")
    ] = None,
    metrics_addr: Annotated[str | None, typer.Option(
        "--metrics-addr", metavar="ADDR", show_default=False,
        help="The address --metrics-port listens on. [default: 127.0.0.1]")] = None,
    tenant: TenantOption = None,
    all_tenants: AllTenantsOption = False,
) -> None:
    """Run the sessions of the workflows these modules define as they become runnable:
    new ones, waits whose timer is due or whose signal arrived, and sessions whose engine
    died. Prints a line as each run ends. Runs until Ctrl-C or SIGTERM (or, with
    --until-idle, until nothing is left to run); sessions it was running resume later
    from their journal.
    Serves the sessions of the tenant --tenant names (default: 'default'), or of every
    tenant with --all-tenants.

    --interceptors MODULE:NAME (or $CONVOY_INTERCEPTORS) names the application's
    interceptors (retries, budgets, timeouts, breakers, ...) to run the sessions with;
    without it they run with none of them.

    Exit codes: 0 when --until-idle found nothing left to run (sessions that failed
    included: the lines say how each run ended); 1 when a store error that is not
    transient stopped it, or its standard output was closed; 2 on usage errors (a module
    that does not import, a bad option); 130 when interrupted (Ctrl-C), 143 when stopped
    by SIGTERM: the sessions it was running go on from their journal with the next worker.

    Example: `convoy worker myapp.flows --interceptors myapp.flows:interceptors`
    """
    if metrics_addr is not None and metrics_port is None:  # (it would serve nothing)
        fail(f"--metrics-addr {quoted(metrics_addr)} needs --metrics-port PORT: the worker "
             "serves its "
             "metrics only on a port it is given")
    if metrics_addr is not None and not metrics_addr.strip():  # (not the default: said)
        fail("--metrics-addr is empty: give an address of this machine, such as 127.0.0.1, "
             "or 0.0.0.0 for all of them")
    metrics_addr = metrics_addr or "127.0.0.1"
    with stop_signals(say) as stop:  # first: from now on a signal stops the worker cleanly
        scope = tenant_scope(tenant, all_tenants)
        modules = [*(modules or ()), *(imports or ())]
        if not modules:
            fail("name the modules that define the workflows to serve: "
                 f"{scope.command('worker myapp.flows', db)} (or --import myapp.flows)")
        check_db_path(db, create=True)  # before the modules' import code runs
        workflows = workflows_in(import_modules(modules))
        if not workflows:
            named = ", ".join(map(quoted, modules))
            fail(f"{'module' if len(modules) == 1 else 'modules'} {named} "
                 f"{'defines' if len(modules) == 1 else 'define'} no workflow at top level; "
                 "pass the modules whose @convoy.workflow functions should run here")
        opts = session_options(interceptors, trace, model, log_format)
        serve_them = scope.command("worker", db, operands=modules, options=opts)
        # A resume loads a workflow with an explicit name only from a module it imports
        resume = scope.command(" ".join(["resume", *(f"--import {word(m)}" for m in modules)]),
                               db, options=opts)
        later = f"{serve_them} or {resume}"
        log = SessionLog()
        chain = session_interceptors(interceptors, trace, [log], log_format)
        server = None
        engine: Engine | None = None
        try:
            if metrics_port is not None:
                from convoy.observability import Metrics, observe

                metrics = Metrics()
                chain[1:1] = observe(metrics=metrics)  # (before the application's)
                try:
                    server = metrics.serve(metrics_port, metrics_addr)
                except (OSError, UserError) as e:
                    # (an address that resolves to none: a UserError from the gaierror,
                    # said here of the option, as any other address that cannot be used)
                    cause = e.__cause__ if isinstance(e, UserError) else e
                    if not isinstance(cause, OSError):
                        raise
                    fail(cannot_listen(cause, metrics_addr, metrics_port,
                                       addr_option="--metrics-addr",
                                       port_option="--metrics-port"))
                err.print(f"metrics on http://{host_in_url(metrics_addr)}:{server.port}/metrics",
                          markup=False, style="dim")
            engine = build_engine(db, concurrency=concurrency, model=model,
                                  busy_timeout=busy_timeout, interceptors=chain)
            stop.drain_on_stop(engine.drain, stop_grace, lambda: engine.in_flight)
            log.on_closed = engine.drain
            log.holds = getattr(engine.store, "holds_personal_data", None)  # (a sealing one)
            for wf in workflows:
                engine.register(wf)
            names = ", ".join(f"{wf.name} (version {wf.version})" for wf in workflows)
            serving = (f"worker on {label(db)}: serving {names}"
                       + (" for every tenant" if scope.tenant is None else f" for tenant "
                          f"{scope.tenant!r}"))
            with convoy_errors():
                left = stop.run(_serve(engine, scope, until_idle, poll_interval,
                                       {w.name for w in workflows}, serving, later))
        except (Stopped, KeyboardInterrupt) as e:
            err.print(f"stopped after {plural(log.ends.total(), 'session run')}; any "
                      "session it was running continues from its journal with the next "
                      f"worker or {resume}", markup=False, soft_wrap=True)
            say_abandoned(stop, resume)
            raise typer.Exit(e.exit_code if isinstance(e, Stopped) else INTERRUPTED) from None
        finally:
            if server is not None:
                server.close()
            if engine is not None:
                warn_lost_spans(engine)
    if log.closed:
        why = "was closed (what read it exited)" if log.unwritable is None else \
            f"cannot be written ({log.unwritable})"
        err.print(f"error: stopped after {plural(log.ends.total(), 'session run')}: its "
                  f"standard output {why}; any session it was running continues from its "
                  f"journal with the next worker or {resume}", markup=False, soft_wrap=True)
        raise typer.Exit(1)
    ran = ", ".join(f"{s} {n}" for s, n in sorted(log.ends.items())) or "none"
    waiting = ", ".join(f"{s} {n}" for s, n in sorted(left.items())) or "none"
    runs = plural(log.ends.total(), "session run")
    out.print(f"idle: {runs} ({ran}); left unfinished: {waiting}", markup=False)


async def _serve(engine: Engine, scope: Scope, until_idle: bool, poll_interval: float,
                 served: set[str], serving: str, later: str) -> Counter[str]:
    async with engine:  # (a store it cannot open is the one line said, not this one)
        err.print(serving, markup=False, style="dim", soft_wrap=True)
        await scope.view(engine).serve(until_idle=until_idle, poll_interval=poll_interval,
                                       on_wait=WaitNotice(engine.clock, later, engine.owner))
        if engine.draining:  # stopped: its line says so (and the store may be down)
            return Counter()
        try:
            rows = await engine.store.unfinished(tenant=scope.tenant)
        except StoreError:
            if engine.draining:  # (a stop came as the store was read)
                return Counter()
            raise
        return Counter(r.status for r in rows if r.workflow in served)
