"""Flags without a value, and arguments given any number of times, in ``--help``.

Typer 0.29's help shows the type of every option in its own column, a flag's too:
``--json <bool>``, ``--all-tenants <bool>``, ``-h <bool>``, which reads as if the flag
took a value (``--all-tenants true`` is then refused as an extra argument). Typer has no
setting for it, so :func:`install` makes a flag's type show as nothing, as Click's own help
shows it; options that take a value are unchanged. Likewise an argument given any number
of times (``convoy retry [ID]...``) showed the Python type ``<list[str]>``: one with a
metavar shows none (the usage line, ``[ID]...``, says it repeats).
"""

from __future__ import annotations

from typing import Any

import typer.core


def install() -> None:
    """Show no type for a flag in ``--help`` (see the module docstring)."""
    cls = typer.core.TyperOption
    shown = cls.display_type_rich
    if getattr(shown, "convoy_flags", False):
        return  # installed already

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if self.is_flag and self.metavar is None else shown(self, ctx)

    setattr(display_type_rich, "convoy_flags", True)  # noqa: B010 - a function's attribute
    setattr(cls, "display_type_rich", display_type_rich)  # noqa: B010
    arg = typer.core.TyperArgument
    arg_shown = arg.display_type_rich

    def arg_display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if self.nargs != 1 and self.metavar is not None else arg_shown(self, ctx)

    setattr(arg, "display_type_rich", arg_display_type_rich)  # noqa: B010


__all__ = ["install"]
