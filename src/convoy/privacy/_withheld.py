"""What Convoy writes outside the store (spans, log lines, a worker's warnings) instead of
an error's message in a data subject's session, and how a log record marks the text it
quotes from a session."""

from __future__ import annotations

import logging
import sys

#: Said instead of an error's message in a data subject's session: the message may quote
#: the subject's data (a tool's exception naming a person), which no redactor finds, and
#: nothing written outside the store can be erased. The error's type and kind stay; the
#: message stays in the session's journal, sealed.
WITHHELD = "(message withheld: a data subject's session)"


def withheld(e: BaseException) -> str:
    """``e`` named without its message: its type and :data:`WITHHELD`."""
    return f"{type(e).__name__} {WITHHELD}"


class SessionText(str):
    """Text a log record quotes from a session (an error's message, which may hold a
    person's data), as an argument of the record: the command line's warning lines redact
    it, not Convoy's own text beside it (a store's URL, a webhook's host, a store error's
    message), which the operator needs as it is."""

    __slots__ = ()



def log_raised(logger: logging.Logger, message: str, *args: object,
               of_subject: bool) -> None:
    """In an ``except`` block: ``logger.exception(message, *args)``, the traceback with the
    error's message; in a data subject's session (``of_subject``), the error's type alone
    and no traceback (its message, and the values a traceback shows, may quote the
    subject's data)."""
    if not of_subject:
        logger.exception(message, *args)
        return
    error = sys.exc_info()[1]
    logger.error(message + ": %s", *args,
                 withheld(error) if error is not None else WITHHELD)
