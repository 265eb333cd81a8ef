"""A message that suggests another ``convoy`` command suggests it with the ``--db`` and
``--tenant`` (or ``--all-tenants``) the user gave, so it reads the same store as the same
tenant: not ``./convoy.db``, not the tenant ``default``. What comes from ``$CONVOY_DB``
or ``$CONVOY_TENANT`` (or is the default) is left out: the next command gets it too."""

from __future__ import annotations

import shlex
import sqlite3
from pathlib import Path

import pytest

from tests.clikit import (
    cli,
    one_line_error,
    run_ok,
    session_ids,
    workdir,  # noqa: F401  (autouse fixture)
)


def test_an_unknown_session_suggests_sessions_list_on_the_same_store() -> None:
    run_ok("--db", "observed.db")
    one_line_error(cli("trace", "nosuch", "--db", "observed.db"), 2,
                   "'convoy sessions list --db observed.db' shows the ids")
    one_line_error(cli("sessions", "show", "nosuch", "--db", "observed.db", "-t", "acme"), 2,
                   "'convoy sessions list --db observed.db --tenant acme' shows the ids "
                   "(every tenant's: --all-tenants)")  # (the tenant may be the typo)
    one_line_error(cli("cancel", "nosuch", "--db", "observed.db", "--all-tenants"), 2,
                   "'convoy sessions list --db observed.db --all-tenants' shows the ids")


def test_what_the_environment_or_the_default_gives_is_left_out() -> None:
    run_ok("--db", "observed.db")
    res = cli("trace", "nosuch", env={"CONVOY_DB": "observed.db", "CONVOY_TENANT": "acme"})
    one_line_error(res, 2, "'convoy sessions list' shows the ids")
    run_ok()
    one_line_error(cli("trace", "nosuch", "--db", "convoy.db"), 2,
                   "'convoy sessions list' shows the ids")


def test_an_unknown_session_the_engine_finds_suggests_the_same_store() -> None:
    run_ok("--db", "observed.db")
    one_line_error(cli("retry", "nosuch", "--db", "observed.db", "--tenant", "acme"), 2,
                   "'convoy sessions list --db observed.db --tenant acme' shows the ids")


def test_unknown_state_suggests_state_list_for_the_same_tenant() -> None:
    run_ok("--db", "observed.db")
    one_line_error(cli("state", "get", "customer:42", "account", "--tenant", "other",
                       "--db", "observed.db"), 2,
                   "'convoy state list customer:42 --db observed.db --tenant other' shows")


def test_an_unknown_task_suggests_inbox_list_for_the_same_tenant() -> None:
    run_ok("--db", "observed.db")
    one_line_error(cli("inbox", "show", "nosuch:1", "--db", "observed.db", "-t", "acme"), 2,
                   "'convoy inbox list --db observed.db --tenant acme' shows them")


def test_sessions_show_says_what_continues_a_waiting_session_on_the_same_store() -> None:
    run_ok("--db", "w.db", "--tenant", "acme", lines=['"order 1"'],
           flow="cli_flows:approval")
    (sid,) = session_ids(Path("w.db"))
    shown = cli("sessions", "show", sid, "--db", "w.db", "--tenant", "acme")
    assert shown.code == 0, shown.stderr
    assert "'convoy worker cli_flows --db w.db --tenant acme'" in " ".join(shown.stdout.split())


@pytest.mark.parametrize(("kw", "env", "expected"), [
    ({}, {}, "'convoy sessions list'"),
    ({"db": "convoy.db", "tenant": "default"}, {}, "'convoy sessions list'"),
    ({"db": "x.db", "tenant": "acme"}, {}, "'convoy sessions list --db x.db --tenant acme'"),
    ({"db": "x.db", "tenant": "acme"}, {"CONVOY_DB": "x.db", "CONVOY_TENANT": "acme"},
     "'convoy sessions list'"),
    ({"db": "convoy.db"}, {"CONVOY_DB": "x.db"}, "'convoy sessions list --db convoy.db'"),
    ({"tenant": "default"}, {"CONVOY_TENANT": "acme"},
     "'convoy sessions list --tenant default'"),
    ({"all_tenants": True}, {}, "'convoy sessions list --all-tenants'"),
    ({"db": "sqlite:///x.db"}, {"CONVOY_DB": "x.db"}, "'convoy sessions list'"),
    ({"db": "my dir/x.db"}, {}, "'convoy sessions list --db \"my dir/x.db\"'"),
    # a password never shows, so the command says what to put back (review s24 F6) ...
    ({"db": "postgresql://u:secret@h/d"}, {},
     "'convoy sessions list --db postgresql://u:***@h/d' (with the password in place of ***)"),
    ({"db": "postgresql://h/d?password=secret"}, {},
     "'convoy sessions list --db \"postgresql://h/d?password=***\"' (with the password in "
     "place of ***)"),
    ({"db": "postgresql://u:***@h/d"}, {},  # (a store's url: masked already)
     "'convoy sessions list --db postgresql://u:***@h/d' (with the password in place of ***)"),
    # ... unless it is $CONVOY_DB's, given as it is or as a store's url shows it
    ({"db": "postgresql://u:secret@h/d"}, {"CONVOY_DB": "postgresql://u:secret@h/d"},
     "'convoy sessions list'"),
    ({"db": "postgresql://u:***@h/d?password=***"},
     {"CONVOY_DB": "postgresql://u:secret@h/d?password=secret"}, "'convoy sessions list'"),
    ({"db": "postgresql://u:***@h/other"}, {"CONVOY_DB": "postgresql://u:secret@h/d"},
     "'convoy sessions list --db postgresql://u:***@h/other' (with the password in place of "
     "***)"),
])
def test_command(kw: dict[str, object], env: dict[str, str], expected: str,
                 monkeypatch: pytest.MonkeyPatch) -> None:
    from convoy._command import command

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert command("sessions list", **kw) == expected  # type: ignore[arg-type]


def test_a_workflow_not_loaded_here_suggests_its_command_on_the_same_store() -> None:
    from tests.clikit import tamper

    run_ok("--db", "observed.db", "--tenant", "acme")
    sid = session_ids(Path("observed.db"))[0]
    tamper("UPDATE sessions SET workflow='desk.gone', status='failed' WHERE id=?", sid,
           db=Path("observed.db"))
    for args, said in (
            (("retry", sid),
             f"'convoy retry {sid} --import MODULE --db observed.db --tenant acme'"),
            (("replay", sid),
             f"'convoy replay {sid} --import MODULE --db observed.db --tenant acme'")):
        res = cli(*args, "--db", "observed.db", "--tenant", "acme")
        assert said in res.stderr, res.stderr
    tamper("UPDATE sessions SET status='pending', output=NULL WHERE id=?", sid,
           db=Path("observed.db"))
    res = cli("resume", "--db", "observed.db", "--tenant", "acme")
    assert "'convoy resume --import MODULE --db observed.db --tenant acme'" in res.stderr, \
        res.stderr


#: A store path a suggestion has to quote: a space, a single quote and a ``$``.
ODD = "my 'db $x.db"


def suggested(text: str) -> list[list[str]]:
    """The argv of every command ``text`` suggests: each ``'convoy ...'`` in the message's
    single quotes (it ends at the first single quote outside the command's own double
    quotes and backslashes), and each ``run: convoy ...`` or ``decide: convoy ...`` that
    ends its line (``|`` between alternatives)."""
    found = []
    for line in text.splitlines():
        head, tail = line, ""
        for lead in ("run: convoy ", "decide: convoy "):
            if lead in head:
                at = head.index(lead) + len(lead) - len("convoy ")
                head, tail = head[:at], head[at:]
        start = head.find("'convoy ")
        while start >= 0:
            i, quoted = start + 1, False
            while i < len(head) and (head[i] != "'" or quoted):
                if head[i] == "\\":
                    i += 1
                elif head[i] == '"':
                    quoted = not quoted
                i += 1
            found.append(shlex.split(head[start + 1:i]))
            start = head.find("'convoy ", i + 1)
        found += [shlex.split(part) for part in tail.split(" | ") if tail]
    return found


@pytest.mark.parametrize("db", [ODD, 'say "hi".db', "back\\slash.db", "tick`x`.db",
                                "bang!.db", "café.db", "→ arrow.db", "a'b.db", "$HOME",
                                "x$"])
def test_command_splits_back_to_the_store_it_names(db: str) -> None:
    from convoy._command import command

    argv = ["convoy", "sessions", "list", "--db", db, "--tenant", "a-b"]
    assert shlex.split(command("sessions list", db=db, tenant="a-b", quote=False)) == argv
    assert suggested(f"see {command('sessions list', db=db, tenant='a-b')} now") == [argv]


def test_every_suggested_command_splits_back_to_the_store_given() -> None:
    """Suggestions that quoted --db with shlex inside the message's single quotes (or left
    it out): each one, split as a shell splits it, is exactly the command meant."""
    from tests.test_cli_inbox import start

    start("refund", "c-7", "r1", tenant="acme")  # (a question, in ./convoy.db)
    Path("convoy.db").rename(ODD)
    db = ["--db", ODD]
    for args, argv in (
            (("sessions", "show", "nosuch"), ["sessions", "list", *db]),
            (("inbox", "show", "nosuch:1"), ["inbox", "list", *db]),
            (("state", "get", "ns", "k"), ["state", "list", "ns", *db]),
            (("inbox", "show", "r1:0", "-t", "acme"),
             ["inbox", "answer", "r1:0", *db, "--tenant", "acme"])):
        res = cli(*args, "--db", ODD)
        assert suggested(res.stdout + res.stderr) == [["convoy", *argv]], (args, res)
    with sqlite3.connect(ODD) as conn:  # a store an older Convoy wrote
        conn.execute("UPDATE meta SET value='7' WHERE key='schema_version'")
    conn.close()
    res = cli("sessions", "list", "--db", ODD)
    assert suggested(res.stderr) == [["convoy", "db", "migrate", *db]], res.stderr
    Path(ODD).unlink()
    Path(ODD).write_bytes(b"")
    res = cli("sessions", "list", "--db", ODD)
    assert suggested(res.stderr) == [["convoy", "db", "migrate", *db]], res.stderr
