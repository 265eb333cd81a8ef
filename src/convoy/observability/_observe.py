"""The observability interceptors, assembled."""

from __future__ import annotations

from convoy._errors import UserError
from convoy._text import a_word
from convoy.interceptors._base import Interceptor
from convoy.observability._logging import LogEvents
from convoy.observability._metrics import Metrics
from convoy.observability._tracing import Tracing


def observe(tracing: Tracing | None = None, metrics: Metrics | None = None, *,
            logs: bool = False) -> list[Interceptor]:
    """Interceptors for ``Engine(interceptors=...)`` (or ``protections(before=...)``):
    ``tracing`` and ``metrics`` (stage ``trace``) with their per-attempt parts (stage
    ``attempt``, inside ``retry``), and with ``logs`` :class:`LogEvents` (and, without
    ``tracing``, a ``Tracing(exporters=())`` that exports nothing but gives every log
    record its session, agent, step and ids). Nothing when all are off.

    Given both, a ``tracing`` that records spans as sessions run records ``metrics`` too
    (:attr:`Tracing.metrics`), so a step passes one hook for both, not two; ``metrics``
    itself is then not in the list (do not add it: its steps would be counted twice).
    One whose spans are derived when read (:attr:`Tracing.derived`) has no step hooks
    (only per-attempt ones, which the chains skip where nothing retries): ``metrics`` are
    then in the list with their own. ``logs`` need live spans (a log
    record carries its step's span): a ``tracing`` that decides by its exporters
    (``live=None``) records them live."""
    _check_arguments(tracing, metrics)
    chain: list[Interceptor] = []
    if tracing is None and logs:
        tracing = Tracing(exporters=())
    if tracing is not None and logs and tracing.live is None:
        tracing.live = True
    if tracing is not None:
        if tracing.derived:
            tracing.metrics = None
            # (a person's decisions; the attempts of a retried step)
            chain += [tracing, tracing.attempts]
        else:
            tracing.metrics = metrics
            chain += [tracing, tracing.attempts]
    if logs:
        chain.append(LogEvents())
    if metrics is not None and (tracing is None or tracing.derived):
        chain += [metrics, metrics.attempts]
    return chain


def _check_arguments(tracing: object, metrics: object) -> None:
    """Misuse said in one line (``observe(metrics)`` failed deep inside, with an
    AttributeError: 'Metrics' object has no attribute 'derived')."""
    if isinstance(tracing, Metrics):
        raise UserError("observe() got a Metrics as its tracing: pass it as "
                        "observe(metrics=...)")
    if tracing is not None and not isinstance(tracing, Tracing):
        raise UserError(f"observe(tracing=...) is {a_word(type(tracing).__name__)}, not a "
                        "Tracing")
    if metrics is not None and not isinstance(metrics, Metrics):
        raise UserError(f"observe(metrics=...) is {a_word(type(metrics).__name__)}, not a "
                        "Metrics")
