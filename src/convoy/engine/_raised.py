"""The one error ``serve``, ``run_many`` and ``resume`` raise when what they ran together
failed (their task group's ``ExceptionGroup``), so a caller catches it by its own type
(``except convoy.StoreError``). Chosen in this order, each kind the first of it:

1. an exception that is not an ``Exception`` (a ``BaseException`` a step raised to stop
   the process, as a crash would): nothing may hide it;
2. a :class:`~convoy.StoreError`, then an :class:`~convoy.AuditError`, then a
   :class:`~convoy.UserError`: they explain the others (a store that failed fails every
   session that used it), as the command line reports them;
3. any other ``Exception`` (a bug).

The others are not dropped: a note on the error raised names them (its traceback shows
it), at most :data:`NAMED` of them."""

from __future__ import annotations

from collections.abc import Iterator

from convoy._errors import AuditError, StoreError, UserError
from convoy._text import plural

NAMED = 3
_ORDER: tuple[type[BaseException], ...] = (StoreError, AuditError, UserError, Exception)


def raised_of(eg: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to raise for ``eg`` (see the module docstring), with a note naming the
    others."""
    leaves = list(_leaves(eg))
    chosen = next((e for e in leaves if not isinstance(e, Exception)), None)
    for kind in _ORDER:
        if chosen is not None:
            break
        chosen = next((e for e in leaves if isinstance(e, kind)), None)
    if chosen is None:  # (a group holds one error at least)
        chosen = leaves[0]
    others = [e for e in leaves if e is not chosen]
    if others:
        named = "; ".join(f"{type(e).__name__}: {_line(e)}" for e in others[:NAMED])
        more = f"; and {len(others) - NAMED:,} more" if len(others) > NAMED else ""
        chosen.add_note(f"{plural(len(others), 'other error')} at the same time: "
                        f"{named}{more}")
    return chosen


def _leaves(eg: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for e in eg.exceptions:
        if isinstance(e, BaseExceptionGroup):
            yield from _leaves(e)
        else:
            yield e


def _line(e: BaseException) -> str:
    """The first line of ``e``'s message, cut at 200 characters."""
    text = (str(e).strip().splitlines() or [""])[0]
    return text if len(text) <= 200 else text[:199] + "…"
