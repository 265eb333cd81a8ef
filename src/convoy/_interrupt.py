"""Ctrl-C while the ``convoy`` command line is still starting: one line, no traceback.

The command line handles Ctrl-C once its own code runs (:func:`convoy.cli.main`), but
importing ``convoy`` itself (before that code exists) takes a second or two. When the
process is the command line (the ``convoy`` script, ``python -m convoy`` or ``python -m
convoy.cli``), an interrupt that ends it during that import prints ``interrupted`` instead
of a traceback; Python then ends the process by SIGINT, as after any unhandled Ctrl-C
(exit status 130 in a shell). One that Python would swallow (it landed in a callback of
the import system, or in a finalizer) ends the command at once, with the same line. A
program that imports ``convoy`` is left as it is.

The first lines of ``convoy/__init__.py`` set that hook before any import (this module's
own included); this module then takes over. A Ctrl-C before them (while Python itself
starts: its ``site`` module, ``runpy``, finding or compiling ``convoy/__init__.py``) lands
before any of Convoy runs, and Python answers it as it does for any program.

A long-running command (``convoy worker``, ``convoy metrics serve``) started with SIGINT
ignored (a background job of a script or a CI step) would lose a SIGINT that lands during
that import: Python drops it, and the command then runs on. From the moment ``convoy``
starts importing, such a SIGINT is noted instead, and the command stops as soon as it
handles signals itself (:mod:`convoy.cli._stop`). (One that lands while Python itself
starts, before any of Convoy runs, is still dropped: nothing can catch it.)
"""

from __future__ import annotations

# Nothing but ``sys`` and ``os`` (loaded before any of Convoy runs) until the hooks are set:
# ``convoy/__init__.py`` set a first one, and a Ctrl-C that Python would swallow during the
# imports below is to end the command too.
import os
import sys

#: The line an interrupted command prints (on stderr) when it has nothing more to say.
INTERRUPTED_LINE = "interrupted"


def is_command_line() -> bool:
    """Whether this process is the ``convoy`` command line."""
    from convoy import _command_line  # (defined before ``convoy`` imports this module)

    return _command_line()


def _end_by_sigint() -> None:
    """End the process at once by SIGINT (exit status 130 in a shell)."""
    try:  # noqa: SIM105  (``contextlib`` may not be imported yet)
        sys.stdout.flush()
    except (OSError, ValueError):  # closed or broken: nothing to say there
        pass
    import signal  # (here: the hook below may call this before the imports below)

    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # ValueError: not the main thread
    except ValueError:
        pass
    else:
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(130)  # not the main thread (no handler can be set), or SIGINT is blocked


def quiet_interrupts() -> None:
    """On the command line, a ``KeyboardInterrupt`` nobody caught prints one line."""
    if not is_command_line():
        return
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None
             ) -> None:
        if issubclass(kind, KeyboardInterrupt):
            print(INTERRUPTED_LINE, file=sys.stderr)
        else:
            previous(kind, exc, tb)

    sys.excepthook = hook
    previous_unraisable = sys.unraisablehook

    def unraisable(info: UnraisableHookArgs) -> None:
        # A Ctrl-C that lands in a callback Python runs for itself (the import system's
        # module-lock weakref, a finalizer) is "ignored" with a traceback, and the command
        # would run on. It cannot be raised again from here (any Python line of this hook
        # would raise it inside the hook), so it ends the command now, as an unhandled
        # Ctrl-C does, without the clean-up: like a crash, which the stores are built for.
        if info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt):
            print(INTERRUPTED_LINE, file=sys.stderr, flush=True)
            _end_by_sigint()
        else:
            previous_unraisable(info)

    sys.unraisablehook = unraisable


quiet_interrupts()  # (imported first by convoy/__init__.py; before any other import here)

# Before pydantic_core: its (Rust) module init imports ``datetime`` when nothing has yet,
# and a KeyboardInterrupt inside that import is a Rust panic with a backtrace, not the
# one line above.
import datetime  # noqa: E402, F401
import signal  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:
    from sys import UnraisableHookArgs
    from types import FrameType, TracebackType


#: The stop signals noted before a long-running command handled them itself.
_noted: list[int] = []


def _long_running(argv: list[str]) -> bool:
    """Whether ``argv`` runs a command that stops on SIGINT even when it was ignored."""
    words = [a for a in argv[1:] if not a.startswith("-")]
    return words[:1] == ["worker"] or words[:2] == ["metrics", "serve"]


def _note(signum: int, frame: FrameType | None) -> None:
    _noted.append(signum)


def note_early_stops() -> None:
    """On the command line, for a long-running command with SIGINT ignored, note a SIGINT
    from now on (see the module) for :func:`early_stop`."""
    if is_command_line() and _long_running(sys.argv) and \
            signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, _note)


def early_stop() -> int | None:
    """The stop signal noted before the command handled signals itself (once), if any."""
    return _noted.pop(0) if _noted else None


note_early_stops()
