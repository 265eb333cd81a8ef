"""Opening a SQLite store read-only, also where it cannot be written.

SQLite reads a database in WAL mode through a shared-memory file beside it (``-shm``),
which it creates when it is missing: where the directory cannot be written (a backup on
read-only media, a directory without write permission), a ``mode=ro`` connection cannot
read the store. Then:

- on a file system mounted read-only (a backup's media), with no write-ahead log with
  content (``-wal``): every commit is in the database file, and no engine on this mount
  can write it, so it is read as an immutable file (``immutable=1``: no locks, no log;
  a ``-shm`` a backup kept beside it is not needed);
- otherwise it is refused in one line saying to copy the store's files somewhere
  writable: ``immutable=1`` would read the database file without the commits its log
  holds (a store whose engine was killed), and where the file system can be written (a
  directory this process may not write), an engine that may write it could change the
  file under an immutable read, which would then read stale or torn pages without an
  error.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from convoy._errors import StoreError

#: SQLite's primary result codes of a read that needs to create or write the ``-shm``
#: where it cannot (``SQLITE_READONLY_DIRECTORY`` is an extended code of the second).
_NO_SHARED_MEMORY = frozenset({sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY})


def connect_read_only(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """A connection to the database at ``path`` that never writes it (see the module
    docstring); a failure to open the file itself is a :class:`~convoy.StoreError`."""
    conn = _connect(path, "mode=ro", busy_timeout)
    try:
        # (the first read opens the log's shared memory)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.OperationalError as e:
        if e.sqlite_errorcode & 0xFF not in _NO_SHARED_MEMORY:
            return conn  # (the caller's first read says what is wrong)
        conn.close()
        return _immutable(path, busy_timeout, e)
    except sqlite3.DatabaseError:
        return conn  # (not a database: as above)
    return conn


def _connect(path: Path, query: str, busy_timeout: float) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?{query}", uri=True,
                               isolation_level=None, check_same_thread=False)
    except sqlite3.Error as e:
        raise StoreError(f"cannot open the store {str(path)!r}: {e}") from None
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    return conn


def _immutable(path: Path, busy_timeout: float, e: sqlite3.Error) -> sqlite3.Connection:
    """The store at ``path`` read as an immutable file, if it is on read-only media and
    nothing is in its log; else one line saying why not and what to do."""
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    try:
        logged = wal.stat().st_size > 0
    except FileNotFoundError:
        logged = False
    except OSError:
        logged = True  # (cannot tell: as if it held commits)
    media = _read_only_media(path)
    if media and not logged:
        return _connect(path, "mode=ro&immutable=1", busy_timeout)
    why = (f"its write-ahead log {str(wal)!r} holds commits that SQLite reads only through "
           f"a shared-memory file ({shm.name}) it cannot create there" if media else
           "this process may not write its directory, and an engine that may could change "
           "the store while it is read")
    files = ", ".join(p.name for p in (path, wal, shm) if p == path or p.exists())
    raise StoreError(f"the store {str(path)!r} cannot be read where it is ({e}): {why}; copy "
                     f"its files ({files}) to a directory this process can write and read "
                     "the copy")


def _read_only_media(path: Path) -> bool:
    """Whether the file system holding ``path`` is mounted read-only."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
