"""An erasure of a subject whose key is gone when its purge starts (a second erasure of
it, its first committed meanwhile), while another process makes the subject a new key and
starts a session under it (PostgreSQL: SQLite runs them one after the other).

The purge locked the key's row to keep a creation of the subject's session out (a
creation reads it FOR SHARE), but there was no row to lock: the creation committed after
the purge read the sessions that name the subject and before it deleted the key, so the
new key was destroyed and the new session left naming the erased subject, its input sealed
under that destroyed key (a review of s63)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import convoy.stores._postgres_subjects as pg_subjects
from convoy._errors import StoreError
from convoy.stores import NewSession, store_from_url
from tests import pg_cluster

from .conftest import store_db


def _new(sid: str, key: str) -> NewSession:
    return NewSession(id=sid, workflow="w", version="1", tenant="t1", input="{}",
                      subject="p", subject_key=key)


async def test_a_key_made_as_an_erasure_runs_is_not_destroyed_under_a_new_session(
        tmp_path: Path, monkeypatch: Any) -> None:
    made = store_db("postgres", tmp_path)
    url = str(next(made))
    eraser = store_from_url(url)
    await eraser.open()
    try:
        await eraser.subject_key_put("t1", "p", "k1")
        assert await eraser.create_sessions([_new("old", "k1")]) == 1
        # the first erasure commits; a second one (it listed "old" too) runs after it
        await eraser.purge("t1", ["old"], reason="erasure", subject="p", subject_ref="r")
        outcome: dict[str, Any] = {}

        def start_another() -> None:
            async def start() -> None:
                other = store_from_url(url)
                await other.open()
                try:
                    await other.subject_key_put("t1", "p", "k2")  # (none held: a new one)
                    try:
                        outcome["made"] = await other.create_sessions([_new("new", "k2")])
                    except StoreError as e:
                        outcome["gone"] = e
                finally:
                    await other.aclose()

            asyncio.run(start())

        real = pg_subjects.with_named

        def interleaved(ids: Any, named: Any) -> list[str]:
            out = real(ids, named)  # (the purge has read which sessions name "p")
            if outcome:
                return out
            outcome["started"] = True
            # until the creation is done, or waits for a lock this purge holds
            outcome["thread"] = pg_cluster.start_until_it_waits(start_another)
            return out

        monkeypatch.setattr(pg_subjects, "with_named", interleaved)
        await eraser.purge("t1", ["old"], reason="erasure", subject="p", subject_ref="r")
        await asyncio.to_thread(outcome["thread"].join, 60)
        held = await eraser.subject_key_get("t1", "p")
        row = await eraser.get_session("new")
        # the session was not created (its key gone: sealed again, it would be), or the
        # key it is sealed under is still held
        assert row is None or held == "k2", (outcome, row, held)
        if row is None:
            assert isinstance(outcome.get("gone"), StoreError), outcome
    finally:
        await eraser.aclose()
        next(made, None)
