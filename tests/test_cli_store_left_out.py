"""A listing or a sum over many rows of a store, one of which was edited by hand (or
damaged): the command shows (or sums) every row it can read, leaves the damaged one out,
says so in one line on stderr, and exits 0. A command about that one row still fails
with one line (``tests/test_cli_store_damage.py``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from convoy import JournalError
from convoy.stores import (
    LeftOut,
    NewAlert,
    NewSession,
    SessionFilter,
    SQLiteStore,
    StateWrite,
    StepRecord,
)
from tests.clikit import (
    GOOD,
    cli,
    ids_of,
    one_line_error,
    run_ok,
    tamper,
    workdir,  # noqa: F401  (autouse fixture)
)
from tests.store_backends import BACKENDS, Backend, FakeClock

DAMAGED = "the store was edited or damaged"


def _warning(stderr: str, *said: str) -> str:
    """The one line a command says about the rows it left out."""
    assert "Traceback" not in stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith("warning: left out "), line
    for s in (*said, DAMAGED):
        assert s in line, line
    return line


def test_sessions_list_leaves_out_a_damaged_session_and_lists_the_others() -> None:
    run_ok()
    bad, *good = ids_of(GOOD)
    tamper("UPDATE sessions SET cost='nan' WHERE id=?", bad)
    res = cli("sessions", "list")
    assert res.code == 0, res.stderr
    for sid in good:
        assert sid in res.stdout, res.stdout
    assert bad not in res.stdout, res.stdout
    _warning(res.stderr, "1 damaged session row",
             f"session {bad!r}: its stored cost 'nan' is not a number")


@pytest.mark.parametrize("as_json", [False, True])
def test_sessions_list_leaves_out_a_session_whose_error_is_damaged(as_json: bool) -> None:
    """Its stored error is not JSON (review of stop 45: ``--json`` printed a traceback)."""
    run_ok()
    bad, *good = ids_of(GOOD)
    tamper("UPDATE sessions SET error='not json{' WHERE id=?", bad)
    res = cli("sessions", "list", *(["--json"] if as_json else []))
    assert res.code == 0, res.stderr
    for sid in good:
        assert sid in res.stdout, res.stdout
    if as_json:
        listed = json.loads(res.stdout)
        assert bad not in [r["id"] for r in listed["sessions"]]
        assert [d["row"] for d in listed["damaged"]] == [f"session {bad!r}"], listed
        _warning(res.stderr, "1 damaged session row", "its stored error 'not json{' is not")


def test_a_page_that_left_out_a_damaged_row_offers_no_more_pages() -> None:
    """The rows a listing left out are counted in the total: a page that shows every
    readable row does not say to page on for more."""
    run_ok()
    bad, *good = ids_of(GOOD)
    tamper("UPDATE sessions SET steps='y' WHERE id=?", bad)
    for extra in ((), ("--limit", "100")):
        res = cli("sessions", "list", *extra)
        assert res.code == 0, res.stderr
        assert f"showing {len(good)} of {len(GOOD)} sessions" in res.stdout, res.stdout
        assert "for more" not in res.stdout and "none after these" in res.stdout, res.stdout
    res = cli("sessions", "list", "--limit", "1")  # (a page that is full: more to show)
    assert "use --limit N or --offset N for more" in res.stdout, res.stdout


def test_a_session_whose_status_was_edited_is_a_damaged_row() -> None:
    """A status Convoy never writes (edited by hand) is named, as any other damaged value:
    the row is not listed under it, nor run."""
    run_ok()
    bad, *good = ids_of(GOOD)
    tamper("UPDATE sessions SET status='bogus' WHERE id=?", bad)
    res = cli("sessions", "list")
    assert res.code == 0, res.stderr
    assert bad not in res.stdout and all(sid in res.stdout for sid in good), res.stdout
    _warning(res.stderr, "1 damaged session row",
             f"session {bad!r}: its stored status 'bogus' is not a session status")
    one_line_error(cli("sessions", "show", bad), 1, "its stored status 'bogus'")
    # Counted, but not under a status of its own making: as damaged.
    assert "damaged: 1" in res.stdout and "bogus" not in res.stdout, res.stdout
    listed = json.loads(cli("sessions", "list", "--json").stdout)
    assert listed["counts"].get("damaged") == 1 and "bogus" not in listed["counts"], listed
    assert listed["total"] == len(good) + 1, listed
    info = cli("db", "info")
    assert info.code == 0 and "damaged" in info.stdout and "bogus" not in info.stdout, \
        info.stdout


def test_sessions_list_names_the_first_of_many_damaged_rows_and_counts_the_rest() -> None:
    run_ok()
    tamper("UPDATE sessions SET steps='y'")
    res = cli("sessions", "list")
    assert res.code == 0, res.stderr
    line = _warning(res.stderr, "3 damaged session rows", "its stored steps 'y'",
                    "and 2 more")
    assert len(line) < 400, line


@pytest.mark.parametrize(("edit", "said"), [
    pytest.param("UPDATE journal SET cost='nan' WHERE key='0/0' AND session_id=?",
                 "session 'BAD' step '0/0': its stored cost 'nan' is not a number",
                 id="journal-row"),
    pytest.param("UPDATE sessions SET created='yesterday' WHERE id=?",
                 "session 'BAD': its stored created 'yesterday' is not a number",
                 id="session-row"),
])
def test_cost_sums_every_readable_row_and_says_what_it_left_out(edit: str, said: str) -> None:
    run_ok()
    bad, *good = ids_of(GOOD)
    before = json.loads(cli("cost", "--by", "session", "--json").stdout)
    tamper(edit, bad)
    for args in ((), ("--json",)):
        res = cli("cost", "--by", "session", *args)
        assert res.code == 0, res.stderr
        _warning(res.stderr, said.replace("BAD", bad), "the totals exclude")
        if args:
            shown = json.loads(res.stdout)
            assert shown["damaged"] == [{"row": said.replace("BAD", bad).split(": ")[0],
                                         "problem": said.split(": ", 1)[1]}]
            assert {r["session"] for r in shown["rows"]} >= set(good)
            assert shown["total"]["calls"] < before["total"]["calls"]
        else:
            for sid in good:
                assert sid in res.stdout, res.stdout


def test_cost_json_of_an_undamaged_store_says_nothing_was_left_out() -> None:
    run_ok()
    res = cli("cost", "--json")
    assert res.code == 0 and not res.stderr, res.stderr
    shown = json.loads(res.stdout)
    assert shown["damaged"] == [] and shown["by"] == "agent"
    assert shown["total"]["calls"] == sum(r["calls"] for r in shown["rows"]) > 0


def _alerts(n: int) -> None:
    async def put() -> None:
        store = SQLiteStore(Path("convoy.db"))
        await store.open()
        try:
            for i in range(n):
                await store.alert_open(NewAlert(
                    tenant="default", scope="agent", subject=f"agent-{i}", metric="latency",
                    value=3.0, mean=0.5, deviation=0.05, threshold=0.65, opened=1.8e9), [])
        finally:
            await store.aclose()

    asyncio.run(put())


def test_alerts_leaves_out_a_damaged_alert_and_lists_the_others() -> None:
    run_ok(lines=GOOD[:1])
    _alerts(3)
    tamper("UPDATE alerts SET value='nan' WHERE id=2")
    res = cli("alerts")
    assert res.code == 0, res.stderr
    assert "agent-0" in res.stdout and "agent-2" in res.stdout, res.stdout
    assert "agent-1" not in res.stdout, res.stdout
    _warning(res.stderr, "1 damaged alert row", "alert 2: its stored value 'nan'")
    res = cli("alerts", "--json")
    assert res.code == 0, res.stderr
    assert [a["id"] for a in json.loads(res.stdout)] == [3, 1]
    _warning(res.stderr, "alert 2")


# -- the store: both backends read with the same reader ------------------------------------


@pytest.mark.parametrize("backend_cls", BACKENDS, ids=lambda b: b.name)
async def test_a_store_lists_the_rows_it_can_read_and_names_the_others(
        backend_cls: type[Backend], tmp_path: Path) -> None:
    backend = backend_cls(tmp_path)
    try:
        store = backend.new(FakeClock())
        await store.open()
        for sid in ("a", "b", "c"):
            await store.create_session(NewSession(id=sid, workflow="wf", version="v1",
                                                  tenant="t", input="{}"), owner=None,
                                       lease_s=30.0)
        for key in ("0", "1"):
            await store.append("a", None, StepRecord(key=key, kind="tool", target="t",
                                                     status="completed", result='"ok"'))
            await store.state_put(StateWrite(tenant="t", namespace="ns", key=key, value="1",
                                             expected_version=0))
        await store.aclose()
        backend.damage("UPDATE sessions SET cost='NaN' WHERE id='b'")
        backend.damage("UPDATE journal SET cost='NaN' WHERE key='1'")
        backend.damage("UPDATE state SET value='{nope' WHERE key='1'")
        store = backend.new(FakeClock())
        await store.open()
        try:
            left_out: list[LeftOut] = []
            rows = await store.list_sessions(SessionFilter(), left_out=left_out)
            assert [r.id for r in rows] == ["a", "c"]
            steps = await store.journal("a", left_out=left_out)
            assert [r.key for r in steps] == ["0"]
            assert [x.row for x in left_out] == ["session 'b'", "session 'a' step '1'"]
            assert all(x.problem.startswith("its stored cost ") for x in left_out), left_out
            with pytest.raises(JournalError, match="session 'b': its stored cost"):
                await store.list_sessions(SessionFilter())
            left_out.clear()
            # By id, and the unfinished ones, alike
            assert list(await store.get_sessions(["a", "b"], left_out=left_out)) == ["a"]
            assert [r.id for r in await store.unfinished(left_out=left_out)] == ["a", "c"]
            assert [x.row for x in left_out] == ["session 'b'", "session 'b'"]
            for read in (store.get_sessions(["b"]), store.unfinished()):
                with pytest.raises(JournalError, match="session 'b': its stored cost"):
                    await read
            left_out.clear()
            assert [e.key for e in await store.state_list("t", "ns", left_out=left_out)] \
                == ["0"]
            assert left_out == [LeftOut(row="state 'ns' key '1' version 1",
                                        problem="its stored value '{nope' is not JSON")]
            with pytest.raises(JournalError, match="state 'ns' key '1' version 1: its"):
                await store.state_get("t", "ns", "1")
        finally:
            await store.aclose()
    finally:
        backend.cleanup()


# -- the inbox -----------------------------------------------------------------------------


@pytest.mark.parametrize(("edit", "said"), [
    pytest.param("UPDATE state SET value='{nope' WHERE key='s0:0'",
                 "state 'convoy.inbox' key 's0:0' version 1: its stored value '{nope' is not "
                 "JSON", id="task-not-json"),
    pytest.param("UPDATE state SET value='[1]' WHERE key='s0:0'",
                 "human task 's0:0': it does not parse", id="task-shape"),
    pytest.param("UPDATE state SET value=json_set(value, '$.created_at', 1e300) "
                 "WHERE key='s0:0'",
                 "human task 's0:0': its stored created_at 1e+300 is not a time in seconds",
                 id="task-created-huge"),
])
def test_inbox_list_leaves_out_a_damaged_task_and_lists_the_others(edit: str,
                                                                   said: str) -> None:
    from tests.test_cli_inbox import start

    start("refund", "c1", "s0")
    start("refund", "c2", "s1")
    tamper(edit)
    res = cli("inbox", "list")
    assert res.code == 0, res.stderr
    assert "s1:0" in res.stdout and "s0:0" not in res.stdout, res.stdout
    _warning(res.stderr, "1 damaged inbox row", said)
    res = cli("inbox", "list", "--json")
    assert res.code == 0, res.stderr
    assert [t["id"] for t in json.loads(res.stdout)] == ["s1:0"]
    _warning(res.stderr, said)


@pytest.mark.parametrize("args", [(), ("--all-tenants",), ("--json",)])
def test_inbox_list_leaves_out_the_task_of_a_damaged_session_and_lists_the_others(
        args: tuple[str, ...]) -> None:
    """The session behind a waiting task is damaged: whether it still waits cannot be
    read, so its task is left out, and the damaged row named, as a damaged task is."""
    from tests.test_cli_inbox import start

    start("refund", "c1", "s0")
    start("refund", "c2", "s1")
    tamper("UPDATE sessions SET created='yesterday' WHERE id='s0'")
    res = cli("inbox", "list", *args)
    assert res.code == 0, res.stderr
    assert "s1:0" in res.stdout and "s0:0" not in res.stdout, res.stdout
    _warning(res.stderr, "session 's0': its stored created 'yesterday' is not a number")


# -- times that cannot be shown --------------------------------------------------------------


def test_sessions_list_leaves_out_sessions_a_millisecond_clock_wrote() -> None:
    """A store opened with a clock in milliseconds (not seconds) writes times past the
    year 9999: a listing leaves those rows out, in one line, and lists the others."""
    import time

    async def put() -> None:
        for sid, clock in (("ms", lambda: time.time() * 1000), ("s", time.time)):
            store = SQLiteStore(Path("convoy.db"), clock=clock)
            await store.open()
            try:
                await store.create_session(NewSession(id=sid, workflow="wf", version="v1",
                                                      tenant="default", input="{}"),
                                           owner=None, lease_s=30.0)
            finally:
                await store.aclose()

    asyncio.run(put())
    for args in ((), ("--json",)):
        res = cli("sessions", "list", *args)
        assert res.code == 0, res.stderr
        _warning(res.stderr, "1 damaged session row", "session 'ms': its stored created ",
                 "is not a time in seconds between the years 1 and 9999")
        if args:
            shown = json.loads(res.stdout)
            assert [s["id"] for s in shown["sessions"]] == ["s"]
            assert [d["row"] for d in shown["damaged"]] == ["session 'ms'"]
        else:
            assert " s " in res.stdout or "│ s" in res.stdout, res.stdout
