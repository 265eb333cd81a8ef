"""What reads of shared state return: a value with its version, and history entries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True, frozen=True, kw_only=True)
class Versioned(Generic[T]):
    """A value of shared state and its version: write it back with
    ``expected_version=version``. Version 0 means the key does not exist (yet)."""

    value: T
    version: int

    @property
    def exists(self) -> bool:
        """Whether the key has been written."""
        return self.version > 0


@dataclass(slots=True, frozen=True, kw_only=True)
class StateVersion(Versioned[T]):
    """One version in a key's history, with its writer: the session, agent and step that
    wrote it (``None`` for a write from outside any session), and when (epoch seconds)."""

    session_id: str | None = None
    agent: str | None = None
    step_key: str | None = None
    at: float = 0.0


__all__ = ["StateVersion", "Versioned"]
