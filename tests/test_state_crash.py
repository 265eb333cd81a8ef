"""SIGKILL an engine process while its sessions race compare-and-set writes on shared
state, resume in new processes: no update is lost and none is applied twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from convoy.stores import store_from_url

from .conftest import STORE_KINDS, store_db

WORKER = Path(__file__).with_name("state_crash_worker.py")
N = 120
ROUNDS = 3


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    """The test runs on SQLite and on PostgreSQL."""
    yield from store_db(request.param, tmp_path)


def start(mode: str, db: str | Path) -> subprocess.Popen[bytes]:
    src = str(Path(__import__("convoy").__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.Popen([sys.executable, str(WORKER), mode, str(db), str(N)],
                            stderr=subprocess.PIPE, env=env)


def writes(db: str | Path) -> int:
    """State versions written so far (read the way an operator would: the database)."""
    if isinstance(db, Path):
        try:
            with sqlite3.connect(db) as c:
                return int(c.execute("SELECT COUNT(*) FROM state_history").fetchone()[0])
        except sqlite3.OperationalError:
            return 0
    import psycopg

    url, _, schema = db.partition("?schema=")
    with psycopg.connect(url) as conn:
        try:
            row = conn.execute(f'SELECT COUNT(*) FROM "{schema}".state_history').fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
        return int(row[0]) if row else 0


@pytest.mark.slow
def test_sigkilled_racing_writers_resume_without_lost_or_doubled_updates(
        db: str | Path) -> None:
    proc = start("run", db)
    for target in (60, 150, 250, 350):
        deadline = time.monotonic() + 120
        while writes(db) < target and proc.poll() is None and \
                time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before the kill; the test proves nothing"
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        proc = start("resume", db)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    asyncio.run(_check(db))


async def _check(db: str | Path) -> None:
    store = store_from_url(db)
    await store.open()
    try:
        assert await store.counts() == {"completed": N}
        total = 0
        for key in ("counter0", "counter1"):
            history = await store.state_history("default", "race", key)
            # every version is the previous value plus one: nothing lost, nothing twice
            assert [json.loads(e.value) for e in history] == list(range(1, len(history) + 1))
            total += len(history)
        assert total == N * ROUNDS
        log = await store.state_history("default", "race", "log")
        assert sorted(json.loads(log[-1].value)) == sorted(f"s{i}" for i in range(N))
        # each session wrote exactly ROUNDS + 1 versions, whatever was killed when
        entries = [e for k in ("counter0", "counter1", "log")
                   for e in await store.state_history("default", "race", k)]
        writers = Counter(e.session_id for e in entries)
        assert set(writers.values()) == {ROUNDS + 1} and len(writers) == N
    finally:
        await store.aclose()
