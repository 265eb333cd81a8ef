"""The audit log's tables and statements, for SQLite and PostgreSQL, in one place.

The migration is self-contained: it only creates the three audit tables, so moving it to
another schema version is the one line :data:`AUDIT_SCHEMA_VERSION`.

A tenant's log is ``audit_log`` (one row per entry: its index, its body and its leaf hash),
``audit_head`` (how many entries the log has: an append takes the next indexes from it, in
the append's transaction, so engines sharing a database never collide) and
``audit_checkpoints`` (signed checkpoints, by tree size). The leaf hash is computed in the
append's transaction, from the index it took:
``SHA-256(0x00 || index (8 bytes, big-endian) || len(tenant) (4 bytes) || tenant || body)``
(see :func:`convoy.audit.entry_leaf`); on SQLite in Python, between the statements that take
the indexes and the one that stores the entries, all in the group commit's write
transaction; PostgreSQL computes it with its own ``sha256`` in the
statement that stores the entries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from convoy._errors import AuditError
from convoy.stores._protocol import AUDIT_CURSORS, AuditRow

#: The store schema version that adds the audit tables.
AUDIT_SCHEMA_VERSION = 7

SQLITE_MIGRATION = """
CREATE TABLE IF NOT EXISTS audit_head(tenant TEXT PRIMARY KEY, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit_log(
  tenant TEXT NOT NULL,
  idx INTEGER NOT NULL,
  body BLOB NOT NULL,
  leaf BLOB NOT NULL,
  PRIMARY KEY(tenant, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_checkpoints(
  tenant TEXT NOT NULL,
  size INTEGER NOT NULL,
  body TEXT NOT NULL,
  PRIMARY KEY(tenant, size)
)
"""

PG_MIGRATION = """
CREATE TABLE audit_head(tenant TEXT PRIMARY KEY, size BIGINT NOT NULL);
CREATE TABLE audit_log(
  tenant TEXT NOT NULL,
  idx BIGINT NOT NULL,
  body BYTEA NOT NULL,
  leaf BYTEA NOT NULL,
  PRIMARY KEY(tenant, idx)
);
CREATE TABLE audit_checkpoints(
  tenant TEXT NOT NULL,
  size BIGINT NOT NULL,
  body TEXT NOT NULL,
  PRIMARY KEY(tenant, size)
);
"""

# SQLite: the head takes ``n`` more entries and the entries are stored at the head's old
# size onwards, with the leaf hashes computed from those indexes. The head is moved from
# the size the store last wrote (a compare-and-set: one statement); if another writer moved
# it since, it takes ``n`` more and its new size is read back (in the same write
# transaction: ``RETURNING`` costs SQLite about 15 µs more).
SQLITE_MOVE_HEAD = "UPDATE audit_head SET size=? WHERE tenant=? AND size=?"
SQLITE_HEAD = ("INSERT INTO audit_head(tenant,size) VALUES(?,?) ON CONFLICT(tenant) "
               "DO UPDATE SET size=size+excluded.size")
#: Entries inserted by one statement: many rows a statement cost SQLite about a third less
#: per row than ``executemany``'s one (bench/RESULTS.md, 2026-12-03, stop 33). Powers of
#: four: a batch of any length takes a few statements, and the connection's statement cache
#: keeps the four of them. The tenant (``?1``) and the first index (``?2``) are bound once
#: a statement, then each entry's body and leaf hash: binding a value costs more than
#: SQLite adding a constant to ``?2``.
SQLITE_ENTRY_ROWS = {n: "INSERT INTO audit_log(tenant,idx,body,leaf) VALUES" + ",".join(
    f"(?1,?2+{i},?{2 * i + 3},?{2 * i + 4})" for i in range(n)) for n in (64, 16, 4, 1)}
SQLITE_OWNED = "SELECT 1 FROM sessions WHERE id=? AND owner=?"
# What SQLite reads of an entry: a body or leaf changed to text comes as the word "text"
# (the bytes are not decoded: text that is not UTF-8 would fail the whole read, hiding
# which entry it is); the reader names the entry as one changed.
_BODY = "CASE typeof(body) WHEN 'text' THEN 'text' ELSE body END"
_LEAF = "CASE typeof(leaf) WHEN 'text' THEN 'text' ELSE leaf END"
# :data:`LEAVES` with each entry's index, to name an entry whose leaf hash is no longer
# the bytes SQLite was given.
SQLITE_LEAVES = f"SELECT idx, {_LEAF} FROM audit_log WHERE tenant=? AND idx<? ORDER BY idx"
SQLITE_ENTRIES = (f"SELECT idx, {_BODY}, {_LEAF} FROM audit_log WHERE tenant=? AND idx>=? "
                  "ORDER BY idx LIMIT ?")
SQLITE_ENTRY_AT = f"SELECT idx, {_BODY}, {_LEAF} FROM audit_log WHERE tenant=? AND idx=?"

def pg_append(tenant: str, n: str, bodies: str, *, only_if: str = "",
              before: str = "") -> str:
    """PostgreSQL: one statement that takes the next ``n`` indexes of ``tenant``'s log and
    stores the entries ``bodies`` (a ``bytea[]``) with their leaf hashes (the arguments are
    parameter placeholders); ``only_if``: a condition without which nothing is appended;
    ``before``: CTEs it names (``"x AS (...), "``)."""
    where = f" WHERE {only_if}" if only_if else ""
    return f"""
WITH {before}h AS (
  INSERT INTO audit_head(tenant, size) SELECT {tenant}, {n}{where}
  ON CONFLICT(tenant) DO UPDATE SET size = audit_head.size + excluded.size
  RETURNING tenant, size - {n} AS base)
INSERT INTO audit_log(tenant, idx, body, leaf)
SELECT h.tenant, h.base + b.ord - 1, b.body,
       sha256('\\x00'::bytea || int8send(h.base + b.ord - 1)
              || int4send(octet_length(convert_to(h.tenant, 'UTF8')))
              || convert_to(h.tenant, 'UTF8') || b.body)
FROM h, unnest({bodies}::bytea[]) WITH ORDINALITY AS b(body, ord)
"""


# Parameters: tenant, n, n, bodies.
PG_APPEND = pg_append("%s", "%s", "%s")
# Only if the engine ``owner`` still owns session ``id`` (parameters: tenant, n, id, owner,
# n, bodies).
PG_APPEND_FENCED = pg_append(
    "%s", "%s", "%s", only_if="EXISTS (SELECT 1 FROM sessions WHERE id=%s AND owner=%s)")

# A session's audit cursor (:meth:`Store.audit_seal`), compare-and-set in ``kv``: the first
# (parameters: namespace, key, value) only if it has none, a move only from the value it
# has (parameters: value, namespace, key, before). The row count says whether it moved.
CURSOR_NEW = ("INSERT INTO kv(namespace,key,value) VALUES(?,?,?) "
              "ON CONFLICT(namespace,key) DO NOTHING")
CURSOR_MOVE = "UPDATE kv SET value=? WHERE namespace=? AND key=? AND value=?"
# SQLite keeps a session's cursor in its row (:meth:`Store.audit_cursor`): moved from the
# value it has (``IS``: from none too; parameters: value, id, before); a session whose row
# is gone (purged as its run ended) keeps it in ``kv`` as above. A row without one reads
# the session's ``kv`` cursor, if it has one: an engine of an earlier release, still
# running when this one migrated the store, seals there (its value is the one to move
# from, or its records would be sealed twice); once moved, the row's value is read.
_ROW_CURSOR = (f"COALESCE(audit_cursor, (SELECT value FROM kv WHERE "
               f"namespace='{AUDIT_CURSORS}' AND key=sessions.id))")
SQLITE_CURSOR_MOVE = f"UPDATE sessions SET audit_cursor=? WHERE id=? AND {_ROW_CURSOR} IS ?"
SQLITE_CURSOR = f"SELECT {_ROW_CURSOR} FROM sessions WHERE id=?"


def pg_seal(first: bool) -> str:
    """PostgreSQL: one statement of :meth:`Store.audit_seal` for one seal: the cursor's
    compare-and-set (:data:`CURSOR_NEW` if ``first``, else :data:`CURSOR_MOVE`), and the
    entries appended (``tenant, n, n, bodies``) only if it moved; it returns one row if it
    moved, none if not (its row count)."""
    cas = pg(CURSOR_NEW if first else CURSOR_MOVE) + " RETURNING 1"
    return f"""
WITH c AS ({cas}),
h AS (
  INSERT INTO audit_head(tenant, size) SELECT %s, %s WHERE EXISTS (SELECT 1 FROM c)
  ON CONFLICT(tenant) DO UPDATE SET size = audit_head.size + excluded.size
  RETURNING tenant, size - %s AS base),
e AS (
  INSERT INTO audit_log(tenant, idx, body, leaf)
  SELECT h.tenant, h.base + b.ord - 1, b.body,
         sha256('\\x00'::bytea || int8send(h.base + b.ord - 1)
                || int4send(octet_length(convert_to(h.tenant, 'UTF8')))
                || convert_to(h.tenant, 'UTF8') || b.body)
  FROM h, unnest(%s::bytea[]) WITH ORDINALITY AS b(body, ord))
SELECT 1 FROM c
"""


# Both dialects (``?`` is turned into ``%s`` for PostgreSQL by :func:`pg`).
SIZE = "SELECT size FROM audit_head WHERE tenant=?"
# Every tenant with a trace of a log: its head, its entries or its checkpoints (a tenant
# whose head row was deleted, its entries too, is still listed, and fails verification).
TENANTS = ("SELECT tenant FROM audit_head UNION SELECT DISTINCT tenant FROM audit_log "
           "UNION SELECT tenant FROM audit_checkpoints ORDER BY 1")
ENTRIES = ("SELECT idx, body, leaf FROM audit_log WHERE tenant=? AND idx>=? ORDER BY idx "
           "LIMIT ?")
# (each leaf with its index, to name an entry whose leaf is no longer the bytes written)
LEAVES = "SELECT idx, leaf FROM audit_log WHERE tenant=? AND idx<? ORDER BY idx"
ENTRY = "SELECT idx, body, leaf FROM audit_log WHERE tenant=? AND idx=?"
CHECKPOINTS = "SELECT size, body FROM audit_checkpoints WHERE tenant=? ORDER BY size"
# A signed checkpoint is never replaced: a second one of the same size is not kept.
PUT_CHECKPOINT = ("INSERT INTO audit_checkpoints(tenant,size,body) VALUES(?,?,?) "
                  "ON CONFLICT(tenant,size) DO NOTHING")


def pg(statement: str) -> str:
    """A statement of both dialects, in PostgreSQL's placeholders."""
    return statement.replace("?", "%s")


def checked_size(tenant: str, size: object) -> int:
    """A tenant's count of entries appended, as its head row holds it; an
    :class:`~convoy.AuditError` if the row was changed to what no append writes (not a
    whole number, or below 0)."""
    if type(size) is not int or size < 0:
        raise AuditError(f"tenant {tenant!r}: the audit log's head was changed: its size "
                         f"is {size!r}, not a count of entries (a whole number, 0 or more)")
    return size


# What the store reads back is what it wrote, or the log was changed: SQLite keeps any
# type an UPDATE gives a column (``replace(body, ...)`` makes the blob text, ``idx='5x'``
# is kept as text), PostgreSQL a column's new type (``ALTER ... TYPE text``) or a NULL
# once ``NOT NULL`` is dropped, so a value of another type is an
# :class:`~convoy.AuditError` naming the entry, as ``convoy audit verify`` names any other
# change.

_TYPES = {str: "text", int: "an integer", float: "a real number", type(None): "NULL"}


def checked_index(tenant: str, value: Any) -> int:
    if type(value) is not int:
        # (a number sorts where it is: the entries before it are checked first, and an
        # earlier bad one is the one named, as for any other unreadable row)
        at = math.floor(value) if type(value) is float and math.isfinite(value) else None
        raise AuditError(f"tenant {tenant!r}: an audit entry's index was changed to "
                         f"{value!r}, which is not a whole number", index=at)
    return value


def checked_blob(tenant: str, index: int, column: str, value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise AuditError(f"tenant {tenant!r}: audit entry {index} was changed: its {column} "
                         f"is stored as {_TYPES.get(type(value), type(value).__name__)}, not "
                         "as the bytes Convoy wrote", index=index)
    return value


def checked_row(tenant: str, r: Sequence[Any]) -> AuditRow:
    index = checked_index(tenant, r[0])
    return AuditRow(index=index, body=checked_blob(tenant, index, "body", r[1]),
                    leaf=checked_blob(tenant, index, "leaf hash", r[2]))
