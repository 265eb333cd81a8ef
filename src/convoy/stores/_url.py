"""Choosing a store by URL: ``Engine("postgresql://...")``, the CLI's ``--db``, ``CONVOY_DB``.

A plain path (or ``sqlite:///PATH``) is a SQLite file, the zero-setup default;
``postgresql://`` (or ``postgres://``) is a PostgreSQL database. The PostgreSQL store is
imported only when asked for, so its driver is an optional dependency.
"""

from __future__ import annotations

import difflib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from convoy._errors import UserError
from convoy._files import home_expanded
from convoy._text import quoted

if TYPE_CHECKING:
    from convoy.stores._protocol import Store
    from convoy.stores._sqlite import Durability

#: The store used when none is given and ``CONVOY_DB`` is not set.
DEFAULT_STORE = "convoy.db"
#: The longest ``busy_timeout`` a store takes, in seconds (a day): longer is a mistake (and
#: SQLite's millisecond counter is a C ``int``).
MAX_BUSY_TIMEOUT = 86_400.0
_SCHEMES = ("sqlite", "postgresql", "postgres")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: A password in a URL's user part (``user:password@``), up to the first ``@`` after it.
_USERINFO = re.compile(r"(://[^:/@]*:)[^@]*@")
#: The libpq parameters that hold a secret (``?password=``, a client key's ``sslpassword``).
SECRET_PARAMS = frozenset({"password", "sslpassword"})


def check_busy_timeout(seconds: object) -> float:
    """``seconds`` if it is a valid ``busy_timeout``, else :class:`~convoy.UserError`."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or \
            not 0 <= seconds <= MAX_BUSY_TIMEOUT:  # (NaN compares false: refused too)
        raise UserError(f"busy_timeout must be a number of seconds from 0 to "
                        f"{MAX_BUSY_TIMEOUT:g} (a day), got {seconds!r}")
    return float(seconds)


def default_store_url() -> str:
    """``$CONVOY_DB`` if it is set, else :data:`DEFAULT_STORE` (``convoy.db``)."""
    return os.environ.get("CONVOY_DB") or DEFAULT_STORE


def is_postgres_url(url: str | Path) -> bool:
    """Whether ``url`` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(url, str) and url.lower().startswith(("postgresql://", "postgres://"))


def store_from_url(url: str | Path | None = None, *, durability: Durability = "process",
                   busy_timeout: float = 10.0,
                   clock: Callable[[], float] = time.time, read_only: bool = False) -> Store:
    """The (unopened) store that ``url`` names.

    Args:
        url: a SQLite file path or ``sqlite:///PATH``, or ``postgresql://user:password@host
            :port/dbname`` (optionally ``?schema=NAME``, default schema ``convoy``);
            ``None``: ``$CONVOY_DB``, else ``convoy.db``.
        durability: SQLite only (``"process"`` or ``"power"``); a PostgreSQL commit is as
            durable as the server's settings make it (by default: power-loss safe).
        busy_timeout: seconds a write may wait for another process (a lock) before it fails.
        clock: the wall clock of leases and timers (tests pass a fake one).
        read_only: open it for reading only: nothing is created, migrated or written
            (:attr:`Store.read_only <convoy.stores.Store.read_only>`).
    """
    if url is None:
        url = default_store_url()
    if is_postgres_url(url):
        return _postgres(str(url), busy_timeout=busy_timeout, clock=clock,
                         read_only=read_only)
    from convoy.stores._sqlite import SQLiteStore

    return SQLiteStore(sqlite_path(url), durability=durability, busy_timeout=busy_timeout,
                       clock=clock, read_only=read_only)


def sqlite_path(url: str | Path) -> Path:
    """The file a SQLite store URL names (a path, ``~`` expanded, or ``sqlite:///PATH``);
    a :class:`~convoy.UserError` for a URL of another kind."""
    if isinstance(url, Path):
        return url
    m = _SCHEME.match(url)
    if m is None:  # (``~/app.db`` too, where no shell expanded it: a unit file, a .env)
        return home_expanded(Path(url))
    scheme = m.group(1).lower()
    if scheme != "sqlite":
        near = difflib.get_close_matches(scheme, _SCHEMES, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise UserError(f"unknown store URL scheme {scheme!r} in {redacted(url)!r}: use a "
                        f"file path, 'sqlite:///PATH' or 'postgresql://...'.{hint}")
    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
    if not path:
        raise UserError("a SQLite URL is 'sqlite:///PATH': 'sqlite:///convoy.db' (relative) "
                        "or 'sqlite:////var/lib/convoy.db' (absolute)")
    return Path(path)


def _postgres(url: str, *, busy_timeout: float, clock: Callable[[], float],
              read_only: bool) -> Store:
    _check_host(url)
    try:
        from convoy.stores._postgres import PostgresStore
    except ImportError as e:
        raise UserError(f"a PostgreSQL store needs psycopg 3 and psycopg_pool ({e}); install "
                        "them with: pip install 'convoy[postgres]'") from None
    return PostgresStore(url, busy_timeout=busy_timeout, clock=clock, read_only=read_only)


def _check_host(url: str) -> None:
    """A host name the resolver can look up (a label over 63 characters made the driver
    fail with a ``UnicodeError`` from the ``idna`` codec)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return  # the driver says what is wrong with the URL
    if not host or host.startswith("/"):
        return  # a Unix socket directory, or the driver's default
    try:
        host.encode("idna")
    except UnicodeError:
        raise UserError(f"the host {quoted(host)} in {quoted(redacted(url), 200)} is not a "
                        "valid host name: each part between dots is 1 to 63 characters"
                        ) from None


def redacted(url: str | Path) -> str:
    """``url`` as messages and ``store.url`` show it: its password masked as ``***``, in
    the user part (``user:***@``) or a libpq parameter (``?password=***``). A path is shown
    as it is."""
    return _masked(url)[0]


def hides_password(url: str | Path) -> bool:
    """Whether :func:`redacted` shows ``url`` with a password masked (or ``url`` is shown
    so already): a command that names it does not run as shown."""
    return _masked(url)[1]


def _masked(url: str | Path) -> tuple[str, bool]:
    """``url`` with its passwords masked, and whether it has one (masked already or not)."""
    text = str(url)
    if not _SCHEME.match(text):
        return text, False
    text, found = _USERINFO.subn(r"\1***@", text)
    base, mark, query = text.partition("?")
    if not mark:
        return text, found > 0
    params = query.split("&")  # (as libpq splits it: a "#" in a value is masked too)
    for i, param in enumerate(params):
        key, eq, _ = param.partition("=")
        if eq and unquote(key).lower() in SECRET_PARAMS:  # (libpq decodes a key too)
            params[i] = f"{key}=***"
            found += 1
    return f"{base}?{'&'.join(params)}", found > 0


__all__ = ["DEFAULT_STORE", "SECRET_PARAMS", "default_store_url", "hides_password",
           "is_postgres_url", "redacted", "sqlite_path", "store_from_url"]
