"""Scopes: what a tool needs and what an agent (and a tenant) is granted.

A scope is a name such as ``"payments:refund"``: letters, digits and ``_ . : -``. A tool
declares the scopes it needs (``@convoy.tool(scopes=[...])``); an agent is granted scopes
(``Agent(scopes=[...])``); a grant covers a scope when it is that scope, ``"*"`` (every
scope), or a prefix ending in ``":*"`` (``"payments:*"`` covers ``"payments:refund"`` and
``"payments:refund:large"``, not ``"payments"``). A tenant may be capped
(``Engine(tenant_scopes={"acme": [...]})``): its sessions' agents then hold only the
scopes both their own grant and the tenant's cap cover.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from convoy._errors import UserError

_SCOPE = re.compile(r"[A-Za-z0-9_.-]+(?::[A-Za-z0-9_.-]+)*")
_GRANT = re.compile(r"\*|[A-Za-z0-9_.-]+(?::[A-Za-z0-9_.-]+)*(?::\*)?")


def check_scopes(scopes: Iterable[str] | str, owner: str) -> frozenset[str]:
    """The scopes a tool needs, validated (no wildcards)."""
    out = _names(scopes, owner)
    for s in out:
        if not _SCOPE.fullmatch(s):
            raise UserError(f"{owner}: invalid scope {s!r}: use letters, digits, '_', '.', "
                            "'-', with ':' between parts (e.g. 'payments:refund')")
    return out


def check_grants(grants: Iterable[str] | str, owner: str) -> frozenset[str]:
    """Scopes granted to an agent or a tenant, validated (``"*"`` and ``"x:*"`` allowed)."""
    out = _names(grants, owner)
    for s in out:
        if not _GRANT.fullmatch(s):
            raise UserError(f"{owner}: invalid scope grant {s!r}: a scope ('payments:refund'), "
                            "a prefix ending in ':*' ('payments:*'), or '*'")
    return out


def _names(values: Iterable[str] | str, owner: str) -> frozenset[str]:
    if isinstance(values, str):
        raise UserError(f"{owner}: scopes are a list of names, got the string {values!r} "
                        f"(write [{values!r}])")
    out = frozenset(values)
    for s in out:
        if not isinstance(s, str):
            raise UserError(f"{owner}: a scope is a string, got {s!r}")
    return out


def covers(grants: Collection[str], scope: str) -> bool:
    """Whether ``grants`` cover ``scope``."""
    if scope in grants or "*" in grants:
        return True
    parts = scope.split(":")
    return any(":".join(parts[:i]) + ":*" in grants for i in range(1, len(parts)))


def missing_scopes(needed: Collection[str], grants: Collection[str],
                   cap: Collection[str] | None = None) -> list[str]:
    """The scopes of ``needed`` that ``grants`` (within ``cap``, if any) do not cover,
    sorted."""
    return sorted(s for s in needed
                  if not covers(grants, s) or (cap is not None and not covers(cap, s)))


__all__ = ["check_grants", "check_scopes", "covers", "missing_scopes"]
