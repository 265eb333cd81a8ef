"""Ctrl-C while the ``convoy`` command line is still starting: one line, no traceback.

The command line handles Ctrl-C once its own code runs (:func:`convoy.cli.main`), but
importing ``convoy`` itself (before that code exists) takes a second or two. When the
process is the command line (the ``convoy`` script, ``python -m convoy`` or ``python -m
convoy.cli``), an interrupt that ends it during that import prints ``interrupted`` instead
of a traceback; Python then ends the process by SIGINT, as after any unhandled Ctrl-C
(exit status 130 in a shell). A program that imports ``convoy`` is left as it is.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType

#: The line an interrupted command prints (on stderr) when it has nothing more to say.
INTERRUPTED_LINE = "interrupted"


def is_command_line() -> bool:
    """Whether this process is the ``convoy`` command line."""
    if sys.argv and os.path.basename(sys.argv[0]) in ("convoy", "convoy.exe"):
        return True
    argv = list(getattr(sys, "orig_argv", ()))
    return any(a == "-m" and argv[i + 1:i + 2] in (["convoy"], ["convoy.cli"])
               for i, a in enumerate(argv))


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


quiet_interrupts()  # (imported first by convoy/__init__.py)
