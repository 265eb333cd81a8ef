"""PostgreSQL beside SQLite: choosing a store by URL (``Engine``, ``--db``, ``CONVOY_DB``),
schema migrations, clear errors, and a lost connection. The store's behaviour itself is the
conformance suite's (``tests/test_store_conformance.py`` runs it on both stores)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import psycopg
import pytest

import convoy
from convoy._errors import JournalError, NoStoreError, StoreError, UserError
from convoy.stores import (
    SCHEMA_VERSION,
    NewSession,
    PostgresStore,
    SQLiteStore,
    StepRecord,
    store_from_url,
)
from convoy.stores import _postgres_sql as pg_sql
from tests import pg_cluster
from tests.clikit import (
    FLOW,
    GOOD,
    cli,
    one_line_error,
    sessions,
    summary,
    workdir,  # noqa: F401  (autouse fixture)
    write_jsonl,
)

from .conftest import store_db


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh schema in the tests' PostgreSQL cluster."""
    it = store_db("postgres", tmp_path)
    yield str(next(it))
    next(it, None)


def closed_port() -> int:
    from tests.conftest import free_port

    return free_port()  # nothing listens there


def new(sid: str) -> NewSession:
    return NewSession(id=sid, workflow="wf", version="v1", tenant="t", input="{}")


# -- choosing a store by URL ------------------------------------------------------------


def test_a_path_or_sqlite_url_is_sqlite_and_a_postgresql_url_is_postgres(tmp_path: Path
                                                                          ) -> None:
    for url, path in ((tmp_path / "a.db", tmp_path / "a.db"), ("b.db", Path("b.db")),
                      ("sqlite:///c.db", Path("c.db")),
                      (f"sqlite:///{tmp_path}/d.db", tmp_path / "d.db")):
        store = store_from_url(url)
        assert isinstance(store, SQLiteStore) and store.path == path
    for url in ("postgresql://u:secret@db.example:5433/app?schema=desk",
                "postgres://u:secret@db.example:5433/app?schema=desk"):
        pg = store_from_url(url)
        assert isinstance(pg, PostgresStore)
        assert pg.schema == "desk" and "secret" not in pg.url and "***" in pg.url
    assert store_from_url("postgresql://db.example/app").schema == "convoy"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://app:secret@h:5432/db?schema=s", "postgresql://app:***@h:5432/db?schema=s"),
    ("postgresql://app@h:5432/db?password=secret", "postgresql://app@h:5432/db?password=***"),
    ("postgresql://h/db?user=app&password=secret&sslmode=require",
     "postgresql://h/db?user=app&password=***&sslmode=require"),
    ("postgresql://h/db?password=se%26cr%3Dt&schema=s", "postgresql://h/db?password=***&schema=s"),
    ("postgresql://h/db?sslpassword=secret", "postgresql://h/db?sslpassword=***"),
    ("postgresql://h/db?pass%77ord=secret", "postgresql://h/db?pass%77ord=***"),
    ("postgresql://app:secret@h/db?password=secret2", "postgresql://app:***@h/db?password=***"),
    ("postgresql://h/db?application_name=no-password=x",
     "postgresql://h/db?application_name=no-password=x"),
])
def test_a_store_url_is_shown_without_its_password_in_either_form(url: str, shown: str
                                                                    ) -> None:
    """One mask for a password in the user part and one given as a libpq parameter
    (``?password=``), in messages and in ``store.url`` alike: ``***``, not percent-encoded
    (review s24 F5)."""
    from convoy.cli._common import label
    from convoy.stores._url import redacted

    assert redacted(url) == label(url) == shown
    assert store_from_url(url).url == shown


def test_a_bad_store_url_is_one_clear_error() -> None:
    with pytest.raises(UserError, match=r"unknown store URL scheme 'postgress'.*'postgres'"):
        store_from_url("postgress://u:secret@h/db")
    with pytest.raises(UserError) as e:
        store_from_url("mysql://u:secret@h/db")
    assert "secret" not in str(e.value)
    with pytest.raises(UserError, match="sqlite:///PATH"):
        store_from_url("sqlite://")
    with pytest.raises(UserError, match="schema name"):
        store_from_url("postgresql://h/db?schema=a;drop")


def test_engine_picks_its_store_from_the_url_or_convoy_db(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert isinstance(convoy.Engine("postgresql://h/db").store, PostgresStore)
    monkeypatch.setenv("CONVOY_DB", "postgresql://h/db?schema=from_env")
    store = convoy.Engine().store
    assert isinstance(store, PostgresStore) and store.schema == "from_env"
    monkeypatch.setenv("CONVOY_DB", str(tmp_path / "env.db"))
    assert convoy.Engine().store.url == f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.delenv("CONVOY_DB")
    assert convoy.Engine().store.url == "sqlite:///convoy.db"  # the zero-setup default


async def test_a_workflow_runs_on_postgres_given_only_the_url(pg: str) -> None:
    from pydantic import BaseModel

    class Verdict(BaseModel):
        label: str

    sim = convoy.SimModel({"a": {"output": {"label": "ok"}}})
    agent = convoy.Agent(name="a", output_type=Verdict, model="sim:")

    @convoy.workflow(name="pg_url")
    async def wf(ctx: convoy.Context, text: str) -> Verdict:
        out: Verdict = await ctx.run(agent, text)
        return out

    async with convoy.Engine(pg, models={"sim:": sim}) as engine:
        res = await engine.run(wf, "hello")
        assert res.ok and res.output == Verdict(label="ok")
        assert isinstance(engine.store, PostgresStore)
        assert [r.kind for r in await engine.store.journal(res.id)] == ["model"]


# -- the CLI ------------------------------------------------------------------------------


def test_the_cli_runs_and_lists_sessions_on_postgres(pg: str) -> None:
    write_jsonl(Path("in.jsonl"), GOOD)
    res = cli("run", FLOW, "-i", "in.jsonl", "--db", pg)
    assert res.code == 0, res.stderr
    assert summary(res.stdout, "completed") == "3"
    assert not Path("convoy.db").exists()
    assert {r.status for r in sessions(pg)} == {"completed"}
    listed = cli("sessions", "list", env={"CONVOY_DB": pg})  # the store from the environment
    assert listed.code == 0, listed.stderr
    assert listed.stdout.count("completed") >= 3
    costs = cli("cost", "--db", pg)
    assert costs.code == 0 and "triage" in costs.stdout


def test_a_status_edited_by_hand_is_counted_as_damaged_on_postgres(pg: str) -> None:
    write_jsonl(Path("in.jsonl"), GOOD)
    assert cli("run", FLOW, "-i", "in.jsonl", "--db", pg).code == 0
    url, schema = pg.split("?schema=")
    with psycopg.connect(url) as conn:
        conn.execute(f'UPDATE "{schema}".sessions SET status = %s WHERE id = '
                     f'(SELECT min(id) FROM "{schema}".sessions)', ("bogus",))
    listed = cli("sessions", "list", "--json", "--db", pg)
    assert listed.code == 0, listed.stderr
    assert json.loads(listed.stdout)["counts"] == {"completed": 2, "damaged": 1}
    info = cli("db", "info", "--db", pg)
    assert info.code == 0 and "damaged" in info.stdout and "bogus" not in info.stdout, \
        info.stdout


def test_an_unreachable_server_is_one_line_without_the_password() -> None:
    url = f"postgresql://convoy:s3cret@127.0.0.1:{closed_port()}/app"
    for args in (["sessions", "list"], ["resume"]):
        res = cli(*args, "--db", url)
        one_line_error(res, 1, "cannot connect to the PostgreSQL store")
        assert "s3cret" not in res.stderr and "convoy:***@" in res.stderr


def test_a_bad_db_url_scheme_is_a_usage_error() -> None:
    res = cli("sessions", "list", "--db", "postgressql://h/db")
    one_line_error(res, 2, "unknown store URL scheme 'postgressql'")


# -- schema versions ------------------------------------------------------------------------


def test_the_postgres_schema_is_the_version_this_convoy_writes() -> None:
    """Every schema change comes with a PostgreSQL migration: the two stores share version
    numbers (a store feature is added to both)."""
    assert pg_sql.PG_SCHEMA_VERSION == SCHEMA_VERSION


async def test_a_store_at_an_older_version_is_migrated_on_open(
        pg: str, monkeypatch: pytest.MonkeyPatch) -> None:
    old = PostgresStore(pg)
    await old.open()
    await old.create_session(new("kept"), owner=None, lease_s=30)
    await old.aclose()
    # A later Convoy adds a version: one more migration step.
    step = (pg_sql.PG_SCHEMA_VERSION + 1,
            "CREATE TABLE notes(id TEXT PRIMARY KEY); INSERT INTO notes VALUES('migrated')")
    monkeypatch.setattr(pg_sql, "MIGRATIONS", (*pg_sql.MIGRATIONS, step))
    monkeypatch.setattr(pg_sql, "PG_SCHEMA_VERSION", step[0])
    newer = PostgresStore(pg)
    await newer.open()
    try:
        assert (await newer.get_session("kept")) is not None
    finally:
        await newer.aclose()
    schema = pg.partition("?schema=")[2]
    with psycopg.connect(pg_cluster.server_url()) as conn:
        assert conn.execute(f'SELECT id FROM "{schema}".notes').fetchall() == [("migrated",)]
        assert conn.execute(f'SELECT value FROM "{schema}".meta WHERE key=%s',
                            ("schema_version",)).fetchall() == [(str(step[0]),)]
    monkeypatch.undo()
    refused = PostgresStore(pg)  # this Convoy again: the store is newer than it reads
    with pytest.raises(JournalError, match=f"version {step[0]}, newer"):
        await refused.open()


async def test_a_schema_3_store_gains_the_index_of_a_tenants_sessions_by_status(
        pg: str, monkeypatch: pytest.MonkeyPatch) -> None:
    v3 = tuple(m for m in pg_sql.MIGRATIONS if m[0] <= 3)
    monkeypatch.setattr(pg_sql, "MIGRATIONS", v3)
    monkeypatch.setattr(pg_sql, "PG_SCHEMA_VERSION", 3)
    old = PostgresStore(pg)  # what Convoy with schema 3 left
    await old.open()
    await old.aclose()
    monkeypatch.undo()
    schema = pg.partition("?schema=")[2]
    with psycopg.connect(pg_cluster.server_url()) as conn:  # a session as schema 3 wrote it
        conn.execute(f'INSERT INTO "{schema}".sessions(id,workflow,version,tenant,status,'  # type: ignore[arg-type]
                     "input,created) VALUES('kept','wf','1','t','pending','{}',0)")

    def indexes() -> list[str]:
        with psycopg.connect(pg_cluster.server_url()) as conn:
            return [r[0] for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname=%s AND tablename="
                "'sessions'", (schema,)).fetchall()]

    assert "sessions_tenant_status" not in indexes()
    store = PostgresStore(pg)
    await store.open()
    try:
        assert await store.counts(tenant="t") == {"pending": 1}
    finally:
        await store.aclose()
    # Schema 4 added (tenant, status); schema 8 dropped it again (a status change rewrites
    # every index on status): a tenant's sessions are found through (tenant, created, id).
    assert "sessions_tenant_status" not in indexes()
    assert "sessions_tenant" in indexes()


async def test_a_schema_4_store_gains_the_shared_limits_and_keeps_its_sessions(
        pg: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from convoy.stores import Hold

    monkeypatch.setattr(pg_sql, "MIGRATIONS", tuple(m for m in pg_sql.MIGRATIONS if m[0] <= 4))
    monkeypatch.setattr(pg_sql, "PG_SCHEMA_VERSION", 4)
    old = PostgresStore(pg)  # what Convoy with schema 4 left
    await old.open()
    await old.create_session(new("kept"), owner=None, lease_s=30)
    await old.aclose()
    monkeypatch.undo()
    store = PostgresStore(pg)
    await store.open()
    try:
        assert (await store.get_session("kept")) is not None
        res = await store.reserve("r", "A", [Hold(scope="s", unit="tokens", amount=1,
                                                  limit=2)], lease_s=30)
        assert res.granted
    finally:
        await store.aclose()
    schema = pg.partition("?schema=")[2]
    with psycopg.connect(pg_cluster.server_url()) as conn:
        assert conn.execute(f'SELECT value FROM "{schema}".meta WHERE key=%s',
                            ("schema_version",)).fetchall() == [(str(SCHEMA_VERSION),)]


async def test_engines_opening_a_new_database_at_once_create_its_schema_once(pg: str) -> None:
    stores = [PostgresStore(pg) for _ in range(6)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        await stores[0].create_session(new("s"), owner=None, lease_s=30)
        assert all([await s.get_session("s") is not None for s in stores])
    finally:
        for s in stores:
            await s.aclose()


async def test_schemas_of_one_database_are_separate_stores(tmp_path: Path) -> None:
    url = pg_cluster.fresh_database()
    default, other = PostgresStore(url), PostgresStore(f"{url}?schema=other")
    await default.open()
    await other.open()
    try:
        await default.create_session(new("s"), owner=None, lease_s=30)
        assert await other.get_session("s") is None
        assert default.schema == "convoy"
    finally:
        await default.aclose()
        await other.aclose()


def test_a_role_that_may_not_create_the_schema_is_told_the_privilege_it_lacks() -> None:
    """A schema that does not exist yet needs CREATE on the database, not privileges on
    the schema (review s24 F15); once it exists, owned by the role, the store opens."""
    url = pg_cluster.fresh_database()
    dbname = url.rsplit("/", 1)[1]
    role = f"r_{pg_cluster.fresh_schema()}"
    pg_cluster._admin(f'CREATE ROLE "{role}" LOGIN')
    try:
        as_role = url.replace("postgresql://postgres@", f"postgresql://{role}:s3cret@", 1)
        db = f"{as_role}?schema=support"
        one_line_error(cli("db", "migrate", "--db", db), 1,
                       f"permission denied for database {dbname}; grant the role {role!r} "
                       f"CREATE on database {dbname!r}, or create the schema 'support' "
                       "owned by it")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA support AUTHORIZATION "{role}"')  # type: ignore[arg-type]
        assert cli("db", "migrate", "--db", db).code == 0
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')  # type: ignore[arg-type]
        pg_cluster._admin(f'DROP ROLE "{role}"')


def test_a_role_without_the_temp_privilege_creates_and_migrates_a_store() -> None:
    """A hardened database revokes TEMP from PUBLIC: creating or migrating a store must
    need no temporary object (the review of stop 56: a migration's temporary function
    made ``db migrate`` and every engine fail there)."""
    url = pg_cluster.fresh_database()
    dbname = url.rsplit("/", 1)[1]
    role = f"r_{pg_cluster.fresh_schema()}"
    pg_cluster._admin(f'CREATE ROLE "{role}" LOGIN')
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'REVOKE TEMP ON DATABASE "{dbname}" FROM PUBLIC')  # type: ignore[arg-type]
            conn.execute(f'GRANT CREATE, CONNECT ON DATABASE "{dbname}" TO "{role}"')  # type: ignore[arg-type]
        as_role = url.replace("postgresql://postgres@", f"postgresql://{role}:s3cret@", 1)
        res = cli("db", "migrate", "--db", f"{as_role}?schema=hardened")
        assert res.code == 0, res.stderr
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')  # type: ignore[arg-type]
        pg_cluster._admin(f'DROP ROLE "{role}"')


async def test_a_schema_of_another_application_is_refused_and_left_as_it_was(
        tmp_path: Path) -> None:
    """As a SQLite file of another application: a schema that holds tables but no Convoy
    store (``?schema=public`` of an application's database, which has its own
    ``sessions``) is refused in one line; nothing is added to it. An empty schema becomes
    a store."""
    url = pg_cluster.fresh_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.sessions(id INT PRIMARY KEY, who TEXT)")
        conn.execute("INSERT INTO public.sessions VALUES(1, 'ann')")
        conn.execute("CREATE SCHEMA empty")

    def tables(schema: str) -> list[str]:
        with psycopg.connect(url) as conn:
            return [r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname=%s ORDER BY 1", (schema,))]

    store = PostgresStore(f"{url}?schema=public")
    with pytest.raises(NoStoreError) as info:
        await store.open()
    message = str(info.value)
    assert "\n" not in message
    assert "schema 'public'" in message and "holds no Convoy store" in message
    assert "'sessions'" in message and "another application" in message
    assert tables("public") == ["sessions"]
    res = await asyncio.to_thread(cli, "sessions", "list", "--db", f"{url}?schema=public")
    one_line_error(res, 2, "holds no Convoy store")
    assert "nothing to read there, and it is left as it is; name the schema of the Convoy " \
        "store to read (?schema=NAME" in res.stderr and "new schema" not in res.stderr
    assert tables("public") == ["sessions"]
    # Another application's table named meta (not Convoy's columns), a composite type
    # named sessions: refused alike, not "column value does not exist" (exit 1).
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA kv; CREATE TABLE kv.meta(k TEXT, v TEXT)")
        conn.execute("CREATE SCHEMA typed; CREATE TYPE typed.sessions AS (a INT)")
    for schema, named in (("kv", "'meta'"), ("typed", "'sessions'")):
        with pytest.raises(NoStoreError, match=f"it has tables of its own: {named}"):
            await PostgresStore(f"{url}?schema={schema}").open()
        res = await asyncio.to_thread(cli, "db", "migrate", "--db", f"{url}?schema={schema}")
        one_line_error(res, 2, "holds no Convoy store")
    assert tables("kv") == ["meta"] and tables("typed") == []
    # A schema with nothing yet: what to run, in the message's quotes, --db in a shell's
    res = await asyncio.to_thread(cli, "db", "info", "--db", f"{url}?schema=nothing")
    one_line_error(res, 2, f"no Convoy store at {url}?schema=nothing: 'convoy db migrate "
                           f"--db \"{url}?schema=nothing\"' creates one")
    fresh = PostgresStore(f"{url}?schema=empty")
    await fresh.open()
    await fresh.aclose()
    assert "meta" in tables("empty")


# -- failures ---------------------------------------------------------------------------------


async def test_a_store_survives_its_connections_being_killed(pg: str) -> None:
    """A server restart or failover drops every connection: the store reconnects. Writes
    that may simply land again (appends, creations) and reads are retried once on a new
    connection."""
    url = pg.replace("?", "?application_name=victim&")
    store = PostgresStore(url)
    await store.open()
    try:
        await store.create_session(new("s"), owner="A", lease_s=30)
        await store.append("s", "A", StepRecord(key="0", kind="tool", target="t",
                                                status="completed", result='"a"'))
        assert await store.get_session("s") is not None  # a pooled connection too
        with psycopg.connect(pg_cluster.server_url(), autocommit=True) as admin:
            killed = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   "WHERE application_name='victim'").fetchall()
        assert len(killed) >= 2
        await store.append("s", "A", StepRecord(key="1", kind="tool", target="t",
                                                status="completed", result='"b"'))
        assert [r.key for r in await store.journal("s")] == ["0", "1"]
        assert (await store.claim("s", "A", 30)) is not None
    finally:
        await store.aclose()


async def test_a_writer_connection_left_mid_pipeline_is_replaced(pg: str) -> None:
    """A connection killed while a batch ran can leave the group commit's own connection
    in pipeline mode with results pending, yet not marked broken: every later batch failed
    on it ("cannot exit pipeline mode while busy"), for ever, and a worker held its
    sessions (review: repeated pg_terminate_backend under a worker). It is replaced."""
    store = PostgresStore(pg)
    await store.open()
    try:
        await store.create_session(new("s"), owner="A", lease_s=30)
        writer = store._writer
        assert writer is not None and not writer.broken
        writer.pgconn.enter_pipeline_mode()  # (as a batch cut off mid-flight leaves it)
        writer.pgconn.send_query_params(b"SELECT 1", None)
        await store.append("s", "A", StepRecord(key="0", kind="tool", target="t",
                                                status="completed", result='"a"'))
        assert [r.key for r in await store.journal("s")] == ["0"]
    finally:
        await store.aclose()


async def test_a_store_whose_server_is_gone_fails_with_a_transient_error() -> None:
    store = PostgresStore(f"postgresql://u:pw@127.0.0.1:{closed_port()}/db", busy_timeout=2)
    with pytest.raises(StoreError, match="cannot connect to the PostgreSQL store") as e:
        await store.open()
    assert "pw" not in str(e.value).replace("***", "")
    assert not store.is_open


# -- fencing against a takeover in flight -------------------------------------------------------


async def _lock_waiters() -> int:
    """How many connections to the test cluster wait for a lock."""
    async with await psycopg.AsyncConnection.connect(pg_cluster.server_url()) as c:
        cur = await c.execute("SELECT count(*) FROM pg_stat_activity WHERE "
                              "wait_event_type='Lock' AND datname=current_database()")
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def test_a_takeover_waits_for_an_append_in_flight_of_the_old_owner(pg: str) -> None:
    """The race a row count cannot see: A's append (its lease just over) has run but its
    batch has not committed yet when B claims the session and reads its journal. The append
    share-locks the session row, so B's claim waits for A's commit: B then sees the record
    (or A's append was refused). Never a record B missed, landing after B took over."""
    from tests.store_backends import FakeClock

    clock = FakeClock()
    a, b = PostgresStore(pg, clock=clock), PostgresStore(pg, clock=clock)
    await a.open()
    await b.open()
    schema = pg.partition("?schema=")[2]
    admin = await psycopg.AsyncConnection.connect(pg_cluster.server_url())
    try:
        await a.create_session(new("s"), owner="A", lease_s=30)
        await a.create_session(new("x"), owner="A", lease_s=30)
        clock.advance(31)  # A's lease is over; A has not noticed
        # Hold x's row, so A's next batch (an append to s, then finishing x) stays open.
        await admin.execute(f'SELECT 1 FROM "{schema}".sessions WHERE id=%s FOR UPDATE',
                            ("x",))
        append = a.append("s", "A", StepRecord(key="0", kind="tool", target="pay",
                                               status="completed", result='"paid"'))
        finish = a.finish("x", "A", convoy.stores.SessionOutcome(status="completed"))

        async def until(cond: Callable[[], Awaitable[bool]]) -> None:
            for _ in range(6000):  # observable state; the bound is only a safety net
                if await cond():
                    return
                await asyncio.sleep(0.01)
            pytest.fail("the sessions never reached the state the test waits for")

        async def a_waits() -> bool:  # A's batch ran its append and waits for the held row
            return await _lock_waiters() >= 1

        await until(a_waits)
        claim = asyncio.create_task(b.claim("s", "B", 30))

        async def b_done_or_waits() -> bool:  # B took over, or waits for A's commit
            return claim.done() or await _lock_waiters() >= 2

        await until(b_done_or_waits)
        seen = None
        if claim.done():  # B took the session over while A's append was in flight
            seen = await b.load_journal("s")
        await admin.rollback()
        taken = await claim
        if seen is None:
            seen = await b.load_journal("s")
        outcome = (await asyncio.gather(append, finish, return_exceptions=True))[0]
    finally:
        await admin.close()
        await a.aclose()
        await b.aclose()
    assert taken is not None and taken.owner == "B"
    if outcome is None:  # A's record landed: B must have seen it when it took over
        assert "0" in seen, "A's append landed after B took the session over, unseen"
    else:
        assert "0" not in seen


@pytest.mark.parametrize("via", ["send_signal", "state_put"])
async def test_a_signal_sent_while_its_session_is_being_parked_wakes_it(pg: str,
                                                                        via: str) -> None:
    """The race of a park and a signal: the park's statement has looked for a signal (none
    yet) and set the session waiting, but has not committed, when the signal (or a state
    write firing the session's watch) is sent. The sender must wait for the park to commit
    and then wake the session; storing the signal beside a session left waiting would
    strand it."""
    store = PostgresStore(pg)
    await store.open()
    schema = pg.partition("?schema=")[2]
    park = await psycopg.AsyncConnection.connect(pg_cluster.server_url())
    try:
        await store.create_session(new("s"), owner="A", lease_s=30)
        if via == "state_put":
            assert not await store.state_watch("t", "ns", "k", session_id="s", name="go",
                                               after_version=0)
        await park.execute(f'SELECT 1 FROM "{schema}".sessions WHERE id=%s FOR UPDATE',
                           ("s",))
        await park.execute(f"UPDATE \"{schema}\".sessions SET status='waiting', owner=NULL, "
                           "wait_name='go' WHERE id=%s", ("s",))
        sent = asyncio.create_task(
            store.send_signal("s", "go", "{}") if via == "send_signal" else
            store.state_put(convoy.stores.StateWrite(
                tenant="t", namespace="ns", key="k", value="1", expected_version=0)))
        for _ in range(6000):  # observable state; the bound is only a safety net
            if sent.done() or await _lock_waiters() >= 1:
                break
            await asyncio.sleep(0.01)
        await park.commit()
        await sent
        row = await store.get_session("s")
        assert row is not None and row.status == "pending"
        assert await store.next_signal("s", "go") is not None
    finally:
        await park.close()
        await store.aclose()


# -- opening ------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


async def test_sessions_started_at_once_on_a_new_engine_open_it_once(any_db: str | Path
                                                                     ) -> None:
    """A burst of first runs (W2 starts 10,000 at once) opens the store and starts each
    interceptor once, whatever the store awaits while it opens."""
    started: list[int] = []

    class Counting(convoy.Interceptor):
        async def start(self, engine: convoy.Engine) -> None:
            await asyncio.sleep(0)
            started.append(1)

    @convoy.workflow(name="burst")
    async def wf(ctx: convoy.Context, x: int) -> int:
        return x

    engine = convoy.Engine(any_db, interceptors=[Counting()])
    opens: list[int] = []
    store_open = engine.store.open

    async def counted_open() -> None:
        opens.append(1)
        await store_open()

    engine.store.open = counted_open  # type: ignore[method-assign]
    try:
        results = await asyncio.gather(*(engine.run(wf, i) for i in range(50)))
    finally:
        await engine.aclose()
    assert [r.output for r in results] == list(range(50))
    assert started == [1] and opens == [1]


async def test_writes_of_one_batch_land_in_order_also_twice_to_one_key(any_db: str | Path
                                                                        ) -> None:
    """A batch carries whatever was submitted together: a started record and its outcome,
    a session's creation and its first records, many sessions at once."""
    store = store_from_url(any_db)
    await store.open()
    try:
        writes = []
        for i in range(50):
            writes.append(store.create_session(new(f"s{i}"), owner="A", lease_s=30))
            writes.append(store.append(f"s{i}", "A", StepRecord(
                key="0", kind="tool", target="pay", status="started")))
            writes.append(store.append(f"s{i}", "A", StepRecord(
                key="1", kind="tool", target="t", status="completed", result='"x"')))
            writes.append(store.append(f"s{i}", "A", StepRecord(
                key="0", kind="tool", target="pay", status="completed", result='"paid"')))
        await asyncio.gather(*writes)
        for i in range(50):
            journal = await store.journal(f"s{i}")
            assert [(r.key, r.status) for r in journal] == [("0", "completed"),
                                                            ("1", "completed")]
    finally:
        await store.aclose()


async def test_a_batch_that_fails_writes_nothing_of_it(pg: str) -> None:
    """The writes of one commit land together or not at all: a value the server refuses (a
    NUL character) fails its whole batch, and the records batched with it are not written
    (each caller sees the error; its session stays unfinished for a resume)."""
    store = PostgresStore(pg)
    await store.open()
    try:
        await store.create_session(new("s"), owner="A", lease_s=30)
        ok = store.append("s", "A", StepRecord(key="0", kind="tool", target="t",
                                               status="completed", result='"fine"'))
        bad = store.kv_put("ns", "k", "nul\x00byte")
        also = store.append("s", "A", StepRecord(key="1", kind="tool", target="t",
                                                 status="completed", result='"fine"'))
        results = await asyncio.gather(ok, bad, also, return_exceptions=True)
        assert all(isinstance(r, StoreError) for r in results), results
        assert await store.journal("s") == []
        assert await store.kv_get("ns", "k") is None
        await store.append("s", "A", StepRecord(key="0", kind="tool", target="t",
                                                status="completed", result='"again"'))
        assert [r.key for r in await store.journal("s")] == ["0"]
    finally:
        await store.aclose()


async def test_a_batch_the_server_refuses_writes_nothing_and_the_store_goes_on(pg: str) -> None:
    """A statement the server refuses (a count out of range for its column) fails its
    whole batch; the store's connection is not left inside the aborted transaction, so the
    next writes land."""
    store = PostgresStore(pg)
    await store.open()
    try:
        first = store.create_session(new("s"), owner="A", lease_s=30)
        bad = store.append("s", "A", StepRecord(key="0", kind="model", target="m",
                                                status="completed", input_tokens=2**70))
        results = await asyncio.gather(first, bad, return_exceptions=True)
        assert all(isinstance(r, StoreError) for r in results), results
        assert await store.get_session("s") is None
        await store.create_session(new("s"), owner="A", lease_s=30)
        await store.append("s", "A", StepRecord(key="0", kind="tool", target="t",
                                                status="completed", result='"ok"'))
        assert [r.key for r in await store.journal("s")] == ["0"]
    finally:
        await store.aclose()


def test_a_store_left_open_does_not_keep_the_event_loop_from_ending(pg: str) -> None:
    # A program (or a failing test) that ends while its store is still open: asyncio.run
    # cancels the store's tasks, and must then end with the program's own error. It hung
    # forever when the pool was still opening its connections in the background (psycopg_pool
    # swallows the cancellation of a worker that is connecting).
    child = ("import asyncio\n"
             "from convoy.stores import PostgresStore\n"
             "async def main() -> None:\n"
             f"    await PostgresStore({pg!r}).open()\n"
             "    raise SystemExit('the program ended with its store open')\n"
             "asyncio.run(main())\n")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    try:
        done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                              env=env, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("the program hung at its end with its PostgreSQL store open")
    assert done.returncode == 1, done.stderr
    assert "the program ended with its store open" in done.stderr
