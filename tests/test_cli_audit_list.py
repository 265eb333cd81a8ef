"""``convoy audit list``: the entries of a tenant's log an operator reads to answer "why did
the agent do this?" (and the index ``convoy audit prove`` takes), filtered by session and
kind, as a table or JSON lines, read-only, never a value the entries do not hold."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from pydantic import BaseModel

import convoy
from convoy.audit import AuditInterceptor
from convoy.stores import SQLiteStore
from tests.clikit import cli, one_line_error, workdir  # noqa: F401  (fixture)

from .conftest import FakeClock

SECRET = "alice@example.com"
LONG_ID = "abfd915d24a74542bc0e5a1f6c3d2b19"  # (as a generated session id is long)


@convoy.tool(writes=True, idempotent=True)
def refund(customer: str, cents: int) -> str:
    """Refund a customer."""
    return f"refunded {cents} to {customer}"


class Ticket(BaseModel):
    text: str


desk = convoy.Agent(name="desk", input_type=Ticket, tools=[refund], model="sim:")


@convoy.workflow(name="audit.list")
async def flow(ctx: convoy.Context, text: str) -> str:
    await ctx.state(f"customer:{ctx.session_id}").set("last", {"email": SECRET},
                                                      expected_version=0)
    return str(await ctx.run(desk, Ticket(text=text)))


def _sim() -> convoy.SimModel:
    return convoy.SimModel({"desk": [
        {"tool_calls": [{"name": "refund", "arguments": {"customer": SECRET, "cents": 5}}]},
        {"text": f"done for {SECRET}"}]})


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "audit.db"

    async def run() -> None:
        async with convoy.Engine(SQLiteStore(path, clock=FakeClock()),
                                 models={"sim:": _sim()},
                                 interceptors=[AuditInterceptor()]) as eng:
            for sid in ("s1", "s2", LONG_ID):
                assert (await eng.tenant("acme").run(flow, f"refund {SECRET}",
                                                     session_id=sid)).ok

    asyncio.run(run())
    return str(path)


def test_the_entries_of_a_session_as_json_lines(db: str) -> None:
    r = cli("audit", "list", "--db", db, "--tenant", "acme", "--session", "s2", "--json")
    assert r.code == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert rows and all(row["session_id"] == "s2" for row in rows)
    assert [row["kind"] for row in rows] == ["state_write", "model_call", "tool_call",
                                             "model_call"]
    assert rows == sorted(rows, key=lambda row: row["index"])
    assert SECRET not in r.stdout
    # the index is what `convoy audit prove` takes
    tool = next(row for row in rows if row["kind"] == "tool_call")
    proof = cli("audit", "prove", str(tool["index"]), "--db", db, "--tenant", "acme",
                "--key", str(Path(db).parent / "audit.key"))
    assert proof.code == 0 and json.loads(proof.stdout)["index"] == tool["index"]


def test_a_table_of_the_newest_entries_filtered_by_kind(db: str) -> None:
    r = cli("audit", "list", "--db", db, "--tenant", "acme", "--kind", "tool_call")
    assert r.code == 0, r.stderr
    assert r.stdout.count("tool_call") == 3 and "model_call" not in r.stdout
    assert "refund" in r.stdout and "s1" in r.stdout and "s2" in r.stdout
    assert SECRET not in r.stdout
    last = cli("audit", "list", "--db", db, "--tenant", "acme", "--limit", "1", "--json")
    [row] = [json.loads(line) for line in last.stdout.splitlines()]
    everything = cli("audit", "list", "--db", db, "--tenant", "acme", "--limit", "1000",
                     "--json").stdout.splitlines()
    assert row == json.loads(everything[-1])  # the newest


def test_a_store_without_an_audit_log_says_where_to_look(tmp_path: Path) -> None:
    """Every tenant's log missing: the line says the store may not be the audited one
    (review of stop 44: a bare "has no audit log", where verify said to check --db)."""
    import asyncio

    import convoy

    async def make() -> None:
        async with convoy.Engine(str(tmp_path / "plain.db")):
            pass

    asyncio.run(make())
    for args in (["list"], ["prove", "0"], ["consistency", "1"]):
        r = cli("audit", *args, "--db", str(tmp_path / "plain.db"), "--tenant", "acme")
        assert r.code == 2 and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert "no tenant has one in this store: check that --db is the store" in r.stderr, \
            (args, r.stderr)


def test_bad_input_is_one_line(db: str) -> None:
    r = cli("audit", "list", "--db", db, "--tenant", "nobody")
    assert r.code != 0 and "tenant 'nobody' has no audit log" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("audit", "list", "--db", db, "--tenant", "acme", "--kind", "nonsense")
    one_line_error(r, 2, "--kind 'nonsense' is not an audit entry kind; use one of "
                         "approval, config_change, effect, erasure, ")
    assert "(or agent_decision, in logs of earlier builds only)" in r.stderr  # (legacy)
    assert "Usage:" not in r.stderr and "tool_call" in r.stderr
    r = cli("audit", "list", "--db", db, "--tenant", "acme", "-k", "tool_call", "-k", "x",
            "-k", "y")
    one_line_error(r, 2, "--kind 'x', 'y' are not audit entry kinds; use one of ")
    # an id the store does not know (mistyped, cut): not "this session did nothing"
    r = cli("audit", "list", "--db", db, "--tenant", "acme", "--session", "nope")
    one_line_error(r, 2, "no audit entries of tenant 'acme' for session 'nope', and the "
                         "store has no such session of the tenant: 'convoy sessions list "
                         f"--db {db} --tenant acme' and 'convoy audit list --json --db {db} "
                         "--tenant acme' show whole session ids")
    # a session the store has, with no entry of that kind: nothing to show, not an error
    r = cli("audit", "list", "--db", db, "--tenant", "acme", "--session", "s2", "--kind",
            "erasure")
    assert r.code == 0 and "no audit entries" in r.stdout, r.stderr


def test_the_table_shows_whole_session_ids_however_narrow(db: str) -> None:
    """What --session takes is shown whole, never cut: on one line (to be copied) where
    the terminal allows it once the time and the actor columns are left out (new user's
    trial: at 80 columns it was folded into pieces of four), folded onto more lines on a
    terminal narrower still."""
    ids = {json.loads(line)["session_id"] for line in cli(
        "audit", "list", "--db", db, "--tenant", "acme", "--json").stdout.splitlines()}
    assert LONG_ID in ids
    import subprocess
    import sys

    from tests.clikit import subprocess_env

    for columns, whole in (("240", True), ("80", True), ("40", False)):
        r = subprocess.run([sys.executable, "-m", "convoy", "audit", "list", "--db", db,
                            "--tenant", "acme"], env={**subprocess_env(), "COLUMNS": columns},
                           capture_output=True, text=True, timeout=120, check=False)
        assert r.returncode == 0 and "…" not in r.stdout, r.stderr
        lines = r.stdout.splitlines()
        assert all(len(line) <= int(columns) for line in lines[1:]), (columns, r.stdout)
        if whole:  # (at 40 columns the headers are folded too: the columns are 80's)
            header = next(line for line in lines if "index" in line).split("┃")
            at = next(i for i, cell in enumerate(header) if cell.strip() == "session")
        # (folded: a column's lines, read down; the table's other columns are in between)
        column = [line.split("│")[at].strip() for line in lines if line.count("│") > at]
        assert (LONG_ID in column) is whole and LONG_ID in "".join(column), (columns,
                                                                           r.stdout)


def _column(lines: list[str], name: str) -> list[str]:
    """The lines of the table's column ``name``, read down (a folded cell's pieces apart)."""
    header = next(line for line in lines if "index" in line).split("┃")
    at = next(i for i, cell in enumerate(header) if cell.strip() == name)
    return [line.split("│")[at].strip() for line in lines if line.count("│") > at]


@pytest.mark.parametrize("columns", ["60", "80"])
def test_the_target_is_readable_on_a_narrow_terminal(db: str, columns: str) -> None:
    """New user's trial: at 60 and 80 columns the target (what the entry is about) was
    squeezed to 3 characters a line ("sim", ":de", "fau", "lt"). It keeps at least 16 (each
    target here on one line, or two pieces of a longer one), the table no wider than the
    terminal, the session id whole at 80."""
    import subprocess
    import sys

    from tests.clikit import subprocess_env

    targets = [json.loads(line)["target"] for line in cli(
        "audit", "list", "--db", db, "--tenant", "acme", "--json").stdout.splitlines()]
    r = subprocess.run([sys.executable, "-m", "convoy", "audit", "list", "--db", db,
                        "--tenant", "acme"], env={**subprocess_env(), "COLUMNS": columns},
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0 and "…" not in r.stdout, r.stderr
    lines = r.stdout.splitlines()
    assert all(len(line) <= int(columns) for line in lines), r.stdout
    shown = _column(lines, "target")
    assert max(map(len, shown)) >= 16, r.stdout
    short = [t for t in targets if len(t) <= 16]
    assert short and all(t in shown for t in short), r.stdout  # (whole, on one line)
    assert "set customer:s1/last" in " ".join(shown) or \
        "set customer:s1/last" in shown, r.stdout
    assert (LONG_ID in _column(lines, "session")) is (columns == "80"), r.stdout


def test_a_status_other_than_ok_joins_the_target_where_its_column_is_left_out() -> None:
    from rich.console import Console

    from convoy.audit import AuditEvent
    from convoy.cli._audit import _entries_table

    rows = [(0, AuditEvent(kind="tool_call", status="ToolError", at=0.0, session_id=LONG_ID,
                           step_key="1/1", actor="desk", target="refund")),
            (1, AuditEvent(kind="tool_call", status="ok", at=0.0, session_id=LONG_ID,
                           step_key="1/2", actor="desk", target="refund")),
            (2, None)]
    for width, merged in ((80, True), (200, False)):
        console = Console(width=width, record=True, color_system=None)
        console.print(_entries_table(rows, "t", "VERIFY", width=width))
        shown = console.export_text()
        lines = shown.splitlines()
        header = next(line for line in lines if "index" in line)
        assert ("status" not in header) is merged, lines
        text = " ".join(" ".join(_column(lines, "target")).split())
        if merged:  # (said once, where it is not "ok"; an unreadable entry's words too)
            assert "refund (status ToolError)" in text and "(status ok)" not in text, lines
            assert "not an audit event: run VERIFY" in text.replace("- ", "-"), lines
        else:
            assert "(status" not in text and "ToolError" in shown


def test_listing_writes_nothing(db: str) -> None:
    before = Path(db).read_bytes()
    assert cli("audit", "list", "--db", db, "--tenant", "acme").code == 0
    assert Path(db).read_bytes() == before


def test_the_help_lists_every_kind() -> None:
    from typing import get_args

    from convoy.audit import AuditKind

    text = " ".join(cli("audit", "list", "--help").stdout.replace("│", " ").split())
    assert all(kind in text for kind in get_args(AuditKind)), text
    assert "erasure, ..." not in text


def test_an_erasure_row_says_what_it_erased(tmp_path: Path) -> None:
    """An erasure entry has no actor or target of its own: its row names the subject's
    keyed fingerprint (never the subject) and what was deleted, a purge's the age rule."""
    path = tmp_path / "erased.db"
    key = convoy.MasterKey.from_text(convoy.MasterKey.generate())
    clock = FakeClock()

    async def run() -> None:
        async with convoy.Engine(SQLiteStore(path, clock=clock), models={"sim:": _sim()},
                                 interceptors=[AuditInterceptor()], master_key=key) as eng:
            assert (await eng.run(flow, "refund", session_id="s1", subject="cust-7")).ok
            assert (await eng.run(flow, "refund", session_id="s2")).ok
            await eng.erase("cust-7")
            clock.advance(3600)
            await eng.purge(60)

    asyncio.run(run())
    rows = [json.loads(line) for line in cli("audit", "list", "--db", str(path), "--kind",
                                             "erasure", "--json").stdout.splitlines()]
    ref = rows[0]["refs"]["subject_ref"]
    table = cli("audit", "list", "--db", str(path), "--kind", "erasure").stdout
    lines = [ln for ln in table.splitlines() if "erasure" in ln and "│" in ln]
    assert len(lines) == 2, table
    assert f"subject {ref[:12]}" in lines[0] and "cust-7" not in table
    assert "1 session" in lines[0]
    assert "retention" in lines[1] and "1 session" in lines[1]


def test_a_purged_session_with_no_entry_of_a_kind_is_no_error(tmp_path: Path) -> None:
    """New user's trial: a purged session's entries stay in the log, so listing them by a
    kind it has none of says there are none (exit 0), as for a live session, not that the
    store has no such session (the id is right)."""
    path = tmp_path / "purged.db"
    clock = FakeClock()

    async def run() -> None:
        async with convoy.Engine(SQLiteStore(path, clock=clock), models={"sim:": _sim()},
                                 interceptors=[AuditInterceptor()]) as eng:
            assert (await eng.run(flow, "refund", session_id="s1")).ok
            clock.advance(3600)
            assert [e.sessions for e in await eng.purge(60)] == [1]

    asyncio.run(run())
    r = cli("audit", "list", "--db", str(path), "--session", "s1", "--json")
    assert r.code == 0 and r.stdout.count('"session_id": "s1"') >= 3, r
    r = cli("audit", "list", "--db", str(path), "--session", "s1", "--kind", "handoff")
    assert r.code == 0 and "no audit entries" in r.stdout and r.stderr == "", r


def test_an_erasure_and_a_purge_name_who_did_them(tmp_path: Path) -> None:
    """New user's trial: an erasure's and a purge's audit entries named no actor, where a
    cancel and a decision name who did them: `--by` (default: the login name; in Python,
    `by=`) is the entry's actor."""
    import getpass

    path = tmp_path / "who.db"
    assert cli("keygen", str(tmp_path / "m.key")).code == 0
    env = {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}
    key = convoy.MasterKey.from_text((tmp_path / "m.key").read_text())
    clock = FakeClock()

    async def run(purge: bool) -> None:
        async with convoy.Engine(SQLiteStore(path, clock=clock), models={"sim:": _sim()},
                                 interceptors=[AuditInterceptor()], master_key=key) as eng:
            if purge:
                clock.advance(3600)
                await eng.purge(60, by="retention-job")
                return
            assert (await eng.run(flow, "refund", session_id="s1", subject="cust-7")).ok
            assert (await eng.run(flow, "refund", session_id="s2")).ok

    asyncio.run(run(purge=False))
    one_line_error(cli("erase", "cust-7", "--db", str(path), "--by", " ", env=env), 2,
                   "--by")
    r = cli("erase", "cust-7", "--db", str(path), "--by", "dpo-ann", env=env)
    assert r.code == 0, r.stderr
    asyncio.run(run(purge=True))
    rows = [json.loads(line) for line in cli("audit", "list", "--db", str(path), "--kind",
                                             "erasure", "--json").stdout.splitlines()]
    assert [row["actor"] for row in rows] == ["dpo-ann", "retention-job"], rows
    table = cli("audit", "list", "--db", str(path), "--kind", "erasure").stdout
    assert "dpo-ann" in table and "retention-job" in table
    assert getpass.getuser()  # (the default: the login name, as cancel's and inbox's)


def test_the_table_shows_what_a_terminal_would_obey_as_an_escape(db: str) -> None:
    """Review: the table's cells are Text (so markup is shown as it is), which the console
    does not escape: an ESC or a bidi override an entry holds (an actor an application
    passed) reached the terminal as it is. It is written as an escape, as elsewhere."""
    from convoy.audit import AuditEvent

    async def append() -> None:
        store = SQLiteStore(db)
        await store.open()
        try:
            await store.audit_append("acme", [AuditEvent(
                kind="erasure", status="ok", at=1.0, actor="\x1b]0;owned\x07\u202eops",
                refs={"reason": "retention", "sessions": "1"}).encode()])
        finally:
            await store.aclose()

    asyncio.run(append())
    r = cli("audit", "list", "--db", db, "--tenant", "acme", "--kind", "erasure",
            env={"COLUMNS": "200"})
    assert r.code == 0, r.stderr
    assert "\x1b" not in r.stdout and "\u202e" not in r.stdout, r.stdout
    assert "\\x1b]0;owned\\x07\\u202eops" in r.stdout, r.stdout


def test_checkpoint_all_tenants_signs_the_others_when_one_log_is_damaged(
        db: str, tmp_path: Path) -> None:
    """Review: a scheduled ``checkpoint --all-tenants`` stopped at the first tenant whose
    log was refused (damaged), leaving every later tenant's log unsigned. The damaged one
    is said (exit 1, at the end), and the others are signed."""
    import sqlite3

    async def more() -> None:
        async with convoy.Engine(SQLiteStore(db, clock=FakeClock()), models={"sim:": _sim()},
                                 interceptors=[AuditInterceptor()]) as eng:
            assert (await eng.tenant("zeta").run(flow, "refund", session_id="z1")).ok

    asyncio.run(more())
    key = str(tmp_path / "audit.key")
    with sqlite3.connect(db) as conn:  # (an entry of acme's, the first tenant, changed)
        conn.execute("UPDATE audit_log SET body = CAST(body AS TEXT) "
                     "WHERE tenant = 'acme' AND idx = 2")
    r = cli("audit", "checkpoint", "--all-tenants", "--db", db, "--key", key)
    assert r.code == 1, r
    assert [json.loads(line)["tenant"] for line in r.stdout.splitlines()] == ["zeta"], r
    assert "tenant 'acme'" in r.stderr and "Traceback" not in r.stderr, r.stderr
