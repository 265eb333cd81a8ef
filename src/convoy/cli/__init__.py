"""The ``convoy`` command line: ``run``, ``resume``, ``worker``, ``signal``, ``cancel``,
``replay``, ``sessions``, ``state``, ``inbox``, ``cost``, ``chaos``, ``db``, ``trace`` and
``metrics``."""

from __future__ import annotations

import errno
import logging
import sys

from convoy._interrupt import INTERRUPTED_LINE
from convoy._text import escaped, quoted, undecodable_byte
from convoy.cli._app import app
from convoy.cli._common import OUTPUT_CLOSED, RUN_FAILURE
from convoy.cli._output import (
    discard_stdout,
    stdout_failure,
    unwritable_stdout,
    watch_stdout,
)
from convoy.privacy._withheld import SessionText


def main() -> None:
    """Entry point of the ``convoy`` console script.

    Ctrl-C ends every command with one line on stderr and exit code 130: a command that
    has more to say (what was saved, how to finish) says it; one interrupted anywhere
    else (while it starts, or where Typer turns the interrupt into a silent exit 130)
    says ``interrupted``. Standard output that cannot be written (a full disk, closed)
    ends it with one line and exit 1 (:mod:`~convoy.cli._output`); a reader that exited
    (``| head``) with exit 141, saying nothing.
    """
    _show_warnings()
    _refuse_bytes_that_are_not_utf8(sys.argv[1:])
    watch_stdout()
    try:
        app(prog_name="convoy")
    except KeyboardInterrupt:
        _interrupted()
    except ImportError as e:
        # An optional package a command needs is not installed: what says which extra
        # to install (``convoy.audit``'s signing, wherever it is first imported) is the
        # whole message.
        if "pip install 'convoy[" not in str(e):
            raise
        sys.stderr.write(f"error: {e}\n")
        raise SystemExit(2) from None
    except BaseExceptionGroup as e:
        _failed_output(stdout_failure(e))
        raise
    except OSError as e:
        if e.errno != errno.ENAMETOOLONG:
            # standard output full or closed (wherever a command printed): one line
            _failed_output(stdout_failure(e))
            raise
        # A path the user gave (--db, --input, a key file) with a name longer than the
        # file system allows: wherever it is first touched, one line.
        name = e.filename if isinstance(e.filename, str) else ""
        sys.stderr.write(f"error: the path {quoted(name)} has a name too long for the file "
                         "system (at most 255 bytes between slashes); use a shorter one\n")
        raise SystemExit(2) from None
    except SystemExit as e:
        exit_ = e.__context__  # Typer's ``Exit(130) from KeyboardInterrupt``: nothing said
        if e.code == 130 and exit_ is not None and \
                isinstance(exit_.__cause__, KeyboardInterrupt):
            _interrupted()
        if e.code == 1 and isinstance(exit_, OSError) and exit_.errno == errno.EPIPE:
            # (click's exit when a print found its reader gone: as the consoles' own)
            raise SystemExit(OUTPUT_CLOSED) from None
        if e.code in (0, None):  # (what it printed last may not have reached it yet)
            _failed_output(unwritable_stdout())
        raise


def _failed_output(line: str | None) -> None:
    """Exit 1 with ``line`` (:mod:`~convoy.cli._output`) if there is one."""
    if line is None:
        return
    discard_stdout()
    print(line, file=sys.stderr)
    raise SystemExit(RUN_FAILURE)


class _Lines(logging.Formatter):
    """``warning: MESSAGE``, as the commands write their own warnings and errors; what the
    record quotes from a session (a :class:`~convoy.privacy._withheld.SessionText` among
    its arguments: an error's message) redacted as JSON log lines are (a worker's stderr
    is its log; see :mod:`~convoy.cli._redaction`), Convoy's own text (a store's URL, a
    webhook's host, a store error's message) as it is."""

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(a, SessionText) for a in args):
            from convoy.cli._redaction import redacted

            record = logging.makeLogRecord(record.__dict__)
            record.args = tuple(SessionText(redacted(a)) if isinstance(a, SessionText)
                                else a for a in args)
        return f"{record.levelname.lower()}: {escaped(record.getMessage())}"


def _show_warnings() -> None:
    """Write what the ``convoy`` logger warns of (a refused signal, an alert) to stderr as
    one ``warning: ...`` line each, as Python's fallback would write the bare message:
    only while no other handler takes the record (the application's modules, imported
    later, may configure logging; their handlers then have it, once)."""
    # psycopg's own records of a lost connection (its pool's two lines for each failed
    # reconnection, every second or so while a server restarts; a pipeline it could not
    # end) would reach stderr through logging's last resort: the command says in one line
    # what failed (a worker: each time it tries the store again).
    driver = logging.getLogger("psycopg")
    if not driver.handlers and driver.level == logging.NOTSET:
        driver.setLevel(logging.ERROR)
    logger = logging.getLogger("convoy")
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(_Lines())
    handler.addFilter(lambda record: _alone(logger, handler))
    logger.addHandler(handler)


def _alone(logger: logging.Logger, handler: logging.Handler) -> bool:
    """Whether ``handler`` is the only one a record of ``logger`` would reach."""
    seen: logging.Logger | None = logger
    while seen is not None:
        if any(h is not handler for h in seen.handlers):
            return False
        if not seen.propagate:
            break
        seen = seen.parent
    return True


def _refuse_bytes_that_are_not_utf8(args: list[str]) -> None:
    """One line and exit 2 for an argument holding bytes that are not UTF-8 (Python keeps
    each as a lone surrogate, which no store, JSON value or terminal line can hold): every
    command reads its arguments as text."""
    for i, arg in enumerate(args, 1):
        byte = undecodable_byte(arg)
        if byte is not None:
            print(f"error: argument {i} ('{escaped(arg[:60])}') is not UTF-8 text: it holds "
                  f"the byte 0x{byte:02x}; Convoy reads its arguments as UTF-8 (a file name "
                  "too: rename the file)", file=sys.stderr)
            raise SystemExit(2)


def _interrupted() -> None:
    print(INTERRUPTED_LINE, file=sys.stderr)
    raise SystemExit(130)


__all__ = ["app", "main"]
