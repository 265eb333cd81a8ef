"""Every command a message suggests runs as shown when pasted into a shell: it keeps the
session id, the selection, the module to import, the ``--db`` and ``--tenant`` the user
gave, and quotes what the shell would split. Each test takes the suggestion out of the
message, splits it as a shell does (``shlex``) and checks the words (and, where cheap,
runs it)."""

from __future__ import annotations

import asyncio
import shlex
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.definitions._workflow import _REGISTRY
from tests.clikit import (
    Background,
    Res,
    background_fixture,  # noqa: F401  (fixture)
    cli,
    one_line_error,
    workdir,  # noqa: F401  (autouse fixture)
    write_jsonl,
)


def quoted_command(text: str, begins: str) -> list[str]:
    """The words of the command a message quotes (``'convoy BEGINS ...'``), as a shell
    splits it."""
    at = text.index(f"'convoy {begins}") + 1
    end, in_double = at, False
    while text[end] != "'" or in_double:  # the quote that closes it (words inside are
        in_double ^= text[end] == '"'     # in double quotes where they need any)
        end += 1
    return shlex.split(text[at:end])


def line_command(text: str, label: str, end: str | None = None) -> list[str]:
    """The words of the command the line that starts with ``label`` shows (up to
    ``end``)."""
    (line,) = [ln for ln in text.splitlines() if ln.startswith(label)]
    rest = line[len(label):]
    return shlex.split(rest if end is None else rest[:rest.index(end)])


def started(workflow: str, value: Any, sid: str, db: str = "x.db",
            tenant: str = "default") -> str:
    """A session of ``hint_flows``' ``workflow`` started (and run until it waits) through
    the API, as an application does."""
    import hint_flows

    async def go() -> str:
        async with convoy.Engine(db) as engine:
            res = await engine.tenant(tenant).run(getattr(hint_flows, workflow), value,
                                                  session_id=sid)
            return res.status

    return asyncio.run(go())


def runs(argv: list[str]) -> str:
    """Run a suggested command (``argv[0]`` is ``convoy``); its stdout."""
    assert argv[0] == "convoy", argv
    res = cli(*argv[1:])
    assert res.code == 0, (argv, res.stdout, res.stderr)
    return res.stdout


def unknown(*args: str) -> Res:
    """``convoy ARGS`` as in a process that did not import ``hint_flows``: its workflows,
    all explicitly named, are not registered."""
    import hint_flows  # noqa: F401  (registers them, so that they can be taken out)

    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in _REGISTRY if n.startswith("hints.")]:
            mp.delitem(_REGISTRY, name)
        return cli(*args)


def _finished(sid: str = "w-1", db: str = "x.db", tenant: str = "default") -> str:
    assert started("wait", "approve", sid, db, tenant) == "waiting"
    assert cli("signal", sid, "approve", "--payload", "true", "--db", db,
               "--tenant", tenant).code == 0
    assert cli("resume", "--import", "hint_flows", "--db", db, "--tenant", tenant).code == 0
    return sid


# -- finding 4: replay and retry keep the id and the selection -----------------------------


def test_replay_suggests_itself_with_the_id() -> None:
    _finished()
    res = unknown("replay", "w-1", "--db", "x.db", "--tenant", "default")
    assert res.code == 2
    assert quoted_command(res.stderr, "replay") == [
        "convoy", "replay", "w-1", "--import", "MODULE", "--db", "x.db"]


def test_the_suggested_replay_runs_with_the_module() -> None:
    _finished(tenant="acme")
    argv = quoted_command(unknown("replay", "w-1", "--db", "x.db", "-t", "acme").stderr, "replay")
    assert argv == ["convoy", "replay", "w-1", "--import", "MODULE", "--db", "x.db",
                    "--tenant", "acme"]
    assert "same result" in runs([("hint_flows" if w == "MODULE" else w) for w in argv])


def test_retry_suggests_itself_with_the_ids_and_the_selection() -> None:
    _finished()
    assert started("wait", "go", "w-2") == "waiting"
    assert cli("cancel", "w-2", "--db", "x.db").code == 0
    assert cli("resume", "--import", "hint_flows", "--db", "x.db").code == 0
    res = unknown("retry", "w-2", "--db", "x.db")
    assert res.code == 2
    assert quoted_command(res.stderr, "retry") == [
        "convoy", "retry", "w-2", "--import", "MODULE", "--db", "x.db"]
    res = unknown("retry", "--status", "cancelled", "--status", "failed", "--error-type",
              "Cancelled", "--db", "x.db", "--dry-run")
    assert quoted_command(res.stderr, "retry") == [
        "convoy", "retry", "--status", "cancelled", "--status", "failed", "--error-type",
        "Cancelled", "--dry-run", "--import", "MODULE", "--db", "x.db"]


# -- finding 6: inbox show's and sessions show's decisions, with --db and --tenant ---------


def decide_lines(text: str) -> dict[str, list[str]]:
    """The commands under ``decide:`` (``ACTION: COMMAND`` lines), by action."""
    lines = text.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("decide"))
    found: dict[str, list[str]] = {}
    for ln in lines[at + 1:]:
        if not ln.startswith("  "):
            break
        action, _, cmd = ln.strip().partition(": ")
        found[action] = shlex.split(cmd)
    return found


def test_inbox_show_suggests_the_answer_on_the_same_store_and_tenant() -> None:
    assert started("ask", 120, "r-0", tenant="acme") == "waiting"
    shown = cli("inbox", "show", "r-0:0", "--db", "x.db", "--tenant", "acme")
    assert shown.code == 0, shown.stderr
    argv = line_command(shown.stdout, "decide: ")
    assert argv == ["convoy", "inbox", "answer", "r-0:0", "--db", "x.db", "--tenant", "acme"]
    said = runs([*argv, "--set", "approve=true"])
    assert "answered task r-0:0" in said


def test_an_approval_is_decided_by_separate_commands_not_a_pipe() -> None:
    import hitl_flows

    async def go() -> str:
        async with convoy.Engine("x.db") as engine:
            return (await engine.tenant("acme").run(hitl_flows.payout, "hi",
                                                     session_id="p-1")).status

    assert asyncio.run(go()) == "waiting"
    shown = cli("inbox", "show", "p-1:0/2", "--db", "x.db", "--tenant", "acme")
    assert shown.code == 0, shown.stderr
    assert "|" not in shown.stdout.split("decide")[1]
    store = ["--db", "x.db", "--tenant", "acme"]
    assert decide_lines(shown.stdout) == {
        "approve": ["convoy", "inbox", "approve", "p-1:0/2", *store],
        "reject": ["convoy", "inbox", "reject", "p-1:0/2", *store],
        "edit": ["convoy", "inbox", "approve", "p-1:0/2", "--set", "FIELD=VALUE", *store]}
    assert "rejected task p-1:0/2" in runs(decide_lines(shown.stdout)["reject"])


def test_an_escalation_is_answered_by_separate_commands_not_a_pipe() -> None:
    assert started("escalate", 5, "e-1", tenant="acme") == "escalated"
    store = ["--db", "x.db", "--tenant", "acme"]
    for args in (("inbox", "show", "e-1:escalated"), ("sessions", "show", "e-1")):
        shown = cli(*args, *store)
        assert shown.code == 0, shown.stderr
        assert "|" not in shown.stdout.split("decide")[1]
        decide = decide_lines(shown.stdout)
        assert decide["approve"] == ["convoy", "inbox", "approve", "e-1:escalated", *store]
        assert decide["reject"] == ["convoy", "inbox", "reject", "e-1:escalated", *store]
        # (the step's result: a value of any type, given whole, --edit; --set takes
        # fields. It said --value, which approve does not take: tests/
        # test_cli_unreadable_session.py -k non_idempotent runs the command it offers.)
        assert decide["edit"] == ["convoy", "inbox", "approve", "e-1:escalated", "--edit",
                                  "JSON", *store]
    assert decide["or"] == ["convoy", "signal", "e-1", "convoy.escalation", "--payload",
                            '{"action": "retry"}', *store]
    assert "answered the escalation of session e-1: retry" in runs(decide["or"])


# -- finding 8: ids and names are quoted as the shell needs --------------------------------


@pytest.mark.parametrize(("name", "sid"), [("go now", "s 6"), ("it's", "s-4"),
                                           ('say "hi"', "s$1")])
def test_a_signal_name_and_an_id_are_quoted(name: str, sid: str) -> None:
    assert started("wait", name, sid) == "waiting"
    shown = cli("sessions", "show", sid, "--db", "x.db")
    assert shown.code == 0, shown.stderr
    argv = line_command(shown.stdout, "waiting: ", ", then")
    assert argv == ["convoy", "signal", sid, name, "--payload", "JSON", "--db", "x.db"]
    said = runs([("true" if w == "JSON" else w) for w in argv])
    assert f"session {sid}" in said


def test_retry_of_an_id_with_a_space_is_quoted() -> None:
    assert started("wait", "go", "a b") == "waiting"
    assert cli("cancel", "a b", "--db", "x.db").code == 0
    assert cli("resume", "--import", "hint_flows", "--db", "x.db").code == 0
    shown = cli("sessions", "show", "a b", "--db", "x.db")
    argv = line_command(shown.stdout, "run it again as a new session: ")
    # (its workflow has a name of its own: a retry in another process imports its module)
    assert argv == ["convoy", "retry", "a b", "--import", "hint_flows", "--db", "x.db"]
    runs(argv)
    assert cli("sessions", "show", "a b.r1", "--db", "x.db").code == 0


# -- finding 5: what continues a session names its module ---------------------------------


def _continues(text: str) -> tuple[list[str], list[str]]:
    """The worker and the resume a message says continue a session."""
    return quoted_command(text, "worker"), quoted_command(text, "resume")


def continued_by(text: str, module: str, store: list[str]) -> list[str]:
    """Check that ``text`` says a worker of ``module`` or a resume that imports it
    continues the session; the resume."""
    worker, resume = _continues(text)
    assert worker == ["convoy", "worker", module, *store]
    assert resume == ["convoy", "resume", "--import", module, *store]
    return resume


def test_an_answer_says_which_worker_and_resume_continue_the_session() -> None:
    assert started("ask", 120, "r-0", tenant="acme") == "waiting"
    store = ["--db", "x.db", "--tenant", "acme"]
    res = cli("inbox", "answer", "r-0:0", "--set", "approve=yes", "--import", "hint_flows",
              *store)
    assert res.code == 0, res.stderr
    resume = continued_by(res.stdout, "hint_flows", store)
    runs(resume)
    shown = cli("sessions", "show", "r-0", *store)
    assert "completed" in shown.stdout, shown.stdout


def test_without_the_module_the_suggestion_says_module_and_which() -> None:
    assert started("ask", 120, "r-0", tenant="acme") == "waiting"
    store = ["--db", "x.db", "--tenant", "acme"]
    res = unknown("inbox", "answer", "r-0:0", "--set", "approve=yes", *store)
    assert res.code == 0, res.stderr
    continued_by(res.stdout, "MODULE", store)
    assert "MODULE: the module that defines workflow 'hints.ask'" in res.stdout


def test_sessions_show_says_which_worker_and_resume_continue_a_wait() -> None:
    assert started("wait", "go", "w-1") == "waiting"
    shown = cli("sessions", "show", "w-1", "--db", "x.db")
    worker, resume = _continues(shown.stdout)
    assert worker == ["convoy", "worker", "hint_flows", "--db", "x.db"]
    assert resume == ["convoy", "resume", "--import", "hint_flows", "--db", "x.db"]
    shown = unknown("sessions", "show", "w-1", "--db", "x.db")
    worker, resume = _continues(shown.stdout)
    assert worker == ["convoy", "worker", "MODULE", "--db", "x.db"]
    assert "MODULE: the module that defines workflow 'hints.wait'" in shown.stdout


def test_a_workflow_named_by_reference_resumes_without_import() -> None:
    from tests.clikit import run_ok, session_ids

    run_ok("--db", "w.db", lines=['"order 1"'], flow="cli_flows:approval")
    (sid,) = session_ids(Path("w.db"))
    worker, resume = _continues(cli("sessions", "show", sid, "--db", "w.db").stdout)
    assert worker == ["convoy", "worker", "cli_flows", "--db", "w.db"]
    assert resume == ["convoy", "resume", "--db", "w.db"]


def test_an_interrupted_run_names_the_import_its_resume_needs(
        background: Callable[..., Background], tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", ['"a"'])
    (tmp_path / "hold").touch()
    run = background("run", "hint_flows:held", "-i", "in.jsonl", "--db", "c.db")
    run.wait_for_line("holding a")
    res = run.stop(signal.SIGINT)
    resume = quoted_command(res.stderr, "resume")
    assert resume == ["convoy", "resume", "--import", "hint_flows", "--db", "c.db"]
    again = background(*resume[1:])
    again.wait_for_line("holding a")
    res = again.stop(signal.SIGINT)
    assert quoted_command(res.stderr, "resume") == resume  # keeps its --import
    (tmp_path / "hold").unlink()
    runs(resume)


def test_a_signal_says_which_worker_and_resume_continue_the_session() -> None:
    assert started("wait", "go", "w-1", tenant="acme") == "waiting"
    store = ["--db", "x.db", "--tenant", "acme"]
    res = cli("signal", "w-1", "go", "--payload", "true", *store)
    assert res.code == 0, res.stderr
    resume = continued_by(res.stdout, "hint_flows", store)
    runs(resume)
    assert "completed" in cli("sessions", "show", "w-1", *store).stdout


# -- finding 7: a wait for shared state is ended by 'convoy state set' ---------------------


def test_a_state_wait_suggests_state_set_which_wakes_it() -> None:
    assert started("until_shipped", "B-2", "u-1", tenant="acme") == "waiting"
    store = ["--db", "x.db", "--tenant", "acme"]
    listed = cli("sessions", "list", *store, env={"COLUMNS": "250"})
    assert "a change of order:B-2/status" in listed.stdout, listed.stdout
    assert "convoy.state:" not in listed.stdout
    shown = cli("sessions", "show", "u-1", *store)
    assert "waits for signal" not in shown.stdout  # (the journal shows the step as it is)
    assert "waits for a change of  state order:B-2/status" in shown.stdout, shown.stdout
    argv = line_command(shown.stdout, "waiting for a change of order:B-2/status: ", ", then")
    assert argv == ["convoy", "state", "set", "order:B-2", "status", "JSON", *store]
    said = runs([('"shipped"' if w == "JSON" else w) for w in argv])
    assert "woke 1 waiting session" in said
    runs(quoted_command(shown.stdout, "resume"))
    assert "completed" in cli("sessions", "show", "u-1", *store).stdout


# -- finding 14: one-line errors say what is true -----------------------------------------


def test_worker_given_a_workflow_reference_says_it_takes_the_module() -> None:
    res = cli("worker", "hint_flows:wait", "--db", "x.db", "--until-idle")
    one_line_error(res, 2, "'hint_flows:wait' names a workflow (MODULE:WORKFLOW); name its "
                   "module as Python imports it: hint_flows")


def test_a_store_in_a_missing_directory_is_not_said_to_be_created_by_run() -> None:
    res = cli("sessions", "list", "--db", "nonexist/dir/x.db")
    one_line_error(res, 2, "no Convoy store at 'nonexist/dir/x.db': the directory "
                   "'nonexist/dir' does not exist")
    assert "'convoy run' creates it" not in res.stderr


def test_a_run_with_one_failure_names_it_in_details() -> None:
    from tests.clikit import run_ok

    res = run_ok("--db", "f.db", lines=['"x y"'], flow="cli_flows:boom")
    argv = line_command(res.stdout, "details: ")
    assert argv[:3] == ["convoy", "sessions", "show"] and argv[3] != "ID", argv
    assert argv[4:] == ["--db", "f.db"]
    runs(argv)


def test_redteam_payloads_that_name_a_file_say_so() -> None:
    Path("text.db").write_text("x")
    one_line_error(cli("redteam", "--payloads", "text.db"), 2,
                   "redteam payload directory 'text.db' is a file")


@pytest.mark.parametrize(("lines", "said"), [
    (['"a"'], "--kill-after-sessions 5: the kill must come before the phase is over, after "
              "fewer sessions than its 1 input; give --input more lines"),
    (['"a"', '"b"', '"c"'], "than its 3 inputs (1 to 2)")])
def test_chaos_names_its_flag_not_a_python_parameter(lines: list[object], said: str) -> None:
    write_jsonl(Path("in.jsonl"), lines)
    res = cli("chaos", "cli_flows:shout", "-i", "in.jsonl", "--kill-after-sessions", "5")
    one_line_error(res, 2, said)
    assert "kill_after_sessions" not in res.stderr


def test_an_answer_without_a_terminal_says_to_use_value_or_set() -> None:
    assert started("ask", 120, "r-0") == "waiting"
    res = cli("inbox", "answer", "r-0:0", "--db", "x.db")  # (standard input: empty)
    assert res.code == 2, (res.stdout, res.stderr)
    one_line_error(res, 2, "no answer: the input ended before the form did (no terminal to "
                   "ask on); give the answer with --value JSON or --set FIELD=VALUE")


def test_retry_of_an_unknown_id_says_it_as_every_command_does() -> None:
    _finished()
    res = cli("retry", "nope", "--db", "x.db")
    one_line_error(res, 2, "no session 'nope' of tenant 'default' in 'x.db'; 'convoy sessions "
                   "list --db x.db' shows the ids (for other tenants: --tenant NAME or "
                   "--all-tenants)")


def test_audit_check_of_an_entry_without_a_step_names_no_step(tmp_path: Path) -> None:
    from convoy.audit import AuditEvent, AuditLog
    from convoy.stores import SQLiteStore
    from tests.store_backends import FakeClock

    async def build() -> None:
        store = SQLiteStore(tmp_path / "a.db", clock=FakeClock())
        await store.open()
        try:
            alog = AuditLog(store, key_path=tmp_path / "audit.key", clock=FakeClock())
            await alog.append("acme", [AuditEvent(kind="session", status="ok", at=1000.0,
                                                  session_id="s1")])
        finally:
            await store.aclose()

    asyncio.run(build())
    proof = cli("audit", "prove", "0", "--db", "a.db", "--tenant", "acme", "--key",
                "audit.key")
    assert proof.code == 0, proof.stderr
    Path("proof.json").write_text(proof.stdout)
    res = cli("audit", "check", "proof.json")
    assert res.code == 0, res.stderr
    assert "(session s1)" in res.stdout and "None" not in res.stdout, res.stdout


@pytest.mark.parametrize(("given", "payload"), [(["true"], "true"), (["go", "now"], "JSON")])
def test_a_value_after_the_signal_name_is_said_to_go_in_payload(given: list[str],
                                                                payload: str) -> None:
    assert started("wait", "approve", "w-1", tenant="acme") == "waiting"
    store = ["--db", "x.db", "--tenant", "acme"]
    res = cli("signal", "w-1", "approve", *given, *store)
    one_line_error(res, 2, "the signal's value goes in --payload, not after its name")
    argv = quoted_command(res.stderr, "signal")
    assert argv == ["convoy", "signal", "w-1", "approve", "--payload", payload, *store]
    if payload != "JSON":
        assert "sent signal 'approve' to session w-1" in runs(argv)
