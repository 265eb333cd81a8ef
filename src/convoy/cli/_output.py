"""Standard output the command cannot write: a full disk (``> /dev/full``), a quota, an
I/O error, or closed (``>&-``). Whatever printed when it failed (a Rich table, a line of
JSON), :func:`convoy.cli.main` says so in one line and exits 1; a closed standard output
is not written into the void with exit 0. (A reader that exited, ``| head``, is not
this: exit 141, saying nothing.)"""

from __future__ import annotations

import errno
import io
import os
import sys
from contextlib import suppress
from typing import TYPE_CHECKING, cast

from convoy.runtime._concurrency import leaves

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

#: Why a closed standard output cannot be written.
CLOSED = "it is closed"

_kept: list[str] = []


class _Closed(io.TextIOBase):
    """``sys.stdout`` when the process started with file descriptor 1 closed (Python makes
    it ``None``, and a print to ``None`` writes nothing, silently): writing raises
    :class:`OSError` (``EBADF``)."""

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    written = False

    def write(self, s: str) -> int:
        self.written = True
        raise OSError(errno.EBADF, CLOSED)

    def flush(self) -> None:
        pass


class _Watched(io.TextIOWrapper):
    """``sys.stdout`` as Python made it, noting the error that failed a write or a flush
    (:func:`unwritable_stdout`): the command that printed may have been anywhere, and the
    error itself (an ``OSError`` with no file name) does not say which file it was."""

    failure: OSError | None = None

    def write(self, s: str) -> int:
        try:
            return super().write(s)
        except OSError as e:
            self.failure = e
            raise

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as e:
            self.failure = e
            raise


class _WholeWrites(io.FileIO):
    """Standard output's file, each write of it written whole, or failed: Python's buffered
    writer takes a write the kernel cut short (a pipe whose reader exited during it: the
    bytes the pipe took, then the reader gone) as the whole, and drops the rest without an
    error (so does a text stream written straight to the file, ``PYTHONUNBUFFERED=1`` as
    container images set it), so a command whose output is one large write (``export``,
    ``--json``) into ``| head`` exited 0, not 141. Writing on from where it was cut short
    meets the closed pipe (``EPIPE``)."""

    def write(self, b: ReadableBuffer, /) -> int:
        view = memoryview(b).cast("B")
        done = 0
        while done < len(view):
            n: int | None = super().write(view[done:])
            if n is None:  # (a descriptor made non-blocking, full: as FileIO says it)
                return done if done else cast(int, n)
            done += n
        return done


def watch_stdout() -> None:
    """Make a failed write of standard output known (:class:`_Watched`). If it is closed,
    make writing it an error (:class:`_Closed`), and keep file descriptor 1 from going to
    the next file opened (a store, a key file), where a write meant for standard output
    would land."""
    stream = sys.stdout
    if stream is None:
        with suppress(OSError):
            fd = os.open(os.devnull, os.O_WRONLY)
            if fd != 1:
                os.close(fd)
        sys.stdout = _Closed()
        return
    if type(stream) is not io.TextIOWrapper:  # (replaced by whoever runs main: theirs)
        return
    stream.flush()
    buffer = stream.detach()
    raw = buffer if isinstance(buffer, io.FileIO) else getattr(buffer, "raw", None)
    if isinstance(raw, io.FileIO) and not raw.closefd and raw.mode in ("wb", "ab"):
        whole = _WholeWrites(raw.fileno(), "w", closefd=False)  # (PYTHONUNBUFFERED=1,
        buffer = whole if buffer is raw else io.BufferedWriter(whole)  # a container's)
    watched = _Watched(buffer, encoding=stream.encoding, errors=stream.errors,
                       newline="\n", line_buffering=stream.line_buffering,
                       write_through=stream.write_through)
    sys.stdout = watched
    if sys.__stdout__ is stream:
        sys.__stdout__ = watched  # type: ignore[misc]  # (the old one is detached)


def keep_on_lost_output(what: str) -> None:
    """What the command has done and kept that its output was to show (``the checkpoint
    was signed and kept ...``): said after the error if standard output fails."""
    _kept.append(what)


def stdout_failure(e: BaseException) -> str | None:
    """The one line for ``e`` (an error, or a group of them) if it is standard output
    that could not be written, else None."""
    errors = leaves(e) if isinstance(e, BaseExceptionGroup) else (e,)
    if not any(isinstance(leaf, OSError) and leaf.errno != errno.EPIPE for leaf in errors):
        return None
    return unwritable_stdout()


def unwritable_stdout() -> str | None:
    """The error line if standard output cannot be written (what it holds cannot be
    flushed; a closed one was written), else None."""
    stream = sys.stdout
    reason: str | None = None
    if isinstance(stream, _Closed):
        reason = CLOSED if stream.written else None
    elif isinstance(stream, _Watched):
        with suppress(OSError):
            stream.flush()  # (what it holds still: noted if it fails)
        failure = stream.failure
        if failure is not None and failure.errno != errno.EPIPE:
            reason = failure.strerror or str(failure)
    if reason is None:
        return None
    return "; ".join([f"error: cannot write standard output: {reason}", *_kept])


def discard_stdout() -> None:
    """Drop what standard output still holds (written to ``/dev/null``), so that Python's
    own flush as it exits does not fail again, with a traceback of its own."""
    with suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    for stream in (sys.stdout, sys.__stdout__):
        if stream is not None:
            with suppress(OSError, ValueError):
                stream.flush()
