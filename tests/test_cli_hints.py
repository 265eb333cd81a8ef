"""A message that suggests another ``convoy`` command suggests it with the ``--db`` and
``--tenant`` (or ``--all-tenants``) the user gave, so it reads the same store as the same
tenant: not ``./convoy.db``, not the tenant ``default``. What comes from ``$CONVOY_DB``
or ``$CONVOY_TENANT`` (or is the default) is left out: the next command gets it too."""

from __future__ import annotations

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
                   "'convoy sessions list --db observed.db --tenant acme' shows the ids")
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
    ({"db": "postgresql://u:secret@h/d"}, {},
     "'convoy sessions list --db postgresql://u:***@h/d'"),
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
