"""``convoy run``: one session per line of a JSONL file, resumable by re-running."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from convoy import Engine, SessionResult, Workflow
from convoy._errors import ConvoyError
from convoy._text import quoted
from convoy.cli._common import (
    DEFAULT_DB,
    INTERRUPTED,
    TENANT_ENV,
    BusyTimeoutOption,
    ConcurrencyOption,
    DbOption,
    ModelOption,
    StopGraceOption,
    TraceOption,
    build_engine,
    convoy_errors,
    err,
    label,
    out,
    say,
    tenant_option,
    tenant_scope,
    warn_lost_spans,
    workflows_from_cwd,
)
from convoy.cli._inputs import (
    InputBatch,
    InputLine,
    InvalidLine,
    input_bytes,
    read_inputs,
    with_subject_key,
)
from convoy.cli._interceptors import (
    InterceptorsOption,
    session_interceptors,
    session_options,
)
from convoy.cli._loading import continuing, workflow_argument
from convoy.cli._logs import LogFormatOption
from convoy.cli._output import keep_on_lost_output
from convoy.cli._progress import session_progress
from convoy.cli._render import (
    MAX_LISTED,
    drained_summary,
    exit_if_strict,
    exit_on_store_errors,
    print_failures,
    say_abandoned,
    summary_table,
)
from convoy.cli._stats import RunStats, left_reason, withhold_messages
from convoy.cli._stop import STOP_GRACE_S, Stopped, not_kept, stop_signals
from convoy.engine._engine import _dump_input
from convoy.engine._tenancy import DEFAULT_TENANT, taken_session
from convoy.privacy._seal import is_sealed
from convoy.stores import SessionRow


def run(
    workflow: Annotated[str, typer.Argument(
        metavar="MODULE:WORKFLOW",
        help="The workflow to run, e.g. 'examples.support_desk.workflow:handle_ticket' "
             "(importable from the current directory or PYTHONPATH).")],
    input: Annotated[Path, typer.Option(
        "--input", "-i", metavar="FILE.jsonl",
        help="One workflow input (a JSON value) per line (- reads standard input).")],
    concurrency: ConcurrencyOption = 64,
    model: ModelOption = None,
    db: DbOption = DEFAULT_DB,
    id_field: Annotated[str | None, typer.Option(
        "--id-field", metavar="FIELD",
        help="Take each session's id from this field of the line's JSON object (a string "
             "or an integer). Lines without it, or repeating an earlier id, are skipped.")
    ] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit 1 unless every input completed: a session that failed, "
        "escalated, waits or was left unfinished, or a skipped line, fails the command.")
    ] = False,
    tenant: Annotated[str | None, typer.Option(
        "--tenant", "-t", envvar=TENANT_ENV, show_envvar=True, metavar="NAME",
        callback=tenant_option, show_default=False,
        help=f"The tenant the sessions belong to (default: {DEFAULT_TENANT!r}); "
             "'convoy sessions list --tenant NAME' shows them.")] = None,
    busy_timeout: BusyTimeoutOption = 10.0,
    stop_grace: StopGraceOption = STOP_GRACE_S,
    trace: TraceOption = None,
    log_format: LogFormatOption = "text",
    interceptors: InterceptorsOption = None,
    subject: Annotated[str | None, typer.Option(
        "--subject", metavar="NAME",
        help="The data subject (a person) every session of the file is about: their "
             "personal data is sealed under the subject's key, and 'convoy erase NAME' "
             "removes it. Needs $CONVOY_MASTER_KEY_FILE.")] = None,
) -> None:
    """Run a workflow once per line of a JSONL file and print a summary.

    Lines that are not JSON or do not match the workflow's input type are reported with
    their line number and skipped.

    Session identity comes from each line, not from the file: with --id-field FIELD the
    session id is that field of the line; otherwise it is WORKFLOW-HASH, a content hash of
    the workflow name and the line's input (as validated by the workflow's input type, so
    key order and spacing do not matter), keyed with the subject's key with --subject (so
    the id tells nothing of the input, and nothing once 'convoy erase' destroys the key),
    and identical lines are one session. Copying,
    renaming, reordering or growing the file runs only inputs that never ran; an input that
    already has a session is never run twice: a finished one is reported, an unfinished one
    (after a crash or Ctrl-C) resumes from its journal. To run failed sessions again, use
    'convoy retry'. Sessions that wait (for a timer or a signal) stay waiting: 'convoy
    worker' continues them. Sessions another live engine owns, and sessions started on
    another version of the workflow, are left alone and counted.

    --interceptors MODULE:NAME (or $CONVOY_INTERCEPTORS) names the application's
    interceptors (retries, budgets, timeouts, breakers, ...) to run the sessions with;
    without it they run with none of them.

    Exit codes: 0 when the run happened (even if some sessions failed, unless --strict);
    1 when a store error stopped it (its sessions stay unfinished: run the command again),
    or with --strict when an input did not complete or a line was skipped; 2 on usage
    errors (a bad option, workflow, input file or --db path); 130 when interrupted
    (Ctrl-C), 143 when stopped by SIGTERM: run the same command again to finish.

    Example: `convoy run examples.support_desk.workflow:handle_ticket -i tickets.jsonl`
    """
    # First: from now on SIGINT (also one a background job inherited ignored) and SIGTERM
    # (a scheduler's stop) end the run as Ctrl-C does, its sessions saved.
    with stop_signals(say) as stop:
        scope = tenant_scope(tenant, False)
        workflows_from_cwd()
        with convoy_errors():
            wf = workflow_argument(workflow)
        if subject is not None:  # (refused before the store is made, whatever the input)
            from convoy.engine._engine import no_master_key
            from convoy.privacy import MasterKey
            from convoy.privacy._subject_names import check_subject

            with convoy_errors():
                check_subject(subject)  # (a bad name first: no key makes it good)
                if MasterKey.from_env() is None:
                    raise no_master_key(subject)
        engine = build_engine(db, concurrency=concurrency, model=model,
                              busy_timeout=busy_timeout,
                              interceptors=session_interceptors(interceptors, trace,
                                                                log_format=log_format))
        stop.drain_on_stop(engine.drain, stop_grace, lambda: engine.in_flight)
        try:
            # (a stop while it reads, a pipe whose writer keeps it open, ends it at once)
            with convoy_errors(), stop.interruptible():
                data = input_bytes(input)
        except Stopped as e:
            _nothing_saved(input, e.exit_code)
        with convoy_errors():
            batch = read_inputs(wf, input, id_field=id_field, tenant=tenant or DEFAULT_TENANT,
                                data=data)
        for bad in batch.invalid:
            err.print(f"{input}: line {bad.line}: {bad.reason} (skipped)", markup=False,
                      style="yellow", soft_wrap=True)
        if not batch.valid and not batch.invalid and not batch.identical:
            err.print(f"{input}: no inputs (the file has no non-blank lines)", markup=False)
        stats = RunStats()  # (also what a stop that cancels it reports)
        try:
            with convoy_errors():
                stop.run(_run(engine, wf, batch, tenant or DEFAULT_TENANT, input, subject,
                              content_ids=id_field is None, stats=stats))
        except (Stopped, KeyboardInterrupt) as e:
            code = e.exit_code if isinstance(e, Stopped) else INTERRUPTED
            if not stats.expected:
                _nothing_saved(input, code)
            ran = drained_summary(out, e, f"convoy run {wf.name} · {input} · {label(db)}",
                                  db=db, scope=scope, invalid=batch.invalid,
                                  identical=batch.identical, cut=stats)
            if ran is not None and not ran.left:
                err.print("interrupted: every session had ended before the stop (the summary "
                          "above)", markup=False, soft_wrap=True)
            else:
                opts = session_options(interceptors, trace, model, log_format)
                _, resume, _ = continuing([wf.name], lambda args: scope.command(
                    args, db, options=opts))
                say_abandoned(stop, resume)
                err.print("interrupted: unfinished sessions are saved; run the same command "
                          f"again (or {resume}) to finish them",
                          markup=False, soft_wrap=True)
            raise typer.Exit(code) from None
    keep_on_lost_output("the run is over and its sessions are kept in the store: "
                        f"{scope.command('sessions list', db)} lists them")
    out.print(summary_table(f"convoy run {wf.name} · {input} · {label(db)}", stats,
                            batch.invalid, batch.identical))
    print_failures(out, stats, db=db, scope=scope)
    warn_lost_spans(engine)
    exit_on_store_errors(stats)
    if strict:
        exit_if_strict(stats, "inputs", skipped_lines=len(batch.invalid))


def _nothing_saved(path: Path, code: int) -> NoReturn:
    """Exit ``code`` saying that the run was stopped before any session started (what
    was read of standard input is lost: nothing holds it but the process)."""
    again = not_kept(path, "inputs", many=True, redo="run the inputs")
    say(f"interrupted before any session started: nothing was saved{again}")
    raise typer.Exit(code)


async def _run(engine: Engine, wf: Workflow[Any, Any], batch: InputBatch,
               tenant: str, path: Path, subject: str | None, *,
               content_ids: bool, stats: RunStats) -> RunStats:
    async with engine:
        if subject is not None and content_ids and batch.valid:
            key = await engine._subject_key(tenant, subject)  # (made on first use)
            assert key is not None
            with_subject_key(wf, batch, tenant, key.ids)
        lines = await _own_ids(engine, batch, tenant, subject)
        known = await engine.store.get_sessions(list(lines))
        ids: list[str] = []
        values: list[Any] = []
        for sid, item in lines.items():
            row = known.get(sid)
            if row is not None and row.tenant != tenant:
                _skip(batch, path, InvalidLine(item.line, str(taken_session(sid))))
                continue
            if row is not None and row.workflow != wf.name:
                _skip(batch, path, InvalidLine(item.line, (
                    f"session {quoted(sid)} belongs to workflow {quoted(row.workflow)}, not "
                    f"{wf.name!r}")))
                continue
            if row is not None and not content_ids and _other_input(wf, row, item):
                # (an id the line's --id-field gave names a session of another input: the
                # line gets that session's result, its own content never run)
                err.print(f"{path}: line {item.line}: session {quoted(sid)} was started "
                          "with another input (its id comes from --id-field): that input "
                          "is the session's, and this line's content is not run; give it "
                          "an id of its own to run it", markup=False, style="yellow",
                          soft_wrap=True)
            if row is not None and not row.unfinished:
                stats.skipped[row.status] += 1
                stats.outcomes[row.status] += 1
                continue
            ids.append(sid)
            values.append(item.value)
        stats.start()
        if ids:
            with session_progress(len(ids), wf.name) as on_done:
                results = await engine.run_many(wf, values, ids=ids, tenant=tenant,
                                                on_done=stats.tally(len(ids), on_done),
                                                subject=subject)
            for res in results:
                stats.add(res)
                stats.outcomes[res.status] += 1
            _say_left(results, {sid: item.line for sid, item in lines.items()})
        await withhold_messages(engine, stats)
        stats.stop()  # (before the engine closes: its exporters' flush is no session's time)
    return stats


def _other_input(wf: Workflow[Any, Any], row: SessionRow, item: InputLine) -> bool:
    """Whether session ``row`` was started with another input than ``item`` gives: the
    fields the line gives, as the workflow's input type reads them (JSON, exactly: ``1``
    is not ``1.0``), against the stored ones; the fields it leaves to their defaults (a
    time made when it is read, a field added since) are not compared. A sealed input (a
    data subject's) is not compared."""
    if is_sealed(row.input) or not item.given:
        return False
    try:
        stored, now = json.loads(row.input or "null"), json.loads(_dump_input(wf, item.value))
    except (ValueError, ConvoyError):  # (a stored input that does not read: not ours to say)
        return False
    if not isinstance(stored, dict) or not isinstance(now, dict):
        return False
    return any(json.dumps(stored[k], sort_keys=True) != json.dumps(now[k], sort_keys=True)
               for k in item.given if k in stored and k in now)


async def _own_ids(engine: Engine, batch: InputBatch, tenant: str,
                   subject: str | None) -> dict[str, InputLine]:
    """The lines by session id: a line whose id from an earlier Convoy (before tenants were
    hashed into content ids, or a subject's key into a subject's) names a session of this
    tenant (and of ``subject``, with one) keeps that id (it never runs twice)."""
    legacy = list(dict.fromkeys(i for item in batch.valid for i in item.legacy_ids))
    rows = await engine.store.get_sessions(legacy, tenant=tenant) if legacy else {}
    kept = {sid for sid, row in rows.items() if subject is None or row.subject == subject}
    lines: dict[str, InputLine] = {}
    for item in batch.valid:
        sid = next((i for i in item.legacy_ids if i in kept), item.session_id)
        lines[sid] = item
    return lines


def _skip(batch: InputBatch, path: Path, bad: InvalidLine) -> None:
    err.print(f"{path}: line {bad.line}: {bad.reason} (skipped)", markup=False,
              style="yellow", soft_wrap=True)
    batch.invalid.append(bad)


def _say_left(results: list[SessionResult[Any]], line_of: dict[str, int]) -> None:
    """Name the first few sessions this run could not take on (another engine owns them,
    or they started on another version of the workflow)."""
    for why in ("owned", "version"):
        skipped = [r for r in results if left_reason(r) == why]
        for res in skipped[:MAX_LISTED]:
            detail = (f"session {res.id} is running on another engine; left to it"
                      if why == "owned" else (res.error or {}).get(
                          "message", f"session {res.id} started on another version"))
            err.print(f"line {line_of.get(res.id, '?')}: {detail}", markup=False,
                      style="yellow", soft_wrap=True)
        if len(skipped) > MAX_LISTED:
            err.print(f"… and {len(skipped) - MAX_LISTED} more", markup=False, style="yellow")
