"""``python -m convoy.cli``."""

from convoy.cli import main

main()
