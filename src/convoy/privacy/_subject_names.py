"""What names a data subject: a short non-empty name, best an opaque one (a customer
number), since the name itself is stored as given, so that erasure and export find the
subject's sessions and key."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import TYPE_CHECKING

from convoy._errors import UserError
from convoy._text import check_name

if TYPE_CHECKING:
    from convoy.observability._redact import Redactor

log = logging.getLogger("convoy.privacy")

#: The kinds of personal data a subject's name was warned of in this process (each once).
_WARNED: set[str] = set()
_NAMED = {"email": "an e-mail address", "phone": "a phone number", "card": "a card number",
          "iban": "an IBAN", "ip": "an IP address"}


def check_subject(subject: object) -> str:
    """``subject`` if it can name a data subject; raises :class:`UserError` if not. A name
    holding personal data (an e-mail address) is warned of, once a process and kind,
    without the name: it is kept as given in the store (the sessions' rows, the key's,
    the map of the key's labels), which an erasure deletes, but a PostgreSQL server's WAL
    keeps it until the server recycles it, and backups keep it."""
    if not isinstance(subject, str) or not subject.strip() or len(subject) > 256:
        raise UserError(f"a subject is a non-empty name of at most 256 characters, got "
                        f"{subject!r}")
    check_name(subject, "data subject name")  # (as a session id, a tenant: printable)
    kind = _personal_kind(subject)
    if kind is not None and kind not in _WARNED:
        _WARNED.add(kind)
        log.warning("a data subject is named by %s: the name is stored as given, so that "
                    "erasure and export find the subject, and after an erasure a "
                    "PostgreSQL server's WAL and your backups keep it until they are "
                    "recycled; name subjects by an opaque id of yours (a customer number)",
                    _NAMED[kind])
    return subject


@lru_cache(maxsize=1024)
def _personal_kind(name: str) -> str | None:
    """The kind of the first piece of personal data the default redactor finds in
    ``name`` (without the ``pii`` extra: e-mail and IP addresses), or ``None``."""
    found = _redactor().find(name)
    return found[0].kind if found else None


@lru_cache(maxsize=1)
def _redactor() -> Redactor:
    from convoy.observability._redact import Redactor

    try:
        return Redactor(memo=0)
    except UserError:
        return Redactor(kinds=("email", "ip"), memo=0)
