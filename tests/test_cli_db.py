"""``convoy db migrate|info`` on both stores: versions from and to, what a store holds, a
password never shown, one-line errors (an unreachable server, a store newer than Convoy)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import convoy
from convoy.stores import SCHEMA_VERSION, store_from_url
from tests.clikit import (
    FLOW,
    GOOD,
    cli,
    one_line_error,
    workdir,  # noqa: F401  (autouse fixture)
    write_jsonl,
)
from tests.store_backends import Backend, PostgresBackend, SQLiteBackend
from tests.test_postgres import closed_port


@pytest.fixture(params=[SQLiteBackend, PostgresBackend], ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b: Backend = request.param(tmp_path)
    yield b
    b.cleanup()


def url(b: Backend) -> str:
    return str(b.path) if isinstance(b, SQLiteBackend) else b.url  # type: ignore[attr-defined]


def at_version_4(b: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store as Convoy with schema 4 left it (without the add-ons of later schemas: the
    trigger of ``audit_cursor_reset`` reads ``kv``, which schema 4 had not)."""
    from convoy.stores import _addons, _postgres_sql, _sqlite

    monkeypatch.setattr(_addons, "ADDONS", tuple(a for a in _addons.ADDONS
                                                 if a.name != "audit_cursor_reset"))
    monkeypatch.setattr(_sqlite, "_MIGRATIONS", tuple(m for m in _sqlite._MIGRATIONS
                                                       if m[0] <= 4))
    monkeypatch.setattr(_sqlite, "SCHEMA_VERSION", 4)
    monkeypatch.setattr(_postgres_sql, "MIGRATIONS", tuple(m for m in _postgres_sql.MIGRATIONS
                                                            if m[0] <= 4))
    monkeypatch.setattr(_postgres_sql, "PG_SCHEMA_VERSION", 4)
    async def create() -> None:
        store = store_from_url(url(b))
        await store.open()
        await store.aclose()

    asyncio.run(create())
    monkeypatch.undo()


def test_migrate_says_from_which_version_to_which(backend: Backend,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    db = url(backend)
    at_version_4(backend, monkeypatch)
    info = cli("db", "info", "--db", db)
    assert info.code == 0, info.stderr
    # (one line, naming the store as --db did)
    assert (f"schema version  4 (this Convoy writes {SCHEMA_VERSION}: run 'convoy db migrate "
            "--db " in info.stdout.splitlines()[1])
    assert asyncio.run(store_from_url(db).schema_version()) == 4  # info migrated nothing
    got = json.loads(cli("db", "info", "--db", db, "--json").stdout)  # (nothing counted)
    assert all(got[k] is None for k in ("sessions", "audit_logs", "subjects_erased",
                                        "retention_purges", "open_alerts")), got
    res = cli("db", "migrate", "--db", db)
    assert res.code == 0, res.stderr
    assert res.stdout.strip().endswith(f"migrated from store schema 4 to {SCHEMA_VERSION}")
    again = cli("db", "migrate", "--db", db)
    assert again.code == 0 and f"already at store schema {SCHEMA_VERSION}" in again.stdout


def test_migrate_says_which_add_ons_it_added_or_brought_up_to_date(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store at this Convoy's schema that lacks an add-on: `db migrate` names what it
    added (it said 'already at store schema N'); one that holds an add-on at an older
    version of its own (which a read-only open refuses) is brought up to date all the
    same."""
    from dataclasses import replace

    from convoy.stores import _addons, _postgres

    def addons(*addons: _addons.Addon) -> None:  # (as a Convoy with those would apply)
        for module in (_addons, _postgres):
            monkeypatch.setattr(module, "ADDONS", addons)

    db = url(backend)
    addons(*_addons.ADDONS[:-1])
    assert cli("db", "migrate", "--db", db).code == 0
    monkeypatch.undo()
    res = cli("db", "migrate", "--db", db)
    assert res.code == 0, res.stderr
    assert res.stdout.strip().endswith(
        f"at store schema {SCHEMA_VERSION}; added add-on {_addons.ADDONS[-1].name}")
    addons(*_addons.ADDONS[:-1], replace(_addons.ADDONS[-1], version=2))
    res = cli("db", "migrate", "--db", db)
    assert res.code == 0, res.stderr
    assert res.stdout.strip().endswith(f"already at store schema {SCHEMA_VERSION}")
    assert json.loads(cli("db", "info", "--json", "--db", db).stdout)["addons_missing"] == []


def test_migrate_creates_a_store_that_does_not_exist(backend: Backend) -> None:
    res = cli("db", "migrate", "--db", url(backend))
    assert res.code == 0, res.stderr
    assert res.stdout.strip().endswith(f"created at store schema {SCHEMA_VERSION}")


def test_info_counts_sessions_by_status_journal_entries_state_keys_and_tenants(
        backend: Backend) -> None:
    db = url(backend)
    write_jsonl(Path("in.jsonl"), GOOD)
    assert cli("run", FLOW, "-i", "in.jsonl", "--db", db).code == 0
    assert cli("run", FLOW, "-i", "in.jsonl", "--db", db, "--tenant", "acme").code == 0
    assert cli("state", "set", "customer:1", "credit", "10", "--db", db).code == 0
    write_jsonl(Path("ask.jsonl"), [120])  # a session that asks a person: a human task
    assert cli("run", "app_interceptors:refund", "-i", "ask.jsonl", "--db", db).code == 0
    res = cli("db", "info", "--db", db, "--json")
    assert res.code == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["schema_version"] == got["current_schema_version"] == SCHEMA_VERSION
    assert got["sessions"] == {"completed": 6, "waiting": 1}
    # (the task is kept with the shared state, in a namespace of Convoy's: not a key)
    assert got["journal_entries"] >= 6 and got["state_keys"] == 1 and got["human_tasks"] == 1
    assert got["tenants"] == 2  # default and acme
    table = cli("db", "info", "--db", db)
    assert table.code == 0, table.stderr
    assert f"schema version  {SCHEMA_VERSION}" in table.stdout
    assert "7 sessions" in table.stdout and "completed" in table.stdout
    assert "state keys      1" in table.stdout and "tenants         2" in table.stdout
    assert "human tasks     1" in table.stdout


def _audited_sessions(db: str, tenants: list[str], subject: str | None = None) -> None:
    """One session of a one-agent workflow for each of ``tenants``, audited (naming the
    data ``subject``: the master key from ``$CONVOY_MASTER_KEY_FILE``)."""
    from convoy.audit import AuditInterceptor

    agent = convoy.Agent(name="a", model=convoy.SimModel({"*": {"text": "ok"}}))

    @convoy.workflow(name="db.info.audited")
    async def flow(ctx: convoy.Context, text: str) -> str:
        return str(await ctx.run(agent, text))

    async def run() -> None:
        async with convoy.Engine(db, interceptors=[AuditInterceptor()]) as eng:
            for tenant in tenants:
                await eng.run(flow, "x", tenant=tenant, subject=subject)

    asyncio.run(run())


def test_info_reports_each_audit_log(backend: Backend, tmp_path: Path) -> None:
    """The audit logs (a new user's trial: ``db info`` said nothing of them): per tenant,
    entries and signed checkpoints."""
    db = url(backend)
    _audited_sessions(db, ["default", "acme"])
    assert cli("audit", "checkpoint", "--db", db, "--key", str(tmp_path / "k.pem")).code == 0
    got = json.loads(cli("db", "info", "--db", db, "--json").stdout)["audit_logs"]
    # (each log: its config_change, then the session's model call)
    assert got == {"acme": {"entries": 2, "checkpoints": 0},
                   "default": {"entries": 2, "checkpoints": 1}}, got
    table = cli("db", "info", "--db", db)
    assert table.code == 0 and \
        "audit logs      2 (4 entries, 1 signed checkpoint)" in table.stdout, table
    assert "erasures        0 subject erasures, 0 retention purges" in table.stdout
    assert "open alerts     0" in table.stdout


def test_info_counts_erasures_and_retention_purges_apart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    db = str(tmp_path / "e.db")
    key = str(tmp_path / "master.key")
    assert cli("keygen", key).code == 0
    monkeypatch.setenv("CONVOY_MASTER_KEY_FILE", key)
    _audited_sessions(db, ["default"], subject="ann")
    _audited_sessions(db, ["default", "acme"])
    assert cli("erase", "ann", "--db", db).code == 0
    with sqlite3.connect(db) as conn:  # (finished 40 days ago: no waiting)
        conn.execute("UPDATE sessions SET finished = finished - 40 * 86400")
    assert cli("purge", "--older-than", "30d", "--all-tenants", "--db", db).code == 0
    got = json.loads(cli("db", "info", "--db", db, "--json").stdout)
    # (a purge is recorded per tenant it purged)
    assert (got["subjects_erased"], got["retention_purges"], got["open_alerts"]) == (1, 2, 0)
    assert "erasures        1 subject erasure, 2 retention purges" in \
        cli("db", "info", "--db", db).stdout

    async def fire() -> None:
        from convoy.stores import NewAlert

        async with convoy.Engine(db) as eng:
            for metric in ("latency", "error_rate"):
                await eng.store.alert_open(NewAlert(
                    tenant="default", scope="agent", subject="a", metric=metric, value=9.0,
                    mean=1.0, deviation=1.0, threshold=4.0, opened=1.0), [])

    asyncio.run(fire())
    assert "open alerts     2" in cli("db", "info", "--db", db).stdout


def test_info_says_a_damaged_audit_log_in_one_line(tmp_path: Path) -> None:
    """A damaged log is said in one line, and the rest is still shown."""
    import sqlite3

    db = str(tmp_path / "d.db")
    _audited_sessions(db, ["default"])
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit_head SET size = 'x'")
    res = cli("db", "info", "--db", db)
    assert res.code == 0 and "journal entries 1" in res.stdout, res
    [line] = [ln for ln in res.stdout.splitlines() if ln.startswith("audit logs")]
    assert "cannot be read: tenant 'default': the audit log's head was changed" in line and \
        "'convoy audit verify --db" in line, line
    got = json.loads(cli("db", "info", "--db", db, "--json").stdout)
    assert got["audit_logs"] is None and "head was changed" in got["audit_error"], got


def test_info_shows_the_rest_when_an_erasure_or_alert_row_is_damaged(
        tmp_path: Path) -> None:
    """A review: one damaged erasure row stopped ``db info`` with a traceback, and a
    damaged alert row was left out of the open alerts' count unsaid. Each is said in its
    line, and the rest is shown."""
    import sqlite3

    from convoy.stores import NewAlert

    db = str(tmp_path / "d.db")
    _audited_sessions(db, ["default"])
    assert cli("purge", "--older-than", "30d", "--db", db).code == 0  # (nothing: no row)

    async def fire() -> None:
        async with convoy.Engine(db) as eng:
            for metric in ("latency", "error_rate", "tokens"):
                await eng.store.alert_open(NewAlert(
                    tenant="default", scope="agent", subject="a", metric=metric, value=9.0,
                    mean=1.0, deviation=1.0, threshold=4.0, opened=1.0), [])

    asyncio.run(fire())
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO erasures(tenant, reason, subject_ref, sessions, "
                     "state_versions, key_destroyed, at) VALUES ('default', 'retention', "
                     "NULL, 'x', 0, 0, 1.0)")
        conn.execute("UPDATE alerts SET value = 'x' WHERE metric = 'tokens'")
    res = cli("db", "info", "--db", db)
    assert res.code == 0 and "Traceback" not in res.stdout + res.stderr, res
    assert "journal entries 1" in res.stdout and "audit logs      1 (2 entries" in res.stdout
    [erasures] = [ln for ln in res.stdout.splitlines() if ln.startswith("erasures")]
    assert erasures.startswith("erasures        cannot be read: a damaged row"), erasures
    assert "open alerts     2; 1 damaged alert row left out ('convoy alerts' says which)" \
        in res.stdout, res.stdout
    got = json.loads(cli("db", "info", "--db", db, "--json").stdout)
    assert got["subjects_erased"] is None and "erasures_error" in got, got
    assert (got["open_alerts"], got["open_alerts_more"], got["alert_rows_left_out"]) == \
        (2, False, 1), got


def test_info_never_shows_the_password_of_the_store_url(backend: Backend) -> None:
    if isinstance(backend, SQLiteBackend):
        pytest.skip("a SQLite path has no password")
    db = url(backend).replace("postgresql://postgres@", "postgresql://postgres:s3cret@")
    assert "s3cret" in db  # the test cluster trusts loopback: any password is accepted
    assert cli("db", "migrate", "--db", db).code == 0
    res = cli("db", "info", "--db", db, "--json")
    assert res.code == 0, res.stderr
    assert "s3cret" not in res.stdout and "postgres:***@" in json.loads(res.stdout)["store"]


def with_password_parameter(db: str, *, user_too: bool) -> str:
    """``db`` (the test cluster's URL, user ``postgres``) with a password given as a libpq
    parameter (``&password=``), and the user too (``&user=``) when ``user_too``."""
    assert db.startswith("postgresql://postgres@") and "?schema=" in db
    if user_too:
        return db.replace("postgres@", "", 1) + "&user=postgres&password=s3cret"
    return db + "&password=s3cret"


@pytest.mark.parametrize("user_too", [False, True], ids=["password", "user-and-password"])
def test_no_output_shows_a_password_given_as_a_url_parameter(user_too: bool) -> None:
    """``?password=`` (a libpq parameter) is masked wherever the CLI names the store: the
    ``db`` commands, the ``run`` header, state and session messages (review s24 F5)."""
    backend = PostgresBackend(Path.cwd())
    try:
        db = with_password_parameter(url(backend), user_too=user_too)
        write_jsonl(Path("in.jsonl"), GOOD[:1])
        runs = [cli("db", "migrate", "--db", db), cli("db", "info", "--db", db),
                cli("db", "info", "--db", db, "--json"),
                cli("run", FLOW, "-i", "in.jsonl", "--db", db),
                cli("state", "list", "--db", db), cli("state", "list", "ns", "--db", db),
                cli("sessions", "show", "nope", "--db", db)]
        for res in runs:
            assert "s3cret" not in res.stdout + res.stderr, res
        assert all(res.code == 0 for res in runs[:-1]), runs
        assert "password=***" in json.loads(runs[2].stdout)["store"]
        for res in (*runs[:2], *runs[3:]):
            assert "password=***" in " ".join((res.stdout + res.stderr).split()), res
    finally:
        backend.cleanup()


def test_an_unknown_session_never_shows_the_password_of_the_store_url(
        backend: Backend) -> None:
    if isinstance(backend, SQLiteBackend):
        pytest.skip("a SQLite path has no password")
    db = url(backend).replace("postgresql://postgres@", "postgresql://postgres:s3cret@")
    assert cli("db", "migrate", "--db", db).code == 0
    for args in (("trace", "nope"), ("sessions", "show", "nope"), ("cancel", "nope"),
                 ("signal", "nope", "go"), ("replay", "nope")):
        res = cli(*args, "--db", db)
        one_line_error(res, 2, "no session 'nope'")
        assert "s3cret" not in res.stderr and "postgres:***@" in res.stderr, (args, res)


def test_a_suggested_command_says_to_put_the_password_back_or_leaves_convoy_db_out() -> None:
    """A suggested command cannot show the password: it says so, or leaves ``--db`` out
    when the store is ``$CONVOY_DB``'s, and then runs as shown (review s24 F6)."""
    backend = PostgresBackend(Path.cwd())
    try:
        db = url(backend).replace("postgres@", "postgres:s3cret@", 1)
        shown = db.replace("s3cret", "***")
        one_line_error(cli("sessions", "list", "--db", db), 2,
                       f"no Convoy store at {shown}: 'convoy db migrate --db \"{shown}\"' "
                       "(with the password in place of ***) creates one")
        res = cli("sessions", "list", env={"CONVOY_DB": db})
        one_line_error(res, 2, f"no Convoy store at {shown}: 'convoy db migrate' creates one")
        assert "s3cret" not in res.stderr
        assert cli("db", "migrate", env={"CONVOY_DB": db}).code == 0  # as suggested
    finally:
        backend.cleanup()


def test_a_store_newer_than_this_convoy_is_one_line(backend: Backend) -> None:
    db = url(backend)
    assert cli("db", "migrate", "--db", db).code == 0
    backend.set_schema_version(SCHEMA_VERSION + 1)
    for command in ("info", "migrate"):
        res = cli("db", command, "--db", db)
        one_line_error(res, 1, f"store schema version {SCHEMA_VERSION + 1}, newer than the "
                               f"version {SCHEMA_VERSION} this Convoy reads")


def test_an_unreachable_server_is_one_line_without_the_password() -> None:
    db = f"postgresql://convoy:s3cret@127.0.0.1:{closed_port()}/app"
    for command in ("info", "migrate"):
        res = cli("db", command, "--db", db)
        one_line_error(res, 1, "cannot connect to the PostgreSQL store")
        assert "s3cret" not in res.stderr and "convoy:***@" in res.stderr


def test_info_on_no_store_is_one_line() -> None:
    one_line_error(cli("db", "info"), 2, "no Convoy store at 'convoy.db'")
    assert not Path("convoy.db").exists()


def test_the_db_commands_are_in_the_help() -> None:
    res = cli("db", "--help")
    assert res.code == 0 and "migrate" in res.stdout and "info" in res.stdout
    assert convoy.__version__


@pytest.mark.parametrize(("key", "value"), [("schema_version", "abc"),
                                            ("addon:subjects", "x"), ("schema_version", "")])
def test_a_meta_row_edited_by_hand_is_one_line(backend: Backend, key: str, value: str) -> None:
    """A version in the store's ``meta`` table that is no number: every command says which
    row holds what, in one line ending as every damaged value's does (not a traceback), and
    leaves it as it is."""
    db = url(backend)
    assert cli("db", "migrate", "--db", db).code == 0
    backend.damage(f"UPDATE meta SET value='{value}' WHERE key='{key}'")
    write_jsonl(Path("in.jsonl"), GOOD[:1])
    for args in (("db", "info"), ("db", "migrate"), ("sessions", "list"),
                 ("run", FLOW, "-i", "in.jsonl")):
        res = cli(*args, "--db", db)
        one_line_error(res, 1, f"meta row {key!r}: it holds {value!r}, not a version number; "
                               "the store was edited or damaged")
    assert _meta(backend, key) == value


def _meta(b: Backend, key: str) -> str:
    """The value of the ``meta`` row ``key``, read past Convoy."""
    if isinstance(b, SQLiteBackend):
        import sqlite3

        with sqlite3.connect(b.path) as conn:
            value = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()[0]
        conn.close()
        return str(value)
    import psycopg

    base, _, schema = url(b).partition("?schema=")
    with psycopg.connect(base) as pg:
        row = pg.execute(f'SELECT value FROM "{schema}".meta WHERE key=%s',  # type: ignore[arg-type]
                         (key,)).fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.parametrize(("url", "said"), [
    ("postgresql://u@127.0.0.1:notaport/db", "port 'notaport' is not a number"),
    ("postgresql://u@127.0.0.1:70000/db", "port '70000' is not a TCP port (1 to 65535)"),
    ("postgresql://u@h1:5432,h2:x/db", "port 'x' is not a number"),
    ("postgresql://u@127.0.0.1/db?sslmode=bogus", "sslmode 'bogus' is not one of disable"),
])
def test_a_malformed_postgres_url_is_a_usage_error(url: str, said: str) -> None:
    """A port that is not one, or an sslmode libpq does not know, is a mistyped --db: exit
    2, said before any connection (a new user's trial: exit 1, 'connection is bad')."""
    one_line_error(cli("sessions", "list", "--db", url), 2, said)


def test_a_postgres_url_s_parameters_reach_libpq_as_written() -> None:
    """``options=-c%20search_path%3Dx`` reached libpq as ``-c+search_path=x`` (the query
    was decoded and encoded again, a space as ``+``, which libpq keeps), and a ``+`` in a
    value became a space (the review of stop 56)."""
    from psycopg.conninfo import conninfo_to_dict

    from convoy.stores._postgres_conn import split_url

    conninfo, schema, _ = split_url(
        "postgresql://u@h/db?options=-c%20search_path%3Dx&schema=s&application_name=a+b")
    assert schema == "s"
    params = conninfo_to_dict(conninfo)
    assert params["options"] == "-c search_path=x" and params["application_name"] == "a+b"
