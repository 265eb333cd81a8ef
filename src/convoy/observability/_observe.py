"""The observability interceptors, assembled."""

from __future__ import annotations

from convoy.interceptors._base import Interceptor
from convoy.observability._metrics import Metrics
from convoy.observability._tracing import Tracing


def observe(tracing: Tracing | None = None, metrics: Metrics | None = None,
            ) -> list[Interceptor]:
    """Interceptors for ``Engine(interceptors=...)`` (or ``protections(before=...)``):
    ``tracing`` and ``metrics`` (stage ``trace``) with their per-attempt parts (stage
    ``attempt``, inside ``retry``). Nothing when both are ``None``."""
    chain: list[Interceptor] = []
    if tracing is not None:
        chain += [tracing, tracing.attempts]
    if metrics is not None:
        chain += [metrics, metrics.attempts]
    return chain
