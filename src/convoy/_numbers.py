"""What a setting given as a number must be: a real number, not a bool nor text.

``True`` is an ``int`` to Python and ``"0.5"`` reads as a number to a person, so a check
such as ``0 < value <= 1`` takes the first and raises a bare ``TypeError`` on the second.
The settings' checks ask these first, and say what was wrong in one line.
"""

from __future__ import annotations

from typing import TypeGuard


def is_number(value: object) -> TypeGuard[int | float]:
    """Whether ``value`` is an ``int`` or a ``float`` (a bool is neither here)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_whole(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an ``int`` (a bool, or a float such as ``1.5`` or ``2.0``, is
    not)."""
    return isinstance(value, int) and not isinstance(value, bool)


__all__ = ["is_number", "is_whole"]
