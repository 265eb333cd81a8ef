"""Summary statistics shared by step timings, ``convoy run`` totals and chaos reports."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(samples: Iterable[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile: the smallest sample with at least ``p`` percent
    of the samples at or below it, so the answer is always one of the samples.

    Args:
        samples: in any order.
        p: in ``[0, 100]``; ``0`` gives the minimum and ``100`` the maximum.

    Returns:
        The percentile, or NaN when there are no samples.

    Raises:
        ValueError: ``p`` is outside ``[0, 100]``.
    """
    if not 0 <= p <= 100:
        raise ValueError(f"percentile p must be in [0, 100], got {p!r}")
    xs = sorted(samples)
    if not xs:
        return math.nan
    return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)]
