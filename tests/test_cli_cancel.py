"""``convoy cancel`` of a session that another live engine runs: a cancel request, said in
one line (the engine that runs it stops it; the command does not wait for it)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sqlite3
import subprocess
import sys
import time
from typing import Any

import pytest

from convoy.stores import SQLiteStore, store_from_url
from convoy.stores._protocol import CANCEL_SIGNAL
from tests.clikit import (
    GOOD,
    cli,
    ids_of,
    run_ok,
    session,
    tamper,
    workdir,  # noqa: F401  (autouse fixture)
)


def _requested(sid: str) -> bool:
    async def read() -> bool:
        store = store_from_url("convoy.db")
        await store.open()
        try:
            return await store.next_signal(sid, CANCEL_SIGNAL) is not None
        finally:
            await store.aclose()

    return asyncio.run(read())


def test_cancel_of_a_session_running_on_another_engine_requests_it() -> None:
    run_ok()
    sid = ids_of(GOOD)[0]
    # What a live engine on another machine holds: the session, under a 30 s lease.
    tamper("UPDATE sessions SET status='running', output=NULL, finished=NULL, "
           "owner='elsewhere:1:e1', lease_until=? WHERE id=?", time.time() + 30, sid)
    res = cli("cancel", sid)
    assert res.code == 0, res.stderr
    [line] = res.stdout.strip().splitlines()
    m = re.fullmatch(
        rf"cancel requested: session {sid} is running on engine elsewhere:1:e1, which "
        r"stops it at its next lease renewal \(within about (\d+) s; if that engine died, "
        r"the engine that takes the session over cancels it; if it parks first, the engine "
        r"that runs it next, 'convoy worker cli_flows' or 'convoy resume', does\)", line)
    assert m is not None, line
    assert 1 <= int(m.group(1)) <= 30
    assert session(sid).status == "running"  # still its owner's, until it renews
    assert _requested(sid)
    # Asked again: the same answer (the request stands; nothing is refused).
    again = cli("cancel", sid)
    assert again.code == 0 and again.stdout.startswith("cancel requested: "), again
    with sqlite3.connect("convoy.db") as conn:  # the request stands once, not twice
        assert conn.execute("SELECT count(*) FROM signals WHERE name=?",
                            (CANCEL_SIGNAL,)).fetchone() == (1,)
    conn.close()
    # 'sessions show' says a cancel is pending (an operator sees why it is still running).
    shown = cli("sessions", "show", sid)
    assert shown.code == 0, shown.stderr
    assert re.search(r"cancel requested\s+at \d{4}-\d\d-\d\d", shown.stdout), shown.stdout
    # What happens next, as it is: its engine ends it (not "'convoy resume' finishes it",
    # which leaves a session a live engine runs alone).
    said = " ".join(shown.stdout.split())
    assert "running on engine elsewhere:1:e1, which ends it cancelled at its next lease " \
        "renewal" in said, said
    assert "finishes it" not in said
    as_json = json.loads(cli("sessions", "show", sid, "--json").stdout)
    assert isinstance(as_json["cancel_requested"], float)


def test_sessions_show_says_no_cancel_request_for_a_session_without_one() -> None:
    run_ok()
    sid = ids_of(GOOD)[0]
    tamper("UPDATE sessions SET status='running', output=NULL, finished=NULL, "
           "owner='elsewhere:1:e1', lease_until=? WHERE id=?", time.time() + 30, sid)
    said = " ".join(cli("sessions", "show", sid).stdout.split())
    assert "running on engine elsewhere:1:e1; if that engine stops, its lease lapses and " \
        "the next 'convoy worker cli_flows' or 'convoy resume' continues it from its " \
        "journal" in said
    assert "cancel requested" not in cli("sessions", "show", sid).stdout
    assert json.loads(cli("sessions", "show", sid, "--json").stdout)["cancel_requested"] is None


def test_cancel_help_says_a_session_running_elsewhere_is_stopped_by_its_engine() -> None:
    res = cli("cancel", "--help")
    assert res.code == 0
    text = " ".join(res.stdout.split())
    assert "next lease renewal" in text
    assert "cancel it there" not in text


def test_sessions_list_shows_which_sessions_a_cancel_is_requested_for() -> None:
    """An operator who cancelled a session another engine runs sees it in the listing,
    not only in 'sessions show': it stays 'running' until that engine stops it."""
    run_ok()
    sid, other, _ = ids_of(GOOD)
    for s in (sid, other):
        tamper("UPDATE sessions SET status='running', output=NULL, finished=NULL, "
               "owner='elsewhere:1:e1', lease_until=? WHERE id=?", time.time() + 30, s)
    assert cli("cancel", sid).code == 0
    listed = cli("sessions", "list")
    assert listed.code == 0, listed.stderr
    [row] = [x for x in listed.stdout.splitlines() if sid in x]
    assert "running (cancel requested)" in row, listed.stdout
    [row] = [x for x in listed.stdout.splitlines() if other in x]
    assert "cancel" not in row, listed.stdout
    # A narrow terminal's list says it too
    narrow = cli("sessions", "list", env={"COLUMNS": "40"})
    assert "running (cancel requested)" in " ".join(narrow.stdout.split()), narrow.stdout
    rows = {r["id"]: r for r in json.loads(cli("sessions", "list", "--json").stdout)["sessions"]}
    assert isinstance(rows[sid]["cancel_requested"], float)
    assert rows[other]["cancel_requested"] is None
    assert [r["cancel_requested"] for i, r in rows.items() if i not in (sid, other)] == [None]


def test_sessions_list_reads_the_cancel_requests_of_a_page_in_one_query(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Not one read per listed session: ``--limit 10000`` on PostgreSQL would be 10,000
    round trips."""
    run_ok()
    ids = ids_of(GOOD)
    for s in ids:
        tamper("UPDATE sessions SET status='running', output=NULL, finished=NULL, "
               "owner='elsewhere:1:e1', lease_until=? WHERE id=?", time.time() + 30, s)
    assert cli("cancel", ids[0]).code == 0 and cli("cancel", ids[2]).code == 0
    reads: list[str] = []
    read = SQLiteStore._read

    def counted(self: SQLiteStore, sql: str, params: Any = ()) -> list[Any]:
        if "FROM signals" in sql:
            reads.append(sql)
        return read(self, sql, params)

    monkeypatch.setattr(SQLiteStore, "_read", counted)
    listed = cli("sessions", "list")
    assert listed.code == 0, listed.stderr
    assert listed.stdout.count("(cancel requested)") == 2, listed.stdout
    assert len(reads) == 1, reads
    reads.clear()
    rows = json.loads(cli("sessions", "list", "--json").stdout)["sessions"]
    assert sum(r["cancel_requested"] is not None for r in rows) == 2, rows
    assert len(reads) == 1, reads


def test_sessions_show_of_a_session_whose_engine_died_here_counts_its_journal() -> None:
    """A session whose engine was killed (its process gone from this machine, its lease not
    lapsed yet): ``sessions show`` counts the steps its journal holds (the row's count is
    written when a run ends) and says it can be resumed now, not that it runs."""
    run_ok()
    sid = ids_of(GOOD)[0]
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = f"{socket.gethostname()}:{gone.stdout.strip()}:e1"
    with sqlite3.connect("convoy.db") as conn:
        journaled = conn.execute("SELECT count(*) FROM journal WHERE session_id=?",
                                 (sid,)).fetchone()[0]
    conn.close()
    assert journaled > 0
    tamper("UPDATE sessions SET status='running', output=NULL, finished=NULL, steps=0, "
           "owner=?, lease_until=? WHERE id=?", dead, time.time() + 30, sid)
    said = " ".join(cli("sessions", "show", sid).stdout.split())
    assert f"steps {journaled} " in said, said
    assert "running on engine" not in said and "'convoy resume' (or re-running the same " \
        "'convoy run') finishes it" in said, said
