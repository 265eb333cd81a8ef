"""Tenant names, and the errors that must not tell one tenant about another."""

from __future__ import annotations

import re

from convoy._command import command
from convoy._errors import UserError
from convoy._text import blank, check_name, quoted

#: The tenant of sessions started without one (``engine.run(...)``, ``convoy run``).
DEFAULT_TENANT = "default"

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?")


def check_tenant(name: object) -> str:
    """``name`` if it is a valid tenant name, else :class:`~convoy.UserError`.

    A tenant name is 1 to 64 ASCII letters, digits, ``.``, ``_`` or ``-``, starting and
    ending with a letter or digit: no separators, spaces, control characters or wildcards
    that could pass for another name in a path, a key, a log line or a query. Names are
    case-sensitive (``Acme`` and ``acme`` are two tenants).
    """
    if name is DEFAULT_TENANT:  # the default argument itself (every run without a tenant)
        return DEFAULT_TENANT
    if not isinstance(name, str):
        raise UserError(f"a tenant name is a string, got {type(name).__name__}")
    if _NAME.fullmatch(name) is None:
        raise UserError(f"invalid tenant name {quoted(name)}: use 1 to 64 letters, digits, '.', "
                        "'_' or '-', starting and ending with a letter or digit (e.g. "
                        "'acme' or 'acme-eu')")
    return name


def check_session_id(session_id: object, param: str = "session_id", hint: str = "") -> str:
    """``session_id`` (the argument ``param``) if it can name a new session, else
    :class:`~convoy.UserError` naming ``param`` (then ``hint``): a string, not empty nor
    only spaces, without control characters or bidi overrides (it is shown in tables and
    logs, and copied into commands: see :mod:`convoy._text`)."""
    sid = lookup_id(session_id, param)
    if not sid.strip():
        raise empty_session_id(sid, param, hint)
    return check_name(sid, "session id")


def lookup_id(session_id: object, param: str = "session_id") -> str:
    """``session_id`` if it is a string, the one thing an id to look up must be (one an
    earlier release stored, empty or with a control character, can still be found)."""
    if not isinstance(session_id, str):
        raise UserError(f"{param} must be a session id (a string), got "
                        f"{type(session_id).__name__}")
    return session_id


def empty_session_id(session_id: str, param: str, hint: str = "") -> UserError:
    """The error for an empty (or blank) ``session_id`` given as ``param``."""
    return UserError(f"{param} is {blank(session_id)}: a session id names a session; pass "
                     f"one such as 'ticket-42'{hint}")


def no_session(session_id: str, store_url: str, tenant: str | None,
               param: str = "session_id") -> UserError:
    """The error for a session id (the argument ``param``) the store does not have: an
    empty one is said to be empty, any other is :func:`unknown_session`."""
    if not session_id.strip():
        return empty_session_id(session_id, param)
    return unknown_session(session_id, store_url, tenant)


def unknown_session(session_id: str, store_url: str, tenant: str | None) -> UserError:
    """The one error for a session id that does not exist, or belongs to another tenant
    than ``tenant``: the same words either way, so it tells nothing about other tenants."""
    where = f" of tenant {tenant!r}" if tenant is not None else ""
    listed = command("sessions list", db=store_url, tenant=tenant, all_tenants=tenant is None)
    return UserError(f"no session {quoted(session_id)}{where} in {store_url}; {listed} shows "
                     "the ids")


def taken_session(session_id: str) -> UserError:
    """A session id chosen for a new session that another tenant's session already has
    (ids are unique in a store)."""
    return UserError(f"session id {quoted(session_id)} is already used by a session of another "
                     "tenant; session ids are unique in a store: pick another id (for "
                     "example prefixed with the tenant)")


__all__ = ["DEFAULT_TENANT", "check_session_id", "check_tenant", "empty_session_id", "lookup_id",
           "no_session", "taken_session", "unknown_session"]
