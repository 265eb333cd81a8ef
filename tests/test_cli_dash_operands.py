"""A suggested command whose operand (a session id, a task id, a namespace, a key, a signal
name) begins with ``-`` runs as shown: its options come first and its operands after
``--``, which every command takes (a shell, then Click, would read ``-w1`` as options
``-w -1``). Each test takes the suggestion out of the message, splits it as a shell does
and runs it. And a value mistaken for an option is told to go after ``--``."""

from __future__ import annotations

import asyncio

import pytest

import convoy
from convoy._command import command
from tests.clikit import cli, workdir  # noqa: F401  (autouse fixture)
from tests.test_cli_suggestions import (
    decide_lines,
    line_command,
    quoted_command,
    runs,
    started,
    unknown,
)

STORE = ["--db", "x.db", "--tenant", "acme"]


def after_dashes(argv: list[str], *words: str) -> list[str]:
    """``argv`` with ``words`` (options) put where options go: before its ``--``."""
    at = argv.index("--")
    return [*argv[:at], *words, *argv[at:]]


def test_command_puts_options_first_and_operands_after_dashes() -> None:
    assert command("sessions show", operands=["w-1"], db="x.db") == \
        "'convoy sessions show w-1 --db x.db'"  # as before: nothing begins with '-'
    assert command("replay", operands=["-w1"], options="--import MODULE", db="x.db",
                   tenant="acme") == \
        "'convoy replay --import MODULE --db x.db --tenant acme -- -w1'"
    assert command("state get", operands=["ns", "-k y"], quote=False) == \
        'convoy state get -- ns "-k y"'
    assert command("cancel", operands=["--"], quote=False) == "convoy cancel -- --"


@pytest.mark.parametrize("sid", ["-w1", "--w1", "-"])
def test_sessions_show_suggests_a_signal_that_runs(sid: str) -> None:
    assert started("wait", "-go", sid, tenant="acme") == "waiting"
    shown = cli("sessions", "show", *STORE, "--", sid)
    assert shown.code == 0, shown.stderr
    argv = line_command(shown.stdout, "waiting: ", ", then")
    assert argv == ["convoy", "signal", "--payload", "JSON", *STORE, "--", sid, "-go"]
    said = runs([("true" if w == "JSON" else w) for w in argv])
    assert f"session {sid}" in said


def test_a_value_after_the_signal_name_is_suggested_in_payload() -> None:
    assert started("wait", "go", "-w1") == "waiting"
    res = cli("signal", "--db", "x.db", "--", "-w1", "go", "true")
    assert res.code == 2
    argv = quoted_command(res.stderr, "signal")
    assert argv == ["convoy", "signal", "--payload", "true", "--db", "x.db", "--", "-w1", "go"]
    assert "session -w1" in runs(argv)


def _finished(sid: str) -> None:
    assert started("wait", "go", sid, tenant="acme") == "waiting"
    assert cli("signal", "--payload", "true", *STORE, "--", sid, "go").code == 0
    assert cli("resume", "--import", "hint_flows", *STORE).code == 0


def test_replay_suggests_itself_with_the_id_after_dashes() -> None:
    _finished("-w1")
    argv = quoted_command(unknown("replay", *STORE, "--", "-w1").stderr, "replay")
    assert argv == ["convoy", "replay", "--import", "MODULE", *STORE, "--", "-w1"]
    assert "same result" in runs([("hint_flows" if w == "MODULE" else w) for w in argv])


def test_retry_and_sessions_show_suggest_a_retry_that_runs() -> None:
    assert started("wait", "go", "-w2", tenant="acme") == "waiting"
    assert cli("cancel", *STORE, "--", "-w2").code == 0
    assert cli("resume", "--import", "hint_flows", *STORE).code == 0
    res = unknown("retry", "--dry-run", *STORE, "--", "-w2")
    assert res.code == 2
    assert quoted_command(res.stderr, "retry") == [
        "convoy", "retry", "--dry-run", "--import", "MODULE", *STORE, "--", "-w2"]
    shown = cli("sessions", "show", *STORE, "--", "-w2")
    argv = line_command(shown.stdout, "run it again as a new session: ")
    assert argv == ["convoy", "retry", "--import", "hint_flows", *STORE, "--", "-w2"]
    runs(argv)
    assert cli("sessions", "show", *STORE, "--", "-w2.r1").code == 0


def test_inbox_show_suggests_an_answer_that_runs() -> None:
    assert started("ask", 120, "-r0", tenant="acme") == "waiting"
    shown = cli("inbox", "show", *STORE, "--", "-r0:0")
    assert shown.code == 0, shown.stderr
    argv = line_command(shown.stdout, "decide: ")
    assert argv == ["convoy", "inbox", "answer", *STORE, "--", "-r0:0"]
    assert "answered task -r0:0" in runs(after_dashes(argv, "--set", "approve=true"))
    # Deciding it again: the error names the command that shows its history.
    res = cli("inbox", "answer", "--set", "approve=true", *STORE, "--", "-r0:0")
    assert res.code == 2
    argv = quoted_command(res.stderr, "inbox show")
    assert argv == ["convoy", "inbox", "show", *STORE, "--", "-r0:0"]
    assert "-r0:0" in runs(argv)


def test_sessions_show_suggests_the_inbox_task_it_waits_for() -> None:
    assert started("ask", 120, "-r0", tenant="acme") == "waiting"
    shown = cli("sessions", "show", *STORE, "--", "-r0")
    argv = line_command(shown.stdout, "waiting for a person: ", " (then")
    assert argv == ["convoy", "inbox", "show", *STORE, "--", "-r0:0"]
    assert "Refund $120?" in runs(argv)


def test_an_approval_is_decided_by_commands_that_run() -> None:
    import hitl_flows

    async def go() -> str:
        async with convoy.Engine("x.db") as engine:
            return (await engine.tenant("acme").run(hitl_flows.payout, "hi",
                                                     session_id="-p1")).status

    assert asyncio.run(go()) == "waiting"
    shown = cli("inbox", "show", *STORE, "--", "-p1:0/2")
    assert shown.code == 0, shown.stderr
    decide = decide_lines(shown.stdout)
    assert decide == {
        "approve": ["convoy", "inbox", "approve", *STORE, "--", "-p1:0/2"],
        "reject": ["convoy", "inbox", "reject", *STORE, "--", "-p1:0/2"],
        "edit": ["convoy", "inbox", "approve", "--set", "FIELD=VALUE", *STORE, "--",
                 "-p1:0/2"]}
    assert "rejected task -p1:0/2" in runs(decide["reject"])


def test_an_escalation_is_answered_by_commands_that_run() -> None:
    assert started("escalate", 5, "-e1", tenant="acme") == "escalated"
    shown = cli("sessions", "show", *STORE, "--", "-e1")
    decide = decide_lines(shown.stdout)
    assert decide["approve"] == ["convoy", "inbox", "approve", *STORE, "--", "-e1:escalated"]
    assert decide["or"] == ["convoy", "signal", "--payload", '{"action": "retry"}', *STORE,
                            "--", "-e1", "convoy.escalation"]
    assert "answered the escalation of session -e1: retry" in runs(decide["or"])


@convoy.workflow(name="dash.state_wait")
async def state_wait(ctx: convoy.Context, x: int) -> str:
    got = await ctx.state("-ns").wait("-k")
    return str(got.value)


def test_a_state_wait_suggests_a_state_set_that_runs() -> None:
    async def go() -> str:
        async with convoy.Engine("x.db") as engine:
            return (await engine.tenant("acme").run(state_wait, 1, session_id="s")).status

    assert asyncio.run(go()) == "waiting"
    shown = cli("sessions", "show", "s", *STORE)
    argv = line_command(shown.stdout, "waiting for a change of -ns/-k: ", ", then")
    assert argv == ["convoy", "state", "set", *STORE, "--", "-ns", "-k", "JSON"]
    assert "woke 1 waiting session" in runs([('"v"' if w == "JSON" else w) for w in argv])


def test_state_errors_suggest_commands_that_run() -> None:
    assert cli("state", "set", *STORE, "--", "-ns", "-k", "1").code == 0
    res = cli("state", "set", "--expected-version", "5", *STORE, "--", "-ns", "-k", "2")
    assert res.code == 1
    argv = quoted_command(res.stderr, "state get")
    assert argv == ["convoy", "state", "get", *STORE, "--", "-ns", "-k"]
    assert "1" in runs(argv)
    res = cli("state", "get", *STORE, "--", "-ns", "-nothing")
    assert res.code == 2
    argv = quoted_command(res.stderr, "state list")
    assert argv == ["convoy", "state", "list", *STORE, "--", "-ns"]
    assert "-k" in runs(argv)


# -- a value mistaken for an option ----------------------------------------------------------


def hint(stderr: str) -> str:
    """What the usage error says after its own (see '... --help')."""
    return stderr.split("after '--': ", 1)[1]


@pytest.mark.parametrize("sid", ["-w1", "--w1", "-1"])
def test_an_id_taken_for_an_option_is_told_to_go_after_dashes(sid: str) -> None:
    assert started("wait", "go", sid, tenant="acme") == "waiting"
    res = cli("sessions", "show", sid, *STORE)
    assert res.code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert f"if {sid!r} is a value, not an option, put it after '--': " in res.stderr
    argv = quoted_command(hint(res.stderr), "sessions show")
    assert argv == ["convoy", "sessions", "show", *STORE, "--", sid]
    assert sid in runs(argv)


def test_the_hint_keeps_every_operand_in_its_place() -> None:
    res = cli("signal", "-w1", "approve", "--payload", "true", "--db", "x.db")
    assert res.code == 2
    assert quoted_command(hint(res.stderr), "signal") == [
        "convoy", "signal", "--payload", "true", "--db", "x.db", "--", "-w1", "approve"]
    res = cli("state", "get", "ns", "-k", "--db", "x.db")
    assert quoted_command(hint(res.stderr), "state get") == [
        "convoy", "state", "get", "--db", "x.db", "--", "ns", "-k"]


def test_a_command_without_operands_is_not_given_a_dashes_hint() -> None:
    res = cli("sessions", "list", "--dbb", "x.db")
    assert res.code == 2
    assert "No such option: --dbb" in res.stderr and "after '--'" not in res.stderr


def test_no_dashes_hint_when_every_value_is_given_already() -> None:
    """``convoy trace ID --bogus``: the one value the command takes is there, so
    '--bogus' cannot be a value; a suggestion to put it after '--' would fail too (review
    s23 F1). ``convoy sessions show --bogus`` still gets one."""
    res = cli("trace", "t-1", "--bogus", "--db", "x.db")
    assert res.code == 2
    assert "No such option: --bogus" in res.stderr and "after '--'" not in res.stderr
    res = cli("sessions", "show", "--bogus", "--db", "x.db")
    assert quoted_command(hint(res.stderr), "sessions show") == [
        "convoy", "sessions", "show", "--db", "x.db", "--", "--bogus"]


def test_no_dashes_hint_for_an_option_other_commands_take() -> None:
    """``convoy state list --all-tenants``: an option of other commands, not a value; the
    hint to list a namespace named '--all-tenants' misled (review s30)."""
    res = cli("state", "list", "--db", "x.db", "--all-tenants")
    assert res.code == 2
    assert "No such option: --all-tenants" in res.stderr and "after '--'" not in res.stderr


def test_a_store_path_in_a_hint_keeps_its_password_out() -> None:
    for db in ("postgresql://u:secret@127.0.0.1:1/d", "postgresql://127.0.0.1:1/d?password=secret"):
        res = cli("sessions", "show", "-w1", "--db", db)
        assert res.code == 2
        assert "secret" not in res.stderr, res.stderr
        # (the command does not run as shown: it says so, review s24 F6)
        assert "' (with the password in place of ***)" in " ".join(res.stderr.split())
