"""The engine process a chaos experiment may SIGKILL.

usage: ``python -c 'from convoy.chaos._worker import run; run()' CONFIG.json`` (``-m``
would import this module twice: the package imports it first, and runpy warns).

Runs (or, when started again on the same store, resumes) one phase described by a
:class:`~convoy.chaos._phase.PhaseConfig` and prints ``ready`` on stdout once every
session of the phase exists durably in the store.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

from convoy._errors import UserError
from convoy.chaos._phase import PhaseConfig, run_phase

READY = "ready"


def _ready(to: TextIO) -> None:
    to.write(READY + "\n")
    to.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: convoy.chaos._worker CONFIG.json\n")
        return 2
    # Standard output is the parent's pipe for READY alone: what the application's code
    # prints (its interceptors' loading, a workflow's) goes to standard error instead.
    ready = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        config = PhaseConfig.load(Path(argv[0]))
    except (OSError, ValueError, TypeError) as e:  # (the parent writes it: not a user's)
        sys.stderr.write(f"error: cannot read the phase config {argv[0]!r}: {e}\n")
        return 2
    if config.cwd not in sys.path:
        sys.path.insert(0, config.cwd)  # MODULE:WORKFLOW resolves as in the parent
    try:
        run_phase(config, on_ready=lambda: _ready(ready))
    except UserError as e:  # (one line for the parent to show, not a traceback)
        sys.stderr.write(f"error: {e}\n")
        return 2
    return 0


def run() -> None:
    """The process's entry: :func:`main` of its arguments, as its exit code."""
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    run()
