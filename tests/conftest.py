from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import BaseModel

import convoy


class Ticket(BaseModel):
    text: str


class Classification(BaseModel):
    label: str
    confidence: float


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "convoy.db"


@pytest.fixture
async def engine_factory(db: Path) -> AsyncIterator[object]:
    engines: list[convoy.Engine] = []

    def make(**kw: object) -> convoy.Engine:
        e = convoy.Engine(kw.pop("db", db), **kw)  # type: ignore[arg-type]
        engines.append(e)
        return e

    yield make
    for e in engines:
        await e.aclose()


class Crash(BaseException):
    """Raised from inside a step to stop a session the way a crash of the process would:
    nothing catches it, so the session stays running and owned, with whatever the journal
    held at that moment. (``BaseException``: the engine must not turn it into an outcome.)"""


def later_engine(db: Path, seconds: float = 3600.0, **kw: object) -> convoy.Engine:
    """An engine on the same store whose clock is ``seconds`` ahead, so the leases of the
    engine that "crashed" have expired and it takes their sessions over."""
    import time

    from convoy.stores import SQLiteStore

    store = SQLiteStore(db, clock=lambda: time.time() + seconds)
    return convoy.Engine(store, **kw)  # type: ignore[arg-type]


class FakeClock:
    """A wall clock tests move by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
