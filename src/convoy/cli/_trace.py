"""``convoy trace SESSION``: a session's spans, from the store, as a waterfall."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from convoy._errors import JournalError
from convoy._text import escaped, plural, quoted, short
from convoy._trace_context import derived_id
from convoy.cli._common import (
    DEFAULT_DB,
    RUN_FAILURE,
    SESSION_ID,
    AllTenantsOption,
    DbOption,
    Scope,
    TenantOption,
    fail,
    open_store,
    out,
    require_store,
    run_async,
    tenant_scope,
    unknown_session,
)
from convoy.cli._json import json_text
from convoy.cli._redaction import printed_redactor
from convoy.cli._render import fmt_cost, fmt_duration
from convoy.hitl._task import INBOX
from convoy.observability._derived import journal_spans, task_keys
from convoy.observability._spans import SPANS_NAMESPACE, load_chunks, traceparent_sampled
from convoy.observability._tracing import TRACE_HEADER
from convoy.privacy._keys import MASTER_KEY_ENV, MASTER_KEY_FILE_ENV, MasterKey
from convoy.privacy._seal import is_sealed
from convoy.stores._protocol import SessionRow, StepRecord, Store
from convoy.stores._rows import DAMAGED, shown

BAR = 32


def trace(
    session_id: Annotated[str, typer.Argument(metavar="SESSION", help="Session id.",
                                              callback=SESSION_ID)],
    db: DbOption = DEFAULT_DB,
    as_json: Annotated[bool, typer.Option("--json", help="Print the spans as JSON.")] = False,
    tenant: TenantOption = None,
    all_tenants: AllTenantsOption = False,
) -> None:
    """Print a session's trace as a waterfall: its agent runs, model and tool calls,
    handoffs, state operations, waits and retry attempts, each nested under its parent,
    with when it started, how long it took, and its tokens or error.

    Tracing to the store (``convoy.observability.Tracing(exporters=["store"])``, or
    ``convoy run --trace store``) derives a session's spans from its journal when they are
    read (each step with when it began and ended, its tokens and error), marked
    ``convoy.derived``, with the spans of a retried step's attempts, kept as they ran;
    ``Tracing(live=True)`` keeps every span as it runs (state versions; message content
    with ``capture_content=True``). A
    session that ran without tracing gets derived spans too.

    A data subject's session's spans and step results are sealed: set
    $CONVOY_MASTER_KEY_FILE (or $CONVOY_MASTER_KEY) to the engine's master key to read
    them; without it, the spans derived from its journal are shown, and one line on
    stderr says what is left out.

    Example: `convoy trace handle_ticket-3f2a9c1b7e4d --tenant acme`
    """
    scope = tenant_scope(tenant, all_tenants)
    require_store(db)
    found, spans, gone, sealed, error = run_async(_load(db, session_id, scope))
    if found == "missing":
        unknown_session(db, scope, session_id)
    if sealed[0] or gone or error:
        typer.echo(_sealed_note(session_id, sealed, gone, error), err=True)
    unsampled = (f"no spans kept for session {quoted(session_id)}: sampling left it "
                 "untraced (Tracing(sample_rate=...), or its caller's traceparent said not "
                 "sampled); its steps as its journal records them")
    if as_json:  # (each span after its parent, as the waterfall draws them)
        if found == "unsampled":  # (on stderr: stdout stays JSON)
            typer.echo(f"note: {unsampled}", err=True)
        typer.echo(json_text([s for s, _ in tree_order(spans)], indent=2))
        return
    if found == "unsampled":
        out.print(f"{unsampled}:", markup=False)
    table = waterfall(spans)
    if out.is_terminal or "COLUMNS" in os.environ:
        out.print(_fitted(spans))
    else:  # piped to a file or a program: whole names on their rows, for grep
        wide = out.measure(table, options=out.options.update_width(1 << 16)).maximum
        narrow = out.width
        out.width = max(narrow, wide)  # (print's own ``width`` is capped at the console's)
        try:
            out.print(table, crop=False)
        finally:
            out.width = narrow
    t0 = min(s["start"] for s in spans)
    t1 = max(s["end"] for s in spans)
    errors = sum(1 for s in spans if s["status"] == "error")
    derived = sum(1 for s in spans if s["attrs"].get("convoy.derived"))
    out.print(f"trace {spans[0]['trace_id']}  {plural(len(spans), 'span')}  "
              f"{took(t1 - t0)}"
              + (f"  {plural(errors, 'error')}" if errors else "")
              + ("" if found == "unsampled" or not derived
                 else "  (derived from the journal, in place of the sealed spans kept for it)"
                 if gone else "  (derived from the journal: no state versions or content; "
                 "Tracing(live=True) with the 'store' exporter keeps them: on the command "
                 "line, --trace store beside another exporter (--trace otlp), or "
                 "--interceptors MODULE:NAME naming such a Tracing)"
                 if derived == len(spans)
                 else f"  ({derived} of {len(spans)} spans derived from the journal, where "
                 "no live span was kept)"), markup=False, soft_wrap=True)


def _sealed_note(session_id: str, results: Sealed, chunks: int, error: bool = False) -> str:
    """The line that says what of a session's trace is sealed: ``chunks`` chunks of the
    spans kept for it, left out, the ``results`` of steps its spans were derived from, and
    its ``error``; without the master key, how to read them; with it, that their subject
    was erased."""
    count, models = results
    parts = ([f"{plural(chunks, 'chunk')} of the spans kept for it left out (the spans "
              "derived from its journal shown in their place)"] if chunks else []) + \
        ([f"the results of {plural(count, 'step')} unread (their spans leave out what "
          "only a result says" + (": a model call's model, for one)" if models else ")")]
         if count else []) + \
        (["its error unread (its kind shown as 'sealed')"] if error else [])
    if MasterKey.from_env() is not None:
        return (f"note: session {quoted(session_id)} holds the data of a data subject who "
                f"was erased, sealed under its destroyed key: {', and '.join(parts)}")
    return (f"note: session {quoted(session_id)} holds a data subject's data, sealed: "
            f"{', and '.join(parts)}; set ${MASTER_KEY_FILE_ENV} (or ${MASTER_KEY_ENV}) to "
            "the master key the engine ran with to read them")


#: How many step results are sealed, and whether a model call's is among them.
Sealed = tuple[int, bool]


def _sealed_results(journal: list[StepRecord]) -> Sealed:
    """How many of ``journal``'s step results are still sealed (a data subject's, read
    without the master key, or its key destroyed), and whether a model call's is."""
    sealed = [r.kind for r in journal if r.result is not None and is_sealed(r.result)]
    return len(sealed), "model" in sealed


async def _load(db: str, session_id: str, scope: Scope
                ) -> tuple[str, list[dict[str, Any]], int, Sealed, bool]:
    """Whether the session is ``missing``, ``unsampled`` (sampling left it untraced) or
    ``found``; its spans: those kept, and those
    derived from its journal when no session span was kept (tracing that derives them when
    read keeps a person's decisions only); how many chunks of kept ones stay sealed (a
    data subject's, opened with the master key when it is configured, unless the subject
    was erased: the spans derived from the journal stand in for them); and how many step
    results the derived ones were read from stay sealed; and whether the session's error
    (the derived ``invoke_workflow`` span's) stays sealed."""
    async with open_store(db, unseal=True) as store:
        row = await store.get_session(session_id, tenant=scope.tenant)
        if row is None:
            return "missing", [], 0, (0, False), False
        error = is_sealed(row.error)
        kept = row.header_map.get(TRACE_HEADER)
        if kept is not None and not traceparent_sampled(kept):
            journal = await store.journal(session_id)
            return "unsampled", journal_spans(row, journal, redact=_redactor(),
                                              tasks=await _tasks(store, row, journal)), \
                0, _sealed_results(journal), error
        chunks = await store.kv_all(SPANS_NAMESPACE + session_id)
        # A data subject's kept spans read without the master key, or sealed under the
        # key of a subject erased since: the spans derived from the journal stand in for
        # them (said in one line by the caller).
        gone = [k for k, v in chunks.items() if isinstance(v, str) and is_sealed(v)]
        spans = _spans(session_id, {k: v for k, v in chunks.items() if k not in gone})
        derived = journal_spans(row, journal := await store.journal(session_id),
                                redact=_redactor(), tasks=await _tasks(store, row, journal))
        root = next((s for s in derived
                     if s["attrs"].get("gen_ai.operation.name") == "invoke_workflow"), None)
        live = any(_run_span(s) and not s["attrs"].get("convoy.derived") for s in spans)
        if live:
            # Traced live, in part at least (a run by an engine that derives spans when
            # read, as after an upgrade, kept none; a run killed before its session's
            # span was kept): the steps no kept span has, derived.
            derived = _not_kept(derived, spans)
            steps = {s["attrs"].get("convoy.step.key") for s in derived}
            sealed = _sealed_results([r for r in journal if r.key in steps])
        else:
            sealed = _sealed_results(journal)
        kept_ids = {s["span_id"] for s in spans}  # (a decision's span: kept and derived)
        spans = [*(s for s in derived if s["span_id"] not in kept_ids), *spans]
        if live and root is not None:
            spans = _rooted(spans, root)
        spans.sort(key=lambda s: (s["start"], s["end"]))
        kept_root = any(s["attrs"].get("gen_ai.operation.name") == "invoke_workflow" and
                        not s["attrs"].get("convoy.derived") for s in spans)
        return "found", spans, len(gone), sealed, error and not kept_root


async def _tasks(store: Store, row: SessionRow, journal: list[StepRecord]) -> list[str]:
    """Every version of the human tasks the session created (what people decided, whether
    the session read it back or not): as stored, JSON text; a damaged version is left
    out (its decision's span with it)."""
    out: list[str] = []
    for key in task_keys(row.id, journal):
        out += [e.value for e in await store.state_history(row.tenant, INBOX, key,
                                                           left_out=[])]
    return out


def _redactor() -> Callable[[str], str]:
    """What derived spans are redacted with: the default :class:`Redactor`, as live
    tracing's; without the ``pii`` extra, the kinds that need no package of their own
    (said once, on stderr)."""
    redact, every_kind = printed_redactor()
    if not every_kind:
        typer.echo("note: phone numbers, card numbers and IBANs in these spans are not "
                   "redacted: pip install 'convoy[pii]'", err=True)
    return redact


def _not_kept(derived: list[dict[str, Any]], kept: list[dict[str, Any]]
              ) -> list[dict[str, Any]]:
    """The derived spans of the steps no ``kept`` step span has (a run traced live and one
    that was not, in either order), with the derived agent spans they are in, under a
    derived session span of their own, a child of the kept one (as a resumed run's span
    is, live)."""
    def step_key(s: dict[str, Any]) -> str | None:
        key = s["attrs"].get("convoy.step.key")  # (an edited attribute may hold any JSON)
        return key if isinstance(key, str) and not _run_span(s) and \
            s["name"] != "human_decision" else None

    # A person's decisions are under the session's first span, kept or derived (the
    # same id: the caller leaves out those kept), whichever run read them.
    decisions = [s for s in derived if s["name"] == "human_decision"]
    # (a kept span cut short by a crash does not stand for its step: the run that resumed
    # the session took it again; None: not a step span)
    keys = {step_key(s) for s in kept if "convoy.interrupted" not in s["attrs"]} | {None}
    steps = [s for s in derived if step_key(s) not in keys]
    by_id = {s["span_id"]: s for s in derived}
    root = next((s for s in derived
                 if s["attrs"].get("gen_ai.operation.name") == "invoke_workflow"), None)
    if not steps or root is None:
        return decisions
    held: dict[str, dict[str, Any]] = {}
    for s in steps:  # the agent spans they are in, and those agents' callers
        up = s["parent_id"]
        while up in by_id and up != root["span_id"] and up not in held:
            held[up] = by_id[up]
            up = by_id[up]["parent_id"]
    homed: list[dict[str, Any]] = []
    if root["attrs"].get("convoy.session.status") == "waiting":
        # The wait the session is parked in now, open (its span is kept by the run that
        # ends it): under the kept run that parked in it, not under a run of its own.
        for s in [s for s in steps if s["status"] == "unset" and
                  s["parent_id"] == root["span_id"]]:
            parked = _parked_in(kept, s)
            if parked is not None:
                homed.append({**s, "parent_id": parked["span_id"]})
                steps.remove(s)
        if not steps:
            return [*homed, *decisions]
    added = [*held.values(), *steps]
    run = {**root, "span_id": derived_id(root["trace_id"], "not kept", steps[0]["span_id"]),
           "parent_id": root["span_id"], "start": min(s["start"] for s in added),
           "end": max(s["end"] for s in added)}
    if any(s["attrs"].get("gen_ai.operation.name") == "invoke_workflow" and
           s["start"] >= run["end"] for s in kept):
        # A run the session went on after (it parked, was stopped, or its process was
        # killed): how it ended is not the session's end, and nothing kept says what it
        # was. (The session's last run ends as the session did.)
        run.update(status="unset", message=None, events=[], attrs={
            k: v for k, v in root["attrs"].items() if k in _RUN_IDENTITY})
    return [run, *({**s, "parent_id": run["span_id"]} if s["parent_id"] == root["span_id"]
                   else s for s in added), *homed, *decisions]


#: The attributes of a derived session span that say which run of what it is (not how
#: the session ended).
_RUN_IDENTITY = frozenset({
    "gen_ai.operation.name", "gen_ai.workflow.name", "convoy.workflow.version",
    "convoy.tenant", "gen_ai.conversation.id", "convoy.session.id", "convoy.derived"})


def _parked_in(kept: list[dict[str, Any]], step: dict[str, Any]) -> dict[str, Any] | None:
    """The kept session span of the run that parked in the open ``step``: the newest one
    begun before it, if that run was still going when it began and parked (``waiting``);
    ``None`` for a wait begun by a run that kept no span."""
    runs = [s for s in kept if s["attrs"].get("gen_ai.operation.name") == "invoke_workflow"
            and s["start"] <= step["start"]]
    newest = max(runs, key=lambda s: s["start"], default=None)
    return newest if newest is not None and step["start"] <= newest["end"] and \
        newest["attrs"].get("convoy.session.status") == "waiting" else None


def _rooted(spans: list[dict[str, Any]], root: dict[str, Any]) -> list[dict[str, Any]]:
    """``spans`` whose parents were lost (a process killed before it kept the session's
    span, or an agent's) under the session span derived from the journal, which has the
    id the lost one had (its parent's id kept as ``convoy.parent_lost``): one tree, not
    rows of no parent."""
    top, caller = root["span_id"], root["parent_id"]  # (the caller's: not lost)

    def lost(s: dict[str, Any]) -> bool:
        return bool(s["parent_id"]) and s["parent_id"] not in ids and \
            s["parent_id"] != caller and s["span_id"] != top

    ids = {s["span_id"] for s in spans}
    if not any(map(lost, spans)):
        return spans
    if top not in ids:
        spans = [*spans, root]
        ids.add(top)
    return [{**s, "parent_id": top, "attrs": {**s["attrs"],
                                              "convoy.parent_lost": s["parent_id"]}}
            if lost(s) else s for s in spans]


def _run_span(span: dict[str, Any]) -> bool:
    """Whether ``span`` is a session's or an agent's run (its key is its first step's)."""
    return span["attrs"].get("gen_ai.operation.name") in ("invoke_workflow", "invoke_agent")


def _spans(session_id: str, chunks: dict[str, Any]) -> list[dict[str, Any]]:
    """The spans of every chunk that reads; a chunk that does not (edited or damaged in the
    store: not text, not JSON, not spans) is left out, said in one line on stderr, unless
    none reads: then one line says why, and the command exits 1."""
    spans: list[dict[str, Any]] = []
    bad: list[tuple[str, str]] = []
    for k in sorted(chunks):
        v = chunks[k]
        try:
            if not isinstance(v, str):
                raise ValueError(f"its stored value {shown(v)} is not text")
            spans += load_chunks([v])
        except ValueError as e:  # (a JournalError is not one: it is said as it is)
            bad.append((k, str(e)))
        except JournalError as e:  # (a newer Convoy's format: said, naming the session)
            raise JournalError(f"the spans kept for session {quoted(session_id)}: {e}"
                               ) from None
    if bad and not spans:
        fail(f"the spans kept for session {quoted(session_id)} are damaged: "
             f"{short(bad[0][1], 200)}; {DAMAGED}", RUN_FAILURE)
    if bad:
        key, why = bad[0]
        typer.echo(f"left out: {plural(len(bad), 'chunk')} of the spans of session "
                   f"{quoted(session_id)} that cannot be read (key {quoted(key)}: "
                   f"{short(why, 200)}); {DAMAGED}", err=True)
        spans.sort(key=lambda s: (s["start"], s["end"]))
    return spans


def tree_order(spans: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """``(span, depth)`` of every span, depth first: each after its parent, siblings by
    start (a span whose parent is not in ``spans`` is a root)."""
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for s in spans:
        parent = s["parent_id"] if s["parent_id"] in ids else None
        children[parent].append(s)
    order: list[tuple[dict[str, Any], int]] = []
    shown: set[int] = set()

    def add(span: dict[str, Any], depth: int) -> None:
        shown.add(id(span))
        order.append((span, depth))
        for c in sorted(children.get(span["span_id"], []), key=lambda s: s["start"]):
            if id(c) not in shown:
                add(c, depth + 1)

    for root in sorted(children[None], key=lambda s: s["start"]):
        add(root, 0)
    for s in sorted(spans, key=lambda s: s["start"]):
        if id(s) not in shown:  # its parent is itself, or one of its own (edited chunks)
            add(s, 0)
    return order


def _fitted(spans: list[dict[str, Any]]) -> Table:
    """The waterfall for this terminal: each name whole on its row where the terminal
    holds it with the times and a little of the details, and bars in what that leaves (at
    most :data:`BAR` columns; none when too narrow to place anything): the bars give way
    before a name or a time folds."""
    names = max(cell_len("  " * depth + one_line(s["name"])) for s, depth in tree_order(spans))
    bare = waterfall(spans, bar=0, details=False)
    used = out.measure(bare, options=out.options.update_width(1 << 16)).maximum
    times = used - max(names, cell_len("span"))  # (the times and the gaps around them)
    room = out.width - used - 2 - 2 - _DETAIL_ROOM  # (2 and 2: the gaps before the bars
    name_width = max(4, min(names, out.width - times - 2 - _DETAIL_ROOM))  # and details)
    bar = min(BAR, room) if room >= 8 else 0
    # The details take what is left, as a fixed width: Rich's own narrowing would take the
    # names below their least width, then widen the table past the terminal, whose edge
    # cut the details off ('key 0/0, 2' for '27+10 tokens').
    left = out.width - max(names if names <= name_width else name_width, cell_len("span")) \
        - times - (2 + bar if bar else 0) - 2
    widest = max(cell_len(detail(s)) for s, _ in tree_order(spans))
    return waterfall(spans, bar=bar, name_width=name_width,
                     detail_width=max(1, min(widest, left)))


#: The columns a narrow terminal keeps for the details (they fold) beside names and times.
_DETAIL_ROOM = 12


def waterfall(spans: list[dict[str, Any]], bar: int = BAR, details: bool = True,
              name_width: int | None = None, detail_width: int | None = None) -> Table:
    """Spans as rows, each under its parent, with a bar ``bar`` columns wide (none: 0)
    placing it in the trace's time; names fold past ``name_width`` columns only, details
    past ``detail_width``."""
    t0 = min(s["start"] for s in spans)
    total = max(max(s["end"] for s in spans) - t0, 1)
    t = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    t.add_column("span", overflow="fold", min_width=name_width)
    t.add_column("start", justify="right", no_wrap=True)
    t.add_column("took", justify="right", no_wrap=True)
    if bar:
        t.add_column("", no_wrap=True)
    if details:
        t.add_column("detail", overflow="fold", width=detail_width)

    for span, depth in tree_order(spans):
        start, end = span["start"] - t0, span["end"] - t0
        # (clamped: a span edited to end before it starts, or far from the others, still
        # draws inside the bar)
        left = min(max(int(start / total * bar), 0), bar - 1)
        width = min(max(1, round((end - start) / total * bar)), bar)
        style = "red" if span["status"] == "error" else \
            "dim" if span["attrs"].get("convoy.replay") else "cyan"
        name = Text("  " * depth + one_line(span["name"]),
                    style="red" if span["status"] == "error" else "")
        row: list[Text | str] = [name, fmt_duration(start / 1e9), took(end - start)]
        if bar:
            row.append(Text(" " * left + "█" * min(width, bar - left), style=style))
        if details:
            row.append(Text(detail(span)))  # (Text: an error's "[...]" is not markup)
        t.add_row(*row)
    return t


def took(ns: int) -> str:
    """How long a span took, from its end less its start in nanoseconds: ``?`` for an end
    before the start (the wall clock it was timed by was stepped back while it ran, by more
    than it took: how long it took is not known; :func:`detail` says so)."""
    return "?" if ns < 0 else fmt_duration(ns / 1e9)


def clock_stepped_back(span: dict[str, Any]) -> str | None:
    """What a span that ends before it starts says of it (see :func:`took`)."""
    back = span.get("start", 0) - span.get("end", 0)
    if back <= 0:
        return None
    return f"clock stepped back: ends {fmt_duration(back / 1e9)} before it starts"


def detail(span: dict[str, Any]) -> str:
    a = span["attrs"]
    # (Every value as it is: a chunk edited by hand may hold any JSON in any attribute.)
    parts: list[str] = [f"key {_as_is(a['convoy.step.key'])}"] \
        if a.get("convoy.step.key") else []
    tokens = (a.get("gen_ai.usage.input_tokens"), a.get("gen_ai.usage.output_tokens"))
    if tokens != (None, None):
        parts.append("+".join("?" if n is None else _count(n) for n in tokens) + " tokens")
    cost = a.get("convoy.cost_usd")
    if cost:
        parts.append(fmt_cost(cost) if type(cost) in (int, float) and math.isfinite(cost)
                     else f"cost {_as_is(cost, quote=True)}")
    if a.get("convoy.attempts"):
        parts.append(f"{_as_is(a['convoy.attempts'])} attempts")
    if a.get("convoy.session.status"):
        parts.append(_as_is(a["convoy.session.status"]))
    if a.get("convoy.session.resumed"):
        parts.append("resumed")
    if a.get("convoy.replay"):
        parts.append("replayed from the journal")
    if a.get("convoy.handoff.from"):
        parts.append(f"handed over by {_as_is(a['convoy.handoff.from'])}")
    if a.get("convoy.state.version") is not None:
        parts.append(f"version {_as_is(a['convoy.state.version'])}")
    if span["status"] == "error":
        message = span.get("message") or _as_is(a.get("error.type", "error"))
        parts = [p for p in parts if not message.startswith(f"{p}: ")]  # said once
        parts.append(message)
    elif a.get("convoy.interrupted"):
        parts.append(f"interrupted ({_as_is(a['convoy.interrupted'])})")
    back = clock_stepped_back(span)
    if back:
        parts.append(back)
    return one_line(", ".join(parts))


def _count(n: Any) -> str:
    """A token count; anything else (edited in the store) as it is, quoted."""
    return str(n) if type(n) is int else _as_is(n, quote=True)


def _as_is(value: Any, *, quote: bool = False) -> str:
    """An attribute's value as a detail shows it: text as it is (``quote``: quoted),
    anything else as Python writes it, cut short either way."""
    if isinstance(value, str):
        return quoted(value, 80) if quote else short(value, 80)
    try:
        return short(repr(value), 80)
    except RecursionError:  # (nested deeper than repr reads: JSON reads a little deeper)
        return "(nested too deep to show)"


def one_line(text: str) -> str:
    """``text`` on one line: a name or message with line breaks (an application's step
    name, an exception's text) would break the table's rows apart; escaped, so an ESC
    sequence in it is shown, not obeyed."""
    return escaped(" ".join(text.split()))
