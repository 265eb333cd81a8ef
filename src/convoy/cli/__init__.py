"""The ``convoy`` command line: ``run``, ``resume``, ``worker``, ``signal``, ``cancel``,
``replay``, ``sessions``, ``state``, ``inbox``, ``cost``, ``chaos``, ``db``, ``trace`` and
``metrics``."""

from __future__ import annotations

import sys

from convoy._interrupt import INTERRUPTED_LINE
from convoy.cli._app import app


def main() -> None:
    """Entry point of the ``convoy`` console script.

    Ctrl-C ends every command with one line on stderr and exit code 130: a command that
    has more to say (what was saved, how to finish) says it; one interrupted anywhere
    else (while it starts, or where Typer turns the interrupt into a silent exit 130)
    says ``interrupted``.
    """
    try:
        app(prog_name="convoy")
    except KeyboardInterrupt:
        _interrupted()
    except SystemExit as e:
        exit_ = e.__context__  # Typer's ``Exit(130) from KeyboardInterrupt``: nothing said
        if e.code == 130 and exit_ is not None and \
                isinstance(exit_.__cause__, KeyboardInterrupt):
            _interrupted()
        raise


def _interrupted() -> None:
    print(INTERRUPTED_LINE, file=sys.stderr)
    raise SystemExit(130)


__all__ = ["app", "main"]
