"""The ``convoy`` command line: ``run``, ``resume``, ``worker``, ``signal``, ``cancel``,
``replay``, ``sessions``, ``state``, ``inbox``, ``cost``, ``chaos``, ``db``, ``trace`` and
``metrics``."""

from __future__ import annotations

from convoy.cli._app import app


def main() -> None:
    """Entry point of the ``convoy`` console script."""
    app(prog_name="convoy")


__all__ = ["app", "main"]
