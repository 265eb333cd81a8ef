"""A chaos experiment: steady state before, faults (and a SIGKILL) during, steady state after.

The result is a dict in the shape of a Chaos Toolkit journal: ``status`` is
``"completed"`` when the hypothesis held in every phase, ``"failed"`` when it did not hold
before the faults (the method is then skipped, ``deviated`` is false) or during / after them
(``deviated`` is true), and ``"aborted"`` when the experiment could not run to its end.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import convoy
from convoy._errors import ConvoyError, UserError
from convoy._text import a_word, plural
from convoy.chaos._faults import FaultSpec
from convoy.chaos._hypothesis import Hypothesis
from convoy.chaos._phase import PhaseConfig, PhaseMetrics, measure, read_fault_log, run_phase
from convoy.chaos._process import ENTRY, KillPoint, kill_after, resume
from convoy.definitions._workflow import Workflow, check_workflow, load_workflow
from convoy.engine._tenancy import check_tenant
from convoy.interceptors._named import load_interceptors, made_anew

Event = Callable[[str], None]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _activity(kind: str, name: str, provider: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "name": name, "provider": provider}


def _run_entry(activity: dict[str, Any], start: str, t0: float, output: Any,
               status: str = "succeeded") -> dict[str, Any]:
    return {"activity": activity, "status": status, "start": start, "end": _now(),
            "duration": round(time.monotonic() - t0, 4), "output": output}


def _input_lines(wf: Workflow[Any, Any], inputs: Sequence[Any]) -> list[str]:
    lines = []
    for i, x in enumerate(inputs):
        try:
            v = wf.read_input(x)
        except ValidationError as e:
            raise UserError(f"input {i} does not match the input type of workflow "
                            f"{wf.name!r}: {e.errors(include_url=False)[0]['msg']}") from None
        lines.append(wf.input_adapter.dump_json(v).decode())
    return lines


def _app_interceptors(ref: object, killing: bool, warnings: list[str]) -> list[Any]:
    """The interceptors ``ref`` names, loaded once to check them before anything runs (the
    phases load them again, each in its own process: with a kill, a new one)."""
    if not isinstance(ref, str):
        raise UserError(f"interceptors: give them as 'MODULE:NAME' (a list of them, or a "
                        f"function that returns one, in MODULE), not {a_word(type(ref).__name__)}: "
                        "each phase loads them anew in the process that runs it")
    if killing and ref.rpartition(":")[0] == "__main__":
        raise UserError(f"to SIGKILL the engine, interceptors {ref!r} must be importable "
                        "from a new process: name them in a module, not __main__")
    loaded = load_interceptors(ref)
    if loaded and not made_anew(ref):
        warnings.append(f"the application's interceptors {ref} are a list: the phases this "
                        "process runs share them and their state (a breaker's window, a "
                        "budget's spend, a cache); name a function of no arguments that "
                        "returns them for interceptors of each phase's own")
    return loaded


def _check_importable(wf: Workflow[Any, Any]) -> None:
    try:
        load_workflow(wf.name)
    except UserError as e:
        raise UserError(f"to SIGKILL the engine, workflow {wf.name!r} must be importable by "
                        f"its name from a new process: {e}") from None


def _skeleton(wf: Workflow[Any, Any], spec: FaultSpec, hyp: Hypothesis, *, n: int,
              kill: KillPoint | None, protect: bool, interceptors: str | None, seed: int,
              title: str | None, work: Path, warnings: list[str]) -> dict[str, Any]:
    """The journal before anything ran: the experiment, its method, empty results."""
    method = [_activity("action", "run-sessions-with-faults", {
        "type": "python", "module": "convoy.chaos", "func": "FaultInjector",
        "arguments": {"faults": str(spec), "seed": seed, "sessions": n}})]
    if kill is not None:
        method.append(_activity("action", "sigkill-engine", {
            "type": "python", "module": "os", "func": "kill",
            "arguments": {"signal": "SIGKILL", "after_s": kill.seconds,
                          "after_sessions": kill.sessions}}))
        method.append(_activity("action", "resume-engine", {
            "type": "process", "path": sys.executable,
            "arguments": f"-c {shlex.quote(ENTRY)} during-2.json"}))
    return {
        "chaoslib-version": f"convoy.chaos {convoy.__version__}",
        "platform": platform.platform(), "node": platform.node(),
        "experiment": {
            "version": "1.0.0",
            "title": title or f"{wf.name} keeps its steady state under faults",
            "description": (f"{n} sessions of {wf.name} per phase; faults {spec}; "
                            f"protections {'on' if protect else 'off'}"
                            + (f"; the application's interceptors {interceptors}"
                               if interceptors is not None else "")
                            + (f"; engine SIGKILLed {kill.describe()} and resumed"
                               if kill is not None else "")),
            "tags": ["convoy"],
            "steady-state-hypothesis": {"title": hyp.title, "probes": hyp.probes()},
            "method": method, "rollbacks": []},
        "start": _now(), "status": "completed", "deviated": False,
        "steady_states": {"before": None, "after": None, "during": []},
        "run": [], "rollbacks": [],
        "convoy": {"workflow": wf.name, "faults": str(spec), "protections": protect,
                   "interceptors": interceptors,
                   "seed": seed, "db_dir": str(work), "phases": {}, "faults_injected": {},
                   "warnings": warnings},
    }


def run_experiment(workflow: Workflow[Any, Any] | str, inputs: Sequence[Any], *,
                   db_dir: str | Path, faults: FaultSpec | str | None = None,
                   hypothesis: Hypothesis | None = None, kill_after_s: float | None = None,
                   kill_after_sessions: int | None = None,
                   protect: bool | None = None, interceptors: str | None = None,
                   concurrency: int = 64, seed: int = 0,
                   call_timeout: float = 2.0, tool_timeout: float = 30.0,
                   model: str | None = None, tenant: str = "default",
                   title: str | None = None, phase_timeout: float | None = 600.0,
                   on_event: Event | None = None) -> dict[str, Any]:
    """Run a chaos experiment and return its journal (a JSON-able dict).

    Every input runs once per phase, each phase on a fresh store in ``db_dir``:
    BEFORE (no faults), DURING (``faults`` injected; with ``kill_after_s`` the engine runs
    in a child process that is SIGKILLed that many seconds after its sessions exist, or
    with ``kill_after_sessions`` once that many of them finished, and a new process
    resumes them from the journal), AFTER (no faults). ``interceptors``: the application's
    (``MODULE:NAME``, as ``convoy run --interceptors`` takes it: a list of
    :class:`~convoy.Interceptor` or a function of no arguments that returns one), so the
    experiment tests the chain the application runs; each phase loads them in the process
    that runs it (a function gives each phase interceptors of its own; a list is shared by
    the phases one process runs). ``protect`` puts :func:`convoy.resilience.protections`
    in front of the injector too; by default it does without ``interceptors`` and does
    not with them (they are the protections under test). A phase still running
    after ``phase_timeout`` seconds (per engine process) is stopped; its unfinished sessions
    count as not completed. Blocking: call it outside an event loop.

    Raises:
        UserError: bad arguments (nothing has run yet).
    """
    wf = load_workflow(workflow) if isinstance(workflow, str) else check_workflow(workflow)
    killing = kill_after_s is not None or kill_after_sessions is not None
    warnings: list[str] = []
    loaded = None if interceptors is None else _app_interceptors(interceptors, killing,
                                                                 warnings)
    if protect is None:
        protect = interceptors is None
    spec = faults if isinstance(faults, FaultSpec) else FaultSpec.parse(faults)
    hyp = hypothesis or Hypothesis()
    if not inputs:
        raise UserError("a chaos experiment needs at least one input")
    if concurrency < 1:
        raise UserError(f"concurrency must be >= 1, got {concurrency}")
    check_tenant(tenant)
    if phase_timeout is not None and not phase_timeout > 0:
        raise UserError(f"phase_timeout must be > 0 seconds or None, got {phase_timeout}")
    kill = None
    if kill_after_s is not None or kill_after_sessions is not None:
        if kill_after_s is not None and not kill_after_s > 0:
            raise UserError(f"kill_after_s must be > 0 seconds, got {kill_after_s}")
        if kill_after_sessions is not None and not 0 < kill_after_sessions < len(inputs):
            raise UserError(f"kill_after_sessions must be between 1 and {len(inputs) - 1} "
                            f"(fewer than the {len(inputs)} inputs, or the phase is over "
                            f"before the kill), got {kill_after_sessions}")
        _check_importable(wf)
        kill = KillPoint(seconds=kill_after_s, sessions=kill_after_sessions)
    work = Path(db_dir)
    taken = [n for n in ("before", "during", "after") if (work / f"{n}.db").exists()]
    if taken:
        raise UserError(f"{str(work)!r} already holds an experiment ({taken[0]}.db); pass "
                        "an empty or new directory")
    work.mkdir(parents=True, exist_ok=True)
    (work / "inputs.jsonl").write_text("\n".join(_input_lines(wf, inputs)) + "\n")
    say = on_event or (lambda _msg: None)
    if loaded == []:
        warnings.append(f"the application's interceptors {interceptors} are none: the "
                        "phases run with none of the application's under test"
                        + ("" if protect else ", and no protections"))
    if protect and spec.timeout and spec.hang_seconds <= call_timeout:
        warnings.append(f"the injected hang ({spec.hang_seconds:g}s) is not longer than the "
                        f"call timeout ({call_timeout:g}s): the timeout never fires")

    def config(name: str, with_faults: bool) -> PhaseConfig:
        return PhaseConfig(
            name=name, workflow=wf.name, db=str(work / f"{name}.db"),
            inputs=str(work / "inputs.jsonl"), faults=str(spec) if with_faults else "none",
            seed=seed, protect=protect, call_timeout=call_timeout, tool_timeout=tool_timeout,
            concurrency=concurrency, model=model, tenant=tenant, deadline_s=phase_timeout,
            fault_log=str(work / f"{name}-faults.log") if with_faults else None,
            interceptors=interceptors,
            stats=str(work / f"{name}-stats.json"))

    journal = _skeleton(wf, spec, hyp, n=len(inputs), kill=kill,
                        protect=protect, interceptors=interceptors, seed=seed, title=title,
                        work=work, warnings=warnings)
    t_start = time.monotonic()
    ext = journal["convoy"]

    def steady(name: str, with_faults: bool) -> dict[str, Any]:
        cfg = config(name, with_faults)
        say(f"{name}: {len(inputs)} sessions" + (f" with faults {spec}" if with_faults else ""))
        start = _now()
        stats = run_phase(cfg, wf)
        m = measure(cfg.db)
        ext["phases"][name] = {**m.to_dict(), **stats}
        _note_timeout(name, m, warnings)
        return hyp.check(m, start, _now())

    try:
        before = journal["steady_states"]["before"] = steady("before", False)
        if not before["steady_state_met"]:
            journal["status"] = "failed"
            say("before: the steady state does not hold without faults; method skipped")
        else:
            backstop = 3600.0 * 24 if phase_timeout is None else phase_timeout + 120
            during = _method(config("during", True), wf, len(inputs), kill, backstop,
                             journal, say)
            m = measure(config("during", True).db)
            ext["phases"]["during"] = {**m.to_dict(), **ext["phases"].get("during", {})}
            _note_timeout("during", m, warnings)
            if spec.any and not sum(ext["faults_injected"].values()):
                warnings.append(
                    "no fault was injected: the sessions made no call the faults apply to "
                    "(model calls; tool calls for tool_failure), or the rates are too low "
                    f"for {plural(len(inputs), 'session')}; the steady state was not tested under "
                    "faults")
            journal["steady_states"]["during"].append(hyp.check(m, during, _now()))
            after = journal["steady_states"]["after"] = steady("after", False)
            deviated = not (journal["steady_states"]["during"][0]["steady_state_met"]
                            and after["steady_state_met"])
            journal["deviated"] = deviated
            journal["status"] = "failed" if deviated else "completed"
    except (ConvoyError, OSError, json.JSONDecodeError) as e:
        journal["status"] = "aborted"
        journal["error"] = f"{type(e).__name__}: {e}"
    journal["end"] = _now()
    journal["duration"] = round(time.monotonic() - t_start, 4)
    return journal


def _note_timeout(phase: str, m: PhaseMetrics, warnings: list[str]) -> None:
    if m.unfinished:
        warnings.append(f"phase {phase} was stopped by its timeout with {m.unfinished} "
                        "sessions unfinished (counted as not completed)")


def _method(cfg: PhaseConfig, wf: Workflow[Any, Any], n: int, kill: KillPoint | None,
            timeout: float, journal: dict[str, Any], say: Event) -> str:
    """Run the DURING phase (in process, or killed and resumed); returns its start time."""
    method, runs, ext = journal["experiment"]["method"], journal["run"], journal["convoy"]
    start, t0 = _now(), time.monotonic()
    say(f"during: {n} sessions with faults {cfg.faults}")
    if kill is None:
        stats = run_phase(cfg, wf)
    else:
        stats = _kill_and_resume(cfg, kill, timeout, method, runs, (start, t0), say)
    faults = dict(read_fault_log(Path(cfg.fault_log or "")))
    ext["faults_injected"] = faults
    ext["phases"]["during"] = {**stats, "faults": faults}
    output = {"faults_injected": faults, **{k: v for k, v in stats.items() if k != "faults"}}
    if kill is None:
        runs.append(_run_entry(method[0], start, t0, output))
    else:
        runs[0]["output"].update(output)
    return start


def _kill_and_resume(cfg: PhaseConfig, kill: KillPoint, timeout: float,
                     method: list[dict[str, Any]], runs: list[dict[str, Any]],
                     started: tuple[str, float], say: Event) -> dict[str, Any]:
    """The phase in an engine process SIGKILLed at ``kill``, then in a new one.
    Returns the counters of both processes (the killed one's only if it was not killed)."""
    work = Path(cfg.db).parent
    files = []
    for i in (1, 2):
        c = replace(cfg, stats=str(work / f"{cfg.name}-stats-{i}.json"))
        c.dump(work / f"{cfg.name}-{i}.json")
        files.append((c, work / f"{cfg.name}-{i}.json"))
    report = kill_after(files[0][0], files[0][1], work, kill, timeout)
    runs.append(_run_entry(method[0], *started, {"engine_pid": report["pid"]}))
    runs.append(_run_entry(method[1], _now(), time.monotonic(), report))
    say(f"during: engine SIGKILLed after {report['after_s']:.2f}s, "
        f"{report['unfinished_at_kill']} sessions unfinished" if report["killed"]
        else "during: the engine finished before the kill was due")
    s2, t2 = _now(), time.monotonic()
    res = resume(files[1][0], files[1][1], work, timeout)
    runs.append(_run_entry(method[2], s2, t2, res))
    say(f"during: resumed {res['resumed']} sessions in a new engine process")
    total: dict[str, Any] = {}
    for c, _ in files:
        path = Path(c.stats or "")
        if path.is_file():
            for k, v in json.loads(path.read_text()).items():
                if isinstance(v, bool):
                    total[k] = total.get(k, False) or v
                elif isinstance(v, int):
                    total[k] = total.get(k, 0) + v
    if report["killed"]:
        total["note"] = "counters of the SIGKILLed engine process are lost"
    return total
