"""The ``convoy`` CLI: in-process with Typer's ``CliRunner`` (fast), plus a few real
subprocess smoke tests (``python -m convoy.cli``)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import convoy
from convoy.cli import _common as common
from convoy.cli import app
from convoy.cli._common import convoy_errors, reportable
from convoy.cli._render import fmt_time
from convoy.stores import SCHEMA_VERSION
from tests.clikit import (
    FLOW,
    GOOD,
    SRC,
    STOPS,
    Background,
    Res,
    background_fixture,  # noqa: F401  (the background fixture)
    cli,
    ids_of,
    journal,
    no_row,
    one_line_error,
    run_ok,
    session,
    session_ids,
    sessions,
    subprocess_cli,
    subprocess_env,
    summary,
    tamper,
    workdir,  # noqa: F401  (autouse fixture)
    write_jsonl,
)
from tests.fakeclock import FakeClock

T0 = 1_800_000_000.0  # the fake clock's start: a fixed instant, never today's date

# -- help and version (and the real console script) ---------------------------------------


COMMANDS = (["run"], ["resume"], ["retry"], ["worker"], ["signal"], ["cancel"], ["replay"],
            ["sessions", "list"], ["sessions", "show"], ["state", "get"], ["state", "set"],
            ["state", "history"], ["state", "list"], ["cost"], ["chaos"], ["db", "migrate"],
            ["db", "info"], ["alerts"])


def test_version_and_help() -> None:
    res = cli("--version")
    assert res.code == 0
    assert res.stdout.strip() == f"convoy 0.1.0 (store schema {SCHEMA_VERSION})"
    top = cli("--help")
    assert top.code == 0
    for command in COMMANDS:
        assert command[0] in top.stdout
    for command in COMMANDS:
        res = cli(*command, "--help")
        assert res.code == 0, res.stderr
        assert "Example" in res.stdout, command
        assert "convoy " + command[0] in res.stdout, command


def test_subprocess_help_and_a_run_end_to_end(tmp_path: Path) -> None:
    res = subprocess_cli(tmp_path, "--help")
    assert res.returncode == 0, res.stderr
    assert "convoy" in res.stdout and "worker" in res.stdout
    write_jsonl(tmp_path / "in.jsonl", GOOD)
    res = subprocess_cli(tmp_path, "run", FLOW, "-i", "in.jsonl")
    assert res.returncode == 0, res.stderr
    assert summary(res.stdout, "completed") == "3"
    assert [r.status for r in sessions(tmp_path / "convoy.db")] == ["completed"] * 3


# -- run -------------------------------------------------------------------------------


def test_run_happy_path() -> None:
    res = run_ok()
    assert summary(res.stdout, "sessions run") == "3"
    assert summary(res.stdout, "completed") == "3"
    assert summary(res.stdout, "failed") == "0"
    assert summary(res.stdout, "invalid input lines") == "0"
    # SimModel usage=(120, 30), two model calls per session.
    assert summary(res.stdout, "tokens in / out") == "720 / 180"
    assert summary(res.stdout, "cost").startswith("$0.")
    assert "ms" in summary(res.stdout, "session latency p50 / p99")
    assert "sessions/s" in summary(res.stdout, "throughput")
    assert session_ids() == sorted(ids_of(GOOD))
    assert "convoy run cli_flows:handle · in.jsonl · convoy.db" in res.stdout
    assert no_row(res.stdout, "waiting (timer, signal or person)")  # nothing left, no rows for it


def test_the_throughput_leaves_out_the_engines_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the engine does as it closes (an exporter retrying a collector that is not
    there, for seconds) is not the sessions' wall time (review s23 F9): a close that takes
    100 s on the summary's clock leaves the wall time as the run's."""
    from convoy.cli import _stats

    class Ticks:
        now = 1000.0

        def perf_counter(self) -> float:
            return self.now

    ticks = Ticks()
    monkeypatch.setattr(_stats, "time", ticks)
    close = convoy.Engine.aclose

    async def slow_close(self: convoy.Engine) -> None:
        ticks.now += 100.0
        await close(self)

    monkeypatch.setattr(convoy.Engine, "aclose", slow_close)
    res = run_ok()
    assert summary(res.stdout, "throughput") == "- (0.0 ms wall)", res.stdout


def test_bad_lines_are_reported_and_skipped() -> None:
    lines: list[object] = [
        GOOD[0],
        '{"subject": "broken", "body": "x",}',     # line 2: malformed JSON
        GOOD[1],
        {"subject": "no body"},                     # line 4: fails validation
        "",                                         # line 5: blank, ignored
        GOOD[2],
    ]
    res = run_ok(lines=lines)
    assert "line 2: invalid JSON: Expecting property name enclosed in double quotes" \
        in res.stderr
    assert "line 4: body: Field required" in res.stderr
    assert "Traceback" not in res.stderr
    assert summary(res.stdout, "completed") == "3"
    assert summary(res.stdout, "invalid input lines") == "2 (lines 2, 4)"
    assert session_ids() == sorted(ids_of(GOOD))


def test_lines_nested_too_deep_are_skipped_in_one_line() -> None:
    deep = "[" * 300 + "]" * 300
    write_jsonl(Path("in.jsonl"), ['"hello"', deep, "[" * 5000 + "]" * 5000])  # raw lines
    res = cli("run", "cli_flows:shout", "-i", "in.jsonl")
    assert res.code == 0, res.stderr
    for line in (2, 3):
        assert f"line {line}: arrays and objects nest more than 200 levels deep" in res.stderr
    assert "Traceback" not in res.stderr
    assert summary(res.stdout, "completed") == "1"


def test_a_line_with_an_integer_too_long_for_python_is_skipped_in_one_line() -> None:
    """Python reads no integer of more than 4300 digits (``sys.get_int_max_str_digits``):
    such a line is reported and skipped like any other bad line; the others run."""
    huge = "1" * 5000
    write_jsonl(Path("in.jsonl"), [GOOD[0], f'{{"subject": "big", "body": "x", "n": {huge}}}',
                                   f"[-{huge}]"])  # raw lines
    res = cli("run", FLOW, "-i", "in.jsonl")
    assert res.code == 0, res.stderr
    for line in (2, 3):
        assert f"line {line}: an integer with more than 4300 digits" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and huge not in res.stderr
    assert summary(res.stdout, "completed") == "1"
    assert summary(res.stdout, "invalid input lines") == "2 (lines 2, 3)"
    assert cli("run", FLOW, "-i", "in.jsonl", "--strict").code == 1


def test_more_failures_than_listed_name_the_command_that_lists_them() -> None:
    """The line after the failures listed named 'sessions list --status STATUS', a
    placeholder a new user ran as it was (a new user's trial): it names their status."""
    write_jsonl(Path("in.jsonl"), [json.dumps(f"no {i}") for i in range(7)])
    ran = cli("run", "cli_flows:boom", "-i", "in.jsonl")
    assert ran.code == 0, ran.stderr
    assert "… and 2 more; see 'convoy sessions list --status failed'" in ran.stdout, \
        ran.stdout
    assert "STATUS" not in ran.stdout


def test_an_error_message_is_shown_escaped_wherever_it_is_printed() -> None:
    """An error's text comes from code or input (a tool's exception, a customer's words):
    'convoy run', 'sessions show' and 'trace' show an ESC sequence or a bidi override in
    it escaped, never send it raw, and read no markup in it."""
    hostile = "\x1b]0;pwned\x07\x1b[2J\u202eX [bold]Y[/bold]"
    write_jsonl(Path("in.jsonl"), [json.dumps(hostile)])
    ran = cli("run", "cli_flows:boom", "-i", "in.jsonl", "--trace", "store")
    assert ran.code == 0, ran.stderr
    (sid,) = session_ids()
    for res in (ran, cli("sessions", "show", sid), cli("trace", sid)):
        assert res.code == 0, res.stderr
        text = res.stdout + res.stderr
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, text
        assert "\\x1b[2J" in text and "[bold]Y[/bold]" in text, text


def test_str_input_workflow_validation() -> None:
    write_jsonl(Path("in.jsonl"), ['"hello"', "42", '"world"'])  # raw lines
    res = cli("run", "cli_flows:shout", "-i", "in.jsonl")
    assert res.code == 0, res.stderr
    assert "line 2: (input): Input should be a valid string" in res.stderr
    assert summary(res.stdout, "completed") == "2"


def test_failed_sessions_counted_by_reason_exit_zero() -> None:
    res = run_ok(lines=[GOOD[0], {"subject": "explode", "body": "!"}])
    assert summary(res.stdout, "completed") == "1"
    assert summary(res.stdout, "failed") == "1"
    assert "the ticket asked to explode" in res.stdout
    failed = ids_of([{"subject": "explode", "body": "!"}])[0]
    assert f"details: convoy sessions show {failed}" in res.stdout  # (the one failure)


def test_a_module_whose_dependency_is_missing_says_so() -> None:
    """A module found whose own import of another fails: the line names the missing
    dependency to install (it said to run from the module's directory or fix PYTHONPATH,
    where the module already was), for a workflow, a worker's module and --interceptors."""
    write_jsonl(Path("in.jsonl"), GOOD)
    Path("needs_dep.py").write_text("import convoy_missing_dependency_xyz  # noqa\n")
    said = "failed: a module it imports, 'convoy_missing_dependency_xyz', cannot be " \
        "found: install it"
    for args in (("run", "needs_dep:flow", "-i", "in.jsonl"), ("worker", "needs_dep"),
                 ("run", FLOW, "-i", "in.jsonl", "--interceptors", "needs_dep:ics")):
        res = cli(*args)
        one_line_error(res, 2, said)
        assert "importing module 'needs_dep'" in res.stderr, res.stderr
    # a missing module of a package that is there: not "install it"; a name a module
    # does not have: the import that failed, not where to look for the module (review)
    Path("needs_sub.py").write_text("import json.no_such_part  # noqa\n")
    one_line_error(cli("worker", "needs_sub"), 2, "a module it imports, "
                   "'json.no_such_part', cannot be found ('json' is there, without it): "
                   "check the name, or install what provides it")
    # (a namespace package, whose parts are installed apart: not only "check the name")
    Path("nsparts").mkdir()
    Path("needs_part.py").write_text("import nsparts.storage  # noqa\n")
    one_line_error(cli("worker", "needs_part"), 2, "'nsparts.storage', cannot be found "
                   "('nsparts' is there, without it): check the name, or install what "
                   "provides it (a namespace package's parts are installed apart)")
    Path("needs_name.py").write_text("from os import no_such_name  # noqa\n")
    res = cli("worker", "needs_name")
    one_line_error(res, 2, "importing module 'needs_name' failed: ImportError: cannot "
                   "import name 'no_such_name'")
    assert "PYTHONPATH" not in res.stderr, res.stderr


def test_unknown_module_is_a_usage_error() -> None:
    write_jsonl(Path("in.jsonl"), GOOD)
    one_line_error(cli("run", "no_such_module:flow", "-i", "in.jsonl"), 2,
                   "cannot import module 'no_such_module'")
    res = cli("run", "cli_flows:nothing", "-i", "in.jsonl")
    assert res.code == 2
    assert "has no attribute 'nothing'; workflows it defines: cli_flows:approval, " \
        "cli_flows:boom, cli_flows:charge, cli_flows:handle, cli_flows:held, " \
        "cli_flows:locker, cli_flows:nap, cli_flows:one_effect, " \
        "cli_flows:pay_after_failing, cli_flows:shout" in res.stderr
    # An explicit name typed as the attribute: the reference that names it
    res = cli("run", "audited_flows:cli.audited", "-i", "in.jsonl")
    one_line_error(res, 2, "'cli.audited' is the explicit name of audited_flows:")
    assert "name it as 'audited_flows:" in res.stderr, res.stderr
    # A module without ':WORKFLOW': the hint is how 'convoy run' names a workflow.
    res = cli("run", "cli_flows", "-i", "in.jsonl")
    one_line_error(res, 2, "'cli_flows' is a module; name one of its workflows as "
                   "MODULE:WORKFLOW: cli_flows:approval, ")
    assert "convoy resume" not in res.stderr
    one_line_error(cli("run", "desk.nowhere", "-i", "in.jsonl"), 2,
                   "workflow 'desk.nowhere' is not a MODULE:WORKFLOW reference")


def test_missing_input_file_is_a_usage_error() -> None:
    res = cli("run", FLOW, "--input", "missing.jsonl")
    assert res.code == 2
    assert res.stderr.strip() == ("error: input file 'missing.jsonl' does not exist (- reads "
                                  "standard input)")
    assert not Path("convoy.db").exists()


def test_inputs_come_from_standard_input_or_a_pipe(tmp_path: Path) -> None:
    """``jq ... | convoy run WF -i -``; a named pipe or ``<(...)`` reads as a file does."""
    lines = "".join(json.dumps(x) + "\n" for x in GOOD[:2])
    res = CliRunner().invoke(app, ["run", FLOW, "-i", "-"], input=lines)
    assert res.exit_code == 0, res.stderr
    assert summary(res.stdout, "sessions run") == "2"
    os.mkfifo(tmp_path / "pipe")
    writer = threading.Thread(target=(tmp_path / "pipe").write_text, args=(lines,))
    writer.start()
    res2 = cli("run", FLOW, "-i", "pipe", "--db", "piped.db")
    writer.join()
    assert res2.code == 0, res2.stderr
    assert summary(res2.stdout, "sessions run") == "2"
    one_line_error(cli("run", FLOW, "-i", str(tmp_path)), 2, "is a directory")


def test_bad_model_is_a_usage_error() -> None:
    write_jsonl(Path("in.jsonl"), GOOD)
    res = cli("run", FLOW, "-i", "in.jsonl", "--model", "simm:")
    one_line_error(res, 2, "unknown model provider 'simm'")
    assert "Did you mean 'sim:'?" in res.stderr


def test_model_override_and_db_from_env() -> None:
    write_jsonl(Path("in.jsonl"), GOOD[:2])
    res = cli("run", FLOW, "-i", "in.jsonl", "--model", "sim:", "-c", "1",
              env={"CONVOY_DB": "elsewhere.db"})
    assert res.code == 0, res.stderr
    assert summary(res.stdout, "completed") == "2"
    assert Path("elsewhere.db").exists()
    assert not Path("convoy.db").exists()


def test_a_db_path_from_the_environment_has_its_tilde_expanded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``CONVOY_DB=~/app.db`` in a unit file or a ``.env``, where no shell expands it: the
    store is in the home directory (as ``$CONVOY_MASTER_KEY_FILE``'s ``~`` is)."""
    home = Path("home").resolve()
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    write_jsonl(Path("in.jsonl"), GOOD[:1])
    res = cli("run", FLOW, "-i", "in.jsonl", env={"CONVOY_DB": "~/app.db"})
    assert res.code == 0, res.stderr
    assert (home / "app.db").exists() and not Path("~").exists()
    shown = cli("sessions", "list", env={"CONVOY_DB": "~/app.db"})
    assert shown.code == 0 and "completed: 1" in shown.stdout, shown
    # ``~NAME`` of no user is a name, as a shell leaves it (a store named so before)
    res = cli("run", FLOW, "-i", "in.jsonl", "--db", "~no-such-user-here.db")
    assert res.code == 0 and Path("~no-such-user-here.db").exists(), res.stderr


# -- idempotent re-runs and the version policy -------------------------------------------


def test_rerun_does_not_duplicate_sessions() -> None:
    first = run_ok()
    ids = session_ids()
    again = run_ok()
    assert session_ids() == ids
    assert summary(again.stdout, "sessions run") == "0"
    assert summary(again.stdout, "already finished") == "3 (not re-run: completed 3)"
    assert summary(first.stdout, "cost") != summary(again.stdout, "cost") == "$0"


def test_rerun_resumes_unfinished_sessions() -> None:
    run_ok()
    victim = ids_of(GOOD)[1]
    before = session(victim).output
    # As if the process died before the last step.
    tamper("UPDATE sessions SET status='running', output=NULL, owner=NULL WHERE id=?", victim)
    tamper("DELETE FROM journal WHERE session_id=? AND key='0/2'", victim)
    res = run_ok()
    assert summary(res.stdout, "sessions run") == "1"
    assert summary(res.stdout, "completed") == "1"
    assert summary(res.stdout, "already finished") == "2 (not re-run: completed 2)"
    after = session(victim)
    assert (after.status, after.output) == ("completed", before)
    assert len(journal(victim)) == 3
    assert len(session_ids()) == 3


def test_run_leaves_other_versions_and_other_engines_alone() -> None:
    """One version policy: a session started on another version is left unfinished (never
    failed); one that journaled nothing moves to this version; a session another live
    engine owns is skipped and named."""
    run_ok()
    old, fresh, owned = ids_of(GOOD)
    tamper("UPDATE sessions SET status='pending', output=NULL, version='0' WHERE id=?", old)
    tamper("DELETE FROM journal WHERE session_id=? AND key='0/2'", old)
    tamper("UPDATE sessions SET status='pending', output=NULL, version='0' WHERE id=?", fresh)
    tamper("DELETE FROM journal WHERE session_id=?", fresh)
    tamper("UPDATE sessions SET status='running', output=NULL, owner='elsewhere:1:e1', "
           "lease_until=? WHERE id=?", 4e9, owned)
    res = run_ok()
    assert summary(res.stdout, "sessions run") == "1"
    assert summary(res.stdout, "completed") == "1"
    assert summary(res.stdout, "other workflow version") == "1"
    assert summary(res.stdout, "owned by another engine") == "1"
    assert f"session {old!r} started on version '0' of workflow 'cli_flows:handle'" \
        in res.stderr
    assert f"session {owned} is running on another engine; left to it" in res.stderr
    assert (session(old).status, session(old).version) == ("pending", "0")
    assert (session(fresh).status, session(fresh).version) == ("completed", "1")
    assert session(owned).status == "running"

    res = cli("resume")
    assert res.code == 0, res.stderr
    assert summary(res.stdout, "sessions run") == "0"
    assert summary(res.stdout, "other workflow version") == "1"
    assert summary(res.stdout, "owned by another engine") == "1"
    assert session(old).status == "pending"


def test_a_grown_file_runs_only_its_new_lines() -> None:
    run_ok()
    res = run_ok(lines=[*GOOD, {"subject": "new", "body": "one more"}])
    assert summary(res.stdout, "sessions run") == "1"
    assert len(session_ids()) == 4


# -- resume ----------------------------------------------------------------------------


def test_resume_finishes_pending_sessions() -> None:
    run_ok()
    tamper("UPDATE sessions SET status='pending', output=NULL")
    tamper("DELETE FROM journal")
    res = cli("resume", "--concurrency", "2")
    assert res.code == 0, res.stderr
    assert summary(res.stdout, "sessions run") == "3"
    assert summary(res.stdout, "completed") == "3"
    res = cli("resume")
    assert res.code == 0
    assert "nothing to resume" in res.stdout


def test_resume_imports_modules_for_explicitly_named_workflows(tmp_path: Path) -> None:
    run_ok()  # sessions of a workflow that imports here: a missing one must not hold them
    Path("named_flows.py").write_text(
        "import convoy\n\n\n@convoy.workflow(name='desk.echo')\n"
        "async def echo(ctx: convoy.Context, text: str) -> str:\n    return text * 2\n")
    # Started (and left unfinished) by another process, which had imported the module.
    start = ("import convoy, named_flows\n"
             "e = convoy.Engine('convoy.db')\n"
             "print(e.run_sync(named_flows.echo, 'hi').id)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(SRC)])}
    proc = subprocess.run([sys.executable, "-c", start], cwd=tmp_path, env=env, check=True,
                          capture_output=True, text=True, timeout=60)
    sid = proc.stdout.strip()
    tamper("UPDATE sessions SET status='pending', output=NULL")
    res = cli("resume")
    # The others ran; the one whose workflow nothing here defines is one line, exit 1.
    one_line_error(res, 1, "cannot resume 1 session of workflow 'desk.echo'")
    assert "convoy resume --import MODULE" in res.stderr
    assert summary(res.stdout, "completed") == "3"
    assert summary(res.stdout, "workflow not loaded here") == "1"
    assert session(sid).status == "pending"
    res = cli("resume", "--import", "named_flows")
    assert res.code == 0, res.stderr
    assert summary(res.stdout, "completed") == "1"
    assert session(sid).output == '"hihi"'
    one_line_error(cli("resume", "--import", "no_such_mod"), 2,
                   "cannot import module 'no_such_mod'")


def test_commands_need_an_existing_store() -> None:
    for args in (["resume"], ["replay", "x"], ["sessions", "list"], ["sessions", "show", "x"],
                 ["signal", "x", "go"], ["cancel", "x"], ["cost"]):
        res = cli(*args, "--db", "absent.db")
        assert res.code == 2, args
        assert "no Convoy store at 'absent.db'" in res.stderr
    assert not Path("absent.db").exists()


# -- waiting sessions: signal, worker, cancel, escalation ----------------------------------


def test_signal_and_worker_complete_a_waiting_session() -> None:
    res = run_ok(lines=['"order 1"', '"order 2"', '"order 3"'], flow="cli_flows:approval")
    assert summary(res.stdout, "sessions run") == "3"
    assert summary(res.stdout, "completed") == "0"
    assert summary(res.stdout, "waiting (timer, signal or person)") == "3"
    first, second, third = ids_of(['"order 1"', '"order 2"', '"order 3"'],
                                  "cli_flows:approval")
    assert {r.status for r in sessions()} == {"waiting"}

    listed = cli("sessions", "list", "--status", "waiting")
    assert listed.code == 0
    assert "signal 'approve'" in listed.stdout
    shown = cli("sessions", "show", first)
    assert "waits for signal" in shown.stdout and "approve" in shown.stdout
    assert f"convoy signal {first} approve --payload JSON" in shown.stdout

    # A re-run leaves them waiting: nothing to run until a signal arrives.
    again = run_ok(lines=['"order 1"', '"order 2"', '"order 3"'], flow="cli_flows:approval")
    assert summary(again.stdout, "sessions run") == "0"
    assert summary(again.stdout, "waiting (timer, signal or person)") == "3"

    # --by names who answers an escalation: a plain signal records none, and refuses one
    # typed (a review: refused by comparing with $CONVOY_USER, so '--by bob' passed where
    # $CONVOY_USER was bob); $CONVOY_USER alone is a default, not a request
    for env in (None, {"CONVOY_USER": "bob"}):
        one_line_error(cli("signal", first, "approve", "-p", "true", "--by", "bob", env=env),
                       2, "records no decider")
    assert session(first).status == "waiting"
    res = cli("signal", first, "approve", "--payload", "true", env={"CONVOY_USER": "bob"})
    assert res.code == 0, res.stderr
    assert f"sent signal 'approve' to session {first}" in res.stdout
    assert session(first).status == "pending"

    res = cli("worker", "cli_flows", "--until-idle", "--poll-interval", "0.05")
    assert res.code == 0, res.stderr
    assert first in res.stdout and "completed" in res.stdout
    assert "left unfinished: waiting 2" in res.stdout
    assert session(first).output == '"order 1: approved"'

    # The same with 'convoy resume', and a rejection.
    assert cli("signal", second, "approve", "-p", "false").code == 0
    res = cli("resume")
    assert res.code == 0, res.stderr
    assert summary(res.stdout, "sessions run") == "1"
    assert summary(res.stdout, "completed") == "1"
    assert summary(res.stdout, "waiting (timer, signal or person)") == "1"
    assert session(second).output == '"order 2: rejected"'

    res = cli("cancel", third)
    assert res.code == 0, res.stderr
    assert f"cancelled session {third}" in res.stdout
    assert session(third).status == "cancelled"
    one_line_error(cli("cancel", third), 2, f"session {third!r} is already cancelled")
    one_line_error(cli("signal", third, "approve"), 2, "signals go to unfinished sessions")


def test_worker_wakes_a_session_whose_timer_is_due(monkeypatch: pytest.MonkeyPatch) -> None:
    # One fake clock for every store the commands open: the timer is not due when `resume`
    # looks, then the clock passes it and the worker wakes the session, with no waiting
    # and whatever the machine's speed.
    clock = FakeClock(T0)
    real = common.store_from_url
    monkeypatch.setattr(common, "store_from_url",
                        lambda *a, **kw: real(*a, **{**kw, "clock": clock}))
    res = run_ok(lines=["8"], flow="cli_flows:nap")
    assert summary(res.stdout, "waiting (timer, signal or person)") == "1"
    (sid,) = session_ids()
    row = session(sid)
    assert row.status == "waiting" and row.wait_name is None
    assert row.wake_at == T0 + 8
    shown = cli("sessions", "show", sid)
    assert "wakes at" in shown.stdout and "waiting for its timer" in shown.stdout
    clock.advance(7.9)
    not_due = cli("resume")
    assert summary(not_due.stdout, "sessions run") == "0"
    assert summary(not_due.stdout, "waiting (timer, signal or person)") == "1"
    clock.advance(0.1)
    # --import names the module as 'convoy resume --import' does (or as an argument)
    res = cli("worker", "--import", "cli_flows", "--until-idle", "--poll-interval", "0.05")
    assert res.code == 0, res.stderr
    assert "left unfinished: none" in res.stdout
    assert session(sid).output == '"rested"'


def test_worker_until_idle_says_it_waits_for_a_timer(background: Callable[..., Background],
                                                      ) -> None:
    """A session asleep for an hour keeps 'convoy worker --until-idle' from being idle:
    it says so, in one line, instead of waiting the hour in silence (in CI, a hang)."""
    run_ok(lines=["3600"], flow="cli_flows:nap")
    (sid,) = session_ids()
    worker = background("worker", "cli_flows", "--until-idle", "--poll-interval", "0.01")
    line = worker.wait_for_line("waiting for")
    # (The session's own wake time, and minutes left whatever they are: a slow machine
    # may start the worker a minute later.)
    assert line.startswith("waiting for 1 session's timer, due at "
                           f"{fmt_time(session(sid).wake_at)} (in "), line
    assert re.search(r"\(in \d+ min\); Ctrl-C", line), line
    # What runs it later names the module, as 'convoy resume' needs it for a workflow
    # with an explicit name (a resume without it would not load the workflow)
    assert "'convoy worker cli_flows' or 'convoy resume --import cli_flows'" in line, line
    res = worker.stop()
    assert res.code == 130, res.stderr
    assert res.stderr.count("waiting for") == 1, res.stderr  # one line, not one a poll
    assert "next worker or 'convoy resume --import cli_flows'" in res.stderr, res.stderr


def test_worker_until_idle_says_what_keeps_it_from_being_idle_besides_timers(
        background: Callable[..., Background]) -> None:
    """A session another live engine runs (under a lease far from lapsing) keeps the
    worker from being idle: one line says so, not one a poll, and not a timer's."""
    import time

    run_ok(lines=GOOD[:1])
    (sid,) = session_ids()
    tamper("UPDATE sessions SET status='running', output=NULL, finished=NULL, "
           "owner='elsewhere:1:e1', lease_until=? WHERE id=?", time.time() + 3600, sid)
    worker = background("worker", "cli_flows", "--until-idle", "--poll-interval", "0.01")
    line = worker.wait_for_line("waiting for")
    assert line.startswith("waiting for 1 session this worker cannot run now (running 1: "
                           "another engine runs them"), line
    res = worker.stop()
    assert res.code == 130, res.stderr
    assert res.stderr.count("waiting for") == 1, res.stderr
    assert "timer" not in res.stderr


class Ticking(FakeClock):
    """A fake clock that moves a second each time it is read once ``on``: a worker that
    polls sees its timers come due, however fast the machine is."""

    on = False

    def __call__(self) -> float:
        if self.on:
            self.t += 1
        return self.t


def test_worker_until_idle_says_again_only_when_the_next_timer_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Ticking(T0)
    real = common.store_from_url
    monkeypatch.setattr(common, "store_from_url",
                        lambda *a, **kw: real(*a, **{**kw, "clock": clock}))
    run_ok(lines=["30", "90"], flow="cli_flows:nap")
    clock.on = True
    res = cli("worker", "cli_flows", "--until-idle", "--poll-interval", "0.01")
    assert res.code == 0, res.stderr
    lines = [x for x in res.stderr.splitlines() if x.startswith("waiting for")]
    assert len(lines) == 2, res.stderr
    assert lines[0].startswith("waiting for 2 sessions' timers, the next due at "), lines
    assert lines[1].startswith("waiting for 1 session's timer, due at "), lines
    assert "left unfinished: none" in res.stdout


def test_worker_help_says_timers_are_waited_for() -> None:
    res = cli("worker", "--help")
    assert res.code == 0
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", res.stdout).split())
    assert "waiting for a timer" in text and "are waited for" in text, text


def test_a_signal_the_wait_refuses_is_one_warning_line_and_the_session_waits(
        workdir: Path) -> None:  # noqa: F811
    """The real command: 'convoy resume' says on stderr, in one 'warning:' line, that the
    session refused the signal, and the session still waits for a valid one."""
    run_ok(lines=['"order 1"'], flow="cli_flows:approval")
    (sid,) = session_ids()
    assert cli("signal", sid, "approve", "--payload", '"maybe"').code == 0
    res = subprocess_cli(workdir, "resume", "--import", "cli_flows")
    assert res.returncode == 0, res.stderr
    [line] = [x for x in res.stderr.splitlines() if "refused" in x]
    assert line.startswith(f"warning: session '{sid}' refused signal 'approve' (sent at ")
    assert line.endswith("1 error (bool_parsing); the session still waits for a valid one")
    assert "maybe" not in res.stderr
    assert session(sid).status == "waiting"
    # An application that configures logging itself gets the warning in its own
    # handlers, once, not twice.
    assert cli("signal", sid, "approve", "--payload", "1.5").code == 0
    res = subprocess_cli(workdir, "resume", "--import", "logging_flows")
    assert res.returncode == 0, res.stderr
    [line] = [x for x in res.stderr.splitlines() if "refused" in x]
    assert line.startswith(f"app WARNING convoy: session '{sid}' refused signal"), line
    assert cli("signal", sid, "approve", "--payload", "true").code == 0
    assert cli("resume", "--import", "cli_flows").code == 0
    assert session(sid).output == '"order 1: approved"'


def test_sessions_show_says_which_signals_wait_and_which_were_refused(
        workdir: Path) -> None:  # noqa: F811
    """'sessions show' of a waiting session says what a person needs after sending it a
    signal: that a signal is queued for it (no engine has run it since), and that the
    session refused signals (how many, when the last was sent, why: the error kinds,
    never the payload), which outlives the warning of the process that ran it."""
    run_ok(lines=['"order 1"'], flow="cli_flows:approval")
    (sid,) = session_ids()
    assert cli("signal", sid, "approve", "--payload", '"maybe"').code == 0
    shown = cli("sessions", "show", sid)
    assert shown.code == 0, shown.stderr
    assert "signal queued" in shown.stdout and "sent at " in shown.stdout
    assert "refused" not in shown.stdout
    data = json.loads(cli("sessions", "show", sid, "--json").stdout)
    assert data["signal_queued"] is not None and data["signals_refused"] is None
    assert cli("resume", "--import", "cli_flows").code == 0
    assert cli("signal", sid, "approve", "--payload", '{"secret": "alice@example.com"}'
               ).code == 0
    assert cli("resume", "--import", "cli_flows").code == 0
    shown = cli("sessions", "show", sid)
    assert shown.code == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert "signal queued" not in text
    assert "signals refused 2 (the last sent at " in text, text
    assert "1 error (bool_type)" in text, text
    assert "alice" not in shown.stdout and "maybe" not in shown.stdout
    data = json.loads(cli("sessions", "show", sid, "--json").stdout)
    assert data["signal_queued"] is None
    refused = data["signals_refused"]
    assert refused["count"] == 2 and refused["last_why"] == "1 error (bool_type)"
    assert isinstance(refused["last_sent_at"], float)
    assert cli("signal", sid, "approve", "--payload", "true").code == 0
    assert cli("resume", "--import", "cli_flows").code == 0
    assert session(sid).output == '"order 1: approved"'


def test_a_session_waiting_for_several_signals_shows_each_and_wakes_for_any(
        workdir: Path) -> None:  # noqa: F811
    """A gather's branches wait for different signals: the listing, ``show`` (its lines
    and ``--json``) and a wrong name's warning name every one, with the command for each;
    either signal wakes it (a worker then runs it: the other branch waits again)."""
    run_ok(lines=['"order 1"'], flow="cli_flows:two_approvals")
    (sid,) = session_ids()
    listed = cli("sessions", "list", "--status", "waiting")
    assert "signal 'legal' or signal 'finance'" in " ".join(listed.stdout.split())
    shown = cli("sessions", "show", sid)
    lines = " ".join(shown.stdout.split())
    assert "waits for signal 'legal'" in lines and "waits for signal 'finance'" in lines
    assert ("waiting for any of 2 signals (one wakes it): convoy signal "
            f"{sid} legal --payload JSON or convoy signal {sid} finance --payload JSON") \
        in lines, shown.stdout
    data = json.loads(cli("sessions", "show", sid, "--json").stdout)
    assert data["wait_names"] == ["legal", "finance"] and data["wait_name"] == "legal"
    res = cli("signal", sid, "legl", "--payload", "true")
    assert res.code == 0, res.stderr
    assert res.stderr.strip() == (
        f"warning: session {sid} waits for signal 'legal' or signal 'finance', not a signal "
        "'legl': this one does not wake it (it is kept for a wait of that name); to "
        f"continue it: convoy signal {sid} legal --payload JSON or convoy signal {sid} "
        "finance --payload JSON"), res.stderr
    res = cli("signal", sid, "finance", "--payload", "true")
    assert res.code == 0 and res.stderr == "", res.stderr
    assert session(sid).status == "pending"
    res = cli("worker", "--import", "cli_flows", "--until-idle")
    assert res.code == 0, res.stderr
    assert f"{sid}  waiting  waits for signal 'legal'" in res.stdout, res.stdout
    row = session(sid)
    assert row.status == "waiting" and row.wait_names == ("legal",), row
    assert cli("signal", sid, "legal", "--payload", "true").code == 0
    assert cli("resume", "--import", "cli_flows").code == 0
    assert session(sid).output == '"order 1: approved"'


def test_a_signal_the_session_does_not_wait_for_is_sent_with_a_warning(
        workdir: Path) -> None:  # noqa: F811
    """The bug: 'convoy signal SESSION aprove' to a session waiting for 'approve' exited 0
    saying a worker or a resume continues it, and nothing did. A signal is kept for a
    later wait of its name, so it is still sent; one 'warning:' line names the signal the
    session waits for, and the line on stdout no longer says it continues."""
    run_ok(lines=['"order 1"'], flow="cli_flows:approval")
    (sid,) = session_ids()
    res = cli("signal", sid, "aprove", "--payload", "true")
    assert res.code == 0, res.stderr
    assert res.stderr.strip() == (
        f"warning: session {sid} waits for signal 'approve', not 'aprove': this one does not "
        "wake it (it is kept for a wait of that name); to continue it: convoy signal "
        f"{sid} approve --payload JSON"), res.stderr
    assert " ".join(res.stdout.split()) == \
        f"sent signal 'aprove' to session {sid} (kept until it waits for that signal)"
    assert session(sid).status == "waiting"
    res = cli("signal", sid, "approve", "--payload", "true")  # the right one: no warning
    assert res.code == 0 and res.stderr == "", res.stderr
    assert "continues it" in res.stdout
    assert cli("resume", "--import", "cli_flows").code == 0
    assert session(sid).output == '"order 1: approved"'


def test_a_signal_payload_can_come_from_a_file_or_stdin(workdir: Path) -> None:  # noqa: F811
    run_ok(lines=['"order 1"', '"order 2"'], flow="cli_flows:approval")
    first, second = ids_of(['"order 1"', '"order 2"'], "cli_flows:approval")
    Path("yes.json").write_text("true\n")
    assert cli("signal", first, "approve", "--payload-file", "yes.json").code == 0
    piped = subprocess.run([sys.executable, "-m", "convoy.cli", "signal", second, "approve",
                            "--payload-file", "-"], input="false", cwd=workdir,
                           env=subprocess_env(), capture_output=True, text=True, timeout=120,
                           check=False)
    assert piped.returncode == 0, piped.stderr
    assert cli("resume", "--import", "cli_flows").code == 0
    assert session(first).output == '"order 1: approved"'
    assert session(second).output == '"order 2: rejected"'
    # one line for each way it can be wrong
    Path("bad.json").write_bytes(b"\xff")
    Path("nan.json").write_text("NaN")
    for args, said in (
            (("--payload-file", "missing.json"), "--payload-file 'missing.json': No such file"),
            (("--payload-file", "."), "--payload-file '.' is a directory; name a file"),
            (("--payload-file", "bad.json"), "--payload-file 'bad.json' is not UTF-8 text"),
            (("--payload-file", "nan.json"), "--payload-file is not JSON: NaN"),
            (("--payload-file", "yes.json", "-p", "true"), "give the signal's value once")):
        one_line_error(cli("signal", first, "approve", *args), 2, said)


def test_signal_errors_are_one_line() -> None:
    run_ok(lines=['"order 1"'], flow="cli_flows:approval")
    (sid,) = session_ids()
    one_line_error(cli("signal", sid, "approve", "--payload", "{yes"), 2,
                   "--payload is not JSON")
    # the quoting hint only for what reads as a bare word, not for broken JSON
    assert "quote strings" not in cli("signal", sid, "approve", "--payload",
                                      '{"approve": true').stderr
    assert "quote strings: " in cli("signal", sid, "approve", "--payload", "yes").stderr
    # nested past what the store keeps (past what Python's decoder reads, too), NaN
    for depth in (300, 5000):
        one_line_error(cli("signal", sid, "approve", "--payload", "[" * depth + "]" * depth),
                       2, "--payload: arrays and objects nest more than 200 levels deep")
    # a byte that is not UTF-8 (Python keeps it as a lone surrogate), and a JSON escape
    one_line_error(cli("signal", sid, "approve", "--payload", '"\udced"'), 2,
                   "--payload is not UTF-8 text: it holds the byte 0xed; give it in UTF-8")
    one_line_error(cli("signal", sid, "approve", "--payload", '"\\ud800"'), 2,
                   "--payload: a lone surrogate \\ud800 cannot be stored")
    one_line_error(cli("signal", sid, "approve", "--payload", "NaN"), 2,
                   "--payload is not JSON: NaN and infinite numbers are not JSON")
    one_line_error(cli("signal", sid, "approve", "--payload", "1e999"), 2,
                   "--payload is not JSON: NaN and infinite numbers are not JSON")
    huge = "1" * 5000  # more digits than Python reads
    one_line_error(cli("signal", sid, "approve", "--payload", f'{{"n": {huge}}}'), 2,
                   "--payload: an integer with more than 4300 digits")
    Path("huge.json").write_text(huge)
    one_line_error(cli("signal", sid, "approve", "--payload-file", "huge.json"), 2,
                   "--payload-file: an integer with more than 4300 digits")
    one_line_error(cli("signal", "nope", "approve"), 2, "no session 'nope'")
    one_line_error(cli("cancel", "nope"), 2, "no session 'nope'")
    assert "'convoy sessions list' shows the ids" in cli("cancel", "nope").stderr
    one_line_error(cli("signal", sid, "convoy.escalation", "--payload", '{"action":"retry"}'),
                   2, "is waiting, not escalated")


def test_worker_usage_errors() -> None:
    one_line_error(cli("worker", "no_such_mod"), 2, "cannot import module 'no_such_mod'")
    one_line_error(cli("worker", "json"), 2, "module 'json' defines no workflow")
    one_line_error(cli("worker"), 2, "name the modules that define the workflows to serve")
    # a bad --db is refused before the modules are imported (their import code not run)
    one_line_error(cli("worker", "cli_import_side_effect", "--db", "no/such/dir/c.db"), 2,
                   "of --db 'no/such/dir/c.db' does not exist")
    assert not Path("imported.txt").exists()


def test_escalation_is_answered_with_a_signal() -> None:
    run_ok(lines=['"o-1"'], flow="cli_flows:charge")
    (sid,) = session_ids()
    # The process died while charging: the step started, its outcome never journaled.
    tamper("UPDATE sessions SET status='pending', output=NULL WHERE id=?", sid)
    tamper("UPDATE journal SET status='started', result=NULL WHERE session_id=?", sid)
    res = cli("resume")
    assert summary(res.stdout, "escalated") == "1"
    assert session(sid).status == "escalated"
    shown = cli("sessions", "show", sid)
    assert "UnknownOutcomeError" in shown.stdout
    assert f"convoy signal {sid} convoy.escalation" in shown.stdout

    one_line_error(cli("signal", sid, "convoy.escalation", "--payload",
                       '{"action": "complete", "reslt": "manual-1"}'), 2,
                   "an answer to an escalation has no key 'reslt'")
    one_line_error(cli("signal", sid, "convoy.escalation", "--payload",
                       '{"action": "complete"}'), 2, "needs a 'result'")
    assert session(sid).status == "escalated"
    # (a review: the payload's "by" is checked as --by is, and one --by contradicts is
    # refused, where it was recorded as it was and won over --by)
    one_line_error(cli("signal", sid, "convoy.escalation", "--payload",
                       '{"action": "retry", "by": "x\\u001b[31mEVIL"}'), 2,
                   "the payload's \"by\" 'x\\x1b[31mEVIL' holds the character")
    one_line_error(cli("signal", sid, "convoy.escalation", "--by", "ann", "--payload",
                       '{"action": "retry", "by": "bob"}'), 2, "name two people")
    one_line_error(cli("signal", sid, "convoy.escalation", "--payload",
                       '{"action": "retry", "by": 7}'), 2, "the payload's \"by\" is int 7")
    assert session(sid).status == "escalated"
    res = cli("signal", sid, "convoy.escalation", "--payload", '{"action": "retry"}')
    assert res.code == 0, res.stderr
    assert f"answered the escalation of session {sid}: retry" in res.stdout
    res = cli("resume")
    assert summary(res.stdout, "completed") == "1"
    assert session(sid).output == '"o-1: charged"'
    one_line_error(cli("signal", sid, "convoy.escalation", "-p", '{"action": "maybe"}'), 2,
                   "not escalated")


# -- store errors: one line, sessions stay unfinished --------------------------------------


def test_store_that_is_not_a_database() -> None:
    write_jsonl(Path("in.jsonl"), GOOD)
    Path("notes.db").write_text("this is not sqlite " * 100)
    one_line_error(cli("run", FLOW, "-i", "in.jsonl", "--db", "notes.db"), 2,
                   "'notes.db' is not a usable Convoy store")
    # and how to fix it: --db names another file (a typo, the wrong directory)
    one_line_error(cli("run", FLOW, "-i", "in.jsonl", "--db", "notes.db"), 2,
                   "file is not a database: check the path: it must name a SQLite file")
    for args in (["sessions", "list"], ["resume"], ["cost"], ["sessions", "show", "x"]):
        one_line_error(cli(*args, "--db", "notes.db"), 2, "is not a usable Convoy store")


def test_a_damaged_store_says_to_restore_it() -> None:
    write_jsonl(Path("in.jsonl"), GOOD[:1])
    assert cli("run", FLOW, "-i", "in.jsonl").code == 0
    with open("convoy.db", "r+b") as f:  # a page's header overwritten
        f.seek(4096)
        f.write(b"\xff" * 200)
    for args in (["sessions", "list"], ["db", "info"]):
        one_line_error(cli(*args), 1, "database disk image is malformed: the file is "
                       "damaged; restore it from a backup")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files anyway")
def test_read_only_store() -> None:
    run_ok(lines=GOOD[:1])
    Path("store").mkdir()
    Path("convoy.db").rename("store/convoy.db")
    write_jsonl(Path("in2.jsonl"), GOOD[1:])
    Path("store/convoy.db").chmod(0o444)
    Path("store").chmod(0o555)
    try:
        res = cli("run", FLOW, "-i", "in2.jsonl", "--db", "store/convoy.db")
    finally:
        Path("store").chmod(0o755)
        Path("store/convoy.db").chmod(0o644)
    one_line_error(res, 1, "store/convoy.db")
    assert "read-only" in res.stderr or "writable" in res.stderr, res.stderr


def test_a_new_store_in_a_directory_it_cannot_write_is_one_clear_line(tmp_path: Path) -> None:
    """A new user's trial: a new store in a read-only directory said only SQLite's
    "unable to open database file" (exit 1), where an existing store there says what is
    wrong. Now: the directory is not writable, how to fix it, exit 2. As root (who writes
    any directory), on a read-only bind mount of it, in a mount namespace of its own."""
    ro = tmp_path / "ro"
    ro.mkdir()
    write_jsonl(ro / "in.jsonl", GOOD[:1])
    args = [sys.executable, "-m", "convoy.cli", "run", FLOW, "-i", "in.jsonl",
            "--db", "new.db"]
    if os.geteuid() != 0:
        ro.chmod(0o555)
        try:
            res = subprocess.run(args, cwd=ro, env=subprocess_env(), capture_output=True,
                                 text=True, timeout=120, check=False)
        finally:
            ro.chmod(0o755)
    else:
        unshare = shutil.which("unshare")
        if unshare is None:
            pytest.skip("no unshare(1) to mount the directory read-only as root")
        script = (f"mount --bind {shlex.quote(str(ro))} {shlex.quote(str(ro))} && "
                  f"mount -o remount,bind,ro {shlex.quote(str(ro))} && "
                  f"cd {shlex.quote(str(ro))} && "  # (into the mount: not the dir below it)
                  + " ".join(map(shlex.quote, args)))
        res = subprocess.run([unshare, "-m", "sh", "-c", script], cwd=ro, check=False,
                             env=subprocess_env(), capture_output=True, text=True, timeout=120)
        if "mount:" in res.stderr or "unshare:" in res.stderr:
            pytest.skip(f"cannot mount read-only here: {res.stderr.strip()[:200]}")
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.strip() == (
        "error: the directory '.' of the new store 'new.db' is not writable (its "
        "permissions, or a read-only file system): give this process write access to it, "
        "or pick a path in a directory it can write"), res.stderr
    assert not (ro / "new.db").exists()


def test_a_store_locked_past_the_busy_timeout_gets_the_steps_outcome_once_free(
        tmp_path: Path) -> None:
    """Another connection holds the store locked (BEGIN EXCLUSIVE) for a second as the
    session journals a step's outcome, past the busy timeout of 0.2 s: the step ran, and
    its outcome is written again until the lock is gone (up to the engine's lease), so the
    session completes, its step run once, with nothing said. (A store locked longer than
    the lease: tests/test_outcome_written_again.py.)"""
    write_jsonl(tmp_path / "in.jsonl", ['"convoy.db"'])
    res = subprocess_cli(tmp_path, "run", "cli_flows:locker", "-i", "in.jsonl",
                         "--busy-timeout", "0.2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stderr == "", res.stderr
    assert summary(res.stdout, "completed") == "1"
    (row,) = sessions()
    assert row.status == "completed" and row.output == '"grabbed"'
    assert [r.status for r in journal(row.id)] == ["completed"]


def test_busy_timeout_option_is_validated() -> None:
    write_jsonl(Path("in.jsonl"), GOOD)
    res = cli("run", FLOW, "-i", "in.jsonl", "--busy-timeout", "-1")
    assert res.code == 2 and "--busy-timeout" in res.stderr


# -- sessions --------------------------------------------------------------------------


def test_sessions_list() -> None:
    run_ok(lines=[*GOOD, {"subject": "explode", "body": "!"}])
    ids = session_ids()  # created together: listed by id
    exploded = ids_of([{"subject": "explode", "body": "!"}])
    res = cli("sessions", "list")
    assert res.code == 0, res.stderr
    for header in ("id", "workflow", "status", "steps", "tokens in / out", "cost", "created"):
        assert header in res.stdout
    for sid in ids:
        assert sid in res.stdout
    assert "240 / 60" in res.stdout
    assert "completed: 3  failed: 1" in res.stdout
    failed = cli("sessions", "list", "--status", "failed")
    assert [s for s in ids if s in failed.stdout] == exploded
    limited = cli("sessions", "list", "--limit", "2")
    assert "showing 2 of 4 sessions" in limited.stdout
    assert [s for s in ids if s in limited.stdout] == ids[:2]  # the oldest first
    rest = cli("sessions", "list", "--limit", "2", "--offset", "2")
    assert [s for s in ids if s in rest.stdout] == ids[2:]
    bad = cli("sessions", "list", "--status", "done")
    one_line_error(bad, 2, "--status 'done' is not a session status")
    assert "waiting" in bad.stderr


def test_sessions_list_json_is_what_the_table_shows_for_scripts() -> None:
    run_ok(lines=[*GOOD, {"subject": "explode", "body": "!"}])
    ids = session_ids()
    exploded = ids_of([{"subject": "explode", "body": "!"}])
    res = cli("sessions", "list", "--json")
    assert res.code == 0, res.stderr
    data = json.loads(res.stdout)
    assert [s["id"] for s in data["sessions"]] == ids  # oldest first, as the table
    assert data["counts"] == {"completed": 3, "failed": 1} and data["total"] == 4
    assert data["damaged"] == []
    one = next(s for s in data["sessions"] if s["status"] == "completed")
    assert one["usage"] == {"input_tokens": 240, "output_tokens": 60}
    for field in ("workflow", "version", "tenant", "status", "created", "finished", "steps",
                  "cost", "error", "wait_name", "wake_at", "owner", "subject"):
        assert field in one, field
    assert "journal" not in one and "input" not in one  # (that is 'sessions show --json')
    failed = json.loads(cli("sessions", "list", "--status", "failed", "--json").stdout)
    assert [s["id"] for s in failed["sessions"]] == exploded
    assert failed["sessions"][0]["error"]["type"] == "RuntimeError"
    page = json.loads(cli("sessions", "list", "--limit", "2", "--offset", "1", "--json").stdout)
    assert [s["id"] for s in page["sessions"]] == ids[1:3] and page["total"] == 4
    empty = json.loads(cli("sessions", "list", "--status", "waiting", "--json").stdout)
    assert empty["sessions"] == [] and empty["total"] == 0


def test_sessions_list_is_in_creation_order() -> None:
    run_ok(lines=GOOD[:1])
    first = session_ids()
    run_ok(lines=GOOD[1:2])
    (second,) = set(session_ids()) - set(first)
    out = cli("sessions", "list").stdout
    assert out.index(first[0]) < out.index(second)
    newest = cli("sessions", "list", "--newest")
    assert newest.code == 0, newest.stderr
    assert newest.stdout.index(second) < newest.stdout.index(first[0])
    page = cli("sessions", "list", "--newest", "--limit", "1")
    assert second in page.stdout and first[0] not in page.stdout
    assert "showing 1 of 2 sessions (from the newest)" in " ".join(page.stdout.split())
    assert [r["id"] for r in json.loads(cli("sessions", "list", "--newest", "--json").stdout)[
        "sessions"]] == [second, first[0]]
    hint = cli("sessions", "list", "--limit", "1").stdout
    assert "or --newest for the newest first" in " ".join(hint.split())


def test_sessions_show() -> None:
    run_ok(lines=[GOOD[0], {"subject": "explode", "body": "!"}])
    ok_id, failed_id = ids_of([GOOD[0], {"subject": "explode", "body": "!"}])
    res = cli("sessions", "show", ok_id)
    assert res.code == 0, res.stderr
    for text in ("completed", "cli_flows:handle (version 1)", "default", "240 / 60",
                 "→ lookup_account", '"plan":"pro"', "We refunded your last invoice.",
                 "120 / 30", "model", "tool", "triage"):
        assert text in res.stdout, text
    assert [k for k in ("0/0", "0/1", "0/2") if k in res.stdout] == ["0/0", "0/1", "0/2"]

    res = cli("sessions", "show", failed_id)
    assert "reason: failed" in res.stdout
    assert "RuntimeError: the ticket asked to explode" in res.stdout

    data = json.loads(cli("sessions", "show", ok_id, "--json").stdout)
    assert data["status"] == "completed"
    assert data["output"] == {"category": "billing", "reply": "We refunded your last invoice."}
    assert data["input"]["customer"] == "c-1"
    assert data["usage"] == {"input_tokens": 240, "output_tokens": 60}
    assert [(s["key"], s["kind"], s["target"], s["status"]) for s in data["journal"]] == [
        ("0/0", "model", "triage", "completed"), ("0/1", "tool", "lookup_account", "completed"),
        ("0/2", "model", "triage", "completed")]
    assert [s["input_tokens"] for s in data["journal"]] == [120, 0, 120]
    assert data["journal"][0]["cost"] > 0 and data["journal"][1]["cost"] == 0
    # every step names the agent that took it (a model call's record as its target)
    assert [s["agent"] for s in data["journal"]] == ["triage"] * 3

    one_line_error(cli("sessions", "show", "nope"), 2, "no session 'nope'")


class TraceHeader(convoy.Interceptor):
    """Sets a header on every session run; the store keeps it with the session."""

    async def session_run(self, input: convoy.SessionInput,
                          next: convoy.Next[convoy.SessionInput, convoy.SessionEnd]
                          ) -> convoy.SessionEnd:
        input.headers["trace-id"] = "t-123"
        return await next(input)


def test_sessions_show_headers_and_owner() -> None:
    from cli_flows import shout

    async def start() -> str:
        async with convoy.Engine("convoy.db", interceptors=[TraceHeader()]) as engine:
            res = await engine.run(shout, "hi")
        return res.id

    sid = asyncio.run(start())
    res = cli("sessions", "show", sid)
    assert "header trace-id" in res.stdout and "t-123" in res.stdout
    assert json.loads(cli("sessions", "show", sid, "--json").stdout)["headers"] == {
        "trace-id": "t-123"}
    tamper("UPDATE sessions SET status='running', owner='elsewhere:1:e1', lease_until=? "
           "WHERE id=?", 4e9, sid)
    res = cli("sessions", "show", sid)
    assert "owner" in res.stdout and "elsewhere:1:e1 (lease until" in res.stdout


# -- replay ----------------------------------------------------------------------------


def test_replay_matches() -> None:
    run_ok(lines=[GOOD[0], {"subject": "explode", "body": "!"}])
    ok_id, failed_id = ids_of([GOOD[0], {"subject": "explode", "body": "!"}])
    res = cli("replay", ok_id)
    assert res.code == 0, res.stderr
    assert f"session {ok_id}: same result (completed, 3 steps" in res.stdout
    res = cli("replay", failed_id)
    assert res.code == 0, res.stderr
    assert "same result (failed" in res.stdout


@pytest.mark.parametrize(("flow", "line"), [("cli_flows:nap", "3600"),
                                             ("cli_flows:approval", '"refund"')])
def test_replay_of_a_cancelled_session_is_the_same_result(flow: str, line: str) -> None:
    """Cancelled during a one-hour sleep or a wait for a signal that never came: replay
    reproduces it up to there (no timer fired, no signal made up) and says so."""
    Path("in.jsonl").write_text(line + "\n")
    assert cli("run", flow, "-i", "in.jsonl").code == 0
    (sid,) = session_ids()
    assert session(sid).status == "waiting"
    assert cli("cancel", sid).code == 0
    res = cli("replay", sid)
    assert res.code == 0, res.stdout + res.stderr
    assert (f"session {sid}: same result (cancelled, replayed up to step 0, where it was "
            "cancelled") in res.stdout


def test_replay_of_a_waiting_session_says_what_it_waits_for() -> None:
    """A waiting session is not resumed by hand: it waits for a signal (a person, a
    timer). 'resume it first' was the wrong advice (a new user's trial)."""
    run_ok(lines=['"order 1"'], flow="cli_flows:approval")
    (sid,) = ids_of(['"order 1"'], "cli_flows:approval")
    res = cli("replay", sid, "--import", "cli_flows")
    one_line_error(res, 2, f"session {sid!r} has not finished: it waits for signal 'approve'")
    assert "resume it first" not in res.stderr and f"convoy signal {sid} approve" in res.stderr


def test_replay_detects_divergence() -> None:
    run_ok(lines=[GOOD[0]])
    (sid,) = session_ids()
    tamper("UPDATE sessions SET output=? WHERE id=?",
           '{"category":"other","reply":"tampered"}', sid)
    res = cli("replay", sid)
    assert res.code == 1
    assert "DIVERGED" in res.stdout
    assert "tampered" in res.stdout
    assert "We refunded your last invoice." in res.stdout


def test_replay_shows_why_it_diverged_whole_and_as_json() -> None:
    """The error of a replay that diverged is its diagnosis (the step, what changed, what
    to do): shown whole, not cut at a width; --json has both sides."""
    run_ok(lines=[GOOD[0]])
    (sid,) = session_ids()
    tamper("UPDATE journal SET input_hash=? WHERE session_id=? AND kind='model'",
           "f" * 32, sid)  # (as if the prompt had changed)
    res = cli("replay", sid)
    assert res.code == 1, res.stderr
    said = " ".join(res.stdout.split())
    assert "DIVERGED" in said and "NonDeterminismError" in said, said
    assert "bump its version and start new sessions" in said, said
    res = cli("replay", sid, "--json")
    assert res.code == 1, res.stderr
    got = json.loads(res.stdout)
    assert got["matches"] is False and got["id"] == sid
    assert got["recorded"]["status"] == "completed"
    assert got["recorded"]["output"]["reply"] == "We refunded your last invoice."
    assert got["replayed"]["status"] == "failed"
    assert got["replayed"]["error"]["type"] == "NonDeterminismError"
    assert got["replayed"]["error"]["message"].endswith(
        "(bump its version and start new sessions)")


@pytest.mark.parametrize("args", [["replay", "nope"], ["sessions", "show", "nope"],
                                  ["cancel", "nope"], ["signal", "nope", "go"],
                                  ["trace", "nope"]])
def test_unknown_session_id(args: list[str]) -> None:
    """One message from every command: the store as --db named it, where the ids are,
    and the tenant it looked in, with how to look in another."""
    run_ok(lines=[GOOD[0]])
    res = cli(*args)
    one_line_error(res, 2, "no session 'nope' of tenant 'default' in 'convoy.db'; 'convoy "
                           "sessions list' shows the ids (for other tenants: --tenant NAME or "
                           "--all-tenants)")
    named = cli(*args, "--tenant", "acme")
    one_line_error(named, 2, "no session 'nope' of tenant 'acme' in 'convoy.db'")
    assert "sqlite://" not in res.stderr + named.stderr


@pytest.mark.parametrize(("sig", "sigint", "code"), STOPS)
def test_worker_stops_cleanly_on_ctrl_c_or_sigterm(background: Callable[..., Background],
                                                   sig: int, sigint: str, code: int) -> None:
    worker = background("worker", "cli_flows", sigint=sigint)
    # Printed once the worker's signal handling is in place, before it opens the store.
    worker.wait_for_line("worker on convoy.db: serving cli_flows:handle (version 1)")
    res = worker.stop(sig)
    assert res.code == code, res.stderr
    assert "stopped after 0 session runs" in res.stderr, res
    assert "Traceback" not in res.stderr + res.stdout


@pytest.mark.parametrize(("sig", "sigint", "code"), STOPS)
def test_run_stops_cleanly_on_ctrl_c_or_sigterm(background: Callable[..., Background],
                                                sig: int, sigint: str, code: int,
                                                tmp_path: Path) -> None:
    """A batch job stopped by its scheduler (SIGTERM) or Ctrl-C, also as a background job
    that inherited SIGINT ignored: the sessions are saved, not left to a lease to lapse,
    one line says how to finish them, and 'convoy resume' does."""
    write_jsonl(tmp_path / "in.jsonl", ['"a"'])
    (tmp_path / "hold").touch()
    run = background("run", "cli_flows:held", "-i", "in.jsonl", "--db", "c.db",
                     "--stop-grace", "0", "--trace", "store", "--interceptors",
                     "app_interceptors:RETRIES", sigint=sigint)  # (a step that never ends)
    run.wait_for_line("holding a")
    res = run.stop(sig)
    assert res.code == code, res.stderr
    assert "interrupted: unfinished sessions are saved" in res.stderr, res
    # (the command that finishes them runs them as this one did: its tracing and the
    # application's retries, not without them)
    assert "'convoy resume --trace store --interceptors " \
        "app_interceptors:RETRIES --db c.db'" in res.stderr, res
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    [row] = sessions(tmp_path / "c.db")
    assert row.status != "completed"
    # 'convoy resume' stops alike (a cron job's resume, stopped by its scheduler)
    again = background("resume", "--db", "c.db", "--import", "cli_flows", "--stop-grace", "0",
                       sigint=sigint)
    again.wait_for_line("holding a")
    res = again.stop(sig)
    assert res.code == code, res.stderr
    # (on the store the command was given)
    assert "interrupted: run 'convoy resume --import cli_flows --db c.db' again to finish" \
        in res.stderr, res
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    (tmp_path / "hold").unlink()
    done = cli("resume", "--db", "c.db", "--import", "cli_flows")
    assert done.code == 0, done.stderr
    [row] = sessions(tmp_path / "c.db")
    assert row.status == "completed" and row.output == '"a done"'


def stopped_in_flight(job: Background, sig: int, where: Path) -> Res:
    """``job``'s result, stopped by ``sig`` while its step holds (``holding a``), the step
    let go (the file ``hold`` removed) once the job said it lets the steps in flight
    finish."""
    job.wait_for_line("holding a")
    job.proc.send_signal(sig)
    job.wait_for_line("stopping: the steps in flight finish first")
    (where / "hold").unlink()  # the step in flight ends
    return job.wait()


def test_sessions_a_stop_never_started_are_left_not_listed_as_failures(
        background: Callable[..., Background], tmp_path: Path) -> None:
    """One session at a time, stopped as the first runs: the two it never started are
    left unfinished for later (counted so), not listed as failures with an empty error."""
    write_jsonl(tmp_path / "in.jsonl", ['"a"', '"b"', '"c"'])
    (tmp_path / "hold").touch()
    run = background("run", "cli_flows:one_effect", "-i", "in.jsonl", "--db", "c.db", "-c",
                     "1")
    res = stopped_in_flight(run, signal.SIGTERM, tmp_path)
    assert res.code == 143, res.stderr
    assert summary(res.stdout, "completed") == "1", res.stdout
    assert summary(res.stdout, "interrupted (resume later)") == "2", res.stdout
    assert "error:" not in res.stdout and "pending" not in res.stdout, res.stdout


@pytest.mark.parametrize(("sig", "sigint", "code"), STOPS)
def test_a_stopped_retry_lets_the_payment_in_flight_finish(
        background: Callable[..., Background], sig: int, sigint: str, code: int,
        tmp_path: Path) -> None:
    """Ctrl-C or SIGTERM while a retry's payment is in flight: it finishes and is
    journaled, its session completing (cancelled, it was escalated as an unknown outcome
    by the resume the line names), paid once."""
    write_jsonl(tmp_path / "in.jsonl", ['"a"'])
    res = subprocess_cli(tmp_path, "run", "cli_flows:pay_after_failing", "-i", "in.jsonl",
                         "--db", "c.db")
    assert res.returncode == 0 and summary(res.stdout, "failed") == "1", res.stderr
    (tmp_path / "hold").touch()
    again = background("retry", "--status", "failed", "--db", "c.db", sigint=sigint)
    res2 = stopped_in_flight(again, sig, tmp_path)  # (the payment in flight ends)
    assert res2.code == code, res2.stderr
    # (its retry completed in the stop's grace: the summary says so, nothing is left)
    assert "interrupted: every retry had ended before the stop" in res2.stderr, res2.stderr
    assert summary(res2.stdout, "completed") == "1", res2.stdout
    assert "Traceback" not in res2.stderr + res2.stdout, res2.stderr
    retried = [r for r in sessions(tmp_path / "c.db") if r.id.endswith(".r1")]
    assert [r.status for r in retried] == ["completed"], retried
    assert (tmp_path / "calls").read_text() == "first a\n"


@pytest.mark.parametrize(("sig", "sigint", "code"), STOPS)
def test_a_stop_after_which_every_session_ends_prints_the_summary_not_unfinished(
        background: Callable[..., Background], sig: int, sigint: str, code: int,
        tmp_path: Path) -> None:
    """Stopped while a session's last step is in flight: the step finishes in the grace,
    the session completes, and the command says so (its summary), not that unfinished
    sessions are saved."""
    write_jsonl(tmp_path / "in.jsonl", ['"a"'])
    (tmp_path / "hold").touch()
    run = background("run", "cli_flows:one_effect", "-i", "in.jsonl", "--db", "c.db",
                     sigint=sigint)
    res = stopped_in_flight(run, sig, tmp_path)  # (the session completes)
    assert res.code == code, res.stderr
    assert "unfinished" not in res.stderr, res.stderr
    assert "interrupted: every session had ended before the stop" in res.stderr, res
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    assert summary(res.stdout, "completed") == "1", res.stdout
    [row] = sessions(tmp_path / "c.db")
    assert row.status == "completed"


@pytest.mark.parametrize(("sig", "sigint", "code"), STOPS)
def test_a_stop_lets_the_steps_in_flight_finish_and_nothing_is_escalated(
        background: Callable[..., Background], sig: int, sigint: str, code: int,
        tmp_path: Path) -> None:
    """Ctrl-C or a scheduler's SIGTERM while a session is in an effect that is not
    idempotent: the effect finishes and is journaled, the next one does not start, the
    session is released unfinished (not left owned), and the same command finishes it,
    each effect run once. (Cancelled in flight, the effect would have been escalated as an
    unknown outcome.)"""
    write_jsonl(tmp_path / "in.jsonl", ['"a"'])
    (tmp_path / "hold").touch()
    args = ("run", "cli_flows:two_effects", "-i", "in.jsonl", "--db", "c.db")
    run = background(*args, sigint=sigint)
    res = stopped_in_flight(run, sig, tmp_path)
    assert res.code == code, res.stderr
    assert "interrupted: unfinished sessions are saved" in res.stderr, res
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    [row] = sessions(tmp_path / "c.db")
    assert (row.status, row.owner) == ("pending", None), row
    assert (tmp_path / "calls").read_text() == "first a\n"
    done = cli(*args)
    assert done.code == 0, done.stderr
    [row] = sessions(tmp_path / "c.db")
    assert row.status == "completed" and row.output == '"first a, second a"', row
    assert (tmp_path / "calls").read_text() == "first a\nsecond a\n"


def test_a_worker_stopped_by_sigterm_lets_its_steps_in_flight_finish(
        background: Callable[..., Background], tmp_path: Path) -> None:
    """A deploy's SIGTERM to a worker in the middle of an effect that is not idempotent:
    the effect finishes, the session is released, and the next worker finishes it."""
    import cli_flows

    async def pending() -> None:  # created, not run: an engine drained before it ran
        async with convoy.Engine(tmp_path / "c.db") as engine:
            engine.drain()
            await engine.run_many(cli_flows.two_effects, ["a"], ids=["s-a"])

    asyncio.run(pending())
    (tmp_path / "hold").touch()
    worker = background("worker", "cli_flows", "--db", "c.db")
    worker.wait_for_line("holding a")
    worker.proc.send_signal(signal.SIGTERM)
    worker.wait_for_line("stopping: the steps in flight finish first")
    (tmp_path / "hold").unlink()
    res = worker.wait()
    assert res.code == 143, res.stderr
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    [row] = sessions(tmp_path / "c.db")
    assert (row.status, row.owner) == ("pending", None), row
    done = cli("worker", "cli_flows", "--db", "c.db", "--until-idle")
    assert done.code == 0, done.stderr
    [row] = sessions(tmp_path / "c.db")
    assert row.status == "completed" and row.output == '"first a, second a"', row
    assert (tmp_path / "calls").read_text() == "first a\nsecond a\n"


def test_worker_stops_cleanly_on_a_signal_while_it_starts(
        background: Callable[..., Background]) -> None:
    """A signal before the worker serves (here while it imports the user's module) stops it
    as cleanly as one while it serves: exit 130, one line, no traceback or 'Aborted!'."""
    worker = background("worker", "gated_flows")
    worker.wait_for_line("gated_flows: importing")
    worker.proc.send_signal(signal.SIGINT)
    worker.send("go on")  # the import ends; the worker must then stop, not serve
    res = worker.wait()
    assert res.code == 130, res.stderr
    assert "stopped after 0 session runs" in res.stderr, res
    assert "Traceback" not in res.stderr and "Aborted" not in res.stderr, res.stderr


def test_errors_inside_task_groups_are_one_line() -> None:
    """A store error raised in a task of a TaskGroup (the engine runs sessions in them)
    reaches the user as one line, whatever else the group holds."""
    group = ExceptionGroup("sessions", [ValueError("a bug"), ExceptionGroup("inner", [
        convoy.StoreError("the store 'x.db' is read-only; give this process write access")])])
    assert isinstance(reportable(group), convoy.StoreError)
    with pytest.raises(typer.Exit) as exit_info, convoy_errors():
        raise group
    assert exit_info.value.exit_code == 1
    with pytest.raises(typer.Exit) as exit_info, convoy_errors():
        raise ExceptionGroup("g", [convoy.UserError("bad")])
    assert exit_info.value.exit_code == 2
    with pytest.raises(ExceptionGroup), convoy_errors():  # a bug keeps its traceback
        raise ExceptionGroup("g", [ValueError("a bug")])


@pytest.mark.parametrize("width", [80, 120])
def test_a_narrow_sessions_table_keeps_every_id_status_and_cost_whole(width: int) -> None:
    from rich.console import Console

    from convoy.cli._render import sessions_table
    from convoy.stores import SessionRow

    rows = [SessionRow(id="handle_ticket-3f2a9c1b7e4d", workflow="examples.support_desk:desk",
                       version="v1", tenant="default", status="waiting", input="{}",
                       steps=12, input_tokens=12_345, output_tokens=678, cost=0.000123,
                       created=1_700_000_000.0, wake_at=1_700_600_000.0,
                       wait_name="approval-of-the-refund"),
            SessionRow(id="handle_ticket-0a1b2c3d4e5f", workflow="w", version="v1",
                       tenant="default", status="completed", input="{}", steps=3, cost=1.5,
                       created=1_700_000_001.0)]
    console = Console(width=width, record=True, color_system=None)
    console.print(sessions_table(rows, width=width))
    text = console.export_text()
    assert "…" not in text  # nothing cut off: what does not fit wraps
    lines = text.splitlines()
    for whole in ("handle_ticket-3f2a9c1b7e4d", "handle_ticket-0a1b2c3d4e5f", "waiting",
                  "completed", "$0.000123", "$1.50"):
        assert any(whole in line for line in lines), (whole, text)
    assert all(len(line) <= width for line in lines)
    if width >= 100:  # (dropping created and tokens made room for it)
        assert any("'approval-of-the-refund'" in line for line in lines)
    wide = Console(width=250, record=True, color_system=None)
    wide.print(sessions_table(rows, width=250))
    everything = wide.export_text()
    assert "created" in everything and "tokens in / out" in everything


def test_a_terminal_too_narrow_for_the_table_gets_a_list_and_loses_nothing() -> None:
    """Ids measured in terminal cells (a CJK character takes two); below what the whole
    columns need, each session is an id line and a line of facts, wrapped."""
    from rich.console import Console

    from convoy.cli._render import sessions_table
    from convoy.stores import SessionRow

    sid = "日本語のセッション識別子です-0001"
    rows = [SessionRow(id=sid, workflow="w", version="v1", tenant="default",
                       status="completed", input="{}", cost=0.25),
            SessionRow(id="expense-ce77fc85700d", workflow="examples.expense", version="v1",
                       tenant="default", status="waiting", input="{}", steps=2,
                       wait_name="approval")]
    for width in (40, 64):
        console = Console(width=width, record=True, color_system=None)
        console.print(sessions_table(rows, width=width))
        text = console.export_text()
        lines = text.splitlines()
        ids = [line.strip() for line in lines]
        assert sid in ids and "expense-ce77fc85700d" in ids, text
        assert "…" not in text and all(len(line) <= width for line in lines)
        flat = " ".join(text.split())
        assert "$0.25" in flat and "waits for signal 'approval'" in flat


def test_rich_markup_in_a_session_id_is_shown_not_obeyed() -> None:
    from rich.console import Console

    from convoy.cli._render import sessions_table
    from convoy.stores import SessionRow

    row = SessionRow(id="[bold red]x[/bold red]", workflow="[link=http://e.example]w[/link]",
                     version="v1", tenant="default", status="completed", input="{}")
    console = Console(width=200, record=True, color_system=None)
    console.print(sessions_table([row], width=200))
    text = console.export_text()
    assert "[bold red]x[/bold red]" in text and "[link=http://e.example]w[/link]" in text
