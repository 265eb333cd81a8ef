"""A store whose rows were edited by hand (or damaged): every command about one row that
reads it says, in one line, which value of which row is wrong, and exits 1, never a
traceback; where the rest is worth showing (a listing or a sum over many rows, the other
chunks of a trace), it shows it and says what it left out (listings:
``tests/test_cli_store_left_out.py``). Nothing in the store is changed by reading it."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.audit import AuditInterceptor
from convoy.stores import NewAlert, SQLiteStore
from tests.clikit import (
    GOOD,
    cli,
    ids_of,
    one_line_error,
    run_live_traced,
    tamper,
    workdir,  # noqa: F401  (autouse fixture)
)

DAMAGED = "the store was edited or damaged"
DEEP = "[" * 5000 + "]" * 5000


def _store() -> str:
    """One finished session with its spans kept and one open alert; its id."""
    run_live_traced([GOOD[0]])

    async def alert() -> None:
        store = SQLiteStore(Path("convoy.db"))
        await store.open()
        try:
            await store.alert_open(NewAlert(
                tenant="default", scope="agent", subject="triage", metric="latency",
                value=3.0, mean=0.5, deviation=0.05, threshold=0.65, opened=1.8e9), [])
        finally:
            await store.aclose()

    asyncio.run(alert())
    return ids_of(GOOD[:1])[0]


def _cell(sql: str) -> Any:
    with sqlite3.connect("convoy.db") as conn:
        value = conn.execute(sql).fetchone()[0]
    conn.close()
    return value


#: A hand edit, the commands about the one row that read the value (``SID``: the session's
#: id), the listings that leave the row out, what the one line says, and the query that
#: reads the value back (it must still be there).
EDITS = [
    pytest.param("UPDATE journal SET cost='nan' WHERE key='0/0'",
                 [["sessions", "show", "SID"], ["sessions", "show", "SID", "--json"]],
                 [["cost"], ["cost", "--by", "model"], ["cost", "--json"]],
                 "session 'SID' step '0/0': its stored cost 'nan' is not a number",
                 "SELECT cost FROM journal WHERE key='0/0'", id="journal-cost-nan"),
    pytest.param("UPDATE journal SET cost=X'00ff' WHERE key='0/0'",
                 [["sessions", "show", "SID", "--json"]], [["cost"]],
                 "session 'SID' step '0/0': its stored cost (binary, 2 bytes) is not a number",
                 "SELECT hex(cost) FROM journal WHERE key='0/0'", id="journal-cost-blob"),
    pytest.param("UPDATE journal SET input_tokens='many' WHERE key='0/0'",
                 [["sessions", "show", "SID"]], [["cost"]],
                 "session 'SID' step '0/0': its stored input_tokens 'many' is not a whole "
                 "number", "SELECT input_tokens FROM journal WHERE key='0/0'",
                 id="journal-tokens-text"),
    pytest.param("UPDATE journal SET result=X'00ff' WHERE key='0/0'",
                 [["sessions", "show", "SID"], ["sessions", "show", "SID", "--json"],
                  ["replay", "SID"]], [],
                 "session 'SID' step '0/0': its stored result (binary, 2 bytes) is not text",
                 "SELECT hex(result) FROM journal WHERE key='0/0'", id="journal-result-blob"),
    pytest.param("UPDATE sessions SET cost='nan'",
                 [["sessions", "show", "SID"]], [["sessions", "list"], ["cost"]],
                 "session 'SID': its stored cost 'nan' is not a number",
                 "SELECT cost FROM sessions", id="session-cost-nan"),
    pytest.param("UPDATE sessions SET steps='y'",
                 [["sessions", "show", "SID"]], [["sessions", "list"], ["cost"]],
                 "session 'SID': its stored steps 'y' is not a whole number",
                 "SELECT steps FROM sessions", id="session-steps-text"),
    pytest.param("UPDATE sessions SET created='yesterday'",
                 [["sessions", "show", "SID"]], [["sessions", "list"], ["cost"]],
                 "session 'SID': its stored created 'yesterday' is not a number",
                 "SELECT created FROM sessions", id="session-created-text"),
    pytest.param("UPDATE sessions SET output=X'00ff'",
                 [["sessions", "show", "SID"], ["sessions", "show", "SID", "--json"],
                  ["replay", "SID"]], [],
                 "session 'SID': its stored output (binary, 2 bytes) is not text",
                 "SELECT hex(output) FROM sessions", id="session-output-blob"),
    pytest.param("UPDATE sessions SET input=X'00ff'",
                 [["sessions", "show", "SID", "--json"], ["replay", "SID"]], [],
                 "session 'SID': its stored input (binary, 2 bytes) is not text",
                 "SELECT hex(input) FROM sessions", id="session-input-blob"),
    pytest.param("UPDATE sessions SET headers='{nope'",
                 [["sessions", "show", "SID"], ["sessions", "show", "SID", "--json"],
                  ["trace", "SID"], ["replay", "SID"]], [],
                 "session 'SID': its stored headers '{nope' are not a JSON object of text",
                 "SELECT headers FROM sessions", id="session-headers-not-json"),
    pytest.param("UPDATE sessions SET headers='[1]'",
                 [["sessions", "show", "SID"], ["trace", "SID"]], [],
                 "session 'SID': its stored headers '[1]' are not a JSON object of text",
                 "SELECT headers FROM sessions", id="session-headers-list"),
    pytest.param("UPDATE sessions SET status='failed', output=NULL, error='{nope'",
                 [["sessions", "show", "SID"], ["sessions", "show", "SID", "--json"],
                  ["replay", "SID"]], [],
                 "session 'SID': its stored error '{nope' is not JSON",
                 "SELECT error FROM sessions", id="session-error-not-json"),
    pytest.param(f"UPDATE sessions SET output='{DEEP}'",
                 [["sessions", "show", "SID"], ["sessions", "show", "SID", "--json"]], [],
                 "session 'SID': its stored output nests arrays and objects more than",
                 "SELECT length(output) FROM sessions", id="session-output-deep"),
    pytest.param(f"UPDATE journal SET result='{DEEP}' WHERE key='0/2'",
                 [["sessions", "show", "SID", "--json"]], [],
                 "session 'SID' step '0/2': its stored result nests arrays and objects more",
                 "SELECT length(result) FROM journal WHERE key='0/2'",
                 id="journal-result-deep"),
    pytest.param("UPDATE alerts SET value='nan'", [], [["alerts"], ["alerts", "--json"]],
                 "alert 1: its stored value 'nan' is not a number", "SELECT value FROM alerts",
                 id="alert-value-nan"),
    pytest.param("UPDATE alerts SET opened='soon'", [], [["alerts"], ["alerts", "--json"]],
                 "alert 1: its stored opened 'soon' is not a number",
                 "SELECT opened FROM alerts", id="alert-opened-text"),
    # A number, but not a time that can be shown (out of datetime's range): a time edited
    # by hand, or one a clock in milliseconds wrote
    pytest.param("UPDATE alerts SET opened=1e300", [], [["alerts"], ["alerts", "--json"]],
                 "alert 1: its stored opened 1e+300 is not a time in seconds between the "
                 "years 1 and 9999", "SELECT opened FROM alerts", id="alert-opened-huge"),
    pytest.param("UPDATE alerts SET cleared=-1e300", [], [["alerts"]],
                 "alert 1: its stored cleared -1e+300 is not a time",
                 "SELECT cleared FROM alerts", id="alert-cleared-huge"),
    pytest.param("UPDATE sessions SET created=1e300",
                 [["sessions", "show", "SID"], ["sessions", "show", "SID", "--json"]],
                 [["sessions", "list"], ["sessions", "list", "--json"]],
                 "session 'SID': its stored created 1e+300 is not a time in seconds between "
                 "the years 1 and 9999", "SELECT created FROM sessions",
                 id="session-created-huge"),
    pytest.param("UPDATE sessions SET finished=finished*1000",
                 [["sessions", "show", "SID"]], [["sessions", "list"]],
                 "session 'SID': its stored finished ", "SELECT finished FROM sessions",
                 id="session-finished-milliseconds"),
    pytest.param(f"UPDATE alerts SET detail='{DEEP}'", [], [["alerts", "--json"]],
                 "alert 1: its stored detail nests arrays and objects more than",
                 "SELECT length(detail) FROM alerts", id="alert-detail-deep"),
]


@pytest.mark.parametrize(("edit", "commands", "listings", "said", "value"), EDITS)
def test_a_value_edited_by_hand_is_one_line_and_stays_as_it_was(
        edit: str, commands: list[list[str]], listings: list[list[str]], said: str,
        value: str) -> None:
    sid = _store()
    tamper(edit)
    before = _cell(value)
    for args in commands:
        res = cli(*[sid if a == "SID" else a for a in args])
        one_line_error(res, 1, said.replace("SID", sid))
        assert res.stderr.rstrip().endswith(DAMAGED), res.stderr
        assert _cell(value) == before
    for args in listings:  # (the listing goes on without the row: test_cli_store_left_out)
        res = cli(*args)
        assert res.code == 0 and "Traceback" not in res.stderr, res.stderr
        (line,) = res.stderr.strip().splitlines()
        assert line.startswith("warning: left out 1 damaged"), line
        assert said.replace("SID", sid) in line and DAMAGED in line, line
        assert _cell(value) == before


def test_a_result_that_is_not_json_still_costs_its_tokens() -> None:
    """``convoy cost`` reads a model step's result only for its model's name: a result it
    cannot read counts under no model, as before; one nested too deep too."""
    _store()
    tamper(f"UPDATE journal SET result='{DEEP}' WHERE key='0/0'")
    res = cli("cost", "--by", "model")
    assert res.code == 0, res.stderr
    assert "sim:cli" in res.stdout and "(unknown)" in res.stdout, res.stdout


# -- spans: one damaged chunk is left out, the others shown --------------------------------

BAD_CHUNKS = [pytest.param(b"\x00\xff\x10", id="binary"), pytest.param("{not json", id="text"),
              pytest.param(DEEP, id="deep")]


@pytest.mark.parametrize("chunk", BAD_CHUNKS)
def test_a_damaged_chunk_of_spans_is_left_out_and_the_rest_shown(chunk: str | bytes) -> None:
    sid = _store()
    tamper("INSERT INTO kv(namespace, key, value) VALUES(?, ?, ?)", f"trace:{sid}", "zz",
           chunk)
    for args in ((), ("--json",)):
        res = cli("trace", sid, *args)
        assert res.code == 0, res.stderr
        assert "Traceback" not in res.stderr
        (line,) = res.stderr.strip().splitlines()
        assert line.startswith(f"left out: 1 chunk of the spans of session {sid!r}"), line
        assert "key 'zz'" in line and DAMAGED in line, line
        spans = json.loads(res.stdout) if args else None
        assert spans is None or len(spans) > 1
        assert args or "trace " in res.stdout
    assert _cell("SELECT count(*) FROM kv WHERE key='zz'") == 1


@pytest.mark.parametrize("chunk", BAD_CHUNKS)
def test_spans_whose_every_chunk_is_damaged_are_one_line(chunk: str | bytes) -> None:
    sid = _store()
    tamper("UPDATE kv SET value=? WHERE namespace=?", chunk, f"trace:{sid}")
    for args in ((), ("--json",)):
        one_line_error(cli("trace", sid, *args), 1,
                       f"the spans kept for session {sid!r} are damaged")


# -- the audit log -------------------------------------------------------------------------


def _audited() -> None:
    import cli_flows

    async def run() -> None:
        async with convoy.Engine(SQLiteStore(Path("convoy.db")),
                                 interceptors=[AuditInterceptor()]) as eng:
            assert (await eng.run(cli_flows.handle, GOOD[0], session_id="s1")).ok

    asyncio.run(run())


@pytest.mark.parametrize("body", [
    pytest.param(DEEP.encode(), id="deep"),
    pytest.param(b'{"v":1,"kind":"model_call","status":"ok","at":"noon"}', id="at-text"),
    pytest.param(b'{"v":1,"kind":"model_call","status":{"a":1},"at":1.0,"actor":[1]}',
                 id="fields-not-text"),
    pytest.param(b'{"v":1,"kind":"nonsense","status":"ok","at":1.0}', id="unknown-kind"),
])
def test_an_audit_entry_edited_by_hand_is_listed_as_not_an_event(body: bytes) -> None:
    _audited()
    tamper("UPDATE audit_log SET body=? WHERE idx=1", body)
    res = cli("audit", "list")
    assert res.code == 0 and "Traceback" not in res.stderr, res.stderr
    assert "not an audit" in " ".join(res.stdout.split()), res.stdout  # (a cell may wrap)
    res = cli("audit", "list", "--json")
    assert res.code == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert rows[1] == {"index": 1, "kind": None,
                       "error": "not an audit event: run 'convoy audit verify'"}
    one_line_error(cli("audit", "verify"), 1, "audit entry 1")
    assert _cell("SELECT body FROM audit_log WHERE idx=1") == body
    # (another store's: the command it suggests reads that one: review of stop 44)
    shutil.copy("convoy.db", "copy.db")
    res = cli("audit", "list", "--json", "--db", "copy.db")
    assert json.loads(res.stdout.splitlines()[1])["error"] == \
        "not an audit event: run 'convoy audit verify --db copy.db'", res.stdout


# -- ids echoed in messages ----------------------------------------------------------------

LONG = "x" * 100_000


@pytest.mark.parametrize("args", [
    ["sessions", "show", LONG], ["trace", LONG], ["replay", LONG], ["cancel", LONG],
    ["signal", LONG, "go"], ["inbox", "show", LONG], ["inbox", "show", f"{LONG}:0"],
    ["audit", "list", "--tenant", LONG], ["state", "get", LONG, "k"],
])
def test_a_huge_id_is_echoed_shortened(args: list[str]) -> None:
    _store()
    res = cli(*args)
    assert res.code == 2, (res.code, res.stderr[:300])
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("error: ") and len(line) < 1000, line[:300]
    assert "xxxx…" in line, line[:300]
