"""Usage errors (what Click refuses before a command runs) as one line.

Typer prints them as the usage line, a hint and a Rich panel: five to eight lines, where
every other error of the command line is one ``error:`` line that says what was wrong and
how to fix it. Typer has no setting for that (``rich_markup_mode=None`` prints Click's
plain three lines and changes every ``--help``), so the display is replaced: Typer calls
:func:`typer.rich_utils.rich_format_error` to show a :class:`click.ClickException` of a
command run standalone (the console script, ``CliRunner``), and :func:`install` puts
:func:`one_line` there. Exit codes are Click's (2 for a usage error).

Click's parser raises some usage errors (``Option '--limit' requires an argument``) with
no context, so no command to name: :func:`install` also gives such an error the context
of the command whose arguments were being parsed (Typer's command classes only).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
import typer.core
import typer.rich_utils

from convoy._text import escaped


def one_line(error: click.ClickException) -> None:
    """``error: MESSAGE (see 'convoy COMMAND --help')`` on stderr."""
    if type(error).__name__ == "NoArgsIsHelpError":
        return  # (a group run alone: Click printed its help, as Typer's own display does)
    message = " ".join(error.format_message().split())
    ctx: click.Context | None = getattr(error, "ctx", None)
    hint = ""
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        option = max(ctx.help_option_names, key=len)
        hint = f" (see '{escaped(ctx.command_path)} {option}')"
    sys.stderr.write(f"error: {escaped(message)}{hint}\n")
    sys.stderr.flush()


def _with_context(parse: Callable[..., list[str]]) -> Callable[..., list[str]]:
    """``parse_args`` that gives a usage error raised without a context ``ctx``."""
    if getattr(parse, "convoy_usage", False):
        return parse  # installed already

    def parse_args(self: Any, ctx: Any, args: list[str]) -> list[str]:
        try:
            return parse(self, ctx, args)
        except Exception as e:
            # (Click's ``UsageError``, or that of the Click Typer carries inside: it
            # has its own classes, so it is told by its ``ctx``, not by its type.)
            if getattr(e, "ctx", False) is None:
                e.ctx = ctx  # type: ignore[attr-defined]
            raise

    setattr(parse_args, "convoy_usage", True)  # noqa: B010 - a function's attribute
    return parse_args


def install() -> None:
    """Show usage errors with :func:`one_line` (see the module docstring)."""
    setattr(typer.rich_utils, "rich_format_error", one_line)  # noqa: B010 - typed module
    for cls in (typer.core.TyperCommand, typer.core.TyperGroup):
        setattr(cls, "parse_args", _with_context(cls.parse_args))  # noqa: B010


__all__ = ["install", "one_line"]
