"""Structured logs: JSON lines through the standard :mod:`logging` module.

Every record carries the tenant, session, agent, step key, trace id and span id of the
step it was logged in (your tools' records too), read from the span
:class:`~convoy.observability.Tracing` keeps current, and every string in it goes through
a :class:`~convoy.observability.Redactor` first. :class:`LogEvents` logs what Convoy does
(a session run starting and ending, a step failing) on the ``convoy`` logger.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from convoy._errors import ApprovalRequired, UserError
from convoy._numbers import is_whole
from convoy.interceptors._base import (
    EffectInput,
    HandoffInput,
    Interceptor,
    ModelCallInput,
    Next,
    SessionEnd,
    SessionInput,
    Stage,
    StateInput,
    ToolCallInput,
)
from convoy.models._messages import ModelResponse
from convoy.observability._redact import Redactor
from convoy.observability._scrub import scrub, scrub_item, text_of, unique_key
from convoy.observability._spans import CURRENT, UNTRACED, Holds, holds_of
from convoy.privacy._withheld import WITHHELD, SessionText
from convoy.resilience._classify import error_kind, error_kind_of

if TYPE_CHECKING:
    from convoy.engine._engine import Engine

#: Attributes every ``logging.LogRecord`` has: the rest are a call's ``extra=...``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | \
    {"message", "asctime"}  # (set on the record by a formatter that ran before this one)
logger = logging.getLogger("convoy")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: ``time``, ``level``, ``logger``, ``message``,
    ``tenant``, ``session_id``, ``agent``, ``step_key``, ``trace_id``, ``span_id`` (``null``
    outside a session), the call's ``extra`` fields, and ``exception``. Strings are
    redacted (``redact=False``: not)."""

    def __init__(self, *, redact: Redactor | bool = True) -> None:
        super().__init__()
        redactor = Redactor() if redact is True else redact if isinstance(redact, Redactor) \
            else None
        self.redact: Callable[[str], str] = redactor.redact if redactor else _same

    def format(self, record: logging.LogRecord) -> str:
        r = self.redact
        span = CURRENT.get()
        run = span.run if span is not None else None
        tenant, session_id = (run.tenant, run.session_id) if run is not None else \
            UNTRACED.get() or (None, None)
        message, fits = _message(record)
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name,
            "message": r(message),
            "tenant": r(tenant) if tenant is not None else None,
            "session_id": r(session_id) if session_id is not None else None,
            "agent": span.agent if span is not None else None,
            "step_key": (span.key or None) if span is not None else None,
            "trace_id": span.trace_id if span is not None else None,
            "span_id": span.span_id if span is not None else None,
        }
        if not fits:  # (its arguments, redacted: the message could not hold them)
            out["args"] = scrub(record.args, r)
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                # (the key redacted too, as nested keys are; two that redact alike, or one
                # named as a field above, ``tenant``, are both kept: ``tenant (2)``)
                out[unique_key(r(key), out)] = scrub_item(key, value, r)
        if record.exc_info:
            out["exception"] = r(self.formatException(record.exc_info))
        if record.stack_info:
            out["stack"] = r(self.formatStack(record.stack_info))
        try:
            return json.dumps(out, default=str, allow_nan=False)
        except ValueError:  # a float JSON has no number for (NaN, an infinity): its text
            return json.dumps(_finite(out), default=str)


def _message(record: logging.LogRecord) -> tuple[str, bool]:
    """The record's message; one whose arguments do not fit its format (``log.info("%s
    %s", one)``) is its format as it is, saying what did not fit (its arguments are
    written redacted beside it: ``logging``'s own report of the error would print them on
    stderr as they are)."""
    try:
        return record.getMessage(), True
    except Exception as e:  # (any: %-formatting raises several kinds)
        return (f"{text_of(record.msg)} (its arguments did not fit the message: "
                f"{type(e).__name__}: {text_of(e)})"), False


def _finite(value: Any) -> Any:
    """``value`` with every float JSON cannot write (NaN, an infinity) as its text
    (``"nan"``, ``"inf"``, ``"-inf"``)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def json_logging(level: int | str = logging.INFO, *, stream: IO[str] | None = None,
                 logger_name: str | None = None, redact: Redactor | bool = True,
                 ) -> logging.Handler:
    """Send log records (of ``logger_name``; default: the root logger) to ``stream``
    (default: ``sys.stderr``, as it is when a record is written) as JSON lines; returns
    the handler (remove it to stop). Called again for the same logger and stream, it
    replaces the handler it added there (each record is written once), with the new
    level and redaction."""
    # (checked before anything is installed: a call that fails leaves no handler behind)
    known = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not is_whole(known):
        raise UserError(f"json_logging: unknown level {level!r:.40}; use DEBUG, INFO, "
                        "WARNING, ERROR, CRITICAL or a number")
    if stream is not None and not callable(getattr(stream, "write", None)):
        raise UserError(f"json_logging: stream={stream!r:.40} is not a text stream (it has "
                        "no write())")
    target = logging.getLogger(logger_name)
    out = stream if stream is not None else sys.stderr
    for old in list(target.handlers):  # (one writing to this stream, as it is now too)
        if isinstance(old, _JsonHandler) and (old.stream is out or (
                stream is None and isinstance(old, _StderrJsonHandler))):
            target.removeHandler(old)
    handler = _StderrJsonHandler() if stream is None else _JsonHandler(stream)
    handler.setFormatter(JsonFormatter(redact=redact))
    target.addHandler(handler)
    target.setLevel(known)
    return handler


class _JsonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`json_logging` adds (what it replaces when called again)."""


class _StderrJsonHandler(_JsonHandler):
    """:func:`json_logging`'s handler of no stream given: it writes to ``sys.stderr`` as
    it is when a record is written (the standard library's last-resort handler does the
    same), so a redirect or a test runner's capture made after the call is followed, and
    a later call without a stream replaces it whatever ``sys.stderr`` is by then."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr


class LogEvents(Interceptor):
    """Logs on the ``convoy`` logger: each session run's start (debug) and end (info; a
    warning when it did not complete), and each step that failed (warning), with its kind
    of error (a tool call that waits for a person's approval: info). Put it after
    :class:`~convoy.observability.Tracing` (same stage, later in the list) so the records
    carry the span's ids."""

    stage: Stage = "trace"
    #: Whether a session's run holds a data subject's data (an engine with a master key).
    _holds: Holds | None = None

    async def start(self, engine: Engine) -> None:
        self._holds = holds_of(engine.store)

    def _withheld(self, session_id: str, subject: str | None) -> bool:
        """Whether a message of this session's may quote a data subject's data: one of a
        subject's session, or of a session that read a subject's data (shared state)."""
        holds = self._holds
        return subject is not None or (holds is not None and holds(session_id))

    async def session_run(self, input: SessionInput,
                          next: Next[SessionInput, SessionEnd]) -> SessionEnd:
        info = input.info
        logger.debug("session run started", extra={"workflow": info.workflow,
                                                   "resumed": info.resumed})
        end = await next(input)
        if end.status in ("completed", "waiting"):
            logger.info("session run ended %s", end.status,
                        extra={"workflow": info.workflow, "status": end.status})
        else:
            err = end.error or {}
            logger.warning("session run ended %s: %s", end.status,
                           WITHHELD if self._withheld(info.session_id, info.subject)
                           else SessionText(err.get("message", "")),
                           extra={"workflow": info.workflow, "status": end.status,
                                  "error_kind": error_kind_of(err),
                                  "error_type": str(err.get("type") or "unknown")})
        return end

    async def _step(self, what: str, next: Next[Any, Any], input: Any) -> Any:
        try:
            return await next(input)
        except ApprovalRequired as e:  # (it waits for a person: no failure)
            logger.info("%s waits for a person's approval", what,
                        extra={"error_kind": error_kind(e)})
            raise
        except Exception as e:
            session = getattr(input, "session", None)
            withheld = session is not None and self._withheld(session.id, session.subject)
            said = WITHHELD if withheld else SessionText(str(e))
            logger.warning("%s failed: %s", what, said,
                           extra={"error_kind": error_kind(e),
                                  "error_type": type(e).__name__})
            raise

    def model_call(self, input: ModelCallInput,
                   next: Next[ModelCallInput, ModelResponse]) -> Any:
        return self._step(f"model call to {input.model.name}", next, input)

    def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        return self._step(f"tool {input.tool.name}", next, input)

    def handoff(self, input: HandoffInput, next: Next[HandoffInput, Any]) -> Any:
        return self._step(f"handoff to {input.target.name}", next, input)

    def effect(self, input: EffectInput, next: Next[EffectInput, Any]) -> Any:
        return self._step(f"step {input.name}", next, input)

    def state_op(self, input: StateInput, next: Next[StateInput, Any]) -> Any:
        return self._step(f"state {input.op} {input.namespace}", next, input)


def _same(text: str) -> str:
    return text


__all__ = ["JsonFormatter", "LogEvents", "json_logging"]
