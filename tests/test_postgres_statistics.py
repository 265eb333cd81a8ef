"""PostgreSQL's planner statistics hold nothing of what an erasure or a purge deleted.

``ANALYZE`` (autovacuum's, or an administrator's) copies column values into the catalog
``pg_statistic``: the most common values and histogram bounds of each column. Without care,
the id of an erased subject and the plaintext of purged sessions outlive them there, in the
database's files (``pg_statistic`` and its TOAST table). The store's role here owns the
database (it may rewrite ``pg_statistic``) or only the store's schema (it may not: the
erasure says in one line what an administrator must run); neither is a superuser.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import BaseModel

import convoy
from convoy import MasterKey
from convoy.stores import SessionFilter
from tests import pg_cluster

from .conftest import FakeClock

SUBJECT = "cust-7"
DAY = 86400.0
#: Sessions of the subject, and sessions of nobody (their values stored in plaintext).
N = 12


class Customer(BaseModel):
    ref: str
    name: str
    phone: str
    iban: str
    mail: str


def customer(n: int, kind: str) -> Customer:
    """A customer's personal values, each one unique (histogram bounds). (None holds what
    ``tests/test_privacy.py`` scans the test cluster's WAL for.)"""
    return Customer(ref=f"{kind}-{n}", name=f"Hedwig Paulsen-Okonkwo {kind}{n:03d}",
                    phone=f"+31 6 48{n:05d}", iban=f"NL91ABNA0417{n:06d}",
                    mail=f"hedwig.{kind}{n:03d}@example.net")


def planted(c: Customer) -> tuple[str, ...]:
    return (c.name, c.phone, c.iban, c.mail)


@convoy.workflow(name="pgstats.serve")
async def serve(ctx: convoy.Context, c: Customer) -> str:
    account = await ctx.step("lookup", lambda: {"iban": c.iban, "phone": c.phone})
    await ctx.state("contacts").set(c.ref, {"mail": c.mail}, expected_version=0)
    return f"call {c.name} on {account['phone']} about {account['iban']}"


def admin(url: str, *statements: str) -> list[Any]:
    """Run ``statements`` as the test cluster's superuser on the database of ``url``: the
    rows of the last."""
    rows: list[Any] = []
    with psycopg.connect(url, autocommit=True) as conn:
        for s in statements:
            cur = conn.execute(s)  # type: ignore[call-overload]
            rows = cur.fetchall() if cur.description else []
    return rows


def statistics(url: str) -> str:
    """Every row of the database's ``pg_statistic``, as text (read as the superuser)."""
    return "\n".join(r[0] for r in admin(url, "SELECT s::text FROM pg_statistic s"))


def database_files(url: str) -> list[Path]:
    """The files of the database of ``url`` (``base/<oid>``: its tables, indexes, TOAST
    tables and catalogs, ``pg_statistic`` among them), after a checkpoint."""
    [(oid,)] = admin(url, "CHECKPOINT",
                     "SELECT oid FROM pg_database WHERE datname = current_database()")
    base = Path(pg_cluster._state["dir"]) / "data" / "base" / str(oid)
    return sorted(p for p in base.rglob("*") if p.is_file())


def found(paths: list[Path], values: tuple[str, ...]) -> dict[str, list[str]]:
    """Which values occur, byte for byte, in which of the files."""
    out: dict[str, list[str]] = {}
    for p in paths:
        data = p.read_bytes()
        for v in values:
            if v.encode() in data:
                out.setdefault(v, []).append(p.name)
    return out


@pytest.fixture(params=["database-owner", "schema-owner"])
def store(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    """``(the store's URL as its role, the superuser's URL of its database, the role's
    kind)``: a role that is no superuser and owns the database (schema ``convoy``) or only
    the store's schema (in a database the superuser owns)."""
    role = f"r_{pg_cluster.fresh_schema()}"
    name = f"db_{pg_cluster.fresh_schema()}"
    pg_cluster._admin(f'CREATE ROLE "{role}" LOGIN')
    owner = role if request.param == "database-owner" else "postgres"
    pg_cluster._admin(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    su = pg_cluster.server_url().rsplit("/", 1)[0] + f"/{name}"
    as_role = su.replace("postgresql://postgres@", f"postgresql://{role}@", 1)
    if request.param == "schema-owner":
        admin(su, f'CREATE SCHEMA support AUTHORIZATION "{role}"')
        as_role += "?schema=support"
    try:
        yield as_role, su, request.param
    finally:
        pg_cluster._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        pg_cluster._admin(f'DROP ROLE IF EXISTS "{role}"')


def as_before_the_addon(url: str, schema: str) -> None:
    """Make the store in ``schema`` of ``url`` (the superuser's) one an earlier Convoy made:
    every column collects statistics, and no add-on that says otherwise is recorded (the
    next engine applies it)."""
    columns = admin(url, "SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c "
                    "ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                    f"WHERE n.nspname = '{schema}' AND c.relkind = 'r' AND a.attnum > 0 AND "
                    "a.attstattarget = 0")
    admin(url, f'SET search_path TO "{schema}"',
          *(f'ALTER TABLE "{t}" ALTER COLUMN "{c}" SET STATISTICS -1' for t, c in columns),
          "DELETE FROM meta WHERE key = 'addon:private_statistics'")


@pytest.mark.parametrize("kept", [0, 2], ids=["all-purged", "some-kept"])
@pytest.mark.parametrize("made", ["new", "upgraded"])
async def test_erasure_and_purge_leave_nothing_in_the_planner_statistics(
        store: tuple[str, str, str], made: str, kept: int,
        caplog: pytest.LogCaptureFixture) -> None:
    """A store made by this Convoy collects no statistics on payloads and subject ids; one
    an earlier Convoy made holds them (``ANALYZE`` ran before the upgrade). Either way,
    after an erasure and a purge, neither ``pg_statistic`` nor any file of the database
    holds the subject's id, a purged session's id or a value of theirs."""
    url, su, kind = store
    schema = "support" if kind == "schema-owner" else "convoy"
    # (a month ago: an effect step's time limit reads the wall clock, so the kept sessions
    # run at the time of day)
    clock = FakeClock(time.time() - 31 * DAY)
    subject = [customer(n, "s") for n in range(N)]
    other = [customer(n, "o") for n in range(N)]

    def engine() -> convoy.Engine:
        eng = convoy.Engine(url, master_key=key)
        eng.store.clock = clock  # type: ignore[attr-defined]
        return eng

    key = MasterKey.from_text(MasterKey.generate())
    async with engine() as eng:
        mine = [await eng.run(serve, c, subject=SUBJECT) for c in subject]
        theirs = [await eng.run(serve, c) for c in other]
        assert all(r.ok for r in mine + theirs), [r.error for r in mine + theirs][:2]
        raw = await eng.store.inner.journal(mine[0].id)  # type: ignore[attr-defined]
        cipher = tuple(json.loads(r.result)["d"][20:60] for r in raw if r.result)  # (sealed)
        clock.advance(31 * DAY)
        if kept:  # recent sessions of nobody, with nothing personal: the purge keeps them
            assert all(r.ok for r in await eng.run_many(
                serve, [Customer(ref=f"k{n}", name="-", phone="-", iban="-", mail="-")
                        for n in range(kept)]))
    values = (SUBJECT, *cipher, *(v for c in subject + other for v in planted(c)))
    ids = tuple(r.id for r in mine + theirs)
    if made == "upgraded":
        as_before_the_addon(su, schema)

    # What autovacuum does to a store in use, as a superuser would run it.
    admin(su, "ANALYZE")
    before = statistics(su)
    [(stat_file,)] = admin(su, "SELECT pg_relation_filepath('pg_statistic')")
    stat_files = [p for p in database_files(su) if str(p).endswith(stat_file)]
    assert [i for i in ids if i in before]  # the control: ids of sessions in histograms
    assert found(stat_files, ids)  # and the scan sees pg_statistic's file
    if made == "upgraded":  # the control: the values, as an earlier Convoy let ANALYZE
        assert f"{{{SUBJECT}}}" in before and other[0].name in before  # copy them
        assert found(stat_files, (SUBJECT,))
    else:  # none collected
        assert [v for v in values if v in before] == []

    with caplog.at_level(logging.WARNING, logger="convoy"):
        async with engine() as eng:
            event = await eng.erase(SUBJECT)
            assert event.sessions == N
            assert sum(e.sessions for e in await eng.purge(30 * DAY)) == N
            assert len(await eng.store.list_sessions(SessionFilter())) == kept

    said = [r.getMessage() for r in caplog.records if "pg_statistic" in r.getMessage()]
    if kind == "database-owner":
        assert said == []
    else:  # the role may not rewrite pg_statistic: one line says what an administrator runs
        assert len(said) == 1, said
        assert "VACUUM FULL pg_catalog.pg_statistic" in said[0]
        assert "superuser or the database's owner" in said[0]
    gone = (*values, *ids)
    left = statistics(su)
    assert [v for v in gone if v in left] == []
    if kind == "schema-owner":
        admin(su, "VACUUM FULL pg_catalog.pg_statistic")  # what the line said to run
    assert found(database_files(su), gone) == {}


async def test_statistics_a_view_keeps_from_removal_are_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    """A view of the store's table (a report of yours) keeps PostgreSQL from removing a
    column's statistics: the compaction does the rest and says, in one line, what would
    remove them."""
    schema = pg_cluster.fresh_schema()
    url = f"{pg_cluster.server_url()}?schema={schema}"
    try:
        async with convoy.Engine(url, master_key=MasterKey.from_text(
                MasterKey.generate())) as eng:
            runs = [await eng.run(serve, customer(n, "o")) for n in range(3)]
            admin(pg_cluster.server_url(), f'SET search_path TO "{schema}"',
                  "ALTER TABLE sessions ALTER COLUMN input SET STATISTICS -1",
                  "ANALYZE sessions",
                  "ALTER TABLE sessions ALTER COLUMN input SET STATISTICS 0",
                  "CREATE VIEW report AS SELECT id, input FROM sessions")
            assert customer(0, "o").name in statistics(pg_cluster.server_url())
            with caplog.at_level(logging.WARNING, logger="convoy"):
                await eng.store.compact()
                await eng.store.compact()
            assert all([await eng.store.get_session(r.id) for r in runs])  # (kept)
        [said] = [r.getMessage() for r in caplog.records]
        assert "the columns input of table 'sessions' may hold deleted data and could not " \
            "be removed (cannot alter type of a column used by a view or rule: rule " \
            "_RETURN on view report depends on column \"input\")" in said, said
        assert f"DELETE FROM pg_statistic WHERE starelid = '\"{schema}\".\"sessions\"'" \
            "::regclass" in said
    finally:
        pg_cluster.drop_schema(schema)


async def test_a_table_of_yours_in_the_stores_schema_is_left_alone() -> None:
    """A table the application keeps in the store's schema, a column of it set to collect
    no statistics (its own choice): a compaction neither alters it (an exclusive lock, its
    collation reset) nor removes its statistics (it did: it took every such column of the
    schema for the store's)."""
    schema = pg_cluster.fresh_schema()
    url = f"{pg_cluster.server_url()}?schema={schema}"
    try:
        async with convoy.Engine(url, master_key=MasterKey.from_text(
                MasterKey.generate())) as eng:
            await eng.run(serve, customer(0, "o"))
            admin(pg_cluster.server_url(), f'SET search_path TO "{schema}"',
                  'CREATE TABLE crm_notes(note text COLLATE "C")',
                  "INSERT INTO crm_notes SELECT 'note ' || n FROM generate_series(1, 50) n",
                  "ANALYZE crm_notes",
                  "ALTER TABLE crm_notes ALTER COLUMN note SET STATISTICS 0")
            await eng.store.compact()
        [(kept,)] = admin(pg_cluster.server_url(), "SELECT count(*) FROM pg_stats WHERE "
                          f"schemaname = '{schema}' AND tablename = 'crm_notes'")
        assert kept == 1  # its statistics stay
        [(collation,)] = admin(pg_cluster.server_url(), "SELECT collation_name FROM "
                               "information_schema.columns WHERE table_schema = "
                               f"'{schema}' AND table_name = 'crm_notes'")
        assert collation == "C"  # not altered
    finally:
        pg_cluster.drop_schema(schema)
