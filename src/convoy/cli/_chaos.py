"""``convoy chaos``: a chaos experiment against a workflow, with a Chaos Toolkit journal."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from convoy import UserError
from convoy._text import plural, printable
from convoy.chaos import FAULT_KINDS, FaultSpec, Hypothesis, run_experiment
from convoy.cli._common import (
    ConcurrencyOption,
    ModelOption,
    TenantOption,
    check_output_file,
    convoy_errors,
    err,
    fail,
    one_tenant,
    out,
    say,
    workflows_from_cwd,
)
from convoy.cli._inputs import input_bytes, read_inputs
from convoy.cli._interceptors import ChaosInterceptorsOption, app_interceptors
from convoy.cli._loading import workflow_argument
from convoy.cli._render import allotted, fmt_cost, fmt_duration
from convoy.cli._stop import not_kept, read_or_stop
from convoy.models import infer_model

DEFAULT_FAULTS = ("timeout=0.02:10,rate_limit=0.01:0.2,server_error=0.02,malformed=0.01,"
                  "slow=0.05:0.5,tool_failure=0.01")


def chaos(
    workflow: Annotated[str, typer.Argument(
        metavar="MODULE:WORKFLOW", help="The workflow under test (as for 'convoy run').")],
    input: Annotated[Path, typer.Option(
        "--input", "-i", metavar="FILE.jsonl",
        help="One workflow input per line (- reads standard input); every phase runs each "
        "of them once.")],
    faults: Annotated[str, typer.Option(
        "--faults", "-f", metavar="SPEC",
        help="KIND=PROBABILITY[:SECONDS],... with kinds " + ", ".join(FAULT_KINDS)
             + " (':SECONDS' is the hang of timeout, the latency of slow, the Retry-After "
               "of rate_limit).")] = DEFAULT_FAULTS,
    kill_after: Annotated[float | None, typer.Option(
        "--kill-after", metavar="SECONDS",
        help="Run the faulty phase in a child engine process, SIGKILL it this long after "
             "its sessions were created, and resume them in a new process.")] = None,
    kill_after_sessions: Annotated[int | None, typer.Option(
        "--kill-after-sessions", metavar="N", min=1,
        help="Like --kill-after, but SIGKILL the engine once N sessions of the phase "
             "finished: it always kills mid-phase, however fast the sessions are (N must "
             "be below the number of inputs).")] = None,
    min_success: Annotated[float, typer.Option(
        help="Hypothesis: at least this share of sessions completes.")] = 0.999,
    max_p99: Annotated[float | None, typer.Option(
        metavar="SECONDS", help="Hypothesis: p99 session latency at most this.")] = None,
    max_cost: Annotated[float | None, typer.Option(
        metavar="USD", help="Hypothesis: no session costs more than this.")] = None,
    protections: Annotated[bool | None, typer.Option(
        "--protections/--no-protections", show_default=False,
        help="Retries, circuit breakers and timeouts (convoy.resilience.protections) in "
             "front of the faults. [default: on, off with --interceptors]")] = None,
    interceptors: ChaosInterceptorsOption = None,
    call_timeout: Annotated[float | None, typer.Option(
        metavar="SECONDS", help="Per-attempt model call timeout of --protections. "
        "[default: 2.0]")] = None,
    phase_timeout: Annotated[float, typer.Option(
        metavar="SECONDS", help="Stop a phase (per engine process) after this long; its "
        "unfinished sessions count as not completed.")] = 600.0,
    concurrency: ConcurrencyOption = 64,
    model: ModelOption = None,
    db_dir: Annotated[Path | None, typer.Option(
        "--db-dir", file_okay=False,
        help="Where the phases' stores go (default: .convoy/chaos-UTCSTAMP).")] = None,
    journal: Annotated[Path | None, typer.Option(
        "--journal", "-o", metavar="OUT.json", dir_okay=False,
        help="Write the journal here (default: DB_DIR/journal.json).")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the injected faults.")] = 0,
    tenant: TenantOption = None,
) -> None:
    """Run a chaos experiment: steady state before, under faults, and after.

    Each phase runs every input on a fresh store. The steady-state hypothesis (success rate,
    optionally p99 latency and cost per session) is checked on all three; faults are
    injected at the model and tool seam, inside the protections. With --kill-after (or
    --kill-after-sessions) the engine is SIGKILLed mid-phase and a new process resumes from
    the journal. With --interceptors the phases run with the application's interceptors
    (its retries, breakers, timeouts, budgets, ...), the chain under test.

    Exit code 0 when the hypothesis held throughout, 1 when it did not (or the experiment
    aborted), 2 on usage errors.

    Example: `convoy chaos app.flows:handle -i tickets.jsonl --faults server_error=0.05
    --kill-after-sessions 20 --max-p99 30`
    """
    workflows_from_cwd()
    if not 0.0 <= min_success <= 1.0:
        fail(f"--min-success is a share in [0, 1], got {min_success:g}")
    for flag, bound in (("--max-p99", max_p99), ("--max-cost", max_cost)):
        if bound is not None and not bound > 0:
            fail(f"{flag} must be > 0, got {bound:g}")
    with convoy_errors():
        spec = FaultSpec.parse(faults)
        hyp = Hypothesis(min_success=min_success, max_p99=max_p99, max_cost_per_session=max_cost)
        wf = workflow_argument(workflow)
        # (a stop while it reads, a pipe whose writer keeps it open, ends it at once)
        data = read_or_stop(lambda: input_bytes(input), "interrupted before the experiment "
                            "started: nothing was run" + not_kept(
                                input, "inputs", many=True, redo="run the experiment"), say)
        batch = read_inputs(wf, input, data=data)
    app_interceptors(interceptors)  # (what cannot be loaded: one line, before anything runs)
    if model is not None:
        try:
            infer_model(model)
        except UserError as e:
            fail(f"--model: {e}")
    if call_timeout is not None and not (protections if protections is not None
                                         else interceptors is None):
        fail("--call-timeout is the per-attempt timeout of --protections, which are off "
             + ("(--no-protections)" if protections is False else "with --interceptors")
             + ": leave it out, or add --protections")
    if call_timeout is None:
        call_timeout = 2.0
    for name, value in (("--call-timeout", call_timeout), ("--phase-timeout", phase_timeout),
                        ("--kill-after", kill_after if kill_after is not None else 1.0)):
        if not value > 0:
            fail(f"{name} must be > 0 seconds, got {value:g}")
    for bad in batch.invalid:
        err.print(f"{input}: line {bad.line}: {bad.reason} (skipped)", markup=False,
                  style="yellow", soft_wrap=True)
    if not batch.valid:
        fail(f"{input}: no valid inputs to run")
    n = len(batch.valid)
    if kill_after_sessions is not None and not 0 < kill_after_sessions < n:
        fail(f"--kill-after-sessions {kill_after_sessions}: the kill must come before the "
             f"phase is over, after fewer sessions than its {plural(n, 'input')}"
             + (f" (1 to {n - 1})" if n > 1 else "; give --input more lines"))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    work = db_dir if db_dir is not None else Path(".convoy") / f"chaos-{stamp}"
    out_file = journal if journal is not None else work / "journal.json"
    check_output_file(out_file, "--journal", [(work / f"{phase}.db", f"the store of the {phase} "
                                               "phase") for phase in ("before", "during", "after")],
                      inputs=[(input, "--input")])
    try:
        with convoy_errors():
            result = run_experiment(
                wf, [x.value for x in batch.valid], db_dir=work, faults=spec, hypothesis=hyp,
                kill_after_s=kill_after, kill_after_sessions=kill_after_sessions,
                protect=protections, interceptors=interceptors, concurrency=concurrency,
                seed=seed, call_timeout=call_timeout, model=model, tenant=one_tenant(tenant),
                phase_timeout=phase_timeout,
                on_event=lambda msg: err.print(msg, markup=False, style="dim"))
    except KeyboardInterrupt:
        err.print(f"interrupted; the phases' stores are in {work}", markup=False)
        raise typer.Exit(130) from None
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(result, indent=2))
    print_report(result, len(batch.valid))
    out.print(f"journal: {out_file}", markup=False)
    if result["status"] != "completed":
        raise typer.Exit(1)


# -- the report --------------------------------------------------------------------------


def _fmt(name: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if "latency" in name:
        return fmt_duration(float(value))
    if "cost" in name:
        return fmt_cost(float(value))
    return f"{float(value):.4%}"


def _tolerance(name: str, tol: list[float]) -> str:
    lo, hi = tol
    return f">= {_fmt(name, lo)}" if name == "success-rate" else f"<= {_fmt(name, hi)}"


def _met(ok: bool | None) -> Text:
    if ok is None:
        return Text("not run", style="dim")
    return Text("yes", style="green") if ok else Text("NO", style="bold red")


def _states(result: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None]]:
    ss = result["steady_states"]
    during = ss["during"][0] if ss["during"] else None
    return [("before", ss["before"]), ("during", during), ("after", ss["after"])]


def phases_table(result: dict[str, Any], width: int | None = None) -> Table:
    """The phases' figures. On a terminal narrower than the table (``width``) the headers
    wrap; no figure is cut short (``$0.0007…``)."""
    phases = result["convoy"]["phases"]
    columns = ("phase", "sessions", "completed", "success", "p50", "p99",
               "max cost per session", "steady state")
    rows: list[list[str | Text]] = []
    for name, state in _states(result):
        m = phases.get(name)
        met = _met(None if m is None or state is None else state["steady_state_met"])
        rows.append([name, *(["-"] * 6), met] if m is None else
                    [name, str(m["sessions"]), str(m["completed"]),
                     f"{m['success_rate']:.2%}", _fmt("latency", m["p50_s"]),
                     _fmt("latency", m["p99_s"]), fmt_cost(m["max_cost"]), met])
    values = {c: max(cell_len(str(row[i])) for row in rows) for i, c in enumerate(columns)}
    widest = {c: max(values[c], cell_len(c)) for c in columns}
    fixed: dict[str, int] = {}
    room = 0 if width is None else width - 3 * len(columns) - 1
    if width is not None and sum(widest.values()) > room:
        # (each figure whole; each header's words too, where the terminal holds them all)
        words = {c: max(values[c], *map(cell_len, c.split())) for c in columns}
        fixed = allotted(widest, words if sum(words.values()) <= room else values, room)
    t = Table(title="phases", title_justify="left")
    for c in columns:
        t.add_column(c, justify="left" if c in ("phase", "steady state") else "right",
                     width=fixed.get(c), overflow="fold")
    for row in rows:
        t.add_row(*row)
    return t


def probes_table(result: dict[str, Any]) -> Table:
    t = Table(title="steady-state probes", title_justify="left")
    for col in ("phase", "probe", "value", "tolerance", "met"):
        t.add_column(col, justify="right" if col == "value" else "left")
    for name, state in _states(result):
        for p in (state or {}).get("probes", []):
            a = p["activity"]
            t.add_row(name, a["name"], _fmt(a["name"], p["output"]),
                      _tolerance(a["name"], a["tolerance"]), _met(p["tolerance_met"]))
    return t


def print_report(result: dict[str, Any], n: int) -> None:
    ext = result["convoy"]
    out.print(Text.assemble(("convoy chaos ", "bold"), ext["workflow"],
                            f" · {plural(n, 'session')} per phase · faults {ext['faults']} · "
                            f"protections {'on' if ext['protections'] else 'off'}"
                            + (f" · interceptors {ext['interceptors']}"
                               if ext.get("interceptors") else "")))
    out.print(phases_table(result, out.width))
    out.print(probes_table(result))
    during = ext["phases"].get("during", {})
    faults = ext["faults_injected"]
    if "during" in ext["phases"]:
        listed = ", ".join(f"{k} {v}" for k, v in sorted(faults.items())) or "none"
        out.print(f"faults injected: {sum(faults.values())} ({listed}); retries "
                  f"{during.get('retries', 0)} ({during.get('retries_denied', 0)} denied by "
                  f"the retry budget), timeouts cut {during.get('timeouts', 0)}, breaker "
                  f"rejections {during.get('breaker_rejections', 0)}"
                  + (" (those of the resumed engine process only: the SIGKILLed one's "
                     "counters are lost with it, while its faults are counted)"
                     if during.get("note") else ""), markup=False)
    for run in result["run"]:
        name, o = run["activity"]["name"], run["output"]
        if name == "sigkill-engine":
            what = (f"SIGKILLed after {o['after_s']:.2f}s with "
                    f"{plural(o['unfinished_at_kill'], 'session')} unfinished" if o["killed"]
                    else "finished before the kill was due")
            out.print(f"engine process {o['pid']} {what}", markup=False)
        elif name == "resume-engine":
            out.print(f"a new engine process resumed {plural(o['resumed'], 'session')}; "
                      f"{o['unfinished_after']} left unfinished", markup=False)
    for w in ext.get("warnings", []):
        out.print(f"warning: {w}", markup=False, style="yellow")
    status = result["status"]
    if status == "completed" and "during" in ext["phases"] and not sum(faults.values()) \
            and ext["faults"] != "none":
        verdict = Text("steady state held, but no fault was injected: nothing was tested "
                       "under faults", style="bold yellow")
    elif status == "completed":
        verdict = Text("steady state held in every phase (not deviated)", style="bold green")
    elif status == "aborted":
        verdict = Text(f"ABORTED: {printable(str(result.get('error', '')))}",
                       style="bold red")
    elif result["deviated"]:
        verdict = Text("DEVIATED: the steady state did not hold under faults",
                       style="bold red")
    else:
        verdict = Text("FAILED: the steady state did not hold before any fault",
                       style="bold red")
    out.print(Text.assemble("result: ", verdict, f" · status {status} · "
                            f"{result['duration']:.1f}s"))
