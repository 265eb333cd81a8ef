"""``convoy inbox list|show|answer|approve|reject|comment``: the human tasks of a tenant.

Questions (``ctx.ask_human``), approvals of tool calls and escalations wait here; a
decision is recorded with who made it (``--by``, default ``$CONVOY_USER`` or the login
name) and wakes the session ('convoy worker' runs it, or 'convoy resume').

Decisions are audited where the store audits (see :mod:`convoy.cli._deciders`).
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated, Any

import typer
from rich.cells import cell_len
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from convoy import Engine, HumanTask, Inbox
from convoy._command import command
from convoy._text import escaped, plural, printable, quoted, short
from convoy.cli._common import (
    DEFAULT_DB,
    INTERRUPTED,
    AllTenantsOption,
    DbOption,
    ImportOption,
    ReadBusyTimeoutOption,
    Scope,
    TenantOption,
    WriteBusyTimeoutOption,
    build_engine,
    err,
    fail,
    import_modules,
    json_value,
    label,
    no_sessions_note,
    nonempty,
    out,
    require_convoy_store,
    require_store,
    run_async,
    tenant_scope,
)
from convoy.cli._deciders import ByOption, decider_engine, who_decides
from convoy.cli._form import ask, fields, from_sets
from convoy.cli._interceptors import DecisionInterceptorsOption
from convoy.cli._json import json_text
from convoy.cli._left_out import warn_left_out
from convoy.cli._loading import continues, continuing
from convoy.cli._render import (
    EDIT_IS_RESULT,
    allotted,
    check_times,
    decisions,
    fitting,
    fmt_time,
)
from convoy.hitl._task import session_of
from convoy.stores._protocol import SessionRow
from convoy.stores._rows import LeftOut, readable

inbox_app = typer.Typer(
    name="inbox", no_args_is_help=True, rich_markup_mode="markdown",
    help="The human tasks of a tenant: questions (`ctx.ask_human`), approvals of tool "
         "calls, escalations. List them, read one, and decide.\n\n"
         "Example: `convoy inbox list --tenant acme`, then "
         "`convoy inbox approve <task> --tenant acme`")

TaskArg = Annotated[str, typer.Argument(
    metavar="TASK", help="Task id, as 'list' shows it.",
    callback=nonempty("the task id", "shows them", "inbox list"))]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead.")]
CommentOption = Annotated[str | None, typer.Option(
    "--comment", "-m", metavar="TEXT", help="Say why (the agent reads it on a re-run; a "
                                            "rejected tool call's error carries it).")]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", "-s", metavar="FIELD=VALUE",
    help="One field of the answer (repeatable); fields not set keep the proposal's.")]
ValueOption = Annotated[str | None, typer.Option(
    "--value", metavar="JSON", help="The whole answer as JSON.")]


def _json(value: str, option: str) -> Any:
    return json_value(value, option)


def _view(db: str, busy_timeout: float, tenant: str | None, all_tenants: bool,
          read_only: bool = False) -> tuple[Engine, Scope]:
    scope = tenant_scope(tenant, all_tenants)
    require_store(db)
    return build_engine(db, busy_timeout=busy_timeout, read_only=read_only), scope


def _run(engine: Engine, scope: Scope, act: Callable[[Inbox], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with engine:
            return await act(scope.view(engine).inbox)

    return run_async(main())


def _task_json(t: HumanTask) -> dict[str, Any]:
    return {**t.model_dump(mode="json"), "version": t.version, "actions": list(t.actions)}


def _times(t: HumanTask) -> HumanTask:
    """``t``, once its times are checked (a time that cannot be shown: a damaged row)."""
    check_times(lambda: f"human task {quoted(t.id)}", (
        ("created_at", t.created_at), ("deadline", t.deadline),
        *(("comment's at", c.at) for c in t.comments),
        *(() if t.decision is None else (("decision's at", t.decision.at),))))
    return t


def _when(t: HumanTask) -> str:
    return "-" if t.deadline is None else fmt_time(t.deadline)


@inbox_app.command("list")
def list_(status: Annotated[str, typer.Option(
              "--status", help="open, answered, expired, used or all.")] = "open",
          queue: Annotated[str | None, typer.Option("--queue", "-q", metavar="QUEUE",
                                                    help="Only this queue.")] = None,
          kind: Annotated[str | None, typer.Option(
              "--kind", help="question, approval or escalation.")] = None,
          assignee: Annotated[str | None, typer.Option(
              "--assignee", metavar="NAME", help="Only tasks NAME may decide.")] = None,
          db: DbOption = DEFAULT_DB, busy_timeout: ReadBusyTimeoutOption = 10.0,
          tenant: TenantOption = None, all_tenants: AllTenantsOption = False,
          as_json: JsonOption = False) -> None:
    """The tasks waiting for a decision (or of another --status), oldest first.

    Example: `convoy inbox list --queue billing --tenant acme`
    """
    if status not in ("open", "answered", "expired", "used", "all"):
        fail(f"--status {quoted(status)}: use open, answered, expired, used or all")
    if kind not in (None, "question", "approval", "escalation"):
        fail(f"--kind {kind!r}: use question, approval or escalation")
    engine, scope = _view(db, busy_timeout, tenant, all_tenants, read_only=True)
    sealed: list[str] = []
    left_out: list[LeftOut] = []
    tasks: list[HumanTask] = _run(engine, scope, lambda inbox: inbox.tasks(
        status=status, queue=queue, kind=kind, assignee=assignee,  # type: ignore[arg-type]
        sealed=sealed, left_out=left_out))
    tasks = readable(tasks, _times, left_out)  # (a time that cannot be shown)
    # (--status all lists the open tasks of sessions that ended too: nobody waits for
    # their answer, as 'inbox show' says)
    ended = _ended_sessions(engine, scope, tasks) if status == "all" else {}
    if as_json:
        docs = [_task_json(t) for t in tasks]
        for doc, t in zip(docs, tasks, strict=True):
            if t.id in ended:
                doc["actions"], doc["session_ended"] = [], ended[t.id]
        typer.echo(json_text(docs, indent=2, ensure_ascii=False))
        if sealed:
            err.print(_sealed_note(sealed, engine, scope, db), markup=False, soft_wrap=True)
    else:
        if not tasks and not sealed:  # (sealed ones: the note below says there are some)
            out.print(f"no {'' if status == 'all' else status + ' '}tasks{scope.of} in "
                      f"{label(db)}{scope.hint}", markup=False)
            no_sessions_note(db, scope)
        elif tasks:
            out.print(_table(tasks, status, scope, ended, out.width))
        if sealed:
            out.print(_sealed_note(sealed, engine, scope, db), markup=False, soft_wrap=True)
    warn_left_out(left_out, "inbox")


def _sealed_note(sealed: list[str], engine: Engine, scope: Scope, db: str) -> str:
    """One line on the tasks that stayed sealed (left out of the list)."""
    n = len(sealed)
    which = f"{n} task is sealed" if n == 1 else f"{n} tasks are sealed"
    ids = ", ".join(sealed[:5]) + (", ..." if n > 5 else "")
    if engine.keys is None:
        return (f"{which} (a data subject's data), not listed: {ids}; set "
                "$CONVOY_MASTER_KEY_FILE (or $CONVOY_MASTER_KEY) to the master key the "
                "engine ran with to see them")
    sessions = sorted({session_of(t) for t in sealed})
    # One command per session: 'convoy cancel' takes one id.
    cancels = [scope.command("cancel", db, operands=[sid]) for sid in sessions[:5]]
    how = cancels[0] if len(cancels) == 1 else f"{', '.join(cancels[:-1])} and {cancels[-1]}"
    more = len(sessions) - len(cancels)
    if more:
        how += f" (and {more} more {plural(more, 'session', number=False)} the same way)"
    whose = "the session that waits" if len(sessions) == 1 else "the sessions that wait"
    return (f"{which} for good (the data of an erased data subject), not listed: {ids}; "
            f"end {whose} for {'it' if n == 1 else 'them'} with {how}")


def _ended_sessions(engine: Engine, scope: Scope, tasks: list[HumanTask]) -> dict[str, str]:
    """The open ``tasks`` whose session ended (not escalated), with its status."""
    waiting = [t for t in tasks if t.is_open]
    if not waiting:
        return {}

    async def rows(_: Inbox) -> dict[str, Any]:
        return await engine.store.get_sessions(list({t.session_id for t in waiting}),
                                               left_out=[])

    found = _run(engine, scope, rows)
    return {t.id: status for t in waiting
            if (status := _ended(t, found.get(t.session_id))) is not None}


def _ended(task: HumanTask, row: SessionRow | None) -> str | None:
    """The status of ``task``'s session if the task is open and the session ended (not
    escalated): nobody waits for its answer then."""
    if row is None or not task.is_open or row.status == "escalated" or row.unfinished:
        return None
    return row.status


def _table(tasks: list[HumanTask], status: str, scope: Scope,
           ended: dict[str, str] | None = None, width: int | None = None) -> Table:
    """The tasks as a table. A task id (what ``inbox answer`` takes, copied from here) and
    its kind keep their whole width; the other columns wrap, down to their least readable
    width. On a terminal narrower than the table (``width``), the created column goes
    first; where even then the columns do not fit, a list: each task's id on a line of its
    own, then what the table's other columns say."""
    cols = ["task", "kind", "queue", "question", "assignees", "created", "deadline"]
    if status != "open":
        cols.insert(3, "status")
    if scope.tenant is None:
        cols.insert(1, "tenant")
    rows: list[dict[str, str]] = []
    for task in tasks:
        cells = {"task": task.id, "tenant": task.tenant, "kind": task.kind,
                 "queue": task.queue + (" (escalated)" if task.escalated else ""),
                 "status": task.standing if task.id not in (ended or {}) else
                 f"{task.standing} (session {(ended or {})[task.id]})",
                 "question": short(task.prompt, 60),
                 "assignees": ", ".join(task.assignees) or "anyone",
                 "created": fmt_time(task.created_at), "deadline": _when(task)}
        # (escaped: what a terminal would obey is shown, never obeyed)
        rows.append({c: escaped(cells[c]) for c in cols})

    def widest(name: str) -> int:
        return max(cell_len(name), *(cell_len(row[name]) for row in rows))

    def natural(name: str) -> int:
        return min(widest(name), _TASK_ROOMS.get(name, widest(name))) + 3

    cols = fitting(cols, natural, width, ("created",))
    title = f"{plural(len(tasks), 'task')}{scope.of}"
    if width is not None and sum(map(natural, cols)) + 1 > width:
        return _task_list(rows, cols, title)
    fixed: dict[str, int] = {}
    if width is not None and sum(widest(c) + 3 for c in cols) + 1 > width:
        wrapping = sorted((c for c in cols if c in _TASK_ROOMS), key=lambda c: c != "question")
        fixed = allotted({c: widest(c) for c in wrapping}, _TASK_ROOMS,
                         width - 1 - sum(natural(c) for c in cols if c not in _TASK_ROOMS)
                         - 3 * len(wrapping))
    t = Table(title=title)
    for c in cols:
        t.add_column(c, overflow="fold", no_wrap=c not in _TASK_ROOMS,
                     min_width=natural(c) - 3, width=fixed.get(c))
    for row in rows:  # (Text: shown as written, never read as markup)
        t.add_row(*(Text(row[c]) for c in cols))
    return t


#: The columns of ``inbox list``'s table that wrap, and the least width each keeps (a
#: time's wider half: ``21:25:54 UTC``).
_TASK_ROOMS = {"tenant": 12, "queue": 12, "status": 12, "question": 20, "assignees": 12,
          "created": 12, "deadline": 12}


def _task_list(rows: list[dict[str, str]], cols: list[str], title: str) -> Table:
    """Tasks for a terminal too narrow for their table: each one's id on a line of its
    own, its other columns on the next (labelled where a value alone would not say what it
    is), its question on a third."""
    t = Table(title=title, box=None, show_header=False, pad_edge=False)
    t.add_column(overflow="fold")
    for row in rows:
        t.add_row(Text(row["task"], style="bold"))
        facts = [row[c] if c in ("tenant", "kind", "status") else
                 f"queue {row[c]}" if c == "queue" else
                 f"for {row[c]}" if c == "assignees" else f"{c} {row[c]}"
                 for c in cols if c not in ("task", "question")]
        t.add_row(Padding(Text(" · ".join(facts)), (0, 0, 0, 2)))
        t.add_row(Padding(Text(row["question"]), (0, 0, 0, 2)))
    return t


@inbox_app.command("show")
def show(task_id: TaskArg, db: DbOption = DEFAULT_DB,
         busy_timeout: ReadBusyTimeoutOption = 10.0, tenant: TenantOption = None,
         all_tenants: AllTenantsOption = False, as_json: JsonOption = False) -> None:
    """One task: the question, its context and history, the form of an answer, what was
    decided and by whom.

    Example: `convoy inbox show 3f2a9c1b:0/4 --tenant acme`
    """
    engine, scope = _view(db, busy_timeout, tenant, all_tenants, read_only=True)

    async def get(inbox: Inbox) -> tuple[HumanTask, str | None]:
        """The task, and the status of its session if that ended: nobody waits for an
        answer then (an open task of a cancelled session)."""
        got = await inbox.get(task_id)
        return got, _ended(got, await engine.store.get_session(got.session_id,
                                                               tenant=got.tenant))

    task, ended = _run(engine, scope, get)
    if as_json:
        doc = _task_json(task)
        if ended is not None:
            doc["actions"], doc["session_ended"] = [], ended
        typer.echo(json_text(doc, indent=2, ensure_ascii=False))
        return
    p = out.print
    p(Text.assemble((escaped(task.id), "bold"), f"  {task.kind} in queue "
                    f"'{escaped(task.queue)}', {task.status}"
                    f"{' (escalated)' if task.escalated else ''}"
                    + ("" if ended is None else f", but its session is {ended}: nobody "
                       "waits for an answer any more")))
    p(printable(task.prompt), markup=False)
    for name, value in (("reason", task.reason), ("context", task.context),
                         ("proposal", task.proposal)):
        if value is not None:
            p(f"{name}:", style="bold")
            p(_shown_json(value) if not isinstance(value, str) else printable(value),
              markup=False)
    if task.history:
        p("history:", style="bold")
        p(_shown_json(task.history), markup=False)
    p(f"session {task.session_id}, created {fmt_time(task.created_at)}, deadline "
      f"{_when(task)}" + (f" (then: {task.on_deadline})" if task.deadline else "")
      + (f", assignees {', '.join(task.assignees)}" if task.assignees else ""),
      markup=False)
    if task.error:
        p(Text.assemble(("the last answer was refused: ", "yellow"), printable(task.error)))
    for c in task.comments:
        p(f"comment by {escaped(c.by)} at {fmt_time(c.at)}: {printable(c.text)}",
          markup=False)
    d = task.decision
    if d is not None:
        p(f"decided: {d.action} by {escaped(d.by)} at {fmt_time(d.at)}"
          + (f": {_shown_json(d.value, indent=None)}" if d.value is not None else "")
          + (f" ({printable(d.comment)})" if d.comment else ""), markup=False)
    if task.is_open and ended is None:
        form = fields(task.answer_schema)
        if form:
            p("form:" if task.kind == "question" else "edit form:", style="bold")
            for f in form:
                p(f"  {f.name}: {f.describe}", markup=False)
        if task.kind == "question":
            p("decide: " + command("inbox answer", operands=[escaped(task.id)], db=db,
                                   tenant=task.tenant, quote=False), markup=False, soft_wrap=True)
        else:
            p(f"decide ({EDIT_IS_RESULT}):" if task.kind == "escalation" else "decide:",
              markup=False, soft_wrap=True)
            for line in decisions(task.id, db=db, tenant=task.tenant, fields=bool(form)):
                p(f"  {line}", markup=False, soft_wrap=True)


@inbox_app.command("answer")
def answer(task_id: TaskArg, value: ValueOption = None, sets: SetOption = None,
           by: ByOption = None, comment: CommentOption = None,
           imports: ImportOption = None, db: DbOption = DEFAULT_DB,
           busy_timeout: WriteBusyTimeoutOption = 10.0, tenant: TenantOption = None,
           all_tenants: AllTenantsOption = False,
           interceptors: DecisionInterceptorsOption = None) -> None:
    """Answer a question: --value JSON, --set FIELD=VALUE, or, with neither, a form that
    asks each field of the answer type in turn. The answer is checked against the type
    (the Pydantic type if --import loads it, else its JSON schema) before it is recorded.
    On an approval or escalation, an answer is an edit ('approve --set'). The form
    answers nothing if its input ends first (Ctrl-D, or the end of a pipe or file: one
    line, exit 2) or at Ctrl-C (exit 130).

    Example: `convoy inbox answer 3f2a9c1b:0 --set approve=true --set amount=120`
    """
    import_modules(imports)
    if value is not None and sets:
        fail("give --value or --set, not both")
    who = who_decides(by)
    engine, scope = decider_engine(db, busy_timeout, tenant, all_tenants, interceptors)

    async def act(inbox: Inbox) -> HumanTask:
        # (the form asks nothing of a task whose answer could not be recorded)
        task = await (inbox.get(task_id) if value is not None or sets else
                      inbox.decidable(task_id, by=who))
        if value is not None:
            got = _json(value, "--value")
        elif sets:
            got = from_sets(task.answer_schema, sets,
                            _start(task) if task.kind != "question" else None)
        else:
            if sys.stdin is None:  # (closed, ``<&-``: the form's prompt raised RuntimeError)
                fail("no answer: standard input is closed (no terminal to ask on); give "
                     "the answer with --value JSON or --set FIELD=VALUE")
            out.print(printable(task.prompt), markup=False)
            pressed: list[int] = []
            try:
                with _ctrl_c_stops_the_form(pressed):
                    got = ask(task.answer_schema)
            except typer.Abort as e:
                # (the prompt says Ctrl-C and the end of its input alike: which came)
                if pressed or isinstance(e.__context__, KeyboardInterrupt):
                    err.print("interrupted: nothing was answered", markup=False)
                    raise typer.Exit(INTERRUPTED) from None
                # The end of the input (Ctrl-D at a terminal, or the end of a pipe or a
                # file) answers nothing, whichever it was: a usage error.
                at_terminal = sys.stdin.isatty()
                if at_terminal:
                    out.print()  # (ends the question's line: the line below is its own)
                why = "Ctrl-D at the terminal" if at_terminal else "no terminal to ask on"
                fail(f"no answer: the input ended before the form did ({why}); give the "
                     "answer with --value JSON or --set FIELD=VALUE")
        if task.kind == "question":
            return await inbox.answer(task.id, got, by=who, comment=comment)
        return await inbox.edit(task.id, got, by=who, comment=comment)

    _decide(engine, scope, act, db)


@contextmanager
def _ctrl_c_stops_the_form(pressed: list[int]) -> Iterator[None]:
    """Ctrl-C at the form stops it at once, noted in ``pressed`` (the prompt ends alike
    at Ctrl-C and at the end of its input: whether it was at a terminal did not tell
    them apart, so Ctrl-D was "interrupted", exit 130, and a SIGINT to a form reading a
    pipe "the input ended", exit 2). The form asks inside the event loop, whose own
    SIGINT handler only cancels its task (which a prompt waiting for a line never sees):
    the first Ctrl-C did nothing, the second said "Aborted!"."""
    def stop(signum: int, frame: FrameType | None) -> None:
        pressed.append(signum)
        raise KeyboardInterrupt

    try:
        before = signal.signal(signal.SIGINT, stop)
    except ValueError:  # (not the main thread: Python's handling stays)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _start(task: HumanTask) -> Any:
    """What an edit starts from: the proposed arguments or output."""
    p = task.proposal
    return p.get("arguments") if task.kind == "approval" and isinstance(p, dict) else p


_DONE = {"answer": "answered", "approve": "approved", "edit": "approved with changes",
         "reject": "rejected"}


def _decide(engine: Engine, scope: Scope, act: Callable[[Inbox], Awaitable[HumanTask]],
            db: str) -> None:
    """Decide (``act``), then say so, and what continues the session."""
    async def decide(inbox: Inbox) -> tuple[HumanTask, SessionRow | None]:
        task = await act(inbox)
        return task, await engine.store.get_session(task.session_id, tenant=task.tenant)

    task, row = _run(engine, scope, decide)
    d = task.decision
    assert d is not None
    done = f"{_DONE.get(d.action, d.action)} task {task.id} (by {d.by})"
    if row is not None and not row.unfinished:  # (a rejected escalation: nothing goes on)
        out.print(f"{done}; session {task.session_id} is {row.status}", markup=False,
                  soft_wrap=True)
        return
    if row is None:
        worker, resume, note = continuing([], lambda args: command(args, db=db,
                                                                   tenant=task.tenant))
        then = f"{worker} or {resume} continues session {task.session_id}{note}"
    else:
        then = continues(row.workflow, lambda args: command(args, db=db, tenant=task.tenant),
                         f"session {task.session_id}")
    out.print(f"{done}; {then}", markup=False, soft_wrap=True)


@inbox_app.command("approve")
def approve(task_id: TaskArg, edit: Annotated[str | None, typer.Option(
                "--edit", metavar="JSON", help="Approve these arguments (or this output) "
                                               "instead of the proposal.")] = None,
            sets: SetOption = None, by: ByOption = None, comment: CommentOption = None,
            imports: ImportOption = None, db: DbOption = DEFAULT_DB,
            busy_timeout: WriteBusyTimeoutOption = 10.0, tenant: TenantOption = None,
            all_tenants: AllTenantsOption = False,
            interceptors: DecisionInterceptorsOption = None) -> None:
    """Approve a tool call (it runs, once, with exactly these arguments) or an escalation
    (the agent runs again, or its low-confidence answer is kept; an escalated session
    runs its step again). With --edit or --set, approve changed arguments (or give the
    agent's output), checked against the schema.

    Example: `convoy inbox approve 3f2a9c1b:0/2 --set cents=500 -m "capped"`
    """
    import_modules(imports)
    if edit is not None and sets:
        fail("give --edit or --set, not both")
    who = who_decides(by)
    engine, scope = decider_engine(db, busy_timeout, tenant, all_tenants, interceptors)

    async def act(inbox: Inbox) -> HumanTask:
        if edit is None and not sets:
            return await inbox.approve(task_id, by=who, comment=comment)
        task = await inbox.get(task_id)
        got = _json(edit, "--edit") if edit is not None else \
            from_sets(task.answer_schema, sets or [], _start(task))
        return await inbox.edit(task.id, got, by=who, comment=comment)

    _decide(engine, scope, act, db)


@inbox_app.command("reject")
def reject(task_id: TaskArg, by: ByOption = None, comment: CommentOption = None,
           db: DbOption = DEFAULT_DB, busy_timeout: WriteBusyTimeoutOption = 10.0,
           tenant: TenantOption = None, all_tenants: AllTenantsOption = False,
           interceptors: DecisionInterceptorsOption = None) -> None:
    """Reject a tool call (the model is told, with your comment) or an escalation (the
    run fails with its error; an escalated session fails).

    Example: `convoy inbox reject 3f2a9c1b:0/2 -m "not for this customer"`
    """
    who = who_decides(by)
    engine, scope = decider_engine(db, busy_timeout, tenant, all_tenants, interceptors)
    _decide(engine, scope, lambda inbox: inbox.reject(task_id, by=who, comment=comment), db)


@inbox_app.command("comment")
def comment_(task_id: TaskArg,
             text: Annotated[str, typer.Argument(metavar="TEXT", help="The comment.")],
             by: ByOption = None, db: DbOption = DEFAULT_DB,
             busy_timeout: WriteBusyTimeoutOption = 10.0, tenant: TenantOption = None,
             all_tenants: AllTenantsOption = False) -> None:
    """Comment on an open task without deciding it.

    Example: `convoy inbox comment 3f2a9c1b:0 "asking finance"`
    """
    who = who_decides(by)
    require_convoy_store(db, nothing="comment on")  # (never a store made in another file)
    engine, scope = _view(db, busy_timeout, tenant, all_tenants)
    _run(engine, scope, lambda inbox: inbox.comment(task_id, text, by=who))
    out.print(f"commented on task {task_id} (by {who})", markup=False)


__all__ = ["inbox_app"]


def _shown_json(value: Any, indent: int | None = 2) -> str:
    """``value`` as JSON for the terminal: its text as it is (``"hé ✓"``, not
    ``"h\\u00e9 \\u2713"``, as ``state get`` and ``export`` show it), what a terminal would
    obey or draw as nothing escaped."""
    return escaped(json.dumps(value, indent=indent, ensure_ascii=False))

