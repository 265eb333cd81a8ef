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

An option that takes one value given twice (``--key a.key --key b.key``) is refused:
Click would keep the last value without a word, and the user meant both (two keys to
pin) or a typo. Options that take several say so in their help ("repeatable").

A value that begins with ``-`` (a session id ``-3f2a``) is read as options, and Click
says ``No such option: -3``: the line then adds the command that takes it as a value,
every option first and the values after ``--`` (:func:`convoy._command.command`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer.core
import typer.rich_utils

from convoy._command import PASSWORD_NOTE, command, store_word, word
from convoy._text import escaped

if TYPE_CHECKING:  # (annotations only: Typer bundles the Click it runs on, and installs
    import click  # no other)

#: The attribute of a Click context that keeps the words its command was given.
_ARGS = "convoy_args"


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
    if ctx is not None and type(error).__name__ == "NoSuchOption":
        hint += _after_dashes(ctx)
    sys.stderr.write(f"error: {escaped(message)}{hint}\n")
    sys.stderr.flush()


def _after_dashes(ctx: click.Context) -> str:
    """``; if '-w1' is a value, not an option, put it after '--': 'convoy ... -- -w1'``
    for a command that takes values (arguments) given one that begins with ``-``;
    nothing otherwise. The command is the one given: its options (the store's without a
    password, and a note to put it back) before ``--``, its values after it, in their
    order."""
    from convoy.stores._url import hides_password

    args: list[str] | None = getattr(ctx, _ARGS, None)
    params = ctx.command.params
    if args is None or not any(p.param_type_name == "argument" for p in params):
        return ""
    takes_value = {o: not (getattr(p, "is_flag", False) or getattr(p, "count", False))
                   for p in params if p.param_type_name == "option"
                   for o in (*p.opts, *p.secondary_opts)}
    options: list[str] = []
    operands: list[str] = []
    masked = False  # (a --db with a password: shown as ***)
    words = iter(args)
    for w in words:
        if w == "--":
            operands.extend(words)
        elif w in takes_value:
            options.append(w)
            if takes_value[w]:
                value = next(words, None)
                if value is not None:
                    options.append(store_word(value) if w == "--db" else word(value))
                    masked = masked or (w == "--db" and hides_password(value))
        elif w.partition("=")[0] in takes_value and w.startswith("--"):
            name, _, value = w.partition("=")
            options.append(f"{name}={store_word(value) if name == '--db' else word(value)}")
            masked = masked or (name == "--db" and hides_password(value))
        elif w[:2] in takes_value and not w.startswith("--"):
            options.append(word(w))  # (``-tacme``: -t acme)
        else:
            operands.append(w)
    dashed = next((w for w in operands if w.startswith("-")), None)
    if dashed is None or (dashed.startswith("--") and
                          dashed.partition("=")[0] in _all_options(ctx.find_root().command)):
        return ""  # (a long option other commands take, not a value: '--all-tenants')
    slots = [p.nargs for p in params if p.param_type_name == "argument"]
    if -1 not in slots and len(operands) > sum(slots):
        return ""  # (no value left for it to be: the suggestion would fail too)
    path = ctx.command_path.split(" ", 1)
    suggested = command(path[1] if len(path) > 1 else "", operands=operands,
                        options=" ".join(options)) + (PASSWORD_NOTE if masked else "")
    return f"; if {dashed!r} is a value, not an option, put it after '--': " \
        f"{escaped(suggested)}"


def _all_options(cmd: click.Command) -> set[str]:
    """The long option names of ``cmd`` and of every command under it."""
    names = {o for p in cmd.params if p.param_type_name == "option"
             for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}
    for sub in getattr(cmd, "commands", {}).values():
        names |= _all_options(sub)
    return names


def _with_context(parse: Callable[..., list[str]]) -> Callable[..., list[str]]:
    """``parse_args`` that gives a usage error raised without a context ``ctx``."""
    if getattr(parse, "convoy_usage", False):
        return parse  # installed already

    def parse_args(self: Any, ctx: Any, args: list[str]) -> list[str]:
        setattr(ctx, _ARGS, list(args))  # (for :func:`_after_dashes`)
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


def _once(make_parser: Callable[..., Any]) -> Callable[..., Any]:
    """``make_parser`` whose parser refuses an option of one value given more than once."""
    if getattr(make_parser, "convoy_once", False):
        return make_parser  # installed already

    def make(self: Any, ctx: Any) -> Any:
        parser = make_parser(self, ctx)
        parse = parser.parse_args

        def parse_args(args: list[str]) -> Any:
            opts, largs, order = parse(args)
            seen: set[str | None] = set()
            for param in order:  # (one item for each time an option was given)
                # (Typer's own Click classes: told by their attributes, not their type)
                if param.param_type_name == "option" and not (
                        param.multiple or param.count or param.is_flag):
                    if param.name in seen:
                        ctx.fail(_twice(param.opts))  # (a usage error of ctx's Click)
                    seen.add(param.name)
            return opts, largs, order

        parser.parse_args = parse_args
        return parser

    setattr(make, "convoy_once", True)  # noqa: B010 - a function's attribute
    return make


def _twice(opts: list[str]) -> str:
    name = max(opts, key=len)
    others = [o for o in opts if o != name]
    also = f" ({', '.join(others)})" if others else ""
    return f"option {name!r}{also} was given more than once, but it takes one value (the " \
        "last would be used, the others ignored): give it once"


def install() -> None:
    """Show usage errors with :func:`one_line` (see the module docstring)."""
    setattr(typer.rich_utils, "rich_format_error", one_line)  # noqa: B010 - typed module
    for cls in (typer.core.TyperCommand, typer.core.TyperGroup):
        setattr(cls, "parse_args", _with_context(cls.parse_args))  # noqa: B010
        setattr(cls, "make_parser", _once(cls.make_parser))  # noqa: B010


__all__ = ["install", "one_line"]
