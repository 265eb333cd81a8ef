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

The ``convoy`` logger's records are these lines only while the engine is open: they do not
also reach handlers of the application's own (a root handler its module set up).

``text`` (the default) is what every command does: the ``convoy`` logger's warnings, one
``warning: ...`` line each. The command's own output is text either way: on stdout its
summary and the worker's line per run; on stderr its banner, progress, waiting and
stopping notices and one-line errors (and ``--trace console``'s spans).
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from convoy import Engine, Interceptor
from convoy.cli._common import fail, option_source

LOG_FORMAT_ENV = "CONVOY_LOG_FORMAT"
FORMATS = ("text", "json")

def _format(ctx: typer.Context, param: typer.CallbackParam, value: str) -> str:
    """The format, in lower case; one line and exit 2 for another (naming the option or
    the variable the value came from)."""
    chosen = value.strip().lower()
    if chosen not in FORMATS:
        fail(f"{option_source(ctx, param, LOG_FORMAT_ENV)}: unknown log format {value!r}; "
             "use 'text' or 'json'")
    return chosen


LogFormatOption = Annotated[str, typer.Option(
    "--log-format", envvar=LOG_FORMAT_ENV, show_envvar=True, metavar="text|json",
    callback=_format,
    help="'json': the convoy logger's records (each session run's end, each failed step, "
         "warnings) go to stderr as JSON lines with tenant, session, agent, step key, "
         "trace and span ids, personal data redacted. 'text' (default): warnings only, one "
         "line each.")]


def log_chain(log_format: str, traced: list[Interceptor],
              app: list[Interceptor]) -> list[Interceptor]:
    """What ``--log-format`` adds to a command's chain (``traced``: what ``--trace``
    asked for; ``app``: the application's interceptors)."""
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
        self._propagate = True

    async def start(self, engine: Engine) -> None:
        from convoy.observability import JsonFormatter

        logger = logging.getLogger("convoy")
        handler = self._handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        self._level, self._propagate = logger.level, logger.propagate
        logger.addHandler(handler)  # (the command's one-line warnings step aside for it)
        # The records are these lines only: not also the application's own handlers' (a
        # root handler its module set up: a line of text each, unredacted).
        logger.propagate = False
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)

    async def close(self) -> None:
        if self._handler is not None:
            logger = logging.getLogger("convoy")
            logger.removeHandler(self._handler)
            logger.setLevel(self._level)
            logger.propagate = self._propagate
            self._handler = None
