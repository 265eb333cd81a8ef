"""How a message suggests another ``convoy`` command: with the store and the tenant the
user is looking at, so the suggestion reads what they read, and without what the next
command gets anyway (the default, or ``$CONVOY_DB`` / ``$CONVOY_TENANT``)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

_SAFE = re.compile(r"[\w@%+=:,./*-]+")
#: What double quotes leave special to a shell (``!``: history, in an interactive one).
_SPECIALS = '"$`\\!'
_SPECIAL = re.compile(f"([{re.escape(_SPECIALS)}])")
#: What follows a command whose ``--db`` shows its password masked: it does not run as shown.
PASSWORD_NOTE = " (with the password in place of ***)"


def command(args: str, *, operands: Sequence[str] = (), options: str = "",
            db: str | Path | None = None, tenant: str | None = None,
            all_tenants: bool = False, quote: bool = True) -> str:
    """``'convoy ARGS OPERANDS OPTIONS --db DB --tenant NAME'``, in single quotes as
    messages quote commands (``quote``; without them where a line shows the command
    alone).

    ``args``: the command (``"sessions show"``), as shell words. ``operands``: the values
    it takes as arguments (a session id, a namespace and a key, a task id), as they are:
    each is quoted here (:func:`word`). One that begins with ``-`` would be read as an
    option, so then every option comes first and the operands last, after ``--``
    (``convoy sessions show --db x.db -- -3f2a``). ``options``: the command's own options,
    as shell words (``"--import MODULE"``).
    ``db``: the store the user named (left out when it is the store the next command
    opens anyway: ``$CONVOY_DB``, else ``convoy.db``). A password is never shown: it is
    ``***``, and :data:`PASSWORD_NOTE` follows the command to say so.
    ``tenant``: the tenant the user acts as (left out when it is ``$CONVOY_TENANT``, or
    ``default`` when that is not set); ``all_tenants``: ``--all-tenants`` instead.
    """
    from convoy.engine._tenancy import DEFAULT_TENANT
    from convoy.stores._url import default_store_url, hides_password

    values = [word(v) for v in operands]
    dashed = any(v.startswith("-") for v in operands)
    parts = [f"convoy {args}"]
    if values and not dashed:
        parts.extend(values)
    if options:
        parts.append(options)
    masked = False
    if db is not None and not _same_store(db, default_store_url()):
        parts.append(f"--db {store_word(db)}")
        masked = hides_password(db)
    if all_tenants:
        parts.append("--all-tenants")
    elif tenant is not None and tenant != (os.environ.get("CONVOY_TENANT") or DEFAULT_TENANT):
        parts.append(f"--tenant {word(tenant)}")
    if dashed:
        parts.extend(["--", *values])
    shown = f"'{' '.join(parts)}'" if quote else " ".join(parts)
    return shown + PASSWORD_NOTE if masked else shown


def _same_store(a: str | Path, b: str | Path) -> bool:
    from convoy._errors import UserError
    from convoy.stores._url import is_postgres_url, redacted, sqlite_path

    if is_postgres_url(a) or is_postgres_url(b):  # (a store's url has its password masked)
        return redacted(a) == redacted(b)
    try:
        return os.path.realpath(sqlite_path(a)) == os.path.realpath(sqlite_path(b))
    except UserError:
        return False


def store_word(db: str | Path) -> str:
    """The store as ``--db`` takes it, as one shell word (:func:`word`): a SQLite URL as
    its path, a URL without its password."""
    return word(_shown(db))


def _shown(db: str | Path) -> str:
    """The store as ``--db`` takes it: a SQLite URL as its path, a URL without its
    password."""
    from convoy.stores._url import redacted

    if isinstance(db, str) and db.startswith("sqlite:///"):
        db = db[len("sqlite:///"):]
    return redacted(db)


def word(value: str) -> str:
    """``value`` as one shell word that a message can hold in its single quotes: as it is
    when it needs no quoting; else in double quotes (a space, a single quote), with each
    character that double quotes do not keep literal (``"$`\\!``) outside them, after a
    backslash. A shell and ``shlex.split`` read it back the same; never a single quote of
    its own, which would end the message's.

    A character a terminal would obey or draw as nothing (a control character, a line
    break: in a name read back from a store someone edited; Convoy makes none) is written
    as ``repr`` escapes it (``\x1b``), so the message stays one line that draws as it
    reads (the command then names what it shows, not the stored name)."""
    if _SAFE.fullmatch(value):
        return value
    parts = []
    for run in filter(None, _SPECIAL.split(value)):
        if _SPECIAL.fullmatch(run):
            parts.append(f"\\{run}")
        else:
            parts.append(run if _SAFE.fullmatch(run) else f'"{run}"')
    out = "".join(parts) or '""'
    return out if out.isprintable() else \
        "".join(c if c.isprintable() else repr(c)[1:-1] for c in out)
