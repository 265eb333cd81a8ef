"""``--interceptors MODULE:NAME`` (or ``$CONVOY_INTERCEPTORS``): the commands that run
sessions (``run``, ``resume``, ``retry``, ``worker``) run them with the application's
interceptors (retries, budgets, ...), not silently without them; what cannot be loaded
is one line, exit 2, nothing run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from convoy.cli._common import build_engine
from tests.clikit import (
    LIMIT,
    cli,
    ids_of,
    journal,
    one_line_error,
    session,
    sessions,
    subprocess_cli,
    subprocess_env,
    summary,
    workdir,  # noqa: F401  (autouse fixture)
    write_jsonl,
)

APP = "app_interceptors:interceptors"


def _run(flow: str, lines: list[object], *extra: str) -> None:
    write_jsonl(Path("in.jsonl"), lines)
    res = cli("run", f"app_interceptors:{flow}", "-i", "in.jsonl", *extra)
    assert res.code == 0, res.stderr + res.stdout


def _tokens(sid: str) -> int:
    row = session(sid)
    return row.input_tokens + row.output_tokens


# -- run --------------------------------------------------------------------------------


def test_run_without_interceptors_has_no_retries_and_no_budget() -> None:
    """The bug: the command line ran the application's sessions with none of its
    interceptors, and said nothing."""
    _run("write", ['"essays"'])
    _run("chat", [5])
    (w,) = ids_of(['"essays"'], "app_interceptors:write")
    (c,) = ids_of([5], "app_interceptors:chat")
    assert session(w).status == "failed"  # no retry of the 503
    assert session(c).status == "completed"
    assert _tokens(c) == 500  # over the 250-token budget


def test_run_with_interceptors_retries_and_stops_at_the_budget() -> None:
    _run("write", ['"essays"'], "--interceptors", APP)
    _run("chat", [5], "--interceptors", APP)
    (w,) = ids_of(['"essays"'], "app_interceptors:write")
    (c,) = ids_of([5], "app_interceptors:chat")
    assert session(w).status == "completed"
    assert session(c).status == "budget_exhausted"
    assert _tokens(c) <= 250 + 100  # (over by at most the call in flight)


def test_the_environment_names_them_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVOY_INTERCEPTORS", APP)
    _run("write", ['"essays"'])
    assert session(ids_of(['"essays"'], "app_interceptors:write")[0]).status == "completed"


def test_a_module_level_list() -> None:
    _run("write", ['"essays"'], "--interceptors", "app_interceptors:RETRIES")
    assert session(ids_of(['"essays"'], "app_interceptors:write")[0]).status == "completed"


# -- resume, worker, retry ---------------------------------------------------------------


def _waiting(jobs: list[str]) -> list[str]:
    """Sessions of ``later`` that waited for ``go`` and got it: runnable, unfinished."""
    _run("later", list(jobs))
    ids = ids_of(list(jobs), "app_interceptors:later")
    for sid in ids:
        assert session(sid).status == "waiting"
        res = cli("signal", sid, "go", "--payload", "true")
        assert res.code == 0, res.stderr
    return ids


def test_resume_without_interceptors_has_none() -> None:
    write, chat = _waiting(['"write"', '"chat"'])
    res = cli("resume")
    assert res.code == 0, res.stderr + res.stdout
    assert session(write).status == "failed"
    assert session(chat).status == "completed"
    assert _tokens(chat) == 500


def test_resume_with_interceptors() -> None:
    write, chat = _waiting(['"write"', '"chat"'])
    res = cli("resume", "--interceptors", APP)
    assert res.code == 0, res.stderr + res.stdout
    assert session(write).status == "completed"
    assert session(chat).status == "budget_exhausted"
    assert _tokens(chat) <= 250 + 100


def test_worker_until_idle_with_interceptors() -> None:
    write, chat = _waiting(['"write"', '"chat"'])
    res = cli("worker", "app_interceptors", "--until-idle", "--interceptors", APP)
    assert res.code == 0, res.stderr + res.stdout
    assert session(write).status == "completed"
    assert session(chat).status == "budget_exhausted"


def test_worker_until_idle_without_interceptors_has_none() -> None:
    write, chat = _waiting(['"write"', '"chat"'])
    res = cli("worker", "app_interceptors", "--until-idle")
    assert res.code == 0, res.stderr + res.stdout
    assert session(write).status == "failed"
    assert session(chat).status == "completed"


def test_retry_with_interceptors() -> None:
    _run("write", ['"essays"'])
    (w,) = ids_of(['"essays"'], "app_interceptors:write")
    assert session(w).status == "failed"
    res = cli("retry", w)
    assert res.code == 0, res.stderr + res.stdout
    assert session(f"{w}.r1").status == "failed"  # no retries: fails again
    res = cli("retry", f"{w}.r1", "--interceptors", APP)
    assert res.code == 0, res.stderr + res.stdout
    assert session(f"{w}.r2").status == "completed"
    assert summary(res.stdout, "completed") == "1"


# -- where they go in the chain -----------------------------------------------------------


def test_the_applications_interceptors_sit_by_stage_among_the_commands() -> None:
    from convoy.cli._audited import AuditWhereAudited
    from convoy.cli._traced import TraceWhereTraced
    from convoy.cli._worker import SessionLog
    from convoy.interceptors._base import STAGES
    from convoy.resilience import Retry

    app = __import__("app_interceptors").interceptors()
    engine = build_engine("convoy.db", interceptors=[SessionLog(), *app])
    chain = list(engine.runtime.interceptors)
    ranks = [STAGES.index(ic.stage) for ic in chain]
    assert ranks == sorted(ranks)
    kinds = [type(ic) for ic in chain]
    assert kinds.index(SessionLog) < kinds.index(AuditWhereAudited) < kinds.index(Retry)
    assert TraceWhereTraced in kinds


def test_an_applications_audit_and_tracing_replace_the_commands_guesses() -> None:
    """An application that audits (or traces) says so itself: the command line's
    store-driven audit and tracing would write its entries (spans) twice."""
    from convoy.cli._audited import AuditWhereAudited
    from convoy.cli._traced import TraceWhereTraced

    fixtures = __import__("app_interceptors")
    engine = build_engine("convoy.db", interceptors=[*fixtures.audited(),
                                                     *fixtures.traced()])
    kinds = [type(ic) for ic in engine.runtime.interceptors]
    assert AuditWhereAudited not in kinds
    assert TraceWhereTraced not in kinds


# -- refused: one line, exit 2, nothing run ---------------------------------------------


@pytest.mark.parametrize(("ref", "text"), [
    ("app_interceptors", "--interceptors 'app_interceptors': give MODULE:NAME"),
    ("", "--interceptors is empty"),
    ("no_such_module:interceptors", "--interceptors: cannot import module 'no_such_module'"),
    ("app_interceptors.py:interceptors", "is a file path"),
    ("app_interceptors:nope", "module 'app_interceptors' has no attribute 'nope'"),
    ("app_interceptors:NUMBER", "app_interceptors:NUMBER is an int, not a list of "
                                "convoy.Interceptor"),
    ("app_interceptors:ONE", "is one interceptor (Retry), not a list"),
    ("app_interceptors:MIXED", "item 1 of app_interceptors:MIXED is a str, not a "
                               "convoy.Interceptor"),
    ("app_interceptors:broken", "app_interceptors:broken() raised RuntimeError: the "
                                "settings file is missing"),
    ("app_interceptors:exits", "app_interceptors:exits() raised SystemExit: 0"),
    ("exits_at_import:interceptors", "importing module 'exits_at_import' failed: "
                                     "SystemExit: 5"),
    ("app_interceptors:wrong", "app_interceptors:wrong() returned a str, not a list"),
    ("app_interceptors:needs_args", "app_interceptors:needs_args takes arguments"),
    ("app_interceptors:in_a_coroutine", "is an async function"),
    ("app_interceptors:ODD", "interceptor OddStage of app_interceptors:ODD has unknown "
                             "stage 'nowhere'"),
])
def test_what_cannot_be_loaded_is_one_line(ref: str, text: str) -> None:
    write_jsonl(Path("in.jsonl"), ['"essays"'])
    for args in (["run", "app_interceptors:write", "-i", "in.jsonl"],
                 ["worker", "app_interceptors", "--until-idle"]):
        res = cli(*args, "--interceptors", ref)
        one_line_error(res, 2, text)
        assert "(a second line" not in res.stderr
    assert not Path("convoy.db").exists() or not sessions()


def test_refused_from_the_environment_names_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVOY_INTERCEPTORS", "app_interceptors:NUMBER")
    write_jsonl(Path("in.jsonl"), ['"essays"'])
    res = cli("run", "app_interceptors:write", "-i", "in.jsonl")
    one_line_error(res, 2, "CONVOY_INTERCEPTORS app_interceptors:NUMBER is an int")


def test_resume_and_retry_refuse_too() -> None:
    _run("write", ['"essays"'])
    (w,) = ids_of(['"essays"'], "app_interceptors:write")
    one_line_error(cli("resume", "--interceptors", "app_interceptors:broken"), 2,
                   "raised RuntimeError")
    one_line_error(cli("retry", w, "--interceptors", "app_interceptors:broken"), 2,
                   "raised RuntimeError")
    one_line_error(cli("retry", w, "--dry-run", "--interceptors", "app_interceptors:wrong"),
                   2, "returned a str")
    assert [r.id for r in sessions()] == [w]


def test_trace_and_an_applications_tracing_exclude_each_other() -> None:
    write_jsonl(Path("in.jsonl"), ['"essays"'])
    res = cli("run", "app_interceptors:write", "-i", "in.jsonl", "--trace", "store",
              "--interceptors", "app_interceptors:traced")
    one_line_error(res, 2, "--trace")


def test_the_option_is_given_once() -> None:
    write_jsonl(Path("in.jsonl"), ['"essays"'])
    res = cli("run", "app_interceptors:write", "-i", "in.jsonl", "--interceptors", APP,
              "--interceptors", "app_interceptors:RETRIES")
    one_line_error(res, 2, "--interceptors")


# -- decisions: the application's hooks on a person's decision ----------------------------


def _asked() -> str:
    _run("refund", [120])
    (sid,) = ids_of([120], "app_interceptors:refund")
    assert session(sid).status == "waiting"
    return f"{sid}:0"


def test_a_decision_goes_through_the_applications_policy() -> None:
    """The bug: ``convoy inbox`` recorded a decision with none of the application's
    interceptors, so a policy on who decides (a ``human_decision`` hook) was bypassed."""
    task = _asked()
    answer = ["inbox", "answer", task, "--value", "true"]
    refused = cli(*answer, "--by", "mallory", "--interceptors", "app_interceptors:deciders")
    one_line_error(refused, 2, "only alice decides billing tasks, not mallory")
    shown = cli("inbox", "show", task, "--json")
    assert shown.code == 0 and '"decision": null' in shown.stdout, shown.stdout
    ok = cli(*answer, "--by", "alice", "--interceptors", "app_interceptors:deciders")
    assert ok.code == 0, ok.stderr
    assert '"by": "alice"' in cli("inbox", "show", task, "--json").stdout
    assert cli("resume", "--interceptors", APP).code == 0
    assert session(task.split(":")[0]).output == '"refund 120: yes"'


def test_a_plain_signal_ignores_them() -> None:
    """A signal that is no decision runs no hook: a shell's $CONVOY_INTERCEPTORS naming a
    module that does not import here must not stop it (review s29)."""
    _run("later", ['"write"'])
    (sid,) = ids_of(['"write"'], "app_interceptors:later")
    res = cli("signal", sid, "go", "--payload", "true",
              env={"CONVOY_INTERCEPTORS": "no_such_module:interceptors"})
    assert res.code == 0, res.stderr


def test_approve_and_signal_take_the_applications_interceptors_too() -> None:
    for args in (["inbox", "approve", "x:0"],
                 ["signal", "x", "convoy.escalation", "--payload", '{"action": "retry"}']):
        res = cli(*args, "--interceptors", "app_interceptors:nope")
        one_line_error(res, 2, "module 'app_interceptors' has no attribute 'nope'")


def test_cancel_ends_a_session_through_the_applications_interceptors() -> None:
    """A session whose run was killed, that never ran, or that waits ends in a run
    ``convoy cancel`` makes: the application's session hooks (its own audit, say) see that
    end as they would in its engine, and without --interceptors they are not run."""
    import sqlite3

    write_jsonl(Path("in.jsonl"), ["3600"])
    assert cli("run", "cli_flows:nap", "-i", "in.jsonl").code == 0
    first, second = "nap-1", "nap-2"
    with sqlite3.connect("convoy.db") as conn:  # (two sessions a killed engine left)
        [sid] = [r[0] for r in conn.execute("SELECT id FROM sessions")]
        for new in (first, second):
            conn.execute("INSERT INTO sessions SELECT ?, " + ", ".join(
                c for (_, c, *_) in conn.execute("PRAGMA table_info(sessions)")
                if c != "id") + " FROM sessions WHERE id=?", (new, sid))
        conn.execute("UPDATE sessions SET status='pending', owner=NULL, lease_until=NULL "
                     "WHERE id IN (?, ?)", (first, second))
    res = cli("cancel", first, "--interceptors", "app_interceptors:recording")
    assert res.code == 0, res.stderr
    assert Path("session_ends.txt").read_text() == f"{first} cancelled\n"
    assert session(first).status == "cancelled"
    res = cli("cancel", second)
    assert res.code == 0, res.stderr
    assert session(second).status == "cancelled"
    assert Path("session_ends.txt").read_text() == f"{first} cancelled\n"
    # a waiting session ends in a run of the command's too: the hooks see it
    assert session(sid).status == "waiting"
    res = cli("cancel", sid, "--interceptors", "app_interceptors:recording")
    assert res.code == 0, res.stderr
    assert Path("session_ends.txt").read_text() == f"{first} cancelled\n{sid} cancelled\n"


def test_cancel_refuses_interceptors_that_cannot_be_loaded() -> None:
    one_line_error(cli("cancel", "nope", "--interceptors", "app_interceptors:broken"), 2,
                   "raised RuntimeError")


def test_the_worker_says_how_a_refused_run_and_one_whose_hook_raised_after_next_ended(
        ) -> None:
    """A line on stdout for each run as its end is written: a run a session hook refused
    (given back ``pending``) and one whose hook raised after ``next`` (its end written)
    had none, nor a count in the summary, as the worker's own hook never saw them end."""
    write_jsonl(Path("in.jsonl"), [0, 1])
    ran = cli("run", "app_interceptors:chat", "-i", "in.jsonl",
              "--interceptors", "app_interceptors:refusing")
    assert ran.code == 2 and "tenant 'acme' is suspended" in ran.stderr, ran.stderr
    zero, one = ids_of([0, 1], "app_interceptors:chat")
    assert (session(zero).status, session(one).status) == ("completed", "pending")

    refused = subprocess_cli(Path.cwd(), "worker", "app_interceptors", "--until-idle",
                             "--interceptors", "app_interceptors:refusing")
    assert refused.returncode == 0, refused.stderr
    assert f"session '{one}': a session hook refused its run (UserError: tenant 'acme' " \
        "is suspended)" in " ".join(refused.stderr.split())
    lines = refused.stdout.splitlines()
    assert any(line.startswith(one) and "pending" in line for line in lines), lines
    assert lines[-1] == "idle: 1 session run (pending 1); left unfinished: pending 1"

    raised = subprocess_cli(Path.cwd(), "worker", "app_interceptors", "--until-idle",
                            "--interceptors", "app_interceptors:raising_after")
    assert raised.returncode == 0, raised.stderr
    lines = raised.stdout.splitlines()
    assert any(line.startswith(one) and "completed" in line for line in lines), lines
    assert lines[-1] == "idle: 1 session run (completed 1); left unfinished: none"


def test_two_workers_on_one_store_with_a_refusing_hook_both_return() -> None:
    """Two worker processes on one store, one session a hook refuses: each runs the rest
    once between them, neither stops nor spins on the refused one (one holds it back, the
    other waits for it, then is refused it too), and it is left ``pending``, held by none."""
    write_jsonl(Path("in.jsonl"), [0, 1, 2])
    assert cli("run", "app_interceptors:chat", "-i", "in.jsonl",
               "--interceptors", "app_interceptors:refusing").code == 2
    zero, one, two = ids_of([0, 1, 2], "app_interceptors:chat")  # (some left pending)
    args = [sys.executable, "-m", "convoy.cli", "worker", "app_interceptors", "--until-idle",
            "--interceptors", "app_interceptors:refusing"]
    procs = [subprocess.Popen(args, cwd=Path.cwd(), env=subprocess_env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=LIMIT)
        assert p.returncode == 0, err
        assert "a session hook refused its run" in " ".join(err.split()), err
    assert (session(one).status, session(one).owner) == ("pending", None)
    assert [session(s).status for s in (zero, two)] == ["completed", "completed"]
    assert len(journal(two)) == 2  # (its two model calls, each once)
