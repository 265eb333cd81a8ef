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
