"""Store backends for the conformance suite (``tests/test_store_conformance.py``).

A backend is one fresh, empty place to keep a store (a file, a database) and a way to open
any number of store objects on it, each one what a separate engine process would build.
Adding PostgreSQL is one more class here and one more entry in :data:`BACKENDS`; the
tests do not change.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from convoy.stores._protocol import Store

#: Where the fake clock starts: a fixed instant, never today's date.
EPOCH = 1_000_000.0


class FakeClock:
    """A wall clock that moves only when a test moves it."""

    def __init__(self, now: float = EPOCH) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        assert seconds >= 0, "time does not run backwards"
        self.now += seconds
        return self.now


class Backend:
    """One empty storage location; :meth:`new` builds an unopened store object on it."""

    name: ClassVar[str]

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    def new(self, clock: FakeClock, **options: Any) -> Store:
        raise NotImplementedError

    def child_source(self, clock_expr: str) -> str:
        """Python statements (imports, then ``store = ...``) that build an unopened store on
        this location in another process, with ``clock_expr`` as its clock. They run inside
        an ``async def``, so they may not use top-level-only syntax."""
        raise NotImplementedError

    def set_schema_version(self, version: int) -> None:
        """Mark the (closed) store as written by another Convoy schema version. Simulates a
        newer Convoy: the protocol has no public way to do it."""
        raise NotImplementedError

    def drop_addons(self) -> None:
        """Take every schema add-on out of the (closed) store, its ``addon:*`` meta rows
        with it: the store as the Convoy before those features left it."""
        raise NotImplementedError

    def snapshot(self) -> object:
        """What a read-only command must leave as it found it: the schema, the ``meta``
        rows, and (SQLite) the file's bytes."""
        raise NotImplementedError

    def refuse_sessions_of(self, workflow: str) -> None:
        """Make the database itself refuse every new session of ``workflow`` (as a table
        altered under the store would): a write that fails in the database, not in Convoy."""
        raise NotImplementedError

    def damage(self, sql: str) -> None:
        """Run ``sql`` on the (closed) store: a hand edit, behind Convoy's back."""
        raise NotImplementedError

    def cleanup(self) -> None:
        """Drop the storage (nothing to do for a temporary directory)."""


class SQLiteBackend(Backend):
    name = "sqlite"

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.path = tmp / "s.db"

    def new(self, clock: FakeClock, **options: Any) -> Store:
        from convoy.stores._sqlite import SQLiteStore

        return SQLiteStore(self.path, clock=clock, **options)  # type: ignore[return-value]

    def child_source(self, clock_expr: str) -> str:
        # Processes racing on one file wait for each other's write locks: on a loaded host
        # that can take longer than the default busy timeout, which is not what these
        # tests check (a deadlock still fails them, after two minutes).
        return ("from convoy.stores._sqlite import SQLiteStore\n"
                f"store = SQLiteStore({str(self.path)!r}, clock={clock_expr}, "
                "busy_timeout=120.0)\n")

    def set_schema_version(self, version: int) -> None:
        # The one place the suite writes SQL itself: it stands in for a newer Convoy having
        # migrated this file. The version lives in meta('schema_version'); PRAGMA
        # user_version is set too in case an implementation keeps it there.
        with sqlite3.connect(self.path) as conn:
            conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
            conn.execute(f"PRAGMA user_version={int(version)}")
        conn.close()

    def damage(self, sql: str) -> None:
        with sqlite3.connect(self.path) as conn:
            conn.execute(sql)
        conn.close()

    def drop_addons(self) -> None:
        # Plays the Convoy before the add-ons (src/convoy/stores/_addons.py).
        conn = sqlite3.connect(self.path)
        conn.executescript(_DROP_ADDONS.format(
            schema="main", cascade="", trigger="DROP TRIGGER main.sessions_audit_cursor_reset"))
        conn.close()

    def snapshot(self) -> object:
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            schema = sorted(conn.execute("SELECT type, name, sql FROM sqlite_master"))
            meta = sorted(conn.execute("SELECT key, value FROM meta"))
        finally:
            conn.close()
        return digest, schema, meta

    def refuse_sessions_of(self, workflow: str) -> None:
        with sqlite3.connect(self.path) as conn:
            conn.execute("CREATE TRIGGER refused BEFORE INSERT ON sessions WHEN "
                         f"NEW.workflow = '{workflow}' BEGIN "
                         "SELECT RAISE(ABORT, 'refused by a trigger'); END")
        conn.close()


class PostgresBackend(Backend):
    """A fresh schema in the tests' private PostgreSQL cluster (``tests/pg_cluster.py``)."""

    name = "postgres"

    def __init__(self, tmp: Path) -> None:
        from tests import pg_cluster

        super().__init__(tmp)
        self.url = f"{pg_cluster.server_url()}?schema={pg_cluster.fresh_schema()}"

    def new(self, clock: FakeClock, **options: Any) -> Store:
        from convoy.stores._postgres import PostgresStore

        return PostgresStore(self.url, clock=clock, **options)  # type: ignore[return-value]

    def child_source(self, clock_expr: str) -> str:
        return ("from convoy.stores._postgres import PostgresStore\n"
                f"store = PostgresStore({self.url!r}, clock={clock_expr})\n")

    def set_schema_version(self, version: int) -> None:
        # Stands in for a newer Convoy having migrated this schema (as for SQLite above).
        import psycopg

        base, _, schema = self.url.partition("?schema=")
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'UPDATE "{schema}".meta SET value=%s '  # type: ignore[arg-type]
                         "WHERE key='schema_version'", (str(version),))

    def damage(self, sql: str) -> None:
        import psycopg

        base, _, schema = self.url.partition("?schema=")
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')  # type: ignore[arg-type]
            conn.execute(sql)  # type: ignore[arg-type]

    def drop_addons(self) -> None:
        import psycopg

        base, _, schema = self.url.partition("?schema=")
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(_DROP_ADDONS.format(  # type: ignore[arg-type]
                schema=f'"{schema}"', cascade=" CASCADE",
                trigger=f'DROP FUNCTION "{schema}".convoy_audit_cursor_reset() CASCADE'))

    def snapshot(self) -> object:
        import psycopg

        base, _, schema = self.url.partition("?schema=")
        with psycopg.connect(base, autocommit=True) as conn:
            columns = conn.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema=%s ORDER BY 1, 2", (schema,)).fetchall()
            indexes = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE "
                                   "schemaname=%s ORDER BY 1", (schema,)).fetchall()
            meta = conn.execute(f'SELECT key, value FROM "{schema}".meta '  # type: ignore[arg-type]
                                "ORDER BY key").fetchall()
        return columns, indexes, meta

    def refuse_sessions_of(self, workflow: str) -> None:
        import psycopg

        base, _, schema = self.url.partition("?schema=")
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'ALTER TABLE "{schema}".sessions ADD CONSTRAINT refused '  # type: ignore[arg-type]
                         f"CHECK (workflow <> '{workflow}')")

    def cleanup(self) -> None:
        from tests import pg_cluster

        pg_cluster.drop_schema(self.url.partition("?schema=")[2])


# What the add-ons added, taken out again (``schema``: where the tables live).
_DROP_ADDONS = """
DELETE FROM {schema}.meta WHERE key LIKE 'addon:%';
{trigger};
DROP TABLE {schema}.alerts{cascade};
DROP TABLE {schema}.alert_outbox{cascade};
DROP TABLE {schema}.subject_keys{cascade};
DROP TABLE {schema}.erasures{cascade};
DROP TABLE {schema}.state_floor{cascade};
DROP TABLE {schema}.state_orphans{cascade};
DROP INDEX {schema}.sessions_subject;
ALTER TABLE {schema}.sessions DROP COLUMN subject;
ALTER TABLE {schema}.journal DROP COLUMN config;
ALTER TABLE {schema}.journal DROP COLUMN began;
"""

#: Every store implementation the suite runs against.
BACKENDS: list[type[Backend]] = [SQLiteBackend, PostgresBackend]
