"""Versioned shared state: namespaces of keys that sessions, tools and operators share,
with compare-and-set writes, per-key history and durable waits for a change.

``ctx.state(namespace, type=...)`` (workflow code and tools) and ``engine.state(...)``
return a :class:`State` handle; the store keeps the versions (``Store.state_*``).
"""

from convoy.state._handle import State
from convoy.state._values import StateVersion, Versioned

__all__ = ["State", "StateVersion", "Versioned"]
