"""The application's interceptors named ``MODULE:NAME``, for code that runs sessions on an
engine of its own and must run them as the application's engine does: the command line
(``--interceptors``) and a chaos experiment's phases (each in the process that runs it).

``NAME`` is an attribute of ``MODULE`` (dotted for one inside another) that holds a list
(or tuple) of :class:`~convoy.Interceptor`, or a function of no arguments that returns one
(called at each load, so each caller gets interceptors of its own: breakers, budgets and
caches that start afresh). What cannot be loaded raises :class:`~convoy.UserError` in one
line: a module that does not import, an attribute it lacks, a value of neither form, a
function that takes arguments, is ``async`` or raises (its error's first line).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

from convoy._errors import UserError
from convoy._text import a_word, import_failed, quoted, short
from convoy.interceptors._base import STAGES, Interceptor

EXAMPLE = "e.g. 'myapp.config:interceptors'"
_FORMS = "a list of convoy.Interceptor nor a function of no arguments that returns one"


def load_interceptors(ref: str, *, option: str = "interceptors",
                      import_module: Callable[[str], ModuleType] | None = None
                      ) -> list[Interceptor]:
    """The interceptors ``ref`` (``MODULE:NAME``) names. ``option``: how messages name
    where ``ref`` came from; ``import_module``: how the module is imported (by default
    :func:`importlib.import_module`, its failure one line).

    Raises:
        UserError: ``ref`` names nothing that holds interceptors (one line, saying why).
    """
    if not ref.strip():
        raise UserError(f"{option} is empty: name the application's interceptors as "
                        f"MODULE:NAME ({EXAMPLE})")
    module_name, colon, attr = ref.rpartition(":")
    if not colon or not module_name or not attr:
        raise UserError(f"{option} {quoted(ref, 120)}: give MODULE:NAME, the module and the "
                        f"attribute in it that holds the application's interceptors "
                        f"({EXAMPLE}: a list of them, or a function that returns one)")
    value = _named_value(ref, option, import_module)
    name = ref if ref.isprintable() and len(ref) <= 120 else quoted(ref, 120)
    if isinstance(value, Interceptor):
        raise UserError(f"{option} {name} is one interceptor ({type(value).__name__}), not a "
                        "list; name a list of them (or a function that returns one)")
    if isinstance(value, list | tuple) or not callable(value):
        return _checked(value, option, name, f"{option} {name} is", _FORMS)
    return _checked(_called(value, option, name), option, f"{name}()",
                    f"{option} {name}() returned", "a list of convoy.Interceptor")


def made_anew(ref: str) -> bool:
    """Whether each load of ``ref`` (loadable: :func:`load_interceptors` took it) makes
    interceptors of its own: ``NAME`` is a function, not a list whose objects every load
    shares (and their state: a breaker's window, a budget's spend)."""
    value = _named_value(ref, "interceptors", None)
    return callable(value) and not isinstance(value, list | tuple)


def _named_value(ref: str, option: str,
                 import_module: Callable[[str], ModuleType] | None) -> Any:
    """What ``MODULE:NAME`` names (its module imported)."""
    module_name, _, attr = ref.rpartition(":")
    module = (import_module or _imported(option))(module_name)
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            raise UserError(f"{option}: module {quoted(module_name)} has no attribute "
                            f"{quoted(attr)}{_candidates(module)}")
        value = getattr(value, part)
    return value


def _imported(option: str) -> Callable[[str], ModuleType]:
    def imported(name: str) -> ModuleType:
        try:
            return importlib.import_module(name)
        except ImportError as e:
            raise UserError(f"{option}: "
                            + import_failed(name, e, where="Put it on PYTHONPATH")) from None
        except (Exception, SystemExit) as e:  # the module's own code failed, or quit
            raise UserError(f"{option}: importing module {quoted(name)} failed: "
                            f"{type(e).__name__}: {short(str(e), 2000)}") from None
    return imported


def _called(fn: Any, option: str, name: str) -> Any:
    """What ``fn()`` returns, or one line: it takes arguments, is async, or raised."""
    if inspect.iscoroutinefunction(fn):
        raise UserError(f"{option} {name} is an async function; make it a plain one (it is "
                        "called before any session runs)")
    try:
        inspect.signature(fn).bind()
    except TypeError:
        raise UserError(f"{option} {name} takes arguments; name a function of no arguments "
                        "that returns the interceptors (or a list of them)") from None
    except ValueError:
        pass  # (no signature to read: a builtin; calling it says what is wrong)
    try:
        return fn()
    except (Exception, SystemExit) as e:  # the application's code failed (or quit: the
        # command went quiet, exit 0): one line, not its traceback
        first = next((line for line in str(e).splitlines() if line.strip()), "")
        raise UserError(f"{option} {name}() raised {type(e).__name__}"
                        + (f": {short(first, 300)}" if first else "")) from None


def _checked(value: Any, option: str, what: str, verb: str, wanted: str
             ) -> list[Interceptor]:
    """``value`` as a list of interceptors, or one line saying what it is instead
    (``verb``: how the line names it, ``wanted``: what it should have been)."""
    if not isinstance(value, list | tuple):
        raise UserError(f"{verb} {_a(value)}, not {wanted}")
    for i, ic in enumerate(value):
        if not isinstance(ic, Interceptor):
            raise UserError(f"{option}: item {i} of {what} is {_a(ic)}, not a "
                            "convoy.Interceptor")
        if ic.stage not in STAGES:
            raise UserError(f"{option}: interceptor {type(ic).__name__} of {what} has "
                            f"unknown stage {quoted(str(ic.stage))}; stages: "
                            f"{', '.join(STAGES)}")
    return list(value)


def _a(value: Any) -> str:
    """``an int``, ``a str``: what a value is, by its type."""
    return a_word(type(value).__name__)


def _candidates(module: Any) -> str:
    """``; its lists of interceptors: A, B`` for a module that has some, else nothing."""
    names = sorted(n for n, v in vars(module).items() if isinstance(v, list | tuple) and v
                   and all(isinstance(ic, Interceptor) for ic in v))
    return f"; its lists of interceptors: {', '.join(names)}" if names else ""


__all__ = ["EXAMPLE", "load_interceptors", "made_anew"]
