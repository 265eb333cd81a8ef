"""The redactor of what the command line prints where it is kept as a log is (a batch
job's or a worker's output, its warnings): the default
:class:`~convoy.observability.Redactor`; without the ``pii`` extra (``phonenumbers``), the
kinds that need no package of their own, e-mail and IP addresses. Made for each use (a
command line prints few such lines; its patterns are compiled once by ``re``): whether
the extra is installed is asked each time, as a process that imports it later finds."""

from __future__ import annotations

from collections.abc import Callable

from convoy._errors import UserError


def printed_redactor() -> tuple[Callable[[str], str], bool]:
    """The redactor's function, and whether it finds every kind (the ``pii`` extra is
    installed)."""
    from convoy.observability import Redactor

    try:
        return Redactor().redact, True
    except UserError:
        return Redactor(kinds=("email", "ip")).redact, False


def redacted(text: str) -> str:
    """``text`` with the personal data :func:`printed_redactor` finds masked."""
    return printed_redactor()[0](text)
