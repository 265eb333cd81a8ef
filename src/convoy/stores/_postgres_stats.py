"""The PostgreSQL store and the server's planner statistics: no payload, no subject's id.

``ANALYZE`` (autovacuum runs it on its own once a table has changed enough) copies column
values into the catalog ``pg_statistic``: each column's most common values and histogram
bounds, kept until the next ``ANALYZE`` of the column, in the database's files. Two parts
keep a store's personal data out of it:

- **None collected.** The columns that hold payloads or a subject's id (:data:`UNANALYZED`)
  collect no statistics (``SET STATISTICS 0``, the add-on ``private_statistics``). The
  store finds its rows by ids and by indexes on other columns (a subject's sessions by
  their partial index, which is chosen without them): the plans stay the same.
- **None kept after a purge.** :func:`refresh_statistics` (what a compaction does after the
  tables are rewritten) draws the statistics of the purged tables again from the rows that
  remain (``ANALYZE``: no deleted session's id in a histogram), removes the statistics a
  column should not have (collected before the add-on, or left by ``ANALYZE`` on a table it
  found empty: it only ever replaces them) and rewrites ``pg_statistic`` (``VACUUM FULL``:
  the old rows' bytes leave its files) when the role may. PostgreSQL (15) lets a superuser
  or the database's owner do that, not a role that owns only the schema; a role that may
  not gets a server warning, not an error, so whether the catalog was rewritten is told by
  its file: if not, one warning (once a process and database) says what an administrator
  must run.

A column's statistics are removed by setting its type to the type it has: PostgreSQL drops
them on any type change, rewrites no row for this one (its indexes are rebuilt), and asks
only for the table's ownership, where deleting from ``pg_statistic`` needs a superuser.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # (imported where used: every store reads the add-on's statements, and
    import psycopg  # importing psycopg sets its logger's level, which the command line sets)

    Conn = psycopg.AsyncConnection[Any]

log = logging.getLogger("convoy.privacy")

#: The columns that hold payloads (inputs, outputs, errors, step results, signals, shared
#: state, the store's values, cached answers) or a data subject's id, by table: no
#: statistics are collected on them.
UNANALYZED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sessions", ("input", "output", "error", "headers", "subject")),
    ("journal", ("result",)),
    ("signals", ("payload",)),
    ("kv", ("value",)),
    ("state", ("value",)),
    ("state_history", ("value",)),
    ("subject_keys", ("subject", "wrapped")),
    ("cache", ("value",)),
)

#: The add-on's statements (PostgreSQL's): the columns of :data:`UNANALYZED` collect no
#: statistics from then on (statistics they hold already go at the next compaction).
#: (``IF EXISTS``: add-ons apply once the core schema is current, so every table exists;
#: a test's store of an older core schema with today's add-ons lacks some.)
NO_STATISTICS = ";\n".join(
    f"ALTER TABLE IF EXISTS {table} "
    + ", ".join(f"ALTER COLUMN {c} SET STATISTICS 0" for c in cols)
    for table, cols in UNANALYZED)

#: The text columns of the store's tables (in schema ``%s``; the tables named in the
#: first ``%s``: none of an application's own in that schema) that hold statistics they
#: should not: a column set to collect none, or any of a table named in the second ``%s``
#: (left empty by the purge).
_STALE = """
SELECT c.relname, a.attname FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = %s AND c.relkind = 'r' AND a.atttypid = 'text'::regtype
  AND c.relname::text = ANY(%s::text[])
  AND (a.attstattarget = 0 OR c.relname::text = ANY(%s::text[]))
  AND EXISTS (SELECT 1 FROM pg_stats s WHERE s.schemaname = n.nspname
              AND s.tablename = c.relname AND s.attname = a.attname)
ORDER BY 1, 2
"""

_FILENODE = "SELECT pg_relation_filenode('pg_catalog.pg_statistic')"

#: What this process warned of: a database whose ``pg_statistic`` it could not rewrite, a
#: table whose columns' statistics it could not remove.
_WARNED: set[str] = set()


async def refresh_statistics(conn: Conn, schema: str, tables: Sequence[str]) -> None:
    """After the purged ``tables`` of the store's ``schema`` were rewritten (``VACUUM
    FULL``): analyze them, remove the statistics no column should hold now, and rewrite
    ``pg_statistic`` (or warn, once, that an administrator must). ``conn``: outside a
    transaction."""
    from psycopg import errors, sql

    listed = sql.SQL(", ").join(sql.Identifier(t) for t in tables)
    await conn.execute(sql.SQL("ANALYZE {}").format(listed))
    empty = []
    for t in tables:
        cur = await conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(
            sql.Identifier(t)))
        row = await cur.fetchone()
        if row is not None and not row[0]:
            empty.append(t)
    ours = sorted({*tables, *(table for table, _ in UNANALYZED)})
    cur = await conn.execute(_STALE, (schema, ours, empty))
    stale: dict[str, list[str]] = {}
    for table, column in await cur.fetchall():
        stale.setdefault(table, []).append(column)
    for table, columns in stale.items():  # (the same type: PostgreSQL drops its statistics)
        try:
            await conn.execute(sql.SQL("ALTER TABLE {} {}").format(
                sql.Identifier(table), sql.SQL(", ").join(
                    sql.SQL("ALTER COLUMN {} TYPE text").format(sql.Identifier(c))
                    for c in columns)))
        except (errors.FeatureNotSupported,  # (a view of the table uses the column)
                errors.InsufficientPrivilege) as e:  # (a table it does not own)
            _kept(conn, schema, table, columns, e)
    before = await _filenode(conn)
    await conn.execute("VACUUM FULL pg_catalog.pg_statistic")
    if await _filenode(conn) == before:
        _warn(conn)


async def _filenode(conn: Conn) -> int:
    cur = await conn.execute(_FILENODE)
    row = await cur.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _kept(conn: Conn, schema: str, table: str, columns: Sequence[str],
          e: psycopg.Error) -> None:
    """Warn, once a process, that the statistics of ``columns`` of ``table`` stay."""
    from psycopg import sql

    info = conn.info
    where = f"{info.host}:{info.port}/{info.dbname}/{schema}.{table}"
    if where in _WARNED:
        return
    _WARNED.add(where)
    why = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if e.diag.message_detail:
        why += f": {e.diag.message_detail}"
    relation = sql.Identifier(schema, table).as_string(None)
    log.warning("the statistics PostgreSQL keeps of the columns %s of table %r may hold "
                "deleted data and could not be removed (%s): remove what stops that and run "
                "'convoy db compact', or have a superuser run \"DELETE FROM pg_statistic "
                "WHERE starelid = '%s'::regclass\" in database %r", ", ".join(columns),
                table, why, relation, info.dbname)


def _warn(conn: Conn) -> None:
    info = conn.info
    where = f"{info.host}:{info.port}/{info.dbname}"
    if where in _WARNED:
        return
    _WARNED.add(where)
    log.warning("the role %r may not rewrite PostgreSQL's statistics catalog (only a "
                "superuser or the database's owner may): its files keep the statistics "
                "the deleted rows had until an administrator runs 'VACUUM FULL "
                "pg_catalog.pg_statistic' in database %r (after each erasure and purge; or "
                "make the role the database's owner)", info.user, info.dbname)


__all__ = ["NO_STATISTICS", "UNANALYZED", "refresh_statistics"]
