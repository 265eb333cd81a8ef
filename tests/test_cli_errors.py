"""Exit codes, ``--strict``, store paths, unknown workflow names, piped progress and the
wording of messages."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import convoy
from convoy.cli._progress import session_progress
from convoy.cli._render import plural
from tests.clikit import (
    FLOW,
    GOOD,
    Res,
    cli,
    ids_of,
    one_line_error,
    run_ok,
    workdir,  # noqa: F401  (autouse fixture)
    write_jsonl,
)

EXPLODE = {"subject": "explode", "body": "!"}


def test_exit_codes_are_documented() -> None:
    for args in ([], ["run"], ["retry"]):
        text = " ".join(cli(*args, "--help").stdout.split())
        for code in ("0", "1", "2", "130"):
            assert f"{code} " in text, (args, code)
    assert "--strict" in " ".join(cli("run", "--help").stdout.split())


def test_strict_fails_when_a_session_did_not_complete() -> None:
    write_jsonl(Path("in.jsonl"), [GOOD[0], EXPLODE])
    assert cli("run", FLOW, "-i", "in.jsonl").code == 0  # not strict: the run happened
    res = cli("run", FLOW, "-i", "in.jsonl", "--strict")  # the failed one is still failed
    one_line_error(res, 1, "--strict: 1 of 2 inputs did not complete (failed 1)")


def test_strict_fails_on_a_skipped_line_and_passes_when_all_complete() -> None:
    write_jsonl(Path("in.jsonl"), [GOOD[0], "{oops"])
    res = cli("run", FLOW, "-i", "in.jsonl", "--strict")
    one_line_error_after_warnings(res, 1, "--strict: 1 input line was skipped")
    write_jsonl(Path("ok.jsonl"), GOOD)
    assert cli("run", FLOW, "-i", "ok.jsonl", "--strict").code == 0


def one_line_error_after_warnings(res: Res, code: int, text: str) -> None:
    """Like ``one_line_error`` for a command that also warned about skipped lines."""
    assert res.code == code, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and text in errors[0], res.stderr
    assert "Traceback" not in res.stderr


def test_db_under_a_missing_directory_is_refused_not_created() -> None:
    write_jsonl(Path("in.jsonl"), GOOD)
    res = cli("run", FLOW, "-i", "in.jsonl", "--db", "nodir/deeper/x.db")
    one_line_error(res, 2, "the directory 'nodir/deeper' of --db 'nodir/deeper/x.db' does "
                   "not exist; create it first (mkdir -p nodir/deeper)")
    assert not Path("nodir").exists()
    res = cli("worker", "cli_flows", "--db", "nodir/x.db", "--until-idle")
    one_line_error(res, 2, "of --db 'nodir/x.db' does not exist")


def test_a_worker_poll_interval_that_never_polls_is_refused() -> None:
    """A new user's trial: ``--poll-interval inf`` was taken (a worker that never looks
    for the sessions other processes made runnable); ``nan`` was refused."""
    for value in ("inf", "nan", "1e9", "0", "-inf"):
        res = cli("worker", "cli_flows", "--poll-interval", value, "--until-idle")
        # (``nan`` was refused as "should be less than or equal to 3600": it is not a
        # number at all)
        one_line_error(res, 2, "--poll-interval must be a number of seconds from 0.01 to "
                       "3600, got ")


def test_db_under_a_regular_file_is_one_line() -> None:
    write_jsonl(Path("in.jsonl"), GOOD)
    Path("somefile.txt").write_text("a file, not a directory")
    for db in ("somefile.txt/x.db", "somefile.txt/sub/x.db"):
        res = cli("run", FLOW, "-i", "in.jsonl", "--db", db)
        one_line_error(res, 2, f"--db {db!r}: 'somefile.txt' is a file, not a directory")
    res = cli("sessions", "list", "--db", "somefile.txt/x.db")
    one_line_error(res, 2, "'somefile.txt' is a file, not a directory")


def test_a_db_that_is_not_a_regular_file_is_one_line() -> None:
    """/dev/null (a device) made writing commands fail with SQLite's 'cannot rollback -
    no transaction is active'."""
    write_jsonl(Path("in.jsonl"), GOOD)
    said = "--db '/dev/null' is not a regular file (a device, a pipe or a socket)"
    for args in (("run", FLOW, "-i", "in.jsonl"), ("state", "set", "ns", "k", "1"),
                 ("sessions", "list")):
        one_line_error(cli(*args, "--db", "/dev/null"), 2, said)


def test_a_relative_sqlite_url_says_which_file_it_named() -> None:
    """sqlite:///tmp/x.db is tmp/x.db here (three slashes: a relative path), which a user
    meaning /tmp/x.db could not tell from 'no Convoy store at ...'."""
    res = cli("sessions", "list", "--db", "sqlite:///tmp/x.db")
    one_line_error(res, 2, "no Convoy store at 'sqlite:///tmp/x.db' (the file 'tmp/x.db', "
                   "relative to the current directory: an absolute path takes four "
                   "slashes, sqlite:////path)")


def test_an_empty_db_is_said_to_be_empty() -> None:
    write_jsonl(Path("in.jsonl"), GOOD)
    for args in (("run", FLOW, "-i", "in.jsonl"), ("sessions", "list"), ("db", "info")):
        one_line_error(cli(*args, "--db", ""), 2, "--db is empty")


def test_a_db_that_holds_no_store_is_a_usage_error_for_every_command() -> None:
    """An empty file, or a file that is not SQLite at all, passed as --db: the user named
    the wrong store, whichever command reads it (it exited 1 for some, 2 for others)."""
    write_jsonl(Path("in.jsonl"), GOOD)
    Path("empty.db").write_bytes(b"")
    Path("notes.db").write_text("not sqlite " * 100)
    for db in ("empty.db", "notes.db"):
        for args in (("sessions", "list"), ("sessions", "show", "s1"), ("db", "info"),
                     ("db", "compact"), ("resume",), ("cancel", "s1"), ("replay", "s1"),
                     ("state", "list"), ("state", "get", "ns", "k"), ("inbox", "list"),
                     ("cost",), ("trace", "s1"), ("audit", "verify")):
            res = cli(*args, "--db", db)
            assert res.code == 2 and "Convoy store" in res.stderr, (db, args, res.stderr)
    assert Path("empty.db").read_bytes() == b""


#: What every command that needs a store says of a zero-byte --db (``empty.db``).
EMPTY_FILE = ("error: 'empty.db' is an empty file (an empty SQLite database, with no Convoy "
              "store in it): pass --db PATH (or set CONVOY_DB) to name the store, or make "
              "one there with 'convoy db migrate --db empty.db'")


def test_a_zero_byte_db_gets_one_message_from_every_command() -> None:
    """Read commands said "'convoy db migrate' creates one", commands that change a store
    "is not a Convoy database: pass --db": one line now, the same for all, and the file is
    left empty (no -wal, no -shm beside it)."""
    Path("empty.db").write_bytes(b"")
    reads = (("sessions", "list"), ("sessions", "show", "s-1"), ("db", "info"),
             ("replay", "s-1"), ("state", "list"), ("state", "get", "ns", "k"),
             ("state", "history", "ns", "k"), ("inbox", "list"), ("inbox", "show", "s-1:1"),
             ("cost",), ("alerts",), ("trace", "s-1"), ("audit", "verify"),
             ("audit", "list"), ("export", "c-1"), ("purge", "--older-than", "1d",
                                                    "--dry-run"),
             ("metrics", "serve", "--port", "0"))
    writes = (("resume",), ("cancel", "s-1"), ("signal", "s-1", "go"), ("retry", "s-1"),
              ("erase", "c-1"), ("purge", "--older-than", "1d"), ("db", "compact"),
              ("inbox", "answer", "s-1:1", "--value", "1", "--by", "ann"),
              ("inbox", "comment", "s-1:1", "hi", "--by", "ann"),
              ("audit", "checkpoint", "--key", "a.key"), ("audit", "prove", "0"))
    for args in reads + writes:
        res = cli(*args, "--db", "empty.db")
        one_line_error(res, 2, "empty.db")
        assert res.stderr.strip() == EMPTY_FILE, (args, res.stderr)
    assert Path("empty.db").read_bytes() == b""
    assert sorted(p.name for p in Path().iterdir()) == ["empty.db"]


def test_sessions_list_with_an_unknown_workflow_names_the_known_ones() -> None:
    run_ok()
    run_ok(lines=['"hi"'], flow="cli_flows:shout")
    res = cli("sessions", "list", "--workflow", "handle")
    one_line_error(res, 2, "no sessions of workflow 'handle' of tenant 'default' in "
                   "'convoy.db'; its workflows: cli_flows:handle, cli_flows:shout")
    ok = cli("sessions", "list", "--workflow", "cli_flows:shout")
    assert ok.code == 0 and "cli_flows:shout" in ok.stdout
    none = cli("sessions", "list", "--workflow", "cli_flows:shout", "--status", "failed")
    assert none.code == 0 and "no sessions" in none.stdout
    # a --tenant with no session at all: most likely mistyped, said as the listings do
    for args in (("sessions", "list", "--workflow", "cli_flows:shout"),
                 ("retry", "--workflow", "cli_flows:shout")):
        typo = cli(*args, "--tenant", "defualt")
        one_line_error(typo, 2, "no sessions of workflow 'cli_flows:shout' of tenant "
                       "'defualt' in 'convoy.db'; tenant 'defualt' has no sessions at all: "
                       "a mistyped --tenant? ('convoy sessions list --all-tenants' shows "
                       "every tenant's)")


def test_progress_is_plain_lines_when_not_a_terminal() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=100)
    now = [0.0]
    done = convoy.SessionResult(id="a", status="completed")
    failed = convoy.SessionResult(id="b", status="failed")
    with session_progress(5, "running", console=console, every_s=5.0,
                          clock=lambda: now[0]) as on_done:
        on_done(done)           # t=0: too soon for a line
        now[0] = 6.0
        on_done(failed)         # a line: 2/5
        on_done(done)           # too soon again
        now[0] = 12.0
        on_done(done)           # a line: 4/5
        on_done(done)           # the last one: always a line
    assert buf.getvalue().splitlines() == [
        "running: 2/5 done, 1 not completed",
        "running: 4/5 done, 1 not completed",
        "running: 5/5 done, 1 not completed",
    ]


def test_progress_of_a_quick_run_prints_nothing() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False)
    with session_progress(3, "running", console=console, every_s=5.0,
                          clock=lambda: 1.0) as on_done:
        for _ in range(3):
            on_done(convoy.SessionResult(id="a", status="completed"))
    assert buf.getvalue() == ""


def test_wording() -> None:
    assert plural(1, "step") == "1 step" and plural(3, "step") == "3 steps"
    res = run_ok(lines=[GOOD[0], "{oops"])
    assert "(line 2)" in res.stdout
    write_jsonl(Path("in.jsonl"), GOOD)
    res = cli("run", "cli_flows:triage", "-i", "in.jsonl")
    one_line_error(res, 2, "'cli_flows:triage' is an Agent, not a workflow")
    res = cli("replay", "nope")
    assert res.code == 2


def test_replay_says_one_step() -> None:
    run_ok(lines=['"hi"'], flow="cli_flows:charge")
    (sid,) = ids_of(['"hi"'], "cli_flows:charge")
    res = cli("replay", sid)
    assert res.code == 0, res.stderr
    assert "(completed, 1 step replayed from the journal)" in res.stdout


def test_messages_say_what_is_wrong() -> None:
    """Found by a hostile review: each message named the wrong thing."""
    Path("in.jsonl").write_text('{"subject": "a\x01"}\n')
    res = cli("run", FLOW, "-i", "in.jsonl", "--strict")
    assert "Invalid control character at column" in res.stderr, res.stderr
    assert "at at" not in res.stderr
    one_line_error(cli("state", "set", "ns", "k", '"a\x01"'), 2,
                   "Invalid control character at column 3")
    one_line_error(cli("keygen", ""), 2, "FILE '.' is a directory (an empty FILE names the "
                   "current one)")
    one_line_error(cli("keygen", "keys/new/"), 2, "FILE 'keys/new/' ends with '/', so it "
                   "names a directory")  # (a file named 'new' was written)
    assert not Path("keys").exists()
    Path("base.db").write_text("")
    one_line_error(cli("keygen", "base.db/x"), 2,
                   "cannot create 'base.db/x': 'base.db' is a file, not a directory")
    for age in ("infd", "1e400d", "nand"):
        one_line_error(cli("purge", "--older-than", age), 2, "not a positive number")
    one_line_error(cli("purge", "--older-than", "1e306w"), 2, "is too large")  # (overflows)
    write_jsonl(Path("ok.jsonl"), GOOD)
    for flag, value, told in (("--min-success", "1.5", "--min-success is a share in [0, 1]"),
                              ("--max-p99", "0", "--max-p99 must be > 0"),
                              ("--max-cost", "-1", "--max-cost must be > 0")):
        one_line_error(cli("chaos", FLOW, "-i", "ok.jsonl", "--db-dir", "d", flag, value), 2,
                       told)


def test_a_usage_error_is_one_line_that_says_where_the_help_is() -> None:
    """What Click refuses before a command runs (an option it does not know, an argument
    missing, a value of the wrong type) is one ``error:`` line naming the command's
    --help, as every other error: never Rich's boxed panel after the usage line."""
    for args, said, where in (
            (("audit", "list", "--nope"), "No such option: --nope", "audit list"),
            (("sessions", "show"), "Missing argument 'ID'", "sessions show"),
            (("audit", "prove", "x"), "Invalid value for 'ENTRY'", "audit prove"),
            (("sessions", "nope"), "No such command 'nope'", "sessions"),
            (("purge", "--older-than"), "Option '--older-than' requires an argument",
             "purge"),  # (Click raises this one with no command to name: it is added)
            (("sessions", "list", "--limit"), "Option '--limit' requires an argument",
             "sessions list")):
        res = cli(*args)
        one_line_error(res, 2, said)
        assert res.stderr.rstrip().endswith(
            f"(see 'convoy {where} --help')"), res.stderr
        assert "╭" not in res.stderr and "Usage:" not in res.stderr
    # a group run alone still prints its help, as before
    res = cli("audit")
    assert "Usage:" in res.stdout + res.stderr and "error:" not in res.stderr


def _commands() -> list[tuple[str, ...]]:
    """Every command's path (``("audit", "verify")``), hidden ones left out."""
    import click
    import typer.main

    from convoy.cli._app import app

    def commands(cmd: click.Command, path: tuple[str, ...]) -> list[tuple[str, ...]]:
        subs = getattr(cmd, "commands", None)
        if not subs:
            return [path]
        return [p for name, sub in subs.items() if not sub.hidden
                for p in commands(sub, (*path, name))]

    return commands(typer.main.get_command(app), ())


def test_every_command_help_has_an_example() -> None:
    """docs/how-to/cli.md: every command takes --help with an example, a group of commands
    too (``convoy metrics --help`` had none)."""
    paths = _commands()
    groups = {p[:i] for p in paths for i in range(1, len(p))}
    missing = [" ".join(p) for p in [*paths, *sorted(groups)]
               if "Example" not in cli(*p, "--help").stdout]
    assert missing == []


def test_a_flag_shows_no_value_in_help() -> None:
    """Typer showed ``--json <bool>``: a flag that reads as taking a value."""
    shown = cli("sessions", "list", "--help").stdout
    assert "<bool>" not in shown and "--all-tenants" in shown
    assert "N " in shown  # (an option that takes a value keeps its type: --limit N)


def test_retry_help_shows_clean_metavars() -> None:
    """The bug: ``convoy retry --help`` showed ``convoy retry [OPTIONS] [[ID]...]...`` and
    ``<list[str]>`` beside its ids and --status."""
    shown = cli("retry", "--help", env={"COLUMNS": "120"}).stdout
    assert "Usage: convoy retry [OPTIONS] [ID]..." in shown, shown
    assert "[[ID]" not in shown and "<list" not in shown, shown
    assert "│ ID Retry these sessions." in " ".join(shown.split())
    assert "--status -s STATUS" in " ".join(shown.split()), shown


def test_no_help_shows_a_python_list_type() -> None:
    """A value given more than once (``[MODULE]...``, ``--import MODULE``) is named by its
    metavar, never by Typer's ``<list[str]>``."""
    shown = {" ".join(p): cli(*p, "--help", env={"COLUMNS": "200"}).stdout
             for p in _commands()}
    assert [path for path, text in shown.items() if "<list" in text] == []


def test_the_store_option_is_never_cut_in_an_80_column_help() -> None:
    """``--db``'s help names the PostgreSQL URL's form: in an 80-column terminal it was cut
    mid-URL (``postgresql://user:password@host:port/d…``) wherever the option column was
    wide, hiding the form a PostgreSQL user needs."""
    cut, checked = [], 0
    for path in _commands():
        lines = cli(*path, "--help", env={"COLUMNS": "80"}).stdout.splitlines()
        starts = [i for i, line in enumerate(lines)  # (in the options' box)
                  if line.startswith("│") and line.strip("│ ").startswith("--db ")
                  and "PATH|URL" in line]  # (not redteam's --db PATH, a SQLite file)
        if starts:  # the option's rows, up to the next option or the box's end
            rows = [lines[starts[0]]]
            for line in lines[starts[0] + 1:]:
                if line.strip("│ ").startswith("-") or line.startswith("╰"):
                    break
                rows.append(line)
            help_text = " ".join(" ".join(rows).replace("│", " ").split())
            checked += 1
            if "…" in help_text or "postgresql://HOST/DB" not in help_text:
                cut.append((" ".join(path), help_text))
    assert checked > 20 and cut == []
    assert cut == []


@pytest.mark.parametrize("args", [("audit", "verify"), ("audit", "checkpoint"),
                                  ("audit", "prove", "0")])
def test_an_empty_key_path_is_said_to_be_empty(args: tuple[str, ...]) -> None:
    """``--key ''`` (a shell variable that was not set) is named as empty, not as the
    directory '.' that an empty path names."""
    from convoy.audit import AuditEvent, AuditLog
    from convoy.stores import SQLiteStore

    async def audited() -> None:  # (a store with a log: where the key is read)
        store = SQLiteStore("convoy.db")
        await store.open()
        try:
            await AuditLog(store).append("default", [AuditEvent(kind="tool_call",
                                                                status="ok", at=1.0)])
        finally:
            await store.aclose()

    asyncio.run(audited())
    res = cli(*args, "--key", "", "--db", "convoy.db")
    one_line_error(res, 2, "--key '' is empty: pass the path of the audit key file")
    assert "directory" not in res.stderr, res.stderr


def test_an_age_is_shown_on_one_line_as_it_was_read() -> None:
    """An age given with a newline, a tab or spaces around its unit (``$'1d\\n'``, read
    from a file) is read, and said as read: the line that names it stays one line."""
    run_ok()
    for age in ("1d\n", " 1d", "1\td", "1 d\r\n"):
        for extra in (("--dry-run",), ()):
            res = cli("purge", "--older-than", age, *extra)
            assert res.code == 0, res.stderr
            [line] = res.stdout.splitlines()
            assert "older than 1d" in line or "more than 1d ago" in line, (age, line)
            assert "\t" not in line and "\r" not in line, (age, line)
    one_line_error(cli("purge", "--older-than", "1x\n"), 2, r"age '1x\n' is not a positive")


def test_json_output_is_strict_json_with_a_nan_output() -> None:
    """A review: an output keeping NaN and infinities (stored as ``NaN``, ``Infinity``:
    Python reads them back) made ``sessions show --json`` and ``sessions list --json``
    print them bare, which no strict reader parses (``JSON.parse``, ``jq``). They are the
    texts ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` there."""
    import math

    @convoy.workflow(name="errors.nan_output")
    async def wf(ctx: convoy.Context, x: int) -> Any:
        return {"r": math.nan, "up": math.inf, "down": -math.inf}

    async def main() -> None:
        async with convoy.Engine("convoy.db") as eng:
            assert (await eng.run(wf, 1, session_id="n1")).ok

    asyncio.run(main())

    def strict(text: str) -> Any:
        def refuse(name: str) -> Any:
            raise AssertionError(f"not strict JSON: {name}")
        return json.loads(text, parse_constant=refuse)

    shown = strict(cli("sessions", "show", "n1", "--json").stdout)
    assert shown["output"] == {"r": "NaN", "up": "Infinity", "down": "-Infinity"}, shown
    listed = cli("sessions", "list", "--json")
    assert listed.code == 0, listed.stderr
    strict(listed.stdout)
