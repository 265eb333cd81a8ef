"""A new key written while a purge that deletes it whole runs (PostgreSQL: SQLite runs
them one after the other): the write, by a store object that saw no purge, waits for the
key's lock the purge holds, then finds the floor the purge raised as it committed and
writes past it (a review of the state floor)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import convoy.stores._postgres_subjects as pg_subjects
from convoy.stores import NewSession, StateWrite, store_from_url
from tests import pg_cluster

from .conftest import store_db


def _write(value: str, expected: int, session: str | None) -> StateWrite:
    return StateWrite(tenant="t1", namespace="ns", key="doc", value=json.dumps(value),
                      expected_version=expected, session_id=session,
                      step_key=None if session is None else f"s/{expected}")


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    for where in store_db("postgres", tmp_path):
        yield str(where)


async def test_a_new_key_written_as_a_purge_deletes_it_starts_past_its_floor(
        url: str, monkeypatch: Any) -> None:
    purger = store_from_url(url)
    await purger.open()
    try:
        await purger.create_sessions([NewSession(id="gone", workflow="w", version="1",
                                                 tenant="t1", input="{}")])
        for n in range(3):
            assert (await purger.state_put(_write(str(n), n, "gone"))).written
        outcome: dict[str, Any] = {}

        def write_again() -> None:
            async def write() -> None:
                other = store_from_url(url)  # (its floor: 0, as it last saw it)
                await other.open()
                try:
                    outcome["put"] = await other.state_put(_write("new", 0, None))
                finally:
                    await other.aclose()

            asyncio.run(write())

        real = pg_subjects._SQL.floor

        def interleaved(tenant: str, version: int) -> Any:
            thread = pg_cluster.start_until_it_waits(write_again)
            outcome["thread"], outcome["waited"] = thread, thread.is_alive()
            return real(tenant, version)

        monkeypatch.setattr(pg_subjects._SQL, "floor", interleaved)
        await purger.purge("t1", ["gone"], reason="erasure")
        await asyncio.to_thread(outcome["thread"].join, 60)
        put = outcome["put"]
        assert outcome["waited"], outcome  # (for the key's lock, which the purge holds)
        assert put.written and put.entry.version == 4, outcome
    finally:
        await purger.aclose()
