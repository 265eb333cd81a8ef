"""What the SQLite and PostgreSQL stores build their statements from alike: journal row
parameters, the journal's write order, session-list filters (only the placeholder
differs), and what a summary of the store counts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from convoy.stores._protocol import SessionFilter


def next_seq(last: int, now: float) -> int:
    """The journal write order after ``last``: strictly increasing in this process, close
    to time order across processes (a session is written by one engine at a time)."""
    t = int(now * 1e6)
    return t if t > last else last + 1


def conditions(status: str | None, workflow: str | None, tenant: str | None, *,
               mark: str = "?") -> tuple[str, list[Any]]:
    """A ``WHERE`` clause (or nothing) for the given filters, and its parameters."""
    where, params = [], []
    for col, value in (("status", status), ("workflow", workflow), ("tenant", tenant)):
        if value is not None:
            where.append(f"{col}={mark}")
            params.append(value)
    return (" WHERE " + " AND ".join(where)) if where else "", params


def session_page(where: SessionFilter, *, mark: str = "?") -> tuple[str, list[Any]]:
    """The ``WHERE`` clause (or nothing) of a :class:`SessionFilter`, keyset paging
    (``after``) included, and its parameters."""
    cond, params = conditions(where.status, where.workflow, where.tenant, mark=mark)
    if where.after is not None:
        created, sid = where.after
        cond += (" AND " if cond else " WHERE ") + \
            f"(created > {mark} OR (created = {mark} AND id > {mark}))"
        params += [created, created, sid]
    return cond, params


#: Journal entries, keys of shared state, and tenants (with a session or a state key).
SUMMARY = ("SELECT (SELECT COUNT(*) FROM journal), (SELECT COUNT(*) FROM state), "
           "(SELECT COUNT(*) FROM (SELECT tenant FROM sessions UNION SELECT tenant FROM state)"
           " t)")
