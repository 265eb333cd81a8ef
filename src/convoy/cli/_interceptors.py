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

import inspect
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from convoy import Interceptor
from convoy._text import quoted, short
from convoy.cli._common import fail, import_modules, option_source, tracing
from convoy.interceptors._base import STAGES

INTERCEPTORS_ENV = "CONVOY_INTERCEPTORS"
_EXAMPLE = "e.g. 'myapp.config:interceptors'"
_FORMS = "a list of convoy.Interceptor nor a function of no arguments that returns one"


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


def _option(ref: str | None) -> str:
    """How messages name the value: ``--interceptors``, or the variable it came from."""
    return getattr(ref, "option", "--interceptors")


def app_interceptors(ref: str | None) -> list[Interceptor]:
    """The interceptors ``ref`` (``MODULE:NAME``) names, or one line and exit 2 (none
    without it)."""
    if ref is None:
        return []
    option = _option(ref)
    if not ref.strip():
        fail(f"{option} is empty: name the application's interceptors as MODULE:NAME "
             f"({_EXAMPLE})")
    module_name, colon, attr = ref.rpartition(":")
    if not colon or not module_name or not attr:
        fail(f"{option} {quoted(ref, 120)}: give MODULE:NAME, the module and the attribute "
             f"in it that holds the application's interceptors ({_EXAMPLE}: a list of them, "
             "or a function that returns one)")
    (module,) = import_modules([module_name], option)
    name = ref if ref.isprintable() and len(ref) <= 120 else quoted(ref, 120)
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            fail(f"{option}: module {quoted(module_name)} has no attribute {quoted(attr)}"
                 f"{_candidates(module)}")
        value = getattr(value, part)
    if isinstance(value, Interceptor):
        fail(f"{option} {name} is one interceptor ({type(value).__name__}), not a list; "
             "name a list of them (or a function that returns one)")
    if isinstance(value, list | tuple) or not callable(value):
        return _checked(value, option, name, f"{option} {name} is", _FORMS)
    return _checked(_called(value, option, name), option, f"{name}()",
                    f"{option} {name}() returned", "a list of convoy.Interceptor")


def _called(fn: Any, option: str, name: str) -> Any:
    """What ``fn()`` returns, or one line: it takes arguments, is async, or raised."""
    if inspect.iscoroutinefunction(fn):
        fail(f"{option} {name} is an async function; make it a plain one (the command "
             "calls it once, before any session runs)")
    try:
        inspect.signature(fn).bind()
    except TypeError:
        fail(f"{option} {name} takes arguments; name a function of no arguments that "
             "returns the interceptors (or a list of them)")
    except ValueError:
        pass  # (no signature to read: a builtin; calling it says what is wrong)
    try:
        return fn()
    except Exception as e:  # the application's code failed: one line, not its traceback
        first = next((line for line in str(e).splitlines() if line.strip()), "")
        fail(f"{option} {name}() raised {type(e).__name__}"
             + (f": {short(first, 300)}" if first else ""))


def _checked(value: Any, option: str, what: str, verb: str, wanted: str
             ) -> list[Interceptor]:
    """``value`` as a list of interceptors, or one line saying what it is instead
    (``verb``: how the line names it, ``wanted``: what it should have been)."""
    if not isinstance(value, list | tuple):
        fail(f"{verb} {_a(value)}, not {wanted}")
    for i, ic in enumerate(value):
        if not isinstance(ic, Interceptor):
            fail(f"{option}: item {i} of {what} is {_a(ic)}, not a convoy.Interceptor")
        if ic.stage not in STAGES:
            fail(f"{option}: interceptor {type(ic).__name__} of {what} has unknown stage "
                 f"{quoted(str(ic.stage))}; stages: {', '.join(STAGES)}")
    return list(value)


def _a(value: Any) -> str:
    """``an int``, ``a str``: what a value is, by its type."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _candidates(module: Any) -> str:
    """``; its lists of interceptors: A, B`` for a module that has some, else nothing."""
    names = sorted(n for n, v in vars(module).items() if isinstance(v, list | tuple) and v
                   and all(isinstance(ic, Interceptor) for ic in v))
    return f"; its lists of interceptors: {', '.join(names)}" if names else ""


def session_interceptors(ref: str | None, trace: list[str] | None = None,
                         command: Sequence[Interceptor] = ()) -> list[Interceptor]:
    """The interceptors of a command that runs sessions: its own (``command``), those
    ``--trace`` asks for, and the application's (``--interceptors``), in that order (the
    engine sorts them by stage, keeping this order within one). ``--trace`` with an
    application that traces is one line: the sessions would be traced twice."""
    traced = tracing(trace)
    app = app_interceptors(ref)
    if traced:
        from convoy.observability import Tracing

        if any(isinstance(ic, Tracing) for ic in app):
            fail(f"--trace and {_option(ref)} {ref}: the application's interceptors trace "
                 "already (a convoy.observability.Tracing), so every session would be "
                 "traced twice; drop --trace (or the Tracing)")
    return [*command, *traced, *app]
