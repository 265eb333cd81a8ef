"""convoy.chaos: fault specs, the fault injector, chaos experiments (with a SIGKILL) and the
``convoy chaos`` command."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

import convoy
from convoy.chaos import FaultInjector, FaultSpec, Hypothesis, run_experiment
from convoy.cli import app
from convoy.resilience import Timeout
from convoy.stores import SQLiteStore


class Step(BaseModel):
    value: int


SIM = convoy.SimModel({"*": {"output": {"value": 1}}}, latency=0.02, name="sim:chaos")
AGENTS = [convoy.Agent(name=f"c{i}", input_type=str if i == 0 else Step, output_type=Step,
                       model=SIM) for i in range(3)]


@convoy.workflow
async def chain(ctx: convoy.Context, text: str) -> Step:
    out: Step = await convoy.pipeline(ctx, AGENTS, text)
    return out


# -- fault specs -------------------------------------------------------------------------


def test_spec_parses_kinds_probabilities_and_seconds() -> None:
    spec = FaultSpec.parse("timeout=0.02:3, server_error=0.02,malformed=0.01,slow=0.05:0.5,"
                           "tool_failure=0.01,rate_limit=0.01:0.2,schema_invalid=0.005")
    assert (spec.timeout, spec.hang_seconds, spec.slow, spec.slow_seconds) == (0.02, 3, 0.05, 0.5)
    assert (spec.rate_limit, spec.retry_after, spec.tool_failure) == (0.01, 0.2, 0.01)
    assert spec.model_rate == pytest.approx(0.02 + 0.01 + 0.02 + 0.01 + 0.005)
    assert FaultSpec.parse(str(spec)) == spec
    assert not FaultSpec.parse("").any and str(FaultSpec.parse("none")) == "none"
    assert FaultSpec.parse("malformed_json=0.1").malformed == 0.1  # SimModel's name works


@pytest.mark.parametrize(("text", "message"), [
    ("timeuot=0.1", "unknown fault kind 'timeuot'.*Did you mean 'timeout'"),
    ("server_error", "must look like KIND=PROBABILITY"),
    ("server_error=", "must look like KIND=PROBABILITY"),
    ("server_error=lots", "'lots' is not a number"),
    ("server_error=1.5", r"probability must be in \[0, 1\], got 1.5"),
    ("slow=0.1:-1", "must be >= 0 seconds"),
    ("server_error=0.1:2", "takes no ':SECONDS' parameter"),
    ("timeout=0.1,timeout=0.2", "given twice"),
    ("timeout=0.6,server_error=0.6", "add up to at most 1; they add up to 1.2"),
    ("slow=nan", "not a finite number"),
])
def test_spec_errors_are_clear(text: str, message: str) -> None:
    with pytest.raises(convoy.UserError, match=message):
        FaultSpec.parse(text)


# -- the injector ------------------------------------------------------------------------


def test_draws_are_deterministic_and_match_the_rates() -> None:
    spec = FaultSpec(timeout=0.1, rate_limit=0.1, server_error=0.1, malformed=0.1,
                     schema_invalid=0.1, slow=0.2)
    a, b = FaultInjector(spec, seed=7), FaultInjector(spec, seed=7)
    draws = [a.draw(f"s{i}", "0/0", 0, "x@sim") for i in range(20_000)]
    assert draws == [b.draw(f"s{i}", "0/0", 0, "x@sim") for i in range(20_000)]
    assert draws != [FaultInjector(spec, seed=8).draw(f"s{i}", "0/0", 0, "x@sim")
                     for i in range(20_000)]
    for kind in ("timeout", "rate_limit", "server_error", "malformed", "schema_invalid"):
        assert sum(k == kind for k, _ in draws) / len(draws) == pytest.approx(0.1, abs=0.01)
    assert sum(slow for _, slow in draws) / len(draws) == pytest.approx(0.2, abs=0.01)
    retried = [a.draw(f"s{i}", "0/0", 1, "x@sim") for i in range(200)]
    assert retried != draws[:200]  # a new attempt gets a new draw


async def _run_one(tmp_path: Path, faults: str, interceptors: list[convoy.Interceptor],
                   agents: list[convoy.Agent[Any, Any]] | None = None
                   ) -> tuple[convoy.SessionResult[Any], FaultInjector]:
    inj = FaultInjector(faults, seed=1)
    flow_agents = agents or [convoy.Agent(name="solo", output_type=Step, output_retries=0,
                                          model=convoy.SimModel(name="sim:solo"))]

    @convoy.workflow(name=f"chaos_one_{abs(hash(faults))}")
    async def one(ctx: convoy.Context, text: str) -> Step:
        out: Step = await convoy.pipeline(ctx, flow_agents, text)
        return out

    async with convoy.Engine(tmp_path / f"{abs(hash(faults))}.db",
                             interceptors=[*interceptors, inj]) as engine:
        return await engine.run(one, "hello"), inj


@pytest.mark.parametrize(("faults", "error", "status_code"), [
    ("server_error=1", "HTTP 503", 503),
    ("rate_limit=1:0.5", "HTTP 429", 429),
    ("timeout=1:0.05", "hung for 0.05s", None),
    ("malformed=1", "gave invalid output 1 times", None),
    ("schema_invalid=1", "gave invalid output 1 times", None),
])
async def test_each_model_fault_fails_an_unprotected_call(
        tmp_path: Path, faults: str, error: str, status_code: int | None) -> None:
    res, inj = await _run_one(tmp_path, faults, [])
    assert res.status == "failed"
    assert res.error is not None and error in res.error["message"]
    assert res.error.get("status_code") == status_code
    assert sum(inj.injected.values()) == 1
    if status_code == 429:
        assert res.error["retry_after"] == 0.5


async def test_a_timeout_interceptor_cuts_an_injected_hang(tmp_path: Path) -> None:
    res, inj = await _run_one(tmp_path, "timeout=1:30", [Timeout(0.05)])
    assert res.status == "failed" and res.duration_s < 5
    assert res.error is not None and "did not answer within 0.05s" in res.error["message"]
    assert inj.injected == {"timeout": 1}


async def test_slow_calls_add_latency_and_still_succeed(tmp_path: Path) -> None:
    res, inj = await _run_one(tmp_path, "slow=1:0.1", [])
    assert res.ok and res.duration_s >= 0.1
    assert inj.injected == {"slow": 1}


async def test_tool_failures_are_retryable_tool_errors(tmp_path: Path) -> None:
    seen: list[str] = []

    @convoy.tool
    def lookup(key: str) -> str:
        """Look a key up."""
        seen.append(key)
        return key

    def script(req: convoy.ModelRequest) -> dict[str, Any]:
        if not any(m.role == "tool" for m in req.messages):
            return {"tool_calls": [{"name": "lookup", "arguments": {"key": "k"}}]}
        return {"output": {"value": 2}}

    agent = convoy.Agent(name="tooly", output_type=Step, tools=[lookup], tool_failures=0,
                         model=convoy.SimModel(script, name="sim:tooly"))
    res, inj = await _run_one(tmp_path, "tool_failure=1", [], agents=[agent])
    assert res.status == "failed" and inj.injected == {"tool_failure": 1}
    assert res.error is not None and "chaos: tool 'lookup' failed" in res.error["message"]
    assert res.error["type"] == "ToolError" and res.error["retryable"] is True
    assert seen == []  # the tool itself was never reached


# -- experiments -------------------------------------------------------------------------


def _check_shape(journal: dict[str, Any]) -> None:
    json.dumps(journal)  # JSON-able
    for key in ("chaoslib-version", "platform", "experiment", "start", "end", "duration",
                "status", "deviated", "steady_states", "run"):
        assert key in journal, key
    exp = journal["experiment"]
    assert {"title", "description", "steady-state-hypothesis", "method"} <= set(exp)
    assert exp["steady-state-hypothesis"]["probes"][0]["type"] == "probe"
    assert all(a["type"] == "action" for a in exp["method"])
    for state in (journal["steady_states"]["before"], *journal["steady_states"]["during"],
                  journal["steady_states"]["after"]):
        assert isinstance(state["steady_state_met"], bool)
        for p in state["probes"]:
            assert p["activity"]["type"] == "probe" and p["status"] == "succeeded"
            assert {"name", "tolerance"} <= set(p["activity"]) and "output" in p
            assert isinstance(p["tolerance_met"], bool)
    for run in journal["run"]:
        assert {"activity", "status", "start", "end", "duration", "output"} <= set(run)


def test_experiment_without_kill_writes_a_well_formed_journal(tmp_path: Path) -> None:
    journal = run_experiment(chain, [f"t{i}" for i in range(30)], db_dir=tmp_path,
                             faults="server_error=0.05,malformed=0.05,slow=0.05:0.05",
                             hypothesis=Hypothesis(min_success=1.0, max_p99=20.0,
                                                   max_cost_per_session=1.0),
                             concurrency=10, call_timeout=1.0)
    _check_shape(journal)
    assert journal["status"] == "completed" and journal["deviated"] is False
    assert [p["activity"]["name"] for p in journal["steady_states"]["before"]["probes"]] == [
        "success-rate", "p99-session-latency-seconds", "max-cost-per-session-usd"]
    phases = journal["convoy"]["phases"]
    assert phases["during"]["completed"] == 30 and phases["during"]["retries"] > 0
    assert sum(journal["convoy"]["faults_injected"].values()) > 0
    assert journal["run"][0]["output"]["faults_injected"] == journal["convoy"]["faults_injected"]
    with pytest.raises(convoy.UserError, match="already holds an experiment"):
        run_experiment(chain, ["x"], db_dir=tmp_path)


@convoy.workflow(name="chaos_no_calls")
async def no_calls(ctx: convoy.Context, text: str) -> str:
    return text.upper()  # no model or tool call: nothing for a fault to hit


def test_an_experiment_that_injected_no_fault_says_it_tested_nothing(tmp_path: Path) -> None:
    journal = run_experiment(no_calls, [f"t{i}" for i in range(5)], db_dir=tmp_path,
                             faults="server_error=0.5")
    assert journal["status"] == "completed" and journal["convoy"]["faults_injected"] == {}
    assert any(w.startswith("no fault was injected: the sessions made no call the faults "
                            "apply to") for w in journal["convoy"]["warnings"]), journal
    res = _cli(tmp_path, "chaos", "tests.test_chaos:no_calls", "--db-dir", "cli", "-i",
               _inputs(tmp_path), "--faults", "server_error=0.5")
    said = " ".join(res.stdout.split())
    assert res.returncode == 0 and "warning: no fault was injected" in said and \
        "steady state held, but no fault was injected: nothing was tested under faults" \
        in said and "steady state held in every phase" not in said, res.stdout
    clean = run_experiment(chain, ["a", "b"], db_dir=tmp_path / "none", faults="none")
    assert not any("no fault" in w for w in clean["convoy"]["warnings"])


def _inputs(tmp_path: Path) -> str:
    (tmp_path / "in.jsonl").write_text("".join(f'"ticket {i}"\n' for i in range(5)))
    return "in.jsonl"


def test_experiment_deviates_without_protections(tmp_path: Path) -> None:
    journal = run_experiment(chain, [f"t{i}" for i in range(20)], db_dir=tmp_path,
                             faults="server_error=0.3", protect=False, concurrency=10)
    _check_shape(journal)
    assert journal["status"] == "failed" and journal["deviated"] is True
    assert journal["steady_states"]["before"]["steady_state_met"] is True
    assert journal["steady_states"]["during"][0]["steady_state_met"] is False
    assert journal["steady_states"]["after"]["steady_state_met"] is True


def test_experiment_survives_a_sigkill_of_the_engine(tmp_path: Path) -> None:
    # The child engine process imports `chain` by its name, tests.test_chaos:chain.
    journal = run_experiment(chain, [f"t{i}" for i in range(40)], db_dir=tmp_path,
                             faults="server_error=0.05,timeout=0.03:30,malformed=0.03",
                             hypothesis=Hypothesis(min_success=1.0),
                             kill_after_s=0.25, concurrency=4, call_timeout=0.5,
                             phase_timeout=120)
    _check_shape(journal)
    names = [r["activity"]["name"] for r in journal["run"]]
    assert names == ["run-sessions-with-faults", "sigkill-engine", "resume-engine"]
    # (the experiment records how an engine process starts as it does start: not -m,
    # whose runpy warning the processes no longer print)
    [how] = [a["provider"]["arguments"] for a in journal["experiment"]["method"]
             if a["name"] == "resume-engine"]
    assert how.startswith("-c ") and "from convoy.chaos._worker import run" in how, how
    kill, resumed = journal["run"][1]["output"], journal["run"][2]["output"]
    assert kill["killed"] is True and kill["unfinished_at_kill"] > 0
    assert resumed["resumed"] == kill["unfinished_at_kill"] and resumed["unfinished_after"] == 0
    assert journal["convoy"]["phases"]["during"]["completed"] == 40
    assert journal["status"] == "completed" and journal["deviated"] is False


def test_kill_needs_a_workflow_importable_by_name(tmp_path: Path) -> None:
    @convoy.workflow(name="nowhere:flow")
    async def local(ctx: convoy.Context, text: str) -> str:
        return text

    with pytest.raises(convoy.UserError, match="must be importable by its name"):
        run_experiment(local, ["x"], db_dir=tmp_path, kill_after_s=1.0)


# -- the command line --------------------------------------------------------------------


class _Res:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = code, stdout, stderr


def _cli(cwd: Path, *args: str, env: dict[str, str | None] | None = None) -> _Res:
    """``convoy ARGS`` in this process (Typer's CliRunner), in ``cwd``."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, list(args), env={"CONVOY_DB": None,
                                                          "CONVOY_TENANT": None, **(env or {})})
    finally:
        os.chdir(old)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return _Res(result.exit_code, result.stdout, result.stderr)


def test_cli_chaos_reports_and_writes_the_journal(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text("".join(f'"ticket {i}"\n' for i in range(20))
                                       + "not json\n")
    res = _cli(tmp_path, "chaos", "tests.test_chaos:chain", "-i", "in.jsonl",
               "--faults", "server_error=0.05,malformed=0.05", "--db-dir", "exp",
               "--journal", "j.json", "--max-p99", "30", "--concurrency", "10")
    assert res.returncode == 0, res.stderr + res.stdout
    assert "line 21: invalid JSON" in res.stderr
    for text in ("phases", "steady-state probes", "success-rate", "faults injected",
                 "steady state held in every phase"):
        assert text in res.stdout
    journal = json.loads((tmp_path / "j.json").read_text())
    assert journal["status"] == "completed" and journal["convoy"]["phases"]["during"][
        "sessions"] == 20

    bad = _cli(tmp_path, "chaos", "tests.test_chaos:chain", "-i", "in.jsonl",
               "--faults", "server_eror=0.1")
    assert bad.returncode == 2 and "Did you mean 'server_error'" in bad.stderr

    deviated = _cli(tmp_path, "chaos", "tests.test_chaos:chain", "-i", "in.jsonl",
                    "--faults", "server_error=0.5", "--no-protections", "--db-dir", "exp2")
    assert deviated.returncode == 1 and "DEVIATED" in deviated.stdout
    assert (tmp_path / "exp2" / "journal.json").is_file()

    # A timeout nothing would use is refused, not silently ignored.
    unused = _cli(tmp_path, "chaos", "tests.test_chaos:chain", "-i", "in.jsonl",
                  "--no-protections", "--call-timeout", "5")
    assert unused.returncode == 2, unused.stderr
    assert "--call-timeout is the per-attempt timeout of --protections, which are off " \
        "(--no-protections): leave it out, or add --protections" in unused.stderr


# -- the application's interceptors ------------------------------------------------------

LOADED: list[int] = []


def app_retry() -> list[convoy.Interceptor]:
    """The application's interceptors under test: a retry of its own (each call, a new
    one: each phase gets its own)."""
    from convoy.resilience import Retry, RetryPolicy

    LOADED.append(os.getpid())
    return [Retry(RetryPolicy(max_attempts=8, initial_delay=0.001, max_delay=0.005))]


NOT_A_LIST = 3


def test_an_experiment_runs_the_applications_interceptors(tmp_path: Path) -> None:
    """Faults that fail sessions without protections are ridden out by the application's
    own retry, named MODULE:NAME; protections are off by default then (the application's
    are under test), and each phase loads them anew."""
    LOADED.clear()
    journal = run_experiment(chain, [f"t{i}" for i in range(20)], db_dir=tmp_path,
                             faults="server_error=0.1", concurrency=10,
                             interceptors="tests.test_chaos:app_retry")
    assert journal["status"] == "completed", journal["convoy"]["phases"]
    ext = journal["convoy"]
    assert ext["protections"] is False and ext["interceptors"] == "tests.test_chaos:app_retry"
    assert ext["phases"]["during"]["completed"] == 20 and ext["phases"]["during"]["retries"] > 0
    assert len(LOADED) == 4  # checked once, then one load per phase
    assert "the application's interceptors tests.test_chaos:app_retry" in \
        journal["experiment"]["description"]
    with pytest.raises(convoy.UserError, match=r"interceptors tests\.test_chaos:NOT_A_LIST is "
                       r"an int, not a list of convoy\.Interceptor"):
        run_experiment(chain, ["x"], db_dir=tmp_path / "bad",
                       interceptors="tests.test_chaos:NOT_A_LIST")
    assert not (tmp_path / "bad").exists()  # nothing ran


def test_cli_chaos_takes_the_applications_interceptors_into_a_killed_engine(
        tmp_path: Path) -> None:
    """``--interceptors`` reaches the engine processes a kill starts: the faulty phase's
    sessions, killed and resumed in a new process, complete through the application's
    retry alone (protections off)."""
    (tmp_path / "in.jsonl").write_text("".join(f'"ticket {i}"\n' for i in range(12)))
    res = _cli(tmp_path, "chaos", "tests.test_chaos:chain", "-i", "in.jsonl",
               "--faults", "server_error=0.1", "--interceptors", "tests.test_chaos:app_retry",
               "--kill-after-sessions", "4", "--concurrency", "2", "--db-dir", "exp")
    said = " ".join(res.stdout.split())
    assert res.returncode == 0, res.stderr + res.stdout
    assert "protections off · interceptors tests.test_chaos:app_retry" in said, said
    # (faults are counted in both engine processes, retries in the resumed one only)
    assert "(those of the resumed engine process only: the SIGKILLed one's counters are " \
        "lost with it, while its faults are counted)" in said, said
    journal = json.loads((tmp_path / "exp" / "journal.json").read_text())
    assert [r["activity"]["name"] for r in journal["run"]] == [
        "run-sessions-with-faults", "sigkill-engine", "resume-engine"]
    assert journal["run"][1]["output"]["killed"] is True
    assert journal["convoy"]["phases"]["during"]["completed"] == 12

    bad = _cli(tmp_path, "chaos", "tests.test_chaos:chain", "-i", "in.jsonl",
               "--interceptors", "tests.test_chaos:nothing_here", "--db-dir", "exp2")
    assert bad.returncode == 2 and "--interceptors: module 'tests.test_chaos' has no " \
        "attribute 'nothing_here'" in " ".join(bad.stderr.split()), bad.stderr
    assert not (tmp_path / "exp2").exists()


APP_LIST = [__import__("convoy.resilience", fromlist=["Retry"]).Retry(
    __import__("convoy.resilience", fromlist=["RetryPolicy"]).RetryPolicy(
        max_attempts=8, initial_delay=0.001, max_delay=0.005))]


def noisy_retry() -> list[convoy.Interceptor]:
    """An application's interceptors whose loading prints (to standard output)."""
    print("loading the application's interceptors")
    return app_retry()


def test_a_list_of_interceptors_counts_each_phase_apart(tmp_path: Path) -> None:
    """A list is the same objects in every phase one process runs: each phase's counters
    are its own (the after phase, with no fault, reported the faulty phase's retries)."""
    APP_LIST[0].retries = 0
    journal = run_experiment(chain, [f"t{i}" for i in range(20)], db_dir=tmp_path,
                             faults="server_error=0.1", concurrency=10,
                             interceptors="tests.test_chaos:APP_LIST")
    phases = journal["convoy"]["phases"]
    assert phases["during"]["retries"] > 0, phases
    assert phases["before"]["retries"] == 0 and phases["after"]["retries"] == 0, phases
    # (and the experiment says the phases share them, state and all)
    assert any("are a list: the phases this process runs share them and their state" in w
               for w in journal["convoy"]["warnings"]), journal["convoy"]["warnings"]


def test_interceptors_are_named_not_given(tmp_path: Path) -> None:
    """Each phase loads them in its own process: a list or a function given in Python is
    refused in one line (an AttributeError before), as is __main__ with a kill."""
    for given in (APP_LIST, app_retry, 3):
        with pytest.raises(convoy.UserError, match="interceptors: give them as "
                           "'MODULE:NAME'"):
            run_experiment(chain, ["x"], db_dir=tmp_path / "a",
                           interceptors=given)  # type: ignore[arg-type]
    with pytest.raises(convoy.UserError, match="must be importable from a new process"):
        run_experiment(chain, ["x", "y"], db_dir=tmp_path / "b", kill_after_sessions=1,
                       interceptors="__main__:anything")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_interceptors_that_print_do_not_abort_a_kill(tmp_path: Path) -> None:
    """What the application's code prints in an engine process a kill starts goes to its
    standard error: its standard output carries the parent's 'ready' alone (the
    experiment aborted: 'printed ... instead of ready')."""
    journal = run_experiment(chain, [f"t{i}" for i in range(8)], db_dir=tmp_path,
                             faults="server_error=0.1", concurrency=2,
                             kill_after_sessions=3, interceptors="tests.test_chaos:noisy_retry")
    assert journal["status"] == "completed", journal["run"]
    assert [r["activity"]["name"] for r in journal["run"]] == [
        "run-sessions-with-faults", "sigkill-engine", "resume-engine"]


def test_an_engine_process_starts_without_a_runpy_warning(tmp_path: Path) -> None:
    """An engine process's standard error is what a chaos error shows of it: it began with
    runpy's RuntimeWarning ('convoy.chaos._worker' found in sys.modules ...), the package
    importing the module ``-m`` then ran again, before the process's own one line."""
    from convoy.chaos._process import start_worker

    (tmp_path / "phase.json").write_text("{}")  # (no phase: it stops at once, exit 2)
    w = start_worker(tmp_path / "phase.json", tmp_path / "engine.log")
    assert w.reap() == 2
    said = (tmp_path / "engine.log").read_text()
    assert said.startswith("error: cannot read the phase config ") and \
        said.count("\n") == 1, said  # (one line: no warning, no traceback)


@pytest.mark.parametrize("how", ["option", "env"])
def test_chaos_takes_the_tenant_as_every_command_does(tmp_path: Path, how: str) -> None:
    """``-t NAME`` or ``$CONVOY_TENANT``, as the other commands take it (it took
    ``--tenant`` only, and ignored the variable)."""
    (tmp_path / "in.jsonl").write_text('"a"\n"b"\n')
    args = ["chaos", "tests.test_chaos:chain", "-i", "in.jsonl", "--faults", "slow=0.1:0",
            "--db-dir", "exp"]
    res = _cli(tmp_path, *args, *(["-t", "acme"] if how == "option" else []),
               env={"CONVOY_TENANT": "acme"} if how == "env" else None)
    assert res.returncode == 0, res.stderr + res.stdout

    async def counts() -> tuple[dict[str, int], dict[str, int]]:
        store = SQLiteStore(tmp_path / "exp" / "before.db")
        await store.open()
        try:
            return await store.counts(tenant="acme"), await store.counts(tenant="default")
        finally:
            await store.aclose()

    acme, default = asyncio.run(counts())
    assert sum(acme.values()) == 2 and not sum(default.values()), (acme, default)
