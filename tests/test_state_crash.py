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
from pathlib import Path

import pytest

from convoy.stores import SQLiteStore

WORKER = Path(__file__).with_name("state_crash_worker.py")
N = 120
ROUNDS = 3


def start(mode: str, d: Path) -> subprocess.Popen[bytes]:
    src = str(Path(__import__("convoy").__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.Popen([sys.executable, str(WORKER), mode, str(d), str(N)],
                            stderr=subprocess.PIPE, env=env)


def writes(d: Path) -> int:
    """State versions written so far (read the way an operator would: the file)."""
    try:
        with sqlite3.connect(d / "convoy.db") as c:
            return int(c.execute("SELECT COUNT(*) FROM state_history").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_sigkilled_racing_writers_resume_without_lost_or_doubled_updates(
        tmp_path: Path) -> None:
    proc = start("run", tmp_path)
    for target in (60, 150, 250, 350):
        deadline = time.monotonic() + 120
        while writes(tmp_path) < target and proc.poll() is None and \
                time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before the kill; the test proves nothing"
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        proc = start("resume", tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    asyncio.run(_check(tmp_path))


async def _check(d: Path) -> None:
    store = SQLiteStore(d / "convoy.db")
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
