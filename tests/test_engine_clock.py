"""A store's clock reads seconds since the epoch: an engine refuses, when it opens, one that
reads past the year 9999 (a clock in milliseconds), in one error, before it writes a row
no command can show."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import convoy
from convoy.stores import SQLiteStore


async def test_an_engine_refuses_a_clock_in_milliseconds(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "ms.db", clock=lambda: time.time() * 1000)
    engine = convoy.Engine(store)
    with pytest.raises(convoy.UserError, match=r"clock reads .* past the year 9999.*"
                                                r"seconds since the epoch.*milliseconds"):
        await engine.open()
    await engine.aclose()


async def test_an_engine_opens_with_a_clock_in_seconds(tmp_path: Path) -> None:
    async with convoy.Engine(SQLiteStore(tmp_path / "s.db", clock=lambda: 1_000_000.0)):
        pass
