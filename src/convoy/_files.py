"""Reading a small file the user names (a key, a checkpoint, a proof) safely: a device or
a socket is refused (``/dev/zero`` is endless), a pipe is read (``<(cat proof.json)``,
``/dev/stdin``) but a FIFO with no writer is not waited on (it reads as empty), and
anything is read no further than a bound its kind never reaches, so a wrong path costs a
line, not the machine's memory."""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path

from convoy._text import quoted

#: What a key file (a PEM key, a master key's base64 text) never reaches.
KEY_FILE_LIMIT = 64 * 1024


def home_expanded(path: str | Path) -> Path:
    """``path`` with a leading ``~`` (or ``~USER``) as the home directory, as a shell
    expands it; as written where there is no such home (an unknown user: a file named
    ``~tmp.db``, as a shell leaves it)."""
    path = Path(path)
    try:
        return path.expanduser()
    except RuntimeError:  # ("Could not determine home directory")
        return path


def read_small(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file at ``path`` (a symbolic link followed), at most
    ``limit`` of them. Raises :class:`OSError`, its ``strerror`` saying why, for what
    cannot be read, is not a regular file, or is longer than ``limit``."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise OSError(errno.EISDIR, "Is a directory")
        if stat.S_ISFIFO(mode):  # (opened without waiting for a writer; now read as one)
            os.set_blocking(fd, True)
        elif not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file or a pipe (a device or a socket)")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise OSError(errno.EFBIG, f"larger than {limit:,} bytes, more than such a "
                                           "file holds")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_stdin(limit: int = -1) -> bytes:
    """Standard input's bytes (at most ``limit``; ``-1``: to its end). Raises
    :class:`OSError`, its ``strerror`` saying so, when it is closed (``<&-``: Python then
    has no ``sys.stdin``)."""
    if sys.stdin is None:
        raise OSError(errno.EBADF, "standard input is closed")
    return sys.stdin.buffer.read(limit)


def read_input(path: str | Path, limit: int) -> bytes:
    """:func:`read_small` (a leading ``~`` the home directory, as for ``--db`` and
    ``--key``), or standard input for ``-`` (as far as ``limit``)."""
    if str(path) != "-":
        return read_small(home_expanded(path), limit)
    data = read_stdin(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit:,} bytes, more than such a file "
                                   "holds")
    return data


def dangling_link(path: Path) -> str:
    """What a symbolic link that leads to no file is, for a message (``'k' is a symbolic
    link ...``): to what missing file, or that it loops (a link to itself, or a chain of
    links that comes back)."""
    try:
        os.path.realpath(path, strict=True)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return (f"is a symbolic link that leads back to itself ("
                    f"{quoted(str(path), 200)} -> {quoted(os.readlink(path), 200)}: a loop)")
    return f"is a symbolic link to {quoted(os.readlink(path), 200)}, which does not exist"

