"""SIGKILL the engine process at random points of a run, resume, and compare with a run
that was never interrupted: same results, no completed model call paid twice, no write
applied twice."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("crash_worker.py")
N = 300


def start(mode: str, d: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(WORKER), mode, str(d), str(N)],
                            stderr=subprocess.PIPE)


def finish(p: subprocess.Popen[bytes]) -> None:
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-3000:]


def completed(d: Path) -> int:
    try:
        with sqlite3.connect(f"file:{d / 'convoy.db'}?mode=ro", uri=True, timeout=5) as c:
            return int(c.execute("SELECT COUNT(*) FROM sessions WHERE status='completed'")
                       .fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def outputs(d: Path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(d / "convoy.db") as c:
        return {r[0]: (r[1], r[2]) for r in c.execute("SELECT id, status, output FROM sessions")}


def lines(path: Path) -> list[str]:
    return path.read_text().split("\n")[:-1] if path.exists() else []


def applied(d: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(d / "effects.db") as c:
        return sorted(c.execute("SELECT key, note, amount FROM applied"))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_at_random_points_then_resume(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    ref, crash = tmp_path / "ref", tmp_path / "crash"
    ref.mkdir()
    crash.mkdir()
    finish(start("run", ref))
    expected = outputs(ref)
    assert len(expected) == N and {s for s, _ in expected.values()} == {"completed"}

    kills = 0
    proc = start("run", crash)
    for mode in ("run", "resume", "resume"):
        if mode == "resume":
            proc = start("resume", crash)
        target = completed(crash) + rng.randint(5, 60)
        deadline = time.monotonic() + 120
        while completed(crash) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.05))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()
            kills += 1
        else:
            proc.communicate()
        done = completed(crash)
        assert done < N, "the run finished before the kill; the test proves nothing"
    assert kills == 3
    finish(start("resume", crash))

    assert outputs(crash) == expected
    # Writes: every write step applied exactly once, with the same data as the clean run.
    assert applied(crash) == applied(ref)
    # Model calls: only calls in flight at a kill may be repeated (at most CONCURRENCY each).
    ref_calls, crash_calls = lines(ref / "model_calls.log"), lines(crash / "model_calls.log")
    assert len(set(crash_calls)) == len(set(ref_calls)) == len(ref_calls) == N * 4
    repeated = sum(n - 1 for n in Counter(crash_calls).values())
    assert repeated <= kills * 20
    tool_repeats = sum(n - 1 for n in Counter(lines(crash / "tool_calls.log")).values())
    assert tool_repeats <= kills * 20
