"""The audit log's tables and statements, for SQLite and PostgreSQL, in one place.

Schema version 7 created ``audit_log`` (one row per entry), ``audit_head`` (a tenant's size)
and ``audit_checkpoints`` (signed checkpoints, by tree size). The ``audit_bundles`` add-on
(:data:`SQLITE_BUNDLES` / :data:`PG_BUNDLES`) moved the first two into one table,
``audit_bundles``, of two kinds of rows per tenant:

- a *bundle*: the entries one append stored (at most :data:`BUNDLE_MAX`), keyed by the
  index of its first entry ``idx``: ``n`` entries, ``sizes`` (their lengths in bytes, in
  decimal, comma-separated), ``leaves`` (their 32-byte leaf hashes, one after the other)
  and their ``bodies`` one after the other (last: reading the leaves of a bundle too big
  for one page does not walk through its bodies);
- the *head*, at index :data:`HEAD` (past every entry's): ``n`` is how many entries the log
  has had appended. An append takes the next indexes from it, in the append's transaction,
  so engines sharing a database never collide; it is kept apart from the entries, so
  entries cut off the end are still found missing.

A group commit's appends to a tenant are one bundle row and one update of the head, which
sorts right after the tenant's newest bundle, so both usually land on one page: SQLite
writes each page a commit changed to its WAL, and two rows per entry plus a head in a
table of its own cost a W1 step three pages where the journal alone writes one.

The leaf hash is computed in the append's transaction, from the index it took:
``SHA-256(0x00 || index (8 bytes, big-endian) || len(tenant) (4 bytes) || tenant || body)``
(see :func:`convoy.audit.entry_leaf`); on SQLite in Python, between the statements that take
the indexes and the one that stores the bundle, all in the group commit's write
transaction; PostgreSQL computes it with its own ``sha256`` in the statement that stores the
bundle.
"""

from __future__ import annotations

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

#: Where a tenant's head row sits: past every index an entry can have.
HEAD = 1 << 62
#: The most entries one bundle row holds (a bigger append is stored as several).
BUNDLE_MAX = 64

_BUNDLES = """
CREATE TABLE IF NOT EXISTS audit_head(tenant TEXT PRIMARY KEY, size {int} NOT NULL);
CREATE TABLE IF NOT EXISTS audit_log(
  tenant TEXT NOT NULL,
  idx {int} NOT NULL,
  body {blob} NOT NULL,
  leaf {blob} NOT NULL,
  PRIMARY KEY(tenant, idx)
);
CREATE TABLE IF NOT EXISTS audit_bundles(
  tenant TEXT NOT NULL,
  idx {int} NOT NULL,
  n {int} NOT NULL,
  sizes TEXT NOT NULL,
  leaves {blob} NOT NULL,
  bodies {blob} NOT NULL,
  PRIMARY KEY(tenant, idx)
){without_rowid};
INSERT INTO audit_bundles(tenant, idx, n, bodies, sizes, leaves)
  SELECT tenant, idx, 1, body, {length}, leaf FROM audit_log;
INSERT INTO audit_bundles(tenant, idx, n, bodies, sizes, leaves)
  SELECT tenant, {head}, size, {empty}, '', {empty} FROM audit_head;
DROP TABLE audit_log;
DROP TABLE audit_head
"""

#: The ``audit_bundles`` add-on: every entry of ``audit_log`` becomes a bundle of one, every
#: ``audit_head`` row a head row, and the two tables go (a Convoy that still wrote them
#: would fail loudly rather than append where nobody reads). It creates them first if they
#: are missing, so it also runs on a database whose core schema is older than 7.
SQLITE_BUNDLES = _BUNDLES.format(int="INTEGER", blob="BLOB", without_rowid=" WITHOUT ROWID",
                                 length="CAST(length(CAST(body AS BLOB)) AS TEXT)",
                                 head=HEAD, empty="x''")
PG_BUNDLES = _BUNDLES.format(int="BIGINT", blob="BYTEA", without_rowid="",
                             length="octet_length(body)::text", head=HEAD,
                             empty="''::bytea")

# SQLite: the head takes ``n`` more entries and the bundle is stored at the head's old size,
# with the leaf hashes computed from those indexes. The head is moved from the size the
# store last wrote (a compare-and-set: one statement); if another writer moved it since, it
# takes ``n`` more and its new size is read back (in the same write transaction:
# ``RETURNING`` costs SQLite about 15 µs more).
SQLITE_MOVE_HEAD = f"UPDATE audit_bundles SET n=? WHERE tenant=? AND idx={HEAD} AND n=?"
SQLITE_HEAD = (f"INSERT INTO audit_bundles(tenant,idx,n,bodies,sizes,leaves) "
               f"VALUES(?,{HEAD},?,x'','',x'') ON CONFLICT(tenant,idx) "
               "DO UPDATE SET n=n+excluded.n")
SQLITE_BUNDLE = "INSERT INTO audit_bundles(tenant,idx,n,bodies,sizes,leaves) VALUES(?,?,?,?,?,?)"

# PostgreSQL: one statement takes the indexes and stores the entries as bundles of at most
# BUNDLE_MAX, with their leaf hashes.
PG_APPEND = f"""
WITH h AS (
  INSERT INTO audit_bundles(tenant, idx, n, bodies, sizes, leaves)
  VALUES(%s, {HEAD}, %s, ''::bytea, '', ''::bytea)
  ON CONFLICT(tenant, idx) DO UPDATE SET n = audit_bundles.n + excluded.n
  RETURNING tenant, n - %s AS base)
INSERT INTO audit_bundles(tenant, idx, n, bodies, sizes, leaves)
SELECT h.tenant, h.base + min(b.ord) - 1, count(*),
       string_agg(b.body, ''::bytea ORDER BY b.ord),
       string_agg(octet_length(b.body)::text, ',' ORDER BY b.ord),
       string_agg(sha256('\\x00'::bytea || int8send(h.base + b.ord - 1)
                         || int4send(octet_length(convert_to(h.tenant, 'UTF8')))
                         || convert_to(h.tenant, 'UTF8') || b.body), ''::bytea ORDER BY b.ord)
FROM h, unnest(%s::bytea[]) WITH ORDINALITY AS b(body, ord)
GROUP BY h.tenant, h.base, (b.ord - 1) / {BUNDLE_MAX}
"""

# Both dialects (``?`` is turned into ``%s`` for PostgreSQL by :func:`pg`).
SIZE = f"SELECT n FROM audit_bundles WHERE tenant=? AND idx={HEAD}"
# The next tenant after one (a seek per tenant, not a scan of every bundle).
FIRST_TENANT = "SELECT tenant FROM audit_bundles ORDER BY tenant LIMIT 1"
NEXT_TENANT = "SELECT tenant FROM audit_bundles WHERE tenant>? ORDER BY tenant LIMIT 1"
_COLS = "SELECT idx, n, bodies, sizes, leaves FROM audit_bundles"
# The bundles from the one holding entry ``start`` on (``start`` itself if none does).
BUNDLES_FROM = (f"{_COLS} WHERE tenant=? AND idx<{HEAD} AND idx>=COALESCE((SELECT max(idx) "
                "FROM audit_bundles WHERE tenant=? AND idx<=?), ?) ORDER BY idx LIMIT ?")
BUNDLES_AFTER = f"{_COLS} WHERE tenant=? AND idx>? AND idx<{HEAD} ORDER BY idx LIMIT ?"
BUNDLE_AT = f"{_COLS} WHERE tenant=? AND idx<=? AND idx<{HEAD} ORDER BY idx DESC LIMIT 1"
LEAVES = "SELECT idx, n, leaves FROM audit_bundles WHERE tenant=? AND idx<? ORDER BY idx"
CHECKPOINTS = "SELECT body FROM audit_checkpoints WHERE tenant=? ORDER BY size"
PUT_CHECKPOINT = ("INSERT INTO audit_checkpoints(tenant,size,body) VALUES(?,?,?) "
                  "ON CONFLICT(tenant,size) DO UPDATE SET body=excluded.body")


def pg(statement: str) -> str:
    """A statement of both dialects, in PostgreSQL's placeholders."""
    return statement.replace("?", "%s")
