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

from convoy._errors import AuditError, StoreError, UserError, message_of
from convoy._text import plural, short
from convoy.runtime._concurrency import leaves

NAMED = 3
_ORDER: tuple[type[BaseException], ...] = (StoreError, AuditError, UserError, Exception)


def raised_of(eg: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to raise for ``eg`` (see the module docstring), with a note naming the
    others."""
    found = list(leaves(eg))
    chosen = next((e for e in found if not isinstance(e, Exception)), None)
    for kind in _ORDER:
        if chosen is not None:
            break
        chosen = next((e for e in found if isinstance(e, kind)), None)
    if chosen is None:  # (a group holds one error at least)
        chosen = found[0]
    others = [e for e in found if e is not chosen]
    if others:
        named = "; ".join(map(described, others[:NAMED]))
        more = f"; and {len(others) - NAMED:,} more" if len(others) > NAMED else ""
        chosen.add_note(f"{plural(len(others), 'other error')} at the same time: "
                        f"{named}{more}")
    return chosen


def described(e: BaseException) -> str:
    """``e`` in one line, as a note or a worker's warning names it: its type and the first
    line of its message."""
    line = _line(e)
    return f"{type(e).__name__}: {line}" if line else type(e).__name__


def _line(e: BaseException) -> str:
    """The first line of ``e``'s message, cut at 200 characters (and escaped)."""
    return short((message_of(e).strip().splitlines() or [""])[0], 200)
