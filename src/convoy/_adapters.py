"""Pydantic adapters for the types user code names (``ctx.state(type=...)``,
``ctx.wait_for(name, type)``, ``ctx.ask_human(prompt, type)``), built once per type.

Building a ``TypeAdapter`` (and its JSON schema) costs far more than using one, and
thousands of sessions ask for the same few types: a session that built its own would
spend the time and, while thousands run at once, the memory.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import TypeAdapter


@lru_cache(maxsize=512)
def _cached(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


def adapter_for(tp: Any) -> TypeAdapter[Any]:
    """The adapter of ``tp``, shared (a type that cannot be hashed gets its own)."""
    try:
        return _cached(tp)
    except TypeError:
        return TypeAdapter(tp)


@lru_cache(maxsize=512)
def _schema(tp: Any) -> dict[str, Any]:
    return _cached(tp).json_schema()


def schema_for(tp: Any) -> dict[str, Any]:
    """The JSON schema of ``tp`` (shared: do not change it)."""
    try:
        return _schema(tp)
    except TypeError:
        return TypeAdapter(tp).json_schema()


__all__ = ["adapter_for", "schema_for"]
