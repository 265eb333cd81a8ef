"""A SQLite file of another application (a database that holds tables, but no Convoy store)
is never made into a store: every command refuses it in one line and leaves it byte for
byte, and so does the Python API; an empty or missing file still becomes a new store."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

import convoy
from convoy._errors import NoStoreError
from tests.clikit import (
    FLOW,
    GOOD,
    cli,
    one_line_error,
    workdir,  # noqa: F401  (autouse fixture)
    write_jsonl,
)

TOLD = ("'other.db' is a SQLite database that holds no Convoy store (it has tables of its "
        "own: 't'): ")
T = TypeVar("T")

HOW = ("Convoy does not add its tables to another application's database; pass a new file "
       "(or an existing Convoy store) as the store")
#: What a command that only reads the store says (a new file would have nothing to read).
READ_HOW = ("nothing to read there, and it is left as it is; pass the Convoy store to read "
            "(on the command line: --db PATH, or $CONVOY_DB)")


def _other_app(path: Path) -> bytes:
    """``sqlite3 other.db 'create table t(x)'``, with a row: the file's bytes."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t(x)")
        conn.execute("INSERT INTO t VALUES(1)")
    conn.close()
    return path.read_bytes()


def _files(where: Path) -> list[str]:
    return sorted(p.name for p in where.iterdir())


def test_every_command_refuses_a_sqlite_file_of_another_application(workdir: Path  # noqa: F811
                                                                    ) -> None:
    before = _other_app(workdir / "other.db")
    write_jsonl(workdir / "in.jsonl", GOOD[:1])
    # (resume, erase, cancel, ...: tests/test_cli_privacy.py)
    reads = (("db", "info"), ("sessions", "list"), ("state", "get", "ns", "k"),
             ("export", "bob"), ("purge", "--older-than", "30d", "--dry-run"),
             ("audit", "verify"), ("trace", "s-1"))
    for args in (("db", "migrate"), ("run", FLOW, "-i", "in.jsonl"),
                 ("worker", "cli_flows", "--until-idle"), ("state", "set", "ns", "k", "1"),
                 *reads):
        res = cli(*args, "--db", "other.db")
        one_line_error(res, 2, TOLD)
        assert (READ_HOW if args in reads else HOW) in res.stderr, (args, res.stderr)
        assert (workdir / "other.db").read_bytes() == before, f"'convoy {args}' changed it"
    assert _files(workdir) == ["in.jsonl", "other.db"]  # no -wal, no -shm


def test_an_empty_or_missing_file_becomes_a_store(workdir: Path) -> None:  # noqa: F811
    (workdir / "empty.db").write_bytes(b"")
    write_jsonl(workdir / "in.jsonl", GOOD[:1])
    assert cli("db", "migrate", "--db", "empty.db").code == 0
    assert cli("run", FLOW, "-i", "in.jsonl", "--db", "new.db").code == 0
    for db in ("empty.db", "new.db"):
        assert cli("db", "info", "--db", db).code == 0


async def test_the_python_api_refuses_a_sqlite_file_of_another_application(
        workdir: Path) -> None:  # noqa: F811
    before = _other_app(workdir / "other.db")
    engine = convoy.Engine("other.db")
    with pytest.raises(NoStoreError) as caught:
        await engine.open()
    assert TOLD in str(caught.value) and HOW in str(caught.value)
    await engine.aclose()
    assert (workdir / "other.db").read_bytes() == before
    assert _files(workdir) == ["other.db"]


def test_another_applications_table_named_meta_is_no_store(workdir: Path) -> None:  # noqa: F811
    with sqlite3.connect(workdir / "other.db") as conn:
        conn.execute("CREATE TABLE meta(id INTEGER)")
    conn.close()
    before = (workdir / "other.db").read_bytes()
    for args in (("db", "migrate"), ("sessions", "list")):
        one_line_error(cli(*args, "--db", "other.db"), 2,
                       "'other.db' is a SQLite database that holds no Convoy store (it has "
                       "tables of its own: 'meta')")
    assert (workdir / "other.db").read_bytes() == before


@pytest.mark.parametrize("pragma", ["user_version=7", "application_id=1234"])
def test_a_table_less_sqlite_file_marked_by_another_application_is_no_store(
        workdir: Path, pragma: str) -> None:  # noqa: F811
    """No tables yet, but a mark only an application sets (``PRAGMA user_version``,
    ``application_id``): another application's database, not an empty file."""
    with sqlite3.connect(workdir / "app.db") as conn:
        conn.execute(f"PRAGMA {pragma}")
    conn.close()
    before = (workdir / "app.db").read_bytes()
    for args in (("db", "migrate"), ("sessions", "list")):
        one_line_error(cli(*args, "--db", "app.db"), 2,
                       f"'app.db' is a SQLite database that holds no Convoy store (it has "
                       f"no tables, but PRAGMA {pragma.partition('=')[0]} says another "
                       "application made it)")
    assert (workdir / "app.db").read_bytes() == before


async def test_a_store_another_process_creates_meanwhile_is_not_taken_for_another_apps(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Engines started together on a new file: one creates the store (tables and version
    in one transaction) between the two reads another one's check makes. The check reads
    one snapshot, so it sees an empty database or a whole store, never "tables, no
    version". It used to say the file was another application's (a CI run lost a writer
    of the several-process state test to it)."""
    from convoy.stores import _sqlite

    path = workdir / "new.db"
    with sqlite3.connect(path) as conn:  # a new database, already in WAL mode (as after
        conn.execute("PRAGMA journal_mode=WAL")  # the first engine's pragma)
    conn.close()

    def create_the_store() -> None:
        other = _sqlite.SQLiteStore(path)
        asyncio.run(other.open())
        other.close()

    done: list[bool] = []

    def meanwhile(read: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
        def first_read_then_the_other_engine(conn: sqlite3.Connection) -> T:
            out = read(conn)
            if not done:  # after this check's first read, before its second
                done.append(True)
                thread = threading.Thread(target=create_the_store)
                thread.start()
                thread.join()
            return out
        return first_read_then_the_other_engine

    monkeypatch.setattr(_sqlite, "_foreign_tables", meanwhile(_sqlite._foreign_tables))
    monkeypatch.setattr(_sqlite.SQLiteStore, "_version_of",
                        staticmethod(meanwhile(_sqlite.SQLiteStore._version_of)))
    store = _sqlite.SQLiteStore(path)
    await store.open()  # used to raise NoStoreError
    try:
        assert done and await store.schema_version() == _sqlite.SCHEMA_VERSION
    finally:
        store.close()
