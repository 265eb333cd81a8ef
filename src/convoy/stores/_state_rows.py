"""The shared-state row converter of the SQLite and PostgreSQL stores: a row edited by hand
(a version that is not a whole number, a value that is not text, not JSON, holds NaN, or
nests past what can be read) is a one-line :class:`~convoy.JournalError` naming the key,
wherever the value is read: a command, a session's ``ctx.state``, the inbox."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from convoy.stores._protocol import StateEntry
from convoy.stores._rows import RowCheck, row_name, stored_json

#: The columns of a state row (``state`` and ``state_history`` alike), in this order.
STATE_COLS = "tenant,namespace,key,version,value,session_id,agent,step_key,at"

_CHECKS = RowCheck(((8, "at"),), ((3, "version"),),
                   ((0, "tenant"), (1, "namespace"), (2, "key"), (4, "value"),
                    (5, "session_id"), (6, "agent"), (7, "step_key")))


def _named(r: Sequence[Any]) -> str:
    """``state 'customer:42' key 'account' version 3`` (the version if it is one)."""
    version = f" version {r[3]}" if type(r[3]) is int else ""
    return f"state {row_name(r[1])} key {row_name(r[2])}{version}"


def state_entry(r: Sequence[Any]) -> StateEntry:
    """A state row read back, checked (its value decodes as JSON Convoy writes)."""
    _CHECKS(r, lambda: _named(r))
    stored_json(r[4], _named(r), "value", strict=True)
    return StateEntry(tenant=r[0], namespace=r[1], key=r[2], version=int(r[3]), value=r[4],
                      session_id=r[5], agent=r[6], step_key=r[7], at=r[8])
