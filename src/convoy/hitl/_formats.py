"""The string formats of the JSON schemas Pydantic writes, checked as Pydantic checks them.

An answer checked by its task's JSON schema alone (an inbox without the answer's type
loaded) is later checked by the session with the type itself: the two must agree, or an
answer is recorded that the session refuses (and the task reopens), or one is refused that
the session would take. jsonschema's own checks of these formats follow RFC 3339 and the
JSON Schema specification, which are stricter than Pydantic: they refuse a naive datetime
(which Pydantic writes for one), a time without seconds, a UUID without dashes; and those
of ``date-time``, ``time``, ``duration`` and ``uri`` need packages Convoy does not depend
on (without them, those formats go unchecked). So each format Pydantic writes for a type
is checked, through jsonschema's :class:`~jsonschema.FormatChecker`, by that type's own
validator, as the session validates an answer (Python mode, lax). ``email`` and
``name-email`` use jsonschema's own check (an ``@``: Pydantic's needs the
``email-validator`` extra, which this process may not have; the check refuses no address
Pydantic takes). Other formats are not checked: a path (``file-path`` names a file on the
session's machine, not this one), a password, bytes, a time zone (its database is the
session machine's).
"""

from __future__ import annotations

import datetime
import fractions
import ipaddress
import re
import uuid
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import (
    UUID1,
    UUID3,
    UUID4,
    UUID5,
    UUID6,
    UUID7,
    UUID8,
    AnyUrl,
    IPvAnyAddress,
    IPvAnyInterface,
    IPvAnyNetwork,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import MultiHostUrl

if TYPE_CHECKING:
    from collections.abc import Callable

    from jsonschema import FormatChecker

#: Each format Pydantic writes in a JSON schema, and a type it writes it for (``uri``:
#: ``AnyUrl``, which takes every URL its narrower types, ``HttpUrl`` say, take).
PYDANTIC_FORMATS: dict[str, Any] = {
    "date": datetime.date, "date-time": datetime.datetime, "time": datetime.time,
    "duration": datetime.timedelta,
    "uuid": uuid.UUID, "uuid1": UUID1, "uuid3": UUID3, "uuid4": UUID4, "uuid5": UUID5,
    "uuid6": UUID6, "uuid7": UUID7, "uuid8": UUID8,
    "uri": AnyUrl, "multi-host-uri": MultiHostUrl,
    "ipv4": ipaddress.IPv4Address, "ipv6": ipaddress.IPv6Address,
    "ipvanyaddress": IPvAnyAddress,
    "ipv4network": ipaddress.IPv4Network, "ipv6network": ipaddress.IPv6Network,
    "ipvanynetwork": IPvAnyNetwork,
    "ipv4interface": ipaddress.IPv4Interface, "ipv6interface": ipaddress.IPv6Interface,
    "ipvanyinterface": IPvAnyInterface,
    "fraction": fractions.Fraction, "regex": re.Pattern,
}


def _as(tp: Any) -> Callable[[object], bool]:
    """A format check by ``tp``'s validator: a string it refuses raises its
    ``ValidationError``; any other value is the schema's ``type`` rule's to judge."""
    adapter: TypeAdapter[Any] = TypeAdapter(tp)

    def conforms(instance: object) -> bool:
        if isinstance(instance, str):
            adapter.validate_python(instance)
        return True

    return conforms


@cache
def format_checker() -> FormatChecker:
    """The format checker of an answer's schema (see the module docstring)."""
    from jsonschema import FormatChecker

    checker = FormatChecker(formats=("email", "idn-email"))
    checker.checkers["name-email"] = checker.checkers["email"]
    for name, tp in PYDANTIC_FORMATS.items():
        checker.checks(name, raises=ValidationError)(_as(tp))
    return checker


__all__ = ["PYDANTIC_FORMATS", "format_checker"]
