"""``python -m convoy``: the ``convoy`` command line."""

from convoy.cli import main

main()
