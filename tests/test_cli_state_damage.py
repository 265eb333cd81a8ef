"""Shared state and signals edited by hand in the store (or damaged): a command about one
value says in one line which value is wrong and exits 1; a listing shows the values it
can read and leaves the damaged one out with one warning line; a session that reads a
damaged value fails with that line as its error, and the engine goes on."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy._errors import error_from_record
from convoy.stores import SQLiteStore
from tests.clikit import (
    cli,
    one_line_error,
    tamper,
    workdir,  # noqa: F401  (autouse fixture)
    write_jsonl,
)

DAMAGED = "the store was edited or damaged"
DEEP = "[" * 5000 + "]" * 5000

#: A state value edited by hand, and what the one line says of it.
VALUES = [
    pytest.param(b"\x00\xff", "its stored value (binary, 2 bytes) is not text", id="binary"),
    pytest.param("{nope", "its stored value '{nope' is not JSON", id="not-json"),
    pytest.param('{"a": NaN}', "its stored value '{\"a\": NaN}' is not JSON", id="nan"),
    pytest.param(DEEP, "its stored value nests arrays and objects more than", id="deep"),
    pytest.param('{"a": %s}' % ("1" * 5000), "its stored value holds an integer with more "
                 "than 4300 digits, more than Python reads", id="huge-int"),
]


def _cell(sql: str) -> Any:
    with sqlite3.connect("convoy.db") as conn:
        value = conn.execute(sql).fetchone()[0]
    conn.close()
    return value


def _state() -> None:
    """``ns/k`` at versions 1 and 2, ``ns/other`` at version 1."""
    for key, value in (("k", '{"a": 1}'), ("k", '{"a": 2}'), ("other", "3")):
        res = cli("state", "set", "ns", key, value)
        assert res.code == 0, res.stderr


def test_how_to_replace_a_damaged_value_is_a_command_a_shell_runs() -> None:
    """A namespace only the shell's quotes (or a backslash) carry: the command ends the
    line, in the message's quotes only when it holds no single quote of its own."""
    import shlex

    for ns in ("it's", 'a"b'):
        assert cli("state", "set", ns, "k", "1").code == 0
        tamper("UPDATE state SET value='{nope' WHERE namespace=?", ns)
        [line] = cli("state", "set", ns, "k", "4").stderr.strip().splitlines()
        cmd = line.partition("to replace it, write against the version named: ")[2]
        if "'" not in cmd[1:-1]:
            cmd = cmd.removeprefix("'").removesuffix("'")
        assert shlex.split(cmd) == ["convoy", "state", "set", ns, "k", "JSON",
                                    "--expected-version", "VERSION"], line


def _warning(stderr: str, *said: str) -> None:
    assert "Traceback" not in stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith("warning: left out 1 damaged state row"), line
    for s in (*said, DAMAGED):
        assert s in line, line


@pytest.mark.parametrize(("value", "said"), VALUES)
def test_a_state_value_edited_by_hand_is_one_line(value: str | bytes, said: str) -> None:
    _state()
    tamper("UPDATE state SET value=? WHERE key='k'", value)
    tamper("UPDATE state_history SET value=? WHERE key='k' AND version=2", value)
    for args in (("get", "ns", "k"), ("get", "ns", "k", "--json")):
        one_line_error(cli("state", *args), 1, f"state 'ns' key 'k' version 2: {said}")
    assert _cell("SELECT value FROM state WHERE key='k'") == value
    # A write that reads the version first: the same line, and how to replace the value
    one_line_error(cli("state", "set", "ns", "k", "4"), 1,
                   f"state 'ns' key 'k' version 2: {said}")
    assert "to replace it, write against the version named: 'convoy state set ns k JSON " \
        "--expected-version VERSION'" in cli("state", "set", "ns", "k", "4").stderr
    assert _cell("SELECT value FROM state WHERE key='k'") == value  # nothing written
    # The way to correct it: a write over the version the line names.
    res = cli("state", "set", "ns", "k", "4", "--expected-version", "2")
    assert res.code == 0, res.stderr
    assert cli("state", "get", "ns", "k", "--json").code == 0


@pytest.mark.parametrize(("value", "said"), VALUES)
def test_state_list_and_history_leave_a_damaged_value_out(value: str | bytes,
                                                          said: str) -> None:
    _state()
    tamper("UPDATE state SET value=? WHERE key='k'", value)
    tamper("UPDATE state_history SET value=? WHERE key='k' AND version=1", value)
    res = cli("state", "list", "ns")
    assert res.code == 0 and "other" in res.stdout, (res.stdout, res.stderr)
    _warning(res.stderr, f"state 'ns' key 'k' version 2: {said}")
    res = cli("state", "list", "ns", "--json")
    assert res.code == 0, res.stderr
    assert [e["key"] for e in json.loads(res.stdout)] == ["other"]
    _warning(res.stderr, "state 'ns' key 'k' version 2")
    res = cli("state", "history", "ns", "k")
    assert res.code == 0, res.stderr
    _warning(res.stderr, f"state 'ns' key 'k' version 1: {said}")


def test_a_state_version_edited_into_text_is_one_line() -> None:
    _state()
    tamper("UPDATE state SET version='two' WHERE key='k'")
    one_line_error(cli("state", "get", "ns", "k"), 1,
                   "state 'ns' key 'k': its stored version 'two' is not a whole number")


@convoy.workflow(name="reads_state")
async def reads_state(ctx: convoy.Context, key: str) -> str:
    return repr((await ctx.state("ns").get(key)).value)


@pytest.mark.parametrize(("value", "said"), VALUES)
def test_a_session_reading_a_damaged_value_fails_with_the_line_and_the_engine_goes_on(
        value: str | bytes, said: str) -> None:
    _state()
    tamper("UPDATE state SET value=? WHERE key='k'", value)

    async def run() -> list[convoy.SessionResult[str]]:
        async with convoy.Engine(SQLiteStore(Path("convoy.db"))) as eng:
            return [await eng.run(reads_state, key, session_id=f"s-{key}")
                    for key in ("k", "other")]

    bad, good = asyncio.run(run())
    assert bad.status == "failed" and bad.error is not None, bad
    assert isinstance(error_from_record(bad.error), convoy.JournalError), bad.error
    assert f"state 'ns' key 'k' version 2: {said}" in bad.error["message"], bad.error
    assert good.status == "completed" and good.output == "3", good


# -- signals -------------------------------------------------------------------------------


def _queued() -> str:
    """A session waiting for ``approve``, with a signal queued for it; its id."""
    write_jsonl(Path("in.jsonl"), ['"pay me"'])
    assert cli("run", "cli_flows:approval", "--input", "in.jsonl").code == 0
    sid = str(_cell("SELECT id FROM sessions"))
    res = cli("signal", sid, "approve", "--payload", "true")
    assert res.code == 0, res.stderr
    return sid


def test_a_queued_signal_whose_time_was_edited_into_text_is_one_line() -> None:
    sid = _queued()
    tamper("UPDATE signals SET at='soon'")
    for args in ((), ("--json",)):
        one_line_error(cli("sessions", "show", sid, *args), 1,
                       f"signal 1 of session {sid!r}: its stored at 'soon' is not a number")
    assert _cell("SELECT at FROM signals") == "soon"


def test_a_signal_whose_time_was_edited_into_text_still_wakes_its_session() -> None:
    """Only ``sessions show`` reads a signal's time: the engine consumes it as before."""
    _queued()
    tamper("UPDATE signals SET at='soon'")
    res = cli("resume")
    assert res.code == 0, res.stderr
    assert _cell("SELECT status FROM sessions") == "completed"


# -- kv: an alert baseline -----------------------------------------------------------------


@pytest.mark.parametrize("value", [pytest.param(b"\x00\xff", id="binary"),
                                   pytest.param("{nope", id="not-json"),
                                   pytest.param("[1]", id="not-object"),
                                   pytest.param('{"count": "x"}', id="field-text"),
                                   pytest.param(DEEP, id="deep")])
def test_a_damaged_alert_baseline_is_learned_again_and_the_engine_starts(
        value: str | bytes, caplog: pytest.LogCaptureFixture) -> None:
    from convoy.alerts import BaselineAlerts

    async def start() -> BaselineAlerts:
        alerts = BaselineAlerts()
        async with convoy.Engine(SQLiteStore(Path("convoy.db")), interceptors=[alerts]):
            return alerts

    asyncio.run(start())  # (creates the store)
    key = "\x1f".join(("default", "agent", "triage", "latency"))
    good = "\x1f".join(("default", "agent", "billing", "latency"))
    tamper("INSERT INTO kv(namespace, key, value) VALUES('convoy.alerts', ?, ?)", key, value)
    tamper("INSERT INTO kv(namespace, key, value) VALUES('convoy.alerts', ?, ?)", good,
           '{"count": 3, "mean": 0.5, "deviation": 0.1}')
    alerts = asyncio.run(start())
    assert [s[2] for s in alerts.baselines] == ["billing"]
    (record,) = [r for r in caplog.records if "baseline" in r.getMessage()]
    assert "'triage'" in record.getMessage() and DAMAGED in record.getMessage()
