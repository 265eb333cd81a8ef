"""Rich rendering: number formats, the run summary, session tables and session details."""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, get_args

from rich.cells import cell_len
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from convoy import TerminalReason
from convoy._command import command
from convoy._text import escaped, plural, printable, quoted, short
from convoy.cli._common import RUN_FAILURE, Scope, err, fail, sealed_note
from convoy.cli._inputs import InvalidLine
from convoy.cli._loading import continuing, from_script, import_option, in_script
from convoy.cli._redaction import redacted
from convoy.cli._stats import LEFT_LABELS, RunStats
from convoy.cli._stop import NOT_RETURNED, Stopped, StopSignals
from convoy.durability._executor import signals_refused
from convoy.engine._owners import owner_is_dead
from convoy.engine._retry import RETRYABLE
from convoy.hitl._task import INBOX
from convoy.privacy._seal import is_sealed
from convoy.privacy._withheld import WITHHELD
from convoy.resilience._classify import budget_refused, error_kind_of
from convoy.state._access import watch_signal, watched
from convoy.stores import UNFINISHED, SessionRow, StepRecord
from convoy.stores._rows import damaged, row_name, shown, stored_json

TERMINAL: tuple[str, ...] = get_args(TerminalReason)
MAX_LISTED = 5

# -- formats -----------------------------------------------------------------------------


def fmt_cost(usd: float) -> str:
    """``$1.50``, ``$0.00136``, ``$0``; a cost under half a millionth of a dollar is
    ``<$0.000001`` (not ``$0.``: six decimals are what is shown)."""
    if usd == 0 or not math.isfinite(usd):
        return "$0" if usd == 0 else "-"
    if usd < 0:  # (never a cost Convoy computes: shown as given)
        return "-" + fmt_cost(-usd)
    text = f"{usd:.6f}"
    if float(text) >= 1:
        return f"${usd:,.2f}"
    text = text.rstrip("0")
    return "<$0.000001" if text == "0." else "$" + text


def fmt_duration(s: float) -> str:
    if math.isnan(s):
        return "-"
    if s < 0.01:
        return f"{s * 1000:.1f} ms"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.2f} s"
    return f"{int(s // 60)} min {s % 60:.0f} s"


def fmt_tokens(input_tokens: int, output_tokens: int) -> str:
    return f"{input_tokens:,} / {output_tokens:,}"


def fmt_time(ts: float | None) -> str:
    """A time (seconds since the epoch) in local time, with its offset from UTC
    (``2026-12-06 17:32:16 UTC``, ``2026-12-06 23:02:16 +05:30``: a store read on a
    laptop, a server's logs in UTC; an offset, not a zone's abbreviation, which can be
    ambiguous: IST, CST); one that is not a time that can be shown (see
    :func:`check_times`: a command that shows one checks it first) as it is."""
    if ts is None:
        return "-"
    try:
        local = datetime.fromtimestamp(ts).astimezone()
    except (OverflowError, ValueError, OSError):
        return f"{shown(ts)} (not a time)"
    offset = local.strftime("%z")
    zone = "UTC" if offset in ("+0000", "") else f"{offset[:3]}:{offset[3:]}"
    return local.strftime("%Y-%m-%d %H:%M:%S ") + zone


def check_times(what: str | Callable[[], str], times: Iterable[tuple[str, Any]]) -> None:
    """Raise :func:`~convoy.stores._rows.damaged` (``what`` names the row) on the first of
    ``times`` (``(name, value)``) that is a number but not a time that can be shown:
    outside the years 1 to 9999 in seconds since the epoch (a time edited by hand, or one
    a clock in milliseconds wrote). ``None`` and what is not a number are left to the
    store's own checks."""
    for name, ts in times:
        if type(ts) not in (int, float):
            continue
        try:
            datetime.fromtimestamp(ts)
        except (OverflowError, ValueError, OSError):
            raise damaged(what if isinstance(what, str) else what(),
                          f"its stored {name} {shown(ts)} is not a time in seconds "
                          "between the years 1 and 9999") from None


def session_times(row: SessionRow) -> SessionRow:
    """``row``, once its times are checked (see :func:`check_times`)."""
    check_times(lambda: f"session {row_name(row.id)}", (
        ("created", row.created), ("started", row.started), ("finished", row.finished),
        ("lease_until", row.lease_until), ("wake_at", row.wake_at)))
    return row


def status_text(status: str, cancelling: bool = False) -> Text:
    """A status, coloured; ``cancelling``: with "(cancel requested)" after it."""
    style = ("green" if status == "completed" else "yellow" if status in UNFINISHED
             else "red")
    text = Text(status, style=style)
    if cancelling:
        text.append(" (cancel requested)", style="dim")
    return text


def line_list(lines: Sequence[object], most: int = 10) -> str:
    shown = ", ".join(str(n) for n in lines[:most])
    return shown + (f", … (+{len(lines) - most} more)" if len(lines) > most else "")


# -- run summary -------------------------------------------------------------------------


def summary_table(title: str, stats: RunStats, invalid: Sequence[InvalidLine] | None = None,
                  identical: Sequence[tuple[int, int]] = ()) -> Table:
    """Completed, failures by terminal reason, what was left unfinished and why, skipped
    and invalid inputs, usage, latency."""
    t = Table(title=title, show_header=False, title_justify="left", min_width=44)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("sessions run", str(stats.ran))
    t.add_row("completed", Text(str(stats.completed), style="green"))
    failed = [(s, stats.by_status[s]) for s in TERMINAL if s != "completed"
              and stats.by_status[s]]
    for status, n in failed or [("failed", 0)]:
        t.add_row(status, Text(str(n), style="red" if n else ""))
    if stats.kinds:
        t.add_row("by error kind", ", ".join(f"{k} {n}" for k, n in sorted(
            stats.kinds.items(), key=lambda kv: (-kv[1], kv[0]))))
    if stats.skipped:
        detail = ", ".join(f"{s} {n}" for s, n in sorted(stats.skipped.items()))
        t.add_row("already finished", f"{stats.skipped.total()} (not re-run: {detail})")
    for why, label in LEFT_LABELS.items():
        if stats.left[why]:
            t.add_row(label, Text(str(stats.left[why]), style="yellow"))
    if invalid is not None:
        lines = sorted(x.line for x in invalid)
        t.add_row("invalid input lines", f"{len(lines)}" + (
            f" ({plural(len(lines), 'line', number=False)} {line_list(lines)})"
            if lines else ""))
    if identical:
        pairs = [f"line {a} = line {b}" for a, b in identical]
        t.add_row("identical input lines", f"{len(pairs)} ({line_list(pairs, 5)}: one "
                  "session each)")
    t.add_row("tokens in / out", fmt_tokens(stats.input_tokens, stats.output_tokens))
    t.add_row("cost", fmt_cost(stats.cost))
    t.add_row("session latency p50 / p99",
              f"{fmt_duration(stats.latency(50))} / {fmt_duration(stats.latency(99))}")
    rate = ("-" if not stats.latencies or math.isnan(stats.throughput)
            else f"{stats.throughput:,.1f} sessions/s")
    t.add_row("throughput", f"{rate} ({fmt_duration(stats.wall_s)} wall)")
    return t


#: What the ``decide`` line of an escalation adds: its edit's JSON is the step's result
#: itself (a new user gave ``{"result": ...}``, as a signal nests it, and that object
#: became the result). On that line, not the command's: those are commands only.
EDIT_IS_RESULT = ("an edit's JSON is the step's result itself, as the step would have "
                  "returned it")


def decisions(task_id: str, *, db: str | None, tenant: str, fields: bool = False
              ) -> list[str]:
    """How to decide an open task that is not a question, one ``ACTION: COMMAND`` a line
    (never ``approve | reject``, which a shell reads as a pipe), each with the store and
    the tenant the user looks at. ``fields``: its answer is an object, edited field by
    field (``--set``); else a value of any type, given whole (``--edit JSON``)."""
    task = [escaped(task_id)]

    def cmd(action: str, options: str = "") -> str:
        return command(f"inbox {action}", operands=task, options=options, db=db,
                       tenant=tenant, quote=False)

    return [f"approve: {cmd('approve')}", f"reject: {cmd('reject')}",
            f"edit: {cmd('approve', '--set FIELD=VALUE' if fields else '--edit JSON')}"]


def error_summary(record: dict[str, Any] | None, *, withheld: bool, width: int = 100) -> str:
    """A session's error in one line: ``TYPE: MESSAGE``, the message redacted (a batch
    job's output is kept as a log is: :mod:`~convoy.cli._redaction`). A data subject's
    session's
    (``withheld``) is its type alone, with the wording its logs and spans use (the message
    may quote the subject's data; 'convoy sessions show ID' reads it, with the master key);
    a sealed one read without the master key, ``(sealed)``."""
    rec = record or {}
    if "$sealed" in rec:
        return "(sealed)"
    kind = f"{rec.get('type', 'error')}{_BUDGET_NOTE if budget_refused(rec) else ''}"
    if withheld:
        return short(f"{kind} {WITHHELD}", width)
    return short(f"{kind}: {redacted(str(rec.get('message', '')))}", width)


#: What an error the retry budget refused to retry adds to its type (said before the
#: message, which a line may cut: the error was retryable, the budget said no).
_BUDGET_NOTE = " (not retried: the retry budget was spent)"


def drained_summary(console: Console, stopped: BaseException, title: str, *, db: str,
                    scope: Scope, invalid: Sequence[InvalidLine] | None = None,
                    identical: Sequence[tuple[int, int]] = (),
                    cut: RunStats | None = None) -> RunStats | None:
    """The summary of a command a stop drained (its coroutine returned what it ran:
    :attr:`~convoy.cli._stop.Stopped.result`, a :class:`RunStats` or a tuple that begins
    with one), printed with its failures. One the stop cancelled (its grace ran out, a
    second signal) before it returned: what it had counted as it ran (``cut``:
    :meth:`RunStats.cut_off`); ``None`` (nothing printed) when it had set out to run no
    session."""
    ran = stopped.result if isinstance(stopped, Stopped) else NOT_RETURNED
    stats = ran[0] if isinstance(ran, tuple) and ran else ran
    if ran is NOT_RETURNED and cut is not None and cut.expected:
        stats = cut.cut_off()
    if not isinstance(stats, RunStats):
        return None
    console.print(summary_table(title, stats, invalid, identical))
    print_failures(console, stats, db=db, scope=scope)
    return stats


def say_abandoned(stop: StopSignals, resume: str) -> None:
    """One line on stderr, from a command a stop cancelled, naming the sessions whose steps
    were still in flight then (:attr:`~convoy.cli._stop.StopSignals.abandoned`) and
    ``resume``, the command that finishes them; nothing when there were none (or they are
    not known: a second Ctrl-C)."""
    ids = stop.abandoned
    if not ids:
        return
    named = ", ".join(map(quoted, ids[:MAX_LISTED])) + (
        f" and {len(ids) - MAX_LISTED} more" if len(ids) > MAX_LISTED else "")
    when = f"as the stop's grace ({stop.grace:g} s) ran out" if stop.grace > 0 else \
        "at once (--stop-grace 0)"
    one = len(ids) == 1
    err.print(f"left in flight: {plural(len(ids), 'session')} ({named}), "
              f"{'its step' if one else 'their steps'} cancelled {when}; {resume} finishes "
              f"{'it' if one else 'them'} (a cancelled step that is not idempotent is "
              "escalated to a person)", markup=False, soft_wrap=True)


def print_failures(console: Console, stats: RunStats, *, db: str, scope: Scope) -> None:
    """The first few sessions that did not complete, with their error (and the commands
    that show the rest, on store ``db`` in ``scope``); a data subject's session's error by
    its type and kind alone (``stats.withheld``)."""
    for res in stats.failures[:MAX_LISTED]:
        err = res.error or {}
        line = Text.assemble((res.id, "bold"), "  ", status_text(res.status), "  ",
                             (error_kind_of(err) or "-", "yellow"), "  ",
                             error_summary(err, withheld=res.id in stats.withheld))
        console.print(line)
    more = len(stats.failures) - MAX_LISTED
    if more > 0:
        first, *others = sorted({res.status for res in stats.failures})
        also = f" (and --status {', '.join(others)})" if others else ""
        console.print(f"… and {more} more; see "
                      f"{scope.command(f'sessions list --status {first}', db)}{also}",
                      markup=False, soft_wrap=True)
    if stats.failures:
        one = escaped(stats.failures[0].id) if len(stats.failures) == 1 else "ID"
        shown = scope.command("sessions show", db, operands=[one], quote=False)
        console.print(f"details: {shown}", markup=False, soft_wrap=True)


def exit_on_store_errors(stats: RunStats) -> None:
    """Exit 1 with one line when a store error interrupted sessions (they stay unfinished,
    so running the command again, or 'convoy resume', continues them)."""
    if not stats.store_errors:
        return
    first = stats.store_errors[0].error or {}
    n = len(stats.store_errors)
    fail(str(first.get("message", "the store failed")) + (
        f" ({n} sessions were interrupted)" if n > 1 else ""), RUN_FAILURE)


def exit_if_strict(stats: RunStats, noun: str, *, skipped_lines: int = 0) -> None:
    """``--strict``: exit 1, in one line, unless every session the command addressed
    (``stats.outcomes``) completed and no input line was skipped."""
    problems = []
    missed = {s: n for s, n in sorted(stats.outcomes.items()) if s != "completed"}
    if missed:
        detail = ", ".join(f"{s} {n}" for s, n in missed.items())
        problems.append(f"{sum(missed.values())} of {stats.outcomes.total()} {noun} did not "
                        f"complete ({detail})")
    if skipped_lines:
        problems.append(f"{plural(skipped_lines, 'input line')} "
                        f"{'was' if skipped_lines == 1 else 'were'} skipped")
    if problems:
        fail("--strict: " + "; ".join(problems), RUN_FAILURE)


# -- sessions ----------------------------------------------------------------------------


def sessions_table(rows: Sequence[SessionRow], *, tenants: bool = False,
                   width: int | None = None, cancelling: Collection[str] = ()) -> Table:
    """Sessions as a table; with ``tenants``, a column says whose each one is; the status
    of a session in ``cancelling`` (ids) says a cancel is requested.

    The id, status, steps and cost keep their whole width (an id is copied into other
    commands). On a terminal narrower than the table (``width``), the columns that say
    least go first (created, then tokens), and what still does not fit wraps.
    """
    waiting = any(r.status == "waiting" for r in rows)
    columns: list[tuple[str, Sequence[str | Text], dict[str, Any]]] = [
        ("id", [escaped(r.id) for r in rows], {"no_wrap": True}),
        *([("tenant", [r.tenant for r in rows], {"overflow": "fold"})] if tenants else []),
        ("workflow", [escaped(r.workflow) for r in rows], {"overflow": "fold"}),
        ("status", [status_text(r.status, r.id in cancelling) for r in rows],
         {"no_wrap": True}),
        ("steps", [str(r.steps) for r in rows], {"justify": "right", "no_wrap": True}),
        ("tokens in / out", [fmt_tokens(r.input_tokens, r.output_tokens) for r in rows],
         {"justify": "right", "overflow": "fold"}),
        ("cost", [fmt_cost(r.cost) for r in rows], {"justify": "right", "no_wrap": True}),
        ("created", [fmt_time(r.created) for r in rows], {"overflow": "fold"}),
        *([("waits for", [escaped(waits_for(r)) for r in rows], {"overflow": "fold"})]
          if waiting else []),
    ]

    def natural(column: tuple[str, Sequence[str | Text], dict[str, Any]]) -> int:
        header, cells, _ = column
        return max(cell_len(header),  # (in terminal cells: a CJK character takes two)
                   *(c.cell_len if isinstance(c, Text) else cell_len(c) for c in cells)) + 3

    kept = fitting([c[0] for c in columns], {c[0]: natural(c) for c in columns}.__getitem__,
                   width, ("created", "tokens in / out"))
    columns = [c for c in columns if c[0] in kept]
    kept_whole = [c for c in columns if c[2].get("no_wrap")]
    wrapping = len(columns) - len(kept_whole)  # (each of them gets _NARROWEST at least)
    if width is not None and \
            sum(map(natural, kept_whole)) + (3 + _NARROWEST) * wrapping + 1 > width:
        return _sessions_list(rows, tenants=tenants, waiting=waiting, cancelling=cancelling)
    t = Table()
    for column in columns:
        header, _, options = column
        whole: dict[str, Any] = {"min_width": natural(column) - 3} \
            if options.get("no_wrap") else {}
        t.add_column(header, **options, **whole)
    for i in range(len(rows)):  # (as Text: a '[bold]' in an id is shown, not obeyed)
        t.add_row(*(Text(c) if isinstance(c, str) else c for c in
                    (cells[i] for _, cells, _ in columns)))
    return t


#: The narrowest each wrapping column of the sessions table may get before the table gives
#: way to a list (:func:`_sessions_list`).
_NARROWEST = 8


def allotted(widest: dict[str, int], least: dict[str, int], room: int) -> dict[str, int]:
    """The widths of the wrapping columns of a table too wide for its terminal: each
    column its ``least`` (or its ``widest`` cell, if narrower), then what is left of
    ``room`` (the cells the other columns, paddings and borders leave them) to each in
    turn, the first first, up to its widest. (Given to Rich as fixed widths: its own
    narrowing takes a column below its least, then widens the table past the terminal.)"""
    widths = {name: min(widest[name], least[name]) for name in widest}
    left = room - sum(widths.values())
    for name, most in widest.items():
        more = max(0, min(left, most - widths[name]))
        widths[name] += more
        left -= more
    return widths


def fitting(names: Sequence[str], natural: Callable[[str], int], width: int | None,
            droppable: Sequence[str]) -> list[str]:
    """The columns ``names`` of a table, less as many of ``droppable`` (the ones that say
    least first) as a terminal ``width`` cells wide needs for the rest to fit, each at its
    ``natural`` width (its widest cell with its padding and border; the table's last
    border is counted here). All of them when ``width`` is None."""
    kept = list(names)
    for name in droppable:
        if width is None or sum(map(natural, kept)) + 1 <= width:
            break
        kept.remove(name)
    return kept


def _sessions_list(rows: Sequence[SessionRow], *, tenants: bool, waiting: bool,
                   cancelling: Collection[str]) -> Table:
    """Sessions for a terminal too narrow for their table: each one's id on a line of its
    own, then what the table's other columns say, wrapped as the terminal needs."""
    t = Table(box=None, show_header=False, pad_edge=False)
    t.add_column(overflow="fold")
    for r in rows:
        t.add_row(Text(escaped(r.id), style="bold"))
        line = status_text(r.status, r.id in cancelling)
        facts = [*([f"tenant {r.tenant}"] if tenants else []), f"{r.steps} steps",
                 fmt_cost(r.cost), escaped(r.workflow),
                 f"tokens {fmt_tokens(r.input_tokens, r.output_tokens)}",
                 f"created {fmt_time(r.created)}",
                 *([f"waits for {escaped(waits_for(r))}"] if waiting and
                   r.status == "waiting" else [])]
        line.append(" · " + " · ".join(facts))
        t.add_row(Padding(line, (0, 0, 0, 2)))  # (its wrapped lines indented too)
    return t


def steps_taken(row: SessionRow, steps: Sequence[StepRecord]) -> int:
    """How many steps the session took: an unfinished one's count is written when its run
    ends, parks or is given up, so its journal (``steps``) says how many it took so far, a
    killed run's included."""
    return max(row.steps, len(steps)) if row.unfinished else row.steps


def spent(row: SessionRow, steps: Sequence[StepRecord]) -> tuple[int, int, float]:
    """``(input tokens, output tokens, cost)`` of the session: an unfinished one's totals
    are written when its run ends, parks or is given up, so what its journaled steps
    (``steps``) spent is counted too (a running one's, a killed run's)."""
    if not row.unfinished:
        return row.input_tokens, row.output_tokens, row.cost
    return (max(row.input_tokens, sum(r.input_tokens for r in steps)),
            max(row.output_tokens, sum(r.output_tokens for r in steps)),
            max(row.cost, sum(r.cost for r in steps)))


def open_wait(steps: Sequence[StepRecord]) -> StepRecord | None:
    """The session's wait for a signal that has not ended (its journal's last ``wait``
    step, ``started``), if any."""
    for record in reversed(steps):
        if record.kind == "wait":
            return record if record.status == "started" else None
    return None


def _task_of(name: str) -> str | None:
    """The inbox task a wait named ``name`` waits for (a watch on the task), if any."""
    prefix = watch_signal(INBOX, "")
    return name[len(prefix):] if name.startswith(prefix) else None


def _state_of(name: str) -> tuple[str, str] | None:
    """The namespace and key of shared state a wait named ``name`` waits to change (a
    watch on the key, not on an inbox task: :func:`~convoy.state._access.watched`)."""
    found = None if _task_of(name) is not None else watched(name)
    return found if found is not None and all(found) else None


def _task_waited_for(row: SessionRow) -> str | None:
    """The inbox task a waiting session waits for (one wait: a gather's several are
    :func:`wait_ends`)."""
    name = row.wait_name
    return _task_of(name) if row.status == "waiting" and len(row.wait_names) == 1 and \
        name is not None else None


def _state_waited_for(row: SessionRow) -> tuple[str, str] | None:
    """The namespace and key of shared state a waiting session waits to change (one wait:
    a gather's several are :func:`wait_ends`)."""
    name = row.wait_name
    return _state_of(name) if row.status == "waiting" and len(row.wait_names) == 1 and \
        name is not None else None


def wait_ends(row: SessionRow, db: str | None, tenant: str | None) -> str:
    """The commands that end the waits of a session waiting for several signals (a
    gather's branches), any of which wakes it: ``inbox show TASK or state set ...``."""
    ends = []
    for name in row.wait_names:
        task, state = _task_of(name), _state_of(name)
        ends.append(
            command("inbox show", operands=[task], db=db, tenant=tenant, quote=False)
            if task is not None else
            command("state set", operands=[*state, "JSON"], db=db, tenant=tenant,
                    quote=False) if state is not None else
            command("signal", operands=[row.id, name], options="--payload JSON", db=db,
                    tenant=tenant, quote=False))
    return " or ".join(ends)


def other_wait(row: SessionRow, name: str, db: str) -> str | None:
    """What ``row``'s session waits for, and the command that ends that wait (on store
    ``db``), where it is
    waiting for something else than signal ``name`` (``None`` where it waits for that
    signal, a timer, or nothing: a signal is kept for the session's next wait of its
    name): ``signal 'approve', not 'aprove': ...``."""
    wait = row.wait_name
    if row.status != "waiting" or wait is None or name in row.wait_names:
        return None
    task, state = _task_waited_for(row), _state_waited_for(row)
    sid = row.id
    if len(row.wait_names) > 1:
        return (f"{escaped(' or '.join(map(waited_for, row.wait_names)))}, not a signal "
                f"{quoted(name)}: this one does not wake it (it is kept for a wait of that "
                f"name); to continue it: {wait_ends(row, db, row.tenant)}")
    if task is not None:
        ends = command("inbox show", operands=[task], db=db, tenant=row.tenant,
                       quote=False)
    elif state is not None:
        ends = command("state set", operands=[*state, "JSON"], db=db,
                       tenant=row.tenant, quote=False)
    else:
        ends = command("signal", operands=[sid, wait], options="--payload JSON",
                       db=db, tenant=row.tenant, quote=False)
    what = f"signal {quoted(wait)}, not {quoted(name)}" if task is None and state is None \
        else f"{escaped(waited_for(wait))}, not a signal {quoted(name)}"
    return (f"{what}: this one does not wake it (it is kept for a wait of that name); to "
            f"continue it: {ends}")


def waited_for(name: str) -> str:
    """What the wait for signal ``name`` waits for, as a reader says it: a person (an
    inbox task), a change of shared state (``NAMESPACE/KEY``, decoded), or the signal."""
    task, state = _task_of(name), _state_of(name)
    if task is not None:
        return f"a person (task {task})"
    if state is not None:
        return f"a change of {'/'.join(state)}"
    return f"signal {name!r}"


def waits_for(row: SessionRow) -> str:
    """What a waiting session waits for: a signal, a time, or both (a wait with a timeout)."""
    if row.status != "waiting":
        return ""
    parts = [" or ".join(map(waited_for, row.wait_names))] if row.wait_names else []
    if row.wake_at is not None:
        parts.append(f"{'or ' if parts else ''}{fmt_time(row.wake_at)}")
    return " ".join(parts) or "a signal or timer"


def step_summary(kind: str, status: str, result: str | None) -> str:
    """One line saying what a journaled step returned."""
    if status == "started":
        return "(started; no outcome recorded)"
    if is_sealed(result):
        return sealed_note()
    try:
        value: Any = json.loads(result) if result else None
    except (ValueError, RecursionError):  # not JSON, or too deep to read: as it is
        return short(result or "")
    if status == "failed" and isinstance(value, dict):
        return short(f"{value.get('type', 'error')}: {value.get('message', '')}")
    if kind == "model" and isinstance(value, dict):
        calls = value.get("tool_calls") or []
        if calls:
            return short("→ " + ", ".join(f"{c.get('name')}({c.get('arguments', '')})"
                                          for c in calls))
        return short(str(value.get("text", "")))
    if kind == "state":
        return _state_summary(value)
    return short(result or "")


def _state_summary(value: Any) -> str:
    """A state step's result: an entry (``v3 {...}``), a list of them, or a flag."""
    if value is None:
        return "(not set)"
    if isinstance(value, dict) and "version" in value:
        return short(f"v{value['version']} {value.get('value', '')}")
    if isinstance(value, list):
        return short(", ".join(f"{e.get('key')}@v{e.get('version')}" for e in value
                               if isinstance(e, dict)) or "(none)")
    return short(json.dumps(value))


def agent_configs(steps: Sequence[StepRecord]) -> dict[str, list[str]]:
    """The configuration hashes journaled for each agent of a session, in the order the
    agents and their versions first took a step (a resume under a changed definition shows
    two)."""
    out: dict[str, list[str]] = {}
    for r in steps:
        if r.config is None:
            continue
        agent = r.agent or r.target
        seen = out.setdefault(agent, [])
        if r.config not in seen:
            seen.append(r.config)
    return out


def journal_table(steps: Sequence[StepRecord], width: int | None = None) -> Table:
    """The journaled steps: key, kind, target and status, the tokens and cost of those that
    spent any, and what each returned (wrapped). On a terminal narrower than that
    (``width``) the tokens, then the cost, go first (the session's totals are above the
    table), so the result keeps :data:`_RESULT_ROOM` cells; where even that does not fit,
    a list: each step's facts on a line, its result indented under them."""
    spend = any(r.input_tokens or r.output_tokens or r.cost for r in steps)
    rows: list[dict[str, Text]] = []
    for r in steps:
        used = spend and bool(r.input_tokens or r.output_tokens or r.cost)
        # (Text: a result's or an error's "[...]" is shown, not read as markup)
        rows.append({"key": Text(escaped(r.key)), "kind": Text(r.kind),
                     "target": Text(escaped(r.target)), "status": status_text(r.status),
                     "tokens in / out": Text(fmt_tokens(r.input_tokens, r.output_tokens)
                                             if used else ""),
                     "cost": Text(fmt_cost(r.cost) if used else ""),
                     "result": Text(step_summary(r.kind, r.status, r.result))})
    names = ["key", "kind", "target", "status",
             *(["tokens in / out", "cost"] if spend else []), "result"]

    def widest(name: str) -> int:
        return max(cell_len(name), *(row[name].cell_len for row in rows))

    def natural(name: str) -> int:
        return min(widest(name), _STEP_ROOMS.get(name, widest(name))) + 3

    names = fitting(names, natural, width, ("tokens in / out", "cost") if spend else ())
    if width is not None and sum(map(natural, names)) + 1 > width:
        return _journal_list(rows, spend)
    fixed: dict[str, int] = {}
    if width is not None and sum(widest(n) + 3 for n in names) + 1 > width:
        fixed = allotted({n: widest(n) for n in ("result", "target")}, _STEP_ROOMS,
                         width - 1 - sum(natural(n) for n in names if n not in _STEP_ROOMS)
                         - 3 * len(_STEP_ROOMS))
    t = Table()
    for name in names:
        kept = name not in _STEP_ROOMS  # (never wrapped; the target and the result wrap)
        t.add_column(name, justify="right" if name in ("tokens in / out", "cost") else "left",
                     no_wrap=kept, overflow="fold", min_width=natural(name) - 3,
                     width=fixed.get(name))
    for row in rows:
        t.add_row(*(row[name] for name in names))
    return t


#: The cells the result column of a session's steps keeps before the tokens and cost
#: columns give way (:func:`journal_table`).
_RESULT_ROOM = 30
#: The columns of the steps table that wrap, and the least width each keeps.
_STEP_ROOMS = {"target": 20, "result": _RESULT_ROOM}


def _journal_list(rows: Sequence[dict[str, Text]], spend: bool) -> Table:
    """A session's steps for a terminal too narrow for their table: a step's key, kind,
    target, status, tokens and cost on a line, what it returned under it, indented."""
    t = Table(box=None, show_header=False, pad_edge=False)
    t.add_column(overflow="fold")
    for row in rows:
        line = Text.assemble(row["key"], " ", row["kind"], " ", row["target"], " · ",
                             row["status"])
        if spend and row["cost"].plain:
            line.append(f" · {row['tokens in / out'].plain} tokens · {row['cost'].plain}")
        t.add_row(line)
        t.add_row(Padding(row["result"], (0, 0, 0, 2)))
    return t


def print_session(console: Console, row: SessionRow, steps: Sequence[StepRecord],
                  *, now: float, retried_as: SessionRow | None = None,
                  cancel_requested: float | None = None,
                  signal_queued: float | None = None, db: str | None = None) -> None:
    """The session ``row`` and its journal; what comes next for it is said with the
    commands to run, on the store ``db`` and as the session's tenant."""
    sid = escaped(row.id)  # (as every name it shows: escaped, never obeyed by a terminal)

    def cmd(args: str, *operands: str, options: str = "", quote: bool = True) -> str:
        return command(args, operands=operands, options=options, db=db, tenant=row.tenant,
                       quote=quote)

    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column()
    info.add_row("session", sid)
    info.add_row("status", status_text(row.status))
    info.add_row("workflow", f"{escaped(row.workflow)} (version {row.version})")
    info.add_row("tenant", row.tenant)
    if row.subject is not None:
        info.add_row("data subject", escaped(row.subject))
    if row.parent is not None:
        info.add_row("retry of", escaped(row.parent))
    if retried_as is not None:
        info.add_row("retried as", Text.assemble(f"{escaped(retried_as.id)} (",
                                                 status_text(retried_as.status), ")"))
    info.add_row("created", fmt_time(row.created))
    if row.started is not None and row.finished is not None:
        info.add_row("finished", f"{fmt_time(row.finished)} "
                     f"({fmt_duration(row.finished - row.started)} after it started, waits "
                     "included)")
    if row.status == "running" and row.owner is not None:
        lease = "" if row.lease_until is None else (
            f" (lease until {fmt_time(row.lease_until)}"
            + (", expired)" if row.lease_until < now else ")"))
        info.add_row("owner", row.owner + lease)
    if row.status == "waiting":
        task = _task_waited_for(row)
        state = _state_waited_for(row)
        if task is not None:
            info.add_row("waits for a person", f"inbox task {task}")
        elif state is not None:
            info.add_row("waits for a change of", f"state {escaped('/'.join(state))}")
        elif len(row.wait_names) > 1:  # (a gather's branches: any of them wakes it)
            for name in row.wait_names:
                info.add_row("waits for", escaped(waited_for(name)))
        elif row.wait_name is not None:
            info.add_row("waits for signal", escaped(row.wait_name))
        if row.wake_at is not None:
            info.add_row("wakes at" if row.wait_name is None else "times out at",
                         fmt_time(row.wake_at))
    wait = open_wait(steps) if row.status in UNFINISHED else None
    if wait is not None and signal_queued is not None:
        info.add_row("signal queued", f"{quoted(wait.target)}, sent at "
                     f"{fmt_time(signal_queued)} (the engine that runs the session next "
                     "delivers it)")
    refused = None if wait is None else signals_refused(wait)
    if refused is not None:
        info.add_row("signals refused", f"{refused['count']} (the last sent at "
                     f"{fmt_time(refused['last_sent_at'])}: {escaped(refused['last_why'])}; "
                     "its payload did not validate as the wait's type)")
    if cancel_requested is not None:
        info.add_row("cancel requested", f"at {fmt_time(cancel_requested)} (the engine that "
                     "runs the session next, or renews its lease, ends it cancelled)")
    info.add_row("steps", str(steps_taken(row, steps)))
    info.add_row("active time", fmt_duration(row.active_s))
    tokens_in, tokens_out, cost = spent(row, steps)
    info.add_row("tokens in / out", fmt_tokens(tokens_in, tokens_out))
    info.add_row("cost", fmt_cost(cost))
    for agent, hashes in agent_configs(steps).items():
        info.add_row(f"agent {agent}", "config " + ", ".join(hashes))  # (as journaled)
    for name, value in sorted(row.header_map.items()):
        info.add_row(f"header {escaped(name)}", escaped(value))
    console.print(info)
    console.print()
    if steps:
        console.print(journal_table(steps, width=console.width))
    else:
        console.print("(no steps journaled)")
    console.print()
    if row.output is not None and is_sealed(row.output):
        console.print(Text.assemble(("output: ", "bold"), sealed_note()))
    elif row.output is not None:
        console.print("output:", style="bold")
        output = stored_json(row.output, f"session {row_name(row.id)}", "output",
                             or_text=True)
        if output is row.output:  # not JSON: shown as it is
            console.print(Text(printable(row.output)))
        else:
            console.print_json(row.output)
    elif row.error_record is not None:
        rec = row.error_record
        console.print(Text.assemble(("reason: ", "bold"), status_text(row.status)))
        console.print(Text.assemble(("error: ", "bold"), sealed_note() if is_sealed(row.error)
                                    else escaped(f"{rec.get('type', 'error')}: "
                                                 f"{rec.get('message', '')}")))
        kind = error_kind_of(rec)
        if kind is not None:
            console.print(Text.assemble(("error kind: ", "bold"), kind, _BUDGET_NOTE
                                        if budget_refused(rec) else ""))
    task, state = _task_waited_for(row), _state_waited_for(row)
    worker, resume, note = continuing([row.workflow], cmd)
    # A script's own workflow ('__main__:NAME'): no command runs its sessions; the script
    # does (``then``: what continues the session, after what the line asks first).
    script = in_script(row.workflow)
    then = from_script(row.workflow) if script else ""
    if row.status in RETRYABLE and row.status != "escalated" and retried_as is None:
        again = from_script(row.workflow, verb="retry", call=f"await engine.retry("
                            f"{quoted(row.id, 120)})") if script else \
            cmd("retry", sid, options=import_option(row.workflow), quote=False) + note
        # (a data subject's input read without the master key: the retry needs it)
        keyed = " with $CONVOY_MASTER_KEY_FILE set (its input is sealed)" \
            if is_sealed(row.input) else ""
        console.print(f"run it again as a new session{keyed}: {again}",
                      markup=False, soft_wrap=True)
    if row.status == "escalated":
        # (a session that could not be read, at no step: nothing to complete)
        rec = row.error_record or {}
        unread = rec.get("type") == "SessionUnreadable" and rec.get("key") is None
        console.print(
            "fix what its error says first (its code, or the store): approving it then "
            "runs it again from its journal" if unread else
            "check whether the step that escalated took effect before you decide "
            "(approving it runs that step again and goes on from the journal; a retry "
            "starts a new session that runs every step again, the side effects already "
            "applied too)", markup=False, soft_wrap=True)
        console.print('decide (its task, or a signal whose "action" is "retry" or "fail"):'
                      if unread else
                      'decide (its task, or a signal whose "action" is "retry", "fail", or '
                      f'"complete" with a "result"; {EDIT_IS_RESULT}):', markup=False,
                      soft_wrap=True)
        for line in decisions(f"{row.id}:escalated", db=db, tenant=row.tenant):
            if not (unread and line.startswith("edit:")):
                console.print(f"  {line}", markup=False, soft_wrap=True)
        retry = json.dumps({"action": "retry"})
        console.print("  or: " + cmd("signal", sid, "convoy.escalation",
                                     options=f"--payload {shlex.quote(retry)}", quote=False),
                      markup=False, soft_wrap=True)
    elif row.status == "waiting" and len(row.wait_names) > 1:
        console.print(f"waiting for any of {len(row.wait_names)} signals (one wakes it): "
                      f"{wait_ends(row, db, row.tenant)}, then "
                      + (then if script else f"{worker} (or {resume}) continues it{note}"),
                      markup=False, soft_wrap=True)
    elif task is not None:
        show = cmd('inbox show', task, quote=False)
        console.print(f"waiting for a person: {show}; then {then}" if script else
                      f"waiting for a person: {show} (then {worker} or {resume} continues "
                      f"it{note})", markup=False, soft_wrap=True)
    elif state is not None:
        namespace, key = (escaped(x) for x in state)
        console.print(f"waiting for a change of {escaped('/'.join(state))}: "
                      f"{cmd('state set', namespace, key, 'JSON', quote=False)}, then "
                      + (then if script else f"{worker} (or {resume}) continues it{note}"),
                      markup=False, soft_wrap=True)
    elif row.status == "waiting" and row.wait_name is not None:
        signal = cmd("signal", sid, escaped(row.wait_name), options="--payload JSON",
                     quote=False)
        console.print(f"waiting: {signal}, then "
                      + (then if script else f"{worker} (or {resume}) continues it{note}"),
                      markup=False, soft_wrap=True)
    elif row.status == "waiting":
        console.print(f"waiting for its timer: once it is due, {then}" if script else
                      f"waiting for its timer: {worker} (or {resume} once it is due) "
                      f"continues it{note}", markup=False, soft_wrap=True)
    elif row.status == "running" and row.owner is not None and \
            row.lease_until is not None and row.lease_until >= now and \
            not owner_is_dead(row.owner):  # (a process gone from this machine: resumable now)
        owner = escaped(row.owner)
        console.print(f"running on engine {owner}, which ends it cancelled at its next lease "
                      "renewal" if cancel_requested is not None else
                      f"running on engine {owner}; if that engine stops, its lease lapses: "
                      f"then {then}" if script else
                      f"running on engine {owner}; if that engine stops, its lease lapses and "
                      f"the next {worker} or {resume} continues it from its journal{note}",
                      markup=False, soft_wrap=True)
    elif row.unfinished and cancel_requested is not None:
        console.print(f"a cancel is requested: {then}, which ends it cancelled" if script else
                      f"a cancel is requested: the next {worker} or {resume} ends it "
                      f"cancelled{note}", markup=False, soft_wrap=True)
    elif row.unfinished:
        console.print(f"not finished yet; {then}" if script else
                      f"not finished yet; {resume} (or re-running the same 'convoy run') "
                      f"finishes it{note}", markup=False, soft_wrap=True)
