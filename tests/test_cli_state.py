"""``convoy state get|set|history|list``: a tenant's shared state from the command line,
compare-and-set writes, one-line errors."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from convoy.stores import StateWrite, store_from_url
from tests.clikit import (
    cli,
    one_line_error,
    subprocess_cli,
    workdir,  # noqa: F401  (autouse fixture)
)

from .conftest import STORE_KINDS, store_db


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, workdir: Path,  # noqa: F811
          monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The store of the test's commands (``CONVOY_DB``): SQLite (``convoy.db`` in the
    test's own directory), then PostgreSQL."""
    where = store_db(request.param, workdir)
    url = str(next(where))
    monkeypatch.setenv("CONVOY_DB", url)
    yield url
    next(where, None)


def seed(*writes: StateWrite) -> None:
    async def go() -> None:
        store = store_from_url(os.environ.get("CONVOY_DB") or "convoy.db")
        await store.open()
        try:
            for w in writes:
                assert (await store.state_put(w)).written
        finally:
            await store.aclose()

    asyncio.run(go())


def w(value: object, expected: int, *, key: str = "account", tenant: str = "default",
      namespace: str = "customer:42", session: str | None = None) -> StateWrite:
    return StateWrite(tenant=tenant, namespace=namespace, key=key, value=json.dumps(value),
                      expected_version=expected, session_id=session,
                      step_key="0/2" if session else None, agent="billing" if session else None)


@pytest.mark.usefixtures("store")
def test_get_shows_the_value_its_version_and_its_writer() -> None:
    seed(w({"credit": 10}, 0), w({"credit": 4}, 1, session="s-1"))
    res = cli("state", "get", "customer:42", "account")
    assert res.code == 0, res.stderr
    assert json.loads(res.stdout[:res.stdout.index("version")]) == {"credit": 4}
    assert "version 2, written by session s-1 (agent billing, step 0/2)" in res.stdout
    as_json = json.loads(cli("state", "get", "customer:42", "account", "--json").stdout)
    assert (as_json["version"], as_json["value"], as_json["session_id"]) == (
        2, {"credit": 4}, "s-1")


@pytest.mark.usefixtures("store")
def test_set_is_compare_and_set() -> None:
    res = cli("state", "set", "customer:42", "account", '{"credit": 1}')
    assert res.code == 0, res.stderr
    assert res.stdout.strip() == "customer:42/account is at version 1"
    res = cli("state", "set", "customer:42", "account", '{"credit": 2}', "--expected-version", "1")
    assert res.code == 0 and "version 2" in res.stdout
    stale = cli("state", "set", "customer:42", "account", '{"credit": 9}', "-e", "1")
    one_line_error(stale, 1, "expected version 1 but it is at version 2; nothing was written")
    res = cli("state", "set", "customer:42", "account", '{"credit": 3}')  # the current one
    assert res.code == 0 and "version 3" in res.stdout
    assert json.loads(cli("state", "get", "customer:42", "account", "--json").stdout)[
        "value"] == {"credit": 3}


@pytest.mark.usefixtures("store")
def test_history_lists_every_version_oldest_first() -> None:
    seed(w(1, 0), w(2, 1, session="s-1"), w(3, 2))
    res = cli("state", "history", "customer:42", "account")
    assert res.code == 0, res.stderr
    rows = [line for line in res.stdout.splitlines() if line.startswith("│")]
    assert [r.split("│")[1].strip() for r in rows] == ["1", "2", "3"]
    assert "s-1" in rows[1] and "billing" in rows[1]
    newest = json.loads(cli("state", "history", "customer:42", "account", "-n", "2",
                            "--json").stdout)
    assert [e["version"] for e in newest] == [2, 3]


@pytest.mark.usefixtures("store")
def test_list_shows_namespaces_then_keys_of_one() -> None:
    seed(w(1, 0), w(2, 0, key="notes"), w(3, 0, namespace="settings", key="mode"))
    res = cli("state", "list")
    assert res.code == 0 and "customer:42" in res.stdout and "settings" in res.stdout
    assert json.loads(cli("state", "list", "--json").stdout) == {"customer:42": 2,
                                                                 "settings": 1}
    keys = json.loads(cli("state", "list", "customer:42", "--json").stdout)
    assert [(e["key"], e["value"]) for e in keys] == [("account", 1), ("notes", 2)]
    assert "no keys in namespace 'nope'" in cli("state", "list", "nope").stdout


@pytest.mark.usefixtures("store")
def test_list_leaves_out_convoys_own_namespaces_and_says_where_tasks_are() -> None:
    """Human tasks are kept in the state table, in 'convoy.inbox': not the application's
    state (``db info`` does not count them as state keys either)."""
    seed(w(1, 0), w("{}", 0, namespace="convoy.inbox", key="s-1:0"))
    res = cli("state", "list")
    assert res.code == 0 and "customer:42" in res.stdout
    assert "convoy.inbox" not in res.stdout
    assert "1 human task is kept in 'convoy.inbox' ('convoy inbox list' shows it)" in \
        res.stderr
    assert json.loads(cli("state", "list", "--json").stdout) == {"customer:42": 1}
    seed(w("{}", 0, namespace="convoy.inbox", key="s-1:0", tenant="acme"),
         w("{}", 0, namespace="convoy.inbox", key="s-2:0", tenant="acme"))
    only = cli("state", "list", "-t", "acme")  # tasks, and no state of its own
    assert "no shared state for tenant 'acme'" in only.stdout
    # (the command it suggests reads the tenant and store it was given: review of stop 44)
    assert "2 human tasks are kept in 'convoy.inbox' ('convoy inbox list --tenant acme' " \
        "shows them)" in only.stderr, only.stderr


@pytest.mark.usefixtures("store")
def test_every_command_sees_only_its_tenant() -> None:
    seed(w("acme's", 0, tenant="acme"), w("default's", 0))
    assert json.loads(cli("state", "get", "customer:42", "account", "--tenant", "acme",
                          "--json").stdout)["value"] == "acme's"
    assert json.loads(cli("state", "get", "customer:42", "account", "--json").stdout)[
        "value"] == "default's"
    one_line_error(cli("state", "get", "customer:42", "account", "-t", "globex"), 2,
                   "no state customer:42/account (tenant 'globex')")
    one_line_error(cli("state", "history", "customer:42", "account", "-t", "globex"), 2,
                   "no state customer:42/account (tenant 'globex')")
    assert "no shared state for tenant 'globex'" in cli("state", "list", "-t",
                                                        "globex").stdout
    # the default tenant, not named: the line says state may be another tenant's (a
    # --tenant left out is the likeliest reason: review of stop 44); a named one, no hint
    seed(w("acme's", 0, tenant="acme", namespace="contacts", key="last"))
    for args in (["get", "contacts", "last"], ["history", "contacts", "last"]):
        one_line_error(cli("state", *args), 2, "(for other tenants: --tenant NAME)")
        assert "other tenants" not in cli("state", *args, "-t", "globex").stderr
    assert "(for other tenants: --tenant NAME)" in cli("state", "list", "contacts").stdout
    assert "other tenants" not in cli("state", "list", "contacts", "-t", "globex").stdout
    res = cli("state", "set", "customer:42", "account", '"globex\'s"', "-t", "globex")
    assert res.code == 0 and "version 1" in res.stdout  # its own key, not acme's


def test_bad_input_is_one_line() -> None:
    one_line_error(cli("state", "get", "ns", "k"), 2, "no Convoy store at 'convoy.db'")
    one_line_error(cli("state", "set", "ns", "k", "not json"), 2, "the value is not JSON")
    seed(w(1, 0))
    one_line_error(cli("state", "get", "customer:42", "missing"), 2,
                   "'convoy state list customer:42' shows its keys")
    one_line_error(cli("state", "set", "ns", "k", "1", "--db", "no/such/dir/x.db"), 2,
                   "does not exist")


def suggested(stderr: str, start: str) -> list[str]:
    """The arguments of the command an error line suggests (``start``: how it begins):
    inside the message's single quotes, or, after a colon, the rest of the line."""
    [line] = stderr.strip().splitlines()
    at = line.index(start)
    cmd = line[at:line.index("'", at)] if line[at - 1] == "'" else line[at:]
    return shlex.split(cmd)


#: Namespaces a shell reads only in quotes (or escaped), and one it reads as it is.
SHELL_WORDS = ['a"b', "a\\b", "it's", "cost $5!", "x y", "a'b\"c\\", "`id`", "customer:42"]


@pytest.mark.parametrize("namespace", SHELL_WORDS)
def test_a_suggested_command_is_one_a_shell_runs_as_it_is_shown(namespace: str) -> None:
    """Not ``'convoy state list 'a"b''``: quotes of the shell's own inside the message's."""
    seed(w(1, 0, namespace=namespace, tenant="acme"))
    for how in ("get", "history"):
        res = cli("state", how, namespace, "missing", "--tenant", "acme")
        one_line_error(res, 2, "no state ")
        assert suggested(res.stderr, "convoy state list") == [
            "convoy", "state", "list", namespace, "--tenant", "acme"], res.stderr
    res = cli("state", "set", namespace, "account", "2", "-e", "7", "--tenant", "acme")
    one_line_error(res, 1, "state ")
    assert suggested(res.stderr, "convoy state get") == [
        "convoy", "state", "get", namespace, "account", "--tenant", "acme"], res.stderr


@pytest.mark.parametrize("namespace", ["a\x1b[31mb", "a\nb", "n" * 300])
def test_a_namespace_a_line_cannot_show_as_it_is_suggests_the_list_of_namespaces(
        namespace: str) -> None:
    """A control character (no state is kept under one) would be an escape in the line,
    not the character; a namespace cut short, another namespace."""
    seed(w(1, 0, tenant="acme"))
    res = cli("state", "get", namespace, "missing", "--tenant", "acme")
    one_line_error(res, 2, "no state ")
    assert suggested(res.stderr, "convoy state list") == [
        "convoy", "state", "list", "--tenant", "acme"], res.stderr
    assert "'convoy state list --tenant acme' shows its namespaces" in res.stderr


@pytest.mark.usefixtures("store")
def test_set_refuses_what_json_cannot_carry_and_empty_names() -> None:
    """NaN and infinities (Python's json module reads them) would be printed back as
    invalid JSON by 'get --json'; an empty namespace or key names nothing."""
    for value in ("NaN", "Infinity", "-Infinity", "1e999", '{"a": [NaN]}', "-1e400"):
        one_line_error(cli("state", "set", "--", "ns", "k", value), 2,
                       "the value is not JSON: NaN and infinite numbers are not JSON")
    for value in ("1" * 5000, f"[-{'9' * 4301}]"):  # more digits than Python reads
        one_line_error(cli("state", "set", "--", "ns", "k", value), 2,
                       "the value: an integer with more than 4300 digits")
    one_line_error(cli("state", "set", "", "k", "1"), 2, "the namespace is empty")
    one_line_error(cli("state", "set", "ns", "", "1"), 2, "the key is empty")
    assert "no Convoy store" in cli("state", "get", "ns", "k").stderr  # nothing written


def test_a_lone_surrogate_an_earlier_release_stored_is_shown_escaped(workdir: Path  # noqa: F811
                                                                     ) -> None:
    """A value holding a lone surrogate (refused today, stored by an earlier release: its
    JSON escape, written here straight into the tables) is shown escaped by every command
    that reads it, as valid JSON where JSON is printed; never a traceback."""
    assert cli("state", "set", "ns", "k", '"x"').code == 0
    conn = sqlite3.connect("convoy.db")
    with conn:
        for table in ("state", "state_history"):
            conn.execute(f"UPDATE {table} SET value=?", ('{"caf\\u00e9 \\ud800": "\\udfff"}',))
    conn.close()
    for args in (("get",), ("get", "--json"), ("history",), ("history", "--json"),
                 ("list",), ("list", "--json")):
        res = cli("state", *args[:1], "ns", *(("k",) if args[0] != "list" else ()),
                  *args[1:])
        assert res.code == 0, (args, res.stdout, res.stderr)
        assert "\\ud800" in res.stdout and "\\udfff" in res.stdout, (args, res.stdout)
        assert "Traceback" not in res.stdout + res.stderr
        if "--json" in args:
            json.loads(res.stdout)
    assert json.loads(cli("state", "get", "ns", "k").stdout.split("\nversion")[0]) == {
        "café \ud800": "\udfff"}
    # The real standard output, which refuses to encode a lone surrogate.
    res = subprocess_cli(workdir, "state", "get", "ns", "k")
    assert res.returncode == 0 and "\\ud800" in res.stdout, res.stderr
    assert not res.stderr
