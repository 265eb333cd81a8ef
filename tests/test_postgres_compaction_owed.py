"""A compaction clears the compaction a purge owes (``COMPACTION_OWED``) only if no other
purge committed while it ran: one that committed after ``VACUUM FULL`` rewrote the tables
left its dead rows in them, and its own compaction may never come (its process killed).
The compaction deleted the marker whatever it held by then, so the next erasure or purge
did not compact (PostgreSQL: another process's purge commits as the compaction runs; a
review of s63)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import convoy.stores._postgres_subjects as pg_subjects
from convoy.stores import NewSession, store_from_url
from convoy.stores._protocol import COMPACTION_OWED

from .conftest import store_db


async def _ended(store: Any, sid: str) -> None:
    await store.create_sessions([NewSession(id=sid, workflow="w", version="1", tenant="t1",
                                            input="{}")], owner="A", lease_s=30)
    await store.release(sid, "A")  # (nothing holds it: a purge takes it)


async def test_a_purge_committed_as_a_compaction_runs_is_still_owed_one(
        tmp_path: Path, monkeypatch: Any) -> None:
    made = store_db("postgres", tmp_path)
    url = str(next(made))
    compactor, purger = store_from_url(url), store_from_url(url)
    await compactor.open()
    await purger.open()
    try:
        for sid in ("first", "second"):
            await _ended(purger, sid)
        await purger.purge("t1", ["first"], reason="retention")
        later: list[Any] = []
        real = pg_subjects.refresh_statistics

        async def then_purged(*args: Any, **kw: Any) -> Any:
            out = await real(*args, **kw)  # (the tables rewritten: another purge commits)
            if not later:
                later.append(await purger.purge("t1", ["second"], reason="retention"))
            return out

        monkeypatch.setattr(pg_subjects, "refresh_statistics", then_purged)
        await compactor.compact()
        [event] = later
        assert await compactor.kv_get(*COMPACTION_OWED) == str(event.seq)
        monkeypatch.setattr(pg_subjects, "refresh_statistics", real)
        await compactor.compact()
        assert await compactor.kv_get(*COMPACTION_OWED) is None
    finally:
        await purger.aclose()
        await compactor.aclose()
        next(made, None)
