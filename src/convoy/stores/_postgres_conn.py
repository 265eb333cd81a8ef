"""The PostgreSQL store's connections: its URL, transactions sent in one pipeline, and
parameters no stored text can equal.

Kept apart from :mod:`convoy.stores._postgres` (the group commit and the protocol methods).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from convoy._errors import UserError
from convoy._text import quoted
from convoy.stores import _postgres_sql as sql
from convoy.stores._url import SECRET_PARAMS, redacted

Conn = psycopg.AsyncConnection[Any]
#: Statements of one transaction: ``(text, params)`` each.
Statements = Sequence[tuple[str, Any]]


def split_url(url: str) -> tuple[str, str, str]:
    """The libpq connection string, the schema (``?schema=`` is Convoy's, not libpq's) and
    the URL to show (without its password).

    Raises:
        UserError: ``url`` is not a valid PostgreSQL URL (the message never shows its
            password).
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError as e:  # "Invalid IPv6 URL", a port that is not a number
        raise _bad_url(url, str(e), ()) from None
    schema = "convoy"
    kept = []
    secrets = [password] if password else []
    # Each parameter as written (libpq decodes %-escapes only, a "+" is itself: decoded and
    # encoded again, a space came back as "+"), but ``schema=``, Convoy's own; an "=" in a
    # value escaped, which libpq would refuse as a second separator.
    for item in filter(None, parts.query.split("&")):
        k, eq, v = item.partition("=")
        key, value = unquote(k), unquote(v)
        if key.lower() in SECRET_PARAMS:
            secrets.append(value)
        if key == "schema":
            schema = value
        else:
            kept.append(f"{k}{eq}{v.replace('=', '%3D')}")
    # The URL as given, less ``schema=`` (not rebuilt by urlunsplit, which drops the empty
    # authority of 'postgresql:///dbname', a local socket's form).
    base = url.partition("?")[0].partition("#")[0]
    conninfo = f"{base}?{'&'.join(kept)}" if kept else base
    try:
        params = conninfo_to_dict(conninfo)
    except (psycopg.Error, ValueError) as e:  # an unknown parameter, a bad %-escape
        raise _bad_url(url, str(e).strip(), secrets) from None
    problem = _bad_value(params)
    if problem is not None:  # (libpq says it only as it connects: "connection is bad")
        raise _bad_url(url, problem, secrets)
    return conninfo, sql.check_schema_name(schema), redacted(url)


#: The ``sslmode`` values libpq knows.
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _bad_value(params: Mapping[str, Any]) -> str | None:
    """What is wrong with a port or an ``sslmode`` of a parsed URL, if anything."""
    for port in str(params.get("port") or "").split(","):
        if not port:
            continue
        if not port.isdigit():
            return f"port {quoted(port)} is not a number"
        if not 1 <= int(port) <= 65535:
            return f"port {quoted(port)} is not a TCP port (1 to 65535)"
    mode = params.get("sslmode")
    if mode is not None and mode not in _SSLMODES:
        return f"sslmode {quoted(str(mode))} is not one of {', '.join(_SSLMODES)}"
    return None


def _bad_url(url: str, reason: str, secrets: Sequence[str]) -> UserError:
    """The error for a malformed PostgreSQL URL: ``reason`` with the passwords masked."""
    for password in filter(None, secrets):
        for secret in (password, unquote(password)):
            reason = reason.replace(secret, "***")
    return UserError(f"invalid PostgreSQL URL {redacted(url)!r}: {reason}; use "
                     "'postgresql://user:password@host:port/dbname'")


def matches_nothing(params: Any) -> bool:
    """Whether a text parameter (or an element of a list parameter) holds a NUL character:
    PostgreSQL text cannot, so no stored id, name or key equals it (a forged session id
    such as ``"s\\x00"`` is an unknown one, as on SQLite, not a failed statement)."""
    items = params.values() if isinstance(params, Mapping) else params
    return any("\x00" in p if isinstance(p, str) else
               isinstance(p, list) and matches_nothing(p) for p in items)


async def pipelined(conn: Conn, statements: Statements) -> list[psycopg.AsyncCursor[Any]]:
    """BEGIN, ``statements`` and COMMIT in one pipeline: one round trip; their cursors.
    (Not conn.transaction(), which waits for the server at its start and end; and not an
    implicit transaction up to the pipeline's Sync, which would commit the statements
    already sent if a later one failed on this side, while its parameters are encoded.)
    On any failure nothing is committed and the connection is left out of the
    transaction, ready for the next one."""
    try:
        async with conn.pipeline():
            await conn.execute("BEGIN")
            try:
                curs = [await conn.execute(text, params) for text, params in statements]
            except BaseException:
                with contextlib.suppress(psycopg.Error):  # the server may have aborted it
                    await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")
    except BaseException:
        # A statement the server refused leaves the transaction aborted (the COMMIT after
        # it was skipped): end it, or every later statement on the connection fails.
        if not conn.broken and conn.info.transaction_status != TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                await conn.execute("ROLLBACK")
        raise
    return curs


async def locked_then(conn: Conn, statements: Statements) -> list[psycopg.AsyncCursor[Any]]:
    """``statements`` in one pipeline (one round trip), as one implicit transaction (up to
    the pipeline's Sync, without ``BEGIN`` and ``COMMIT``): each runs with a snapshot of
    its own (READ COMMITTED), so the first ones can take locks that the later ones' reads
    then see past. A statement the server refuses rolls back all of them. A statement that
    failed on this side while its parameters were encoded would leave the statements sent
    before it to be committed at the Sync: only the last statement may write, or the ones
    after a write must have parameters that always encode (text, numbers, bytes: the audit
    entries of a state write)."""
    async with conn.pipeline():
        return [await conn.execute(text, params) for text, params in statements]


async def count(cur: psycopg.AsyncCursor[Any], counted: bool) -> int:
    if not counted:
        return cur.rowcount
    row = await cur.fetchone()
    return int(row[0]) if row else 0


__all__ = ["Conn", "Statements", "count", "locked_then", "matches_nothing", "pipelined",
           "split_url"]
