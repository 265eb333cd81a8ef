"""Engine processes on one PostgreSQL database: SIGKILL one, and another process finishes
its sessions with every write that is not idempotent applied at most once (never twice,
and exactly once for every session that completes).

The processes are ``tests/crash_worker.py``; the database is a fresh schema in the tests'
private cluster (``tests/pg_cluster.py``).
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from convoy.stores import SessionRow

from . import engine_procs as procs
from .conftest import store_db
from .engine_procs import T0, finish, kill, lines, wait_until

N = 300


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[str]:
    url = store_db("postgres", tmp_path)
    yield str(next(url))
    next(url, None)  # drops the schema


def start(mode: str, d: Path, url: str, **env: str) -> subprocess.Popen[bytes]:
    return procs.start(mode, d, url, N, **{"CRASH_IDEMPOTENT": "0", **env})


def sessions(url: str) -> dict[str, SessionRow]:
    return procs.sessions(url, N)


def applied(d: Path) -> set[str]:
    with sqlite3.connect(d / "effects.db") as c:
        return {key.split(":")[0] for (key,) in c.execute("SELECT key FROM applied")}


def check_effects(d: Path, final: dict[str, SessionRow]) -> None:
    """No write ran twice; every completed session applied its write; a session whose write
    a kill left unknown was escalated, not run again."""
    assert len(final) == N
    assert {r.status for r in final.values()} <= {"completed", "escalated"}
    for r in final.values():
        if r.status == "escalated":
            assert (r.error_record or {}).get("type") == "UnknownOutcomeError", r
    assert max(Counter(lines(d / "tool_calls.log")).values()) == 1
    done = {sid for sid, r in final.items() if r.status == "completed"}
    assert done <= applied(d)


@pytest.mark.slow
def test_a_run_killed_then_resumed_by_another_process_on_postgres(tmp_path: Path,
                                                                  pg: str) -> None:
    proc = start("run", tmp_path, pg)
    wait_until("40 writes", lambda: len(lines(tmp_path / "tool_calls.log")) >= 40, proc)
    kill(proc)
    assert sum(r.status == "completed" for r in sessions(pg).values()) < N
    finish(start("resume", tmp_path, pg))
    check_effects(tmp_path, sessions(pg))


@pytest.mark.slow
def test_engines_on_one_database_share_the_work_and_take_over_a_killed_one(
        tmp_path: Path, pg: str) -> None:
    """Three engine processes "on three machines" serve one database. One is SIGKILLed;
    the others go on with the rest of the work and leave its sessions alone while its
    leases hold, then take them over once the shared clock passes its leases."""
    clock = tmp_path / "clock"
    clock.write_text(repr(T0))

    gate = tmp_path / "go"
    shared = {"CRASH_CLOCK": str(clock), "CRASH_GATE": str(gate)}
    finish(start("submit", tmp_path, pg, **shared))
    # a's leases last 30 s of the shared clock; b's and c's never end during the test
    a = start("serve", tmp_path, pg, CRASH_HOST="machine-a", CRASH_WHO="a", CRASH_LEASE="30",
              **shared)
    b, c = (start("serve", tmp_path, pg, CRASH_HOST=f"machine-{w}", CRASH_WHO=w,
                  CRASH_LEASE="1e9", **shared) for w in "bc")

    wait_until("three engines open", lambda: len(list(tmp_path.glob("ready-*"))) == 3, a, b, c)
    gate.touch()  # all three start serving at once: each gets a share

    def writes_by(who: str) -> int:
        return sum(line.startswith(f"{who} ") for line in lines(tmp_path / "who.log"))

    wait_until("a, b and c writing", lambda: min(writes_by(w) for w in "abc") >= 5, a, b, c)
    kill(a)
    held = {sid for sid, r in sessions(pg).items()
            if r.status == "running" and (r.owner or "").startswith("machine-a:")}
    assert held, "the killed engine held no session; the test proves nothing"

    def only_a_left() -> bool:
        rows = sessions(pg)
        return all(not r.unfinished for sid, r in rows.items() if sid not in held)

    wait_until("b and c to finish every other session", only_a_left, b, c)
    rows = sessions(pg)
    assert all(rows[sid].owner.startswith("machine-a:") for sid in held)  # type: ignore[union-attr]
    assert b.poll() is None and c.poll() is None  # still serving: a's sessions are unfinished

    procs.advance(clock, 31)  # a's leases have expired
    finish(b)
    finish(c)
    final = sessions(pg)
    check_effects(tmp_path, final)
    assert all(not final[sid].unfinished for sid in held)
    assert all(writes_by(w) > 0 for w in "abc")  # the three engines shared the work
