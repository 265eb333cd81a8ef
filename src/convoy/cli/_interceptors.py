"""``--interceptors MODULE:NAME`` (or ``$CONVOY_INTERCEPTORS``): the application's
interceptors for the commands that run sessions (``run``, ``resume``, ``retry``,
``worker``, and ``cancel``, whose run ends a killed session), and for those that record
a person's decision (``inbox answer``, ``approve``, ``reject``, ``signal ...
convoy.escalation``): its ``human_decision`` hooks (a policy on who decides, its own
audit) see the decision as they do in its engine.

An engine the command line makes knows nothing of the application's own: without this
option its sessions run with no retries, budgets, timeouts, breakers, rate limits, cache
or policies. ``NAME`` is an attribute of ``MODULE`` that holds a list (or tuple) of
:class:`~convoy.Interceptor`, or a function of no arguments that returns one (called
once, before any session runs, so every command gets interceptors of its own). They join
the command's own (``--trace``, the worker's log and metrics, the store-driven audit and
tracing) in the engine's chain, where the engine's stage order puts them, as in the
application's engine. An application that audits or traces (an ``AuditInterceptor``, a
``Tracing`` in the list) does so here as in its own engine: the command line's
store-driven audit and tracing step aside, and ``--trace`` is refused with it.

What cannot be loaded is one line and exit 2, before any session runs: a module that
does not import, an attribute it lacks, a value that is neither form, a function that
takes arguments, is ``async`` or raises (its error's first line).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from convoy import Interceptor, UserError
from convoy._command import word
from convoy.cli._common import fail, import_modules, option_source, tracing
from convoy.cli._logs import LOG_FORMAT_ENV, log_chain
from convoy.interceptors._named import EXAMPLE as _EXAMPLE
from convoy.interceptors._named import load_interceptors

INTERCEPTORS_ENV = "CONVOY_INTERCEPTORS"


class _Named(str):
    """The option's value, with where it came from: ``--interceptors`` or the variable."""

    option: str


def _named(ctx: typer.Context, param: typer.CallbackParam, value: str | None
           ) -> str | None:
    """The value, knowing where it came from (for the messages)."""
    if value is None:
        return None
    named = _Named(value)
    named.option = option_source(ctx, param, INTERCEPTORS_ENV)
    return named


def _interceptors_option(what: str) -> Any:
    """The ``--interceptors`` option of a command, ``what`` saying what it does with them."""
    return typer.Option(
        "--interceptors", envvar=INTERCEPTORS_ENV, show_envvar=True, metavar="MODULE:NAME",
        show_default=False, callback=_named,
        help=f"{what} NAME is a list of them in MODULE, or a function of no arguments that "
             f"returns one, {_EXAMPLE}.")


InterceptorsOption = Annotated[str | None, _interceptors_option(
    "Run the sessions with the application's interceptors (retries, budgets, timeouts, "
    "breakers, rate limits, cache, policies); without it the command runs none of them.")]
DecisionInterceptorsOption = Annotated[str | None, _interceptors_option(
    "Record the decision through the application's interceptors: their human_decision "
    "hooks (a policy on who decides, its audit) see it as in the application's engine; "
    "one that raises convoy.UserError refuses it (one line, exit 2) and it is not "
    "recorded. A plain signal (not convoy.escalation) is no decision and ignores it.")]

CancelInterceptorsOption = Annotated[str | None, _interceptors_option(
    "End the session (one whose run was killed, that never ran, or that waits) through "
    "the application's interceptors: their session hooks (its own audit, tracing, ...) "
    "see it end as in the application's engine. One another live engine runs gets a "
    "cancel request instead, which that engine honours.")]

ChaosInterceptorsOption = Annotated[str | None, _interceptors_option(
    "Run every phase with the application's interceptors (retries, breakers, timeouts, "
    "budgets, ...), the faults injected inside them: the chain under test. Each phase loads "
    "them anew (a function gives each its own). --protections is then off unless given.")]


def _option(ref: str | None) -> str:
    """How messages name the value: ``--interceptors``, or the variable it came from."""
    return getattr(ref, "option", "--interceptors")


def app_interceptors(ref: str | None) -> list[Interceptor]:
    """The interceptors ``ref`` (``MODULE:NAME``) names, or one line and exit 2 (none
    without it)."""
    if ref is None:
        return []
    option = _option(ref)
    try:
        return load_interceptors(ref, option=option, import_module=lambda name: (
            import_modules([name], option)[0]))
    except UserError as e:
        fail(str(e))


def session_options(ref: str | None, trace: list[str] | None = None,
                    model: str | None = None, log_format: str = "text") -> str:
    """The options a command was given that decide how sessions run (``--model``,
    ``--trace``, ``--interceptors``, ``--log-format json``), as shell words for the command
    a message says runs them next (``convoy resume ...``): one without them would run the
    sessions without the application's retries and budgets, on their own models. What a
    variable set (``$CONVOY_INTERCEPTORS``, ``$CONVOY_LOG_FORMAT``) is left out: the next
    command reads it too."""
    words = [] if model is None else [f"--model {word(model)}"]
    words += [f"--trace {word(t)}" for t in trace or ()]
    if ref is not None and _option(ref) == "--interceptors":
        words.append(f"--interceptors {word(ref)}")
    if (os.environ.get(LOG_FORMAT_ENV) or "text").strip().lower() != log_format:
        words.append(f"--log-format {word(log_format)}")
    return " ".join(words)


def session_interceptors(ref: str | None, trace: list[str] | None = None,
                         command: Sequence[Interceptor] = (),
                         log_format: str = "text") -> list[Interceptor]:
    """The interceptors of a command that runs sessions: its own (``command``), those
    ``--trace`` asks for, the logging ``--log-format json`` asks for
    (:mod:`convoy.cli._logs`), and the application's (``--interceptors``), in that order
    (the engine sorts them by stage, keeping this order within one). ``--trace`` with an
    application that traces is one line: the sessions would be traced twice."""
    traced = tracing(trace)
    app = app_interceptors(ref)
    logs = log_chain(log_format, traced, app)
    if traced:
        from convoy.observability import Tracing

        if any(isinstance(ic, Tracing) for ic in app):
            fail(f"--trace and {_option(ref)} {ref}: the application's interceptors trace "
                 "already (a convoy.observability.Tracing), so every session would be "
                 "traced twice; drop --trace (or the Tracing)")
    return [*command, *traced, *logs, *app]
