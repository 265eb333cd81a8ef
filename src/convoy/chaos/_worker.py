"""The engine process a chaos experiment may SIGKILL.

usage: ``python -m convoy.chaos._worker CONFIG.json``

Runs (or, when started again on the same store, resumes) one phase described by a
:class:`~convoy.chaos._phase.PhaseConfig` and prints ``ready`` on stdout once every
session of the phase exists durably in the store.
"""

from __future__ import annotations

import sys
from pathlib import Path

from convoy.chaos._phase import PhaseConfig, run_phase

READY = "ready"


def _ready() -> None:
    sys.stdout.write(READY + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m convoy.chaos._worker CONFIG.json\n")
        return 2
    config = PhaseConfig.load(Path(argv[0]))
    if config.cwd not in sys.path:
        sys.path.insert(0, config.cwd)  # MODULE:WORKFLOW resolves as in the parent
    run_phase(config, on_ready=_ready)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
