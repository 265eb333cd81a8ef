"""Stores: everything Convoy persists, behind one protocol (:class:`Store`).

``SQLiteStore`` is the zero-setup default (one file, WAL, group commit).
"""

from convoy.stores._protocol import (
    RUNNABLE,
    SCHEMA_VERSION,
    STATUSES,
    UNFINISHED,
    Hold,
    Level,
    NewSession,
    Reservation,
    SessionFilter,
    SessionOutcome,
    SessionRow,
    SessionStatus,
    Signal,
    Spend,
    StepRecord,
    Store,
)
from convoy.stores._sqlite import SQLiteStore

__all__ = ["RUNNABLE", "SCHEMA_VERSION", "STATUSES", "UNFINISHED", "Hold", "Level",
           "NewSession", "Reservation", "SQLiteStore", "SessionFilter", "SessionOutcome",
           "SessionRow", "SessionStatus", "Signal", "Spend", "StepRecord", "Store"]
