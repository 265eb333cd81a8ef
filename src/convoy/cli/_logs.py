"""``--log-format json`` (or ``$CONVOY_LOG_FORMAT``) for the commands that run sessions
(``run``, ``resume``, ``retry``, ``worker``): the ``convoy`` logger's records reach stderr
as JSON lines (:class:`~convoy.observability.JsonFormatter`: tenant, session, agent, step
key, trace and span ids on every record, strings redacted), from ``info`` up, and the
sessions' runs and failed steps are logged (:class:`~convoy.observability.LogEvents`),
as ``observe(..., logs=True)`` does in an application's engine.

Every record of a session carries its ids because its spans are recorded as it runs:
``--trace`` decides where they go (``store``: live spans kept for ``convoy trace``);
without it they go nowhere (a session's live spans the store keeps are then not continued
by this command: add ``--trace store``). An application whose interceptors trace
(``--interceptors``) gives the records its own spans (recorded live); one that logs
already (a ``LogEvents`` among them) is not logged twice.

``text`` (the default) is what every command does: the ``convoy`` logger's warnings, one
``warning: ...`` line each. The command's own output (its summary, the worker's line per
run, its one-line errors) is text either way, on stdout and stderr as before.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from convoy import Engine, Interceptor
from convoy.cli._common import fail

LOG_FORMAT_ENV = "CONVOY_LOG_FORMAT"
FORMATS = ("text", "json")

LogFormatOption = Annotated[str, typer.Option(
    "--log-format", envvar=LOG_FORMAT_ENV, show_envvar=True, metavar="text|json",
    help="'json': the convoy logger's records (each session run's end, each failed step, "
         "warnings) go to stderr as JSON lines with tenant, session, agent, step key, "
         "trace and span ids, personal data redacted. 'text' (default): warnings only, one "
         "line each.")]


def log_chain(log_format: str, traced: list[Interceptor],
              app: list[Interceptor]) -> list[Interceptor]:
    """What ``--log-format`` adds to a command's chain (``traced``: what ``--trace``
    asked for; ``app``: the application's interceptors)."""
    if log_format not in FORMATS:
        fail(f"--log-format: unknown format {log_format!r}; use 'text' or 'json' (or set "
             f"${LOG_FORMAT_ENV})")
    if log_format == "text":
        return []
    from convoy.observability import LogEvents, Tracing, observe

    if any(isinstance(ic, LogEvents) for ic in app):
        return [JsonLines()]
    tracer = next((ic for ic in [*traced, *app] if isinstance(ic, Tracing)), None)
    if tracer is None:
        return [JsonLines(), *observe(logs=True)]  # (live spans that go nowhere: the ids)
    if tracer.live is None:
        tracer.live = True  # (as ``observe(tracing, logs=True)`` does)
    return [JsonLines(), LogEvents()]


class JsonLines(Interceptor):
    """The ``convoy`` logger's records, from ``info`` up, to stderr as JSON lines while
    the engine is open (no hook: nothing on a session's path)."""

    stage = "trace"

    def __init__(self) -> None:
        self._handler: logging.Handler | None = None
        self._level = logging.NOTSET

    async def start(self, engine: Engine) -> None:
        from convoy.observability import JsonFormatter

        logger = logging.getLogger("convoy")
        handler = self._handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        self._level = logger.level
        logger.addHandler(handler)  # (the command's one-line warnings step aside for it)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)

    async def close(self) -> None:
        if self._handler is not None:
            logger = logging.getLogger("convoy")
            logger.removeHandler(self._handler)
            logger.setLevel(self._level)
            self._handler = None
