"""The observability interceptors, assembled."""

from __future__ import annotations

from convoy.interceptors._base import Interceptor
from convoy.observability._tracing import Tracing


def observe(tracing: Tracing | None = None) -> list[Interceptor]:
    """Interceptors for ``Engine(interceptors=...)`` (or ``protections(before=...)``):
    ``tracing`` with its per-attempt spans."""
    chain: list[Interceptor] = []
    if tracing is not None:
        chain += [tracing, tracing.attempts]
    return chain
