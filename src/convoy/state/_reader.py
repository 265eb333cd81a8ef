"""Which session a shared-state operation runs for, while it runs.

The store's state methods take no session (a read is the same for every reader), but a
store that seals personal data must know who read a data subject's value: that session's
journal then holds the subject's data too (see :mod:`convoy.privacy._sealed_store`).
:func:`~convoy.state._access.run_state_op` sets it around each operation of a session.
"""

from __future__ import annotations

from contextvars import ContextVar

#: The id of the session whose state operation is running, else ``None``.
STATE_READER: ContextVar[str | None] = ContextVar("convoy_state_reader", default=None)

__all__ = ["STATE_READER"]
