"""The check of a duration user code gives a durable wait: a timer's, a timeout's, a
deadline's. Each is stored as a time (now plus it), which every reader checks is a time
(finite, before the year 9999): a duration that makes no such time is refused where it
is given, in one line, not written as a row every later read calls damaged.
"""

from __future__ import annotations

import math
import numbers
from decimal import Decimal

from convoy._errors import UserError

#: The longest duration a durable wait takes: a hundred years, in seconds (every time it
#: makes is far from the year 9999). A timeout of ``math.inf`` is no timeout.
LONGEST_S = 100 * 365.25 * 86_400


def timeout_seconds(value: float | None, what: str) -> float | None:
    """A timeout (or a deadline) in seconds as a wait keeps it: ``None`` for none (also
    ``math.inf``, the natural "never"); a :class:`~convoy.UserError` naming ``what`` for
    what is not a number of seconds from 0 to a hundred years."""
    if value is None or value == math.inf:
        return None
    return _checked(value, what, "; pass None (or math.inf) for no timeout")


def sleep_seconds(value: float, what: str) -> float:
    """A timer's duration in seconds; a :class:`~convoy.UserError` naming ``what`` for what
    is not a number of seconds from 0 to a hundred years (``math.inf``: a wait with no end
    is one for a signal)."""
    return _checked(value, what, "; to wait with no end, wait for a signal "
                    "(ctx.wait_for) instead")


def _checked(value: float, what: str, hint: str) -> float:
    # (any real number: a NumPy integer, a Fraction, a Decimal, as elsewhere)
    if isinstance(value, bool) or not isinstance(value, numbers.Real | Decimal):
        raise UserError(f"{what} must be a number of seconds, got {type(value).__name__}")
    try:
        seconds = float(value)
    except OverflowError:  # (an integer past any float: no time either)
        seconds = math.inf
    if not 0 <= seconds <= LONGEST_S:  # (NaN compares false: refused too)
        raise UserError(f"{what} must be a number of seconds from 0 to {LONGEST_S:.0f} (a "
                        f"hundred years), got {seconds:g}{hint if seconds > LONGEST_S else ''}")
    return seconds


__all__ = ["LONGEST_S", "sleep_seconds", "timeout_seconds"]
