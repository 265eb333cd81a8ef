"""Stores: everything Convoy persists, behind one protocol (:class:`Store`).

``SQLiteStore`` is the zero-setup default (one file, WAL, group commit); ``PostgresStore``
(the ``postgres`` extra) lets several engine processes share one PostgreSQL database.
:func:`store_from_url` picks one by URL: a path, ``sqlite:///PATH`` or ``postgresql://...``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from convoy.stores._protocol import (
    AUDIT_CURSORS,
    DAMAGED,
    RUNNABLE,
    SCHEMA_VERSION,
    STATUSES,
    UNFINISHED,
    WAIT_NAMES_SEP,
    AlertDelivery,
    AlertRow,
    AuditRow,
    AuditSeal,
    DeliveryRow,
    DeliveryStatus,
    Erasure,
    FiredAlert,
    Hold,
    Level,
    NewAlert,
    NewSession,
    Reservation,
    SessionFilter,
    SessionOutcome,
    SessionRow,
    SessionStatus,
    Signal,
    Spend,
    StateEntry,
    StateWrite,
    StateWriteResult,
    StepRecord,
    Store,
    StoreSummary,
)
from convoy.stores._rows import LeftOut
from convoy.stores._sqlite import SQLiteStore
from convoy.stores._subjects_sql import SubjectKeyGone
from convoy.stores._url import DEFAULT_STORE, default_store_url, is_postgres_url, store_from_url

if TYPE_CHECKING:
    from convoy.stores._postgres import PostgresStore


def __getattr__(name: str) -> Any:
    # PostgresStore needs psycopg (an optional dependency): imported on first use.
    if name == "PostgresStore":
        try:
            from convoy.stores._postgres import PostgresStore
        except ImportError as e:
            raise ImportError(f"convoy.stores.PostgresStore needs psycopg 3 and psycopg_pool "
                              f"({e}); install them with: pip install 'convoy[postgres]'"
                              ) from None
        return PostgresStore
    raise AttributeError(f"module 'convoy.stores' has no attribute {name!r}")


__all__ = [
    "AUDIT_CURSORS",
    "DAMAGED",
    "DEFAULT_STORE",
    "RUNNABLE",
    "SCHEMA_VERSION",
    "STATUSES",
    "UNFINISHED",
    "WAIT_NAMES_SEP",
    "AlertDelivery",
    "AlertRow",
    "AuditRow",
    "AuditSeal",
    "DeliveryRow",
    "DeliveryStatus",
    "Erasure",
    "FiredAlert",
    "Hold",
    "LeftOut",
    "Level",
    "NewAlert",
    "NewSession",
    "PostgresStore",
    "Reservation",
    "SQLiteStore",
    "SessionFilter",
    "SessionOutcome",
    "SessionRow",
    "SessionStatus",
    "Signal",
    "Spend",
    "StateEntry",
    "StateWrite",
    "StateWriteResult",
    "StepRecord",
    "Store",
    "StoreSummary",
    "SubjectKeyGone",
    "default_store_url",
    "is_postgres_url",
    "store_from_url",
]
