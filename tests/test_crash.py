"""SIGKILL the engine process at random points of a run, resume, and compare with a run
that was never interrupted: same results, no completed model call paid twice, no write
applied twice."""

from __future__ import annotations

import asyncio
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

import convoy
import convoy.stores
from convoy.audit import AuditEvent, AuditLog, verify_log

WORKER = Path(__file__).with_name("crash_worker.py")
N = 300


def start(mode: str, d: Path, *, idempotent: bool = True,
          audit: bool = False) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CRASH_IDEMPOTENT": "1" if idempotent else "0",
           "CRASH_AUDIT": "1" if audit else "0"}
    return subprocess.Popen([sys.executable, str(WORKER), mode, str(d), str(N)],
                            stderr=subprocess.PIPE, env=env)


def kill(proc: subprocess.Popen[bytes]) -> bool:
    """SIGKILL the process if it still runs; True if it was killed (and proven dead by
    that signal)."""
    if proc.poll() is not None:
        proc.communicate()
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return True


def finish(p: subprocess.Popen[bytes]) -> None:
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-3000:]


def completed(d: Path) -> int:
    return _done(d / "convoy.db")


def outputs(d: Path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(d / "convoy.db") as c:
        return {r[0]: (r[1], r[2]) for r in c.execute("SELECT id, status, output FROM sessions")}


def lines(path: Path) -> list[str]:
    return path.read_text().split("\n")[:-1] if path.exists() else []


def applied(d: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(d / "effects.db") as c:
        return sorted(c.execute("SELECT key, note, amount FROM applied"))


def kill_three_times(d: Path, rng: random.Random, *, audit: bool = False) -> int:
    """Run, then resume twice; SIGKILL each process at a random point once it completed a
    few more sessions. How many kills landed on a live process."""
    kills = 0
    for mode in ("run", "resume", "resume"):
        proc = start(mode, d, audit=audit)
        target = completed(d) + rng.randint(5, 60)
        deadline = time.monotonic() + 120
        while completed(d) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.05))
        kills += kill(proc)
        assert completed(d) < N, "the run finished before the kill; the test proves nothing"
    return kills


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

    kills = kill_three_times(crash, rng)
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


@pytest.mark.slow
def test_sigkill_never_leaves_a_journaled_step_without_its_audit_entry(tmp_path: Path) -> None:
    """An audit entry is committed with its step's journal record or before it: after
    SIGKILLs at random points and a resume, every model and tool call the journal holds as
    done has its entry (a step re-run after a kill may have two), and the log verifies."""
    rng = random.Random(3)
    d = tmp_path / "audited"
    d.mkdir()
    kills = kill_three_times(d, rng, audit=True)
    assert kills == 3
    finish(start("resume", d, audit=True))

    with sqlite3.connect(d / "convoy.db") as c:
        done = c.execute("SELECT session_id, key, kind FROM journal WHERE status='completed' "
                         "AND kind IN ('model', 'tool')").fetchall()
        bodies = [bytes(r[0]) for r in c.execute(
            "SELECT body FROM audit_log WHERE tenant='default' ORDER BY idx")]
    assert len(done) >= N * 4
    events = [AuditEvent.decode(b) for b in bodies]
    audited = Counter((e.session_id, e.step_key, e.kind) for e in events)
    missing = [(sid, key, kind) for sid, key, kind in done
               if not audited[(sid, key, "model_call" if kind == "model" else "tool_call")]]
    assert missing == []
    assert max(audited.values()) <= 2  # only a step in flight at a kill runs (and is audited) again

    async def verified() -> int:
        store = convoy.stores.SQLiteStore(d / "convoy.db")
        await store.open()
        try:
            return (await verify_log(AuditLog(store), "default")).size
        finally:
            await store.aclose()

    assert asyncio.run(verified()) == len(events)


def statuses(d: Path) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(d / "convoy.db") as c:
        return {r[0]: (r[1], r[2]) for r in c.execute(
            "SELECT id, status, json_extract(error, '$.type') FROM sessions")}


@pytest.mark.slow
def test_sigkill_with_a_write_tool_that_is_not_idempotent(tmp_path: Path) -> None:
    """A write whose outcome a kill left unknown is escalated, never run twice; every
    other session completes with its write applied exactly once."""
    d = tmp_path / "crash"
    d.mkdir()
    kills = 0
    proc = start("run", d, idempotent=False)
    for mode in ("run", "resume", "resume"):
        if mode == "resume":
            proc = start("resume", d, idempotent=False)
        # Kill while writes are in flight: right after a new tool call is logged.
        seen = len(lines(d / "tool_calls.log"))
        deadline = time.monotonic() + 120
        while len(lines(d / "tool_calls.log")) < seen + 30 and proc.poll() is None and \
                time.monotonic() < deadline:
            time.sleep(0.002)
        kills += kill(proc)
        assert completed(d) < N, "the run finished before the kill; the test proves nothing"
    assert kills == 3
    finish(start("resume", d, idempotent=False))

    final = statuses(d)
    assert len(final) == N
    assert {s for s, _ in final.values()} <= {"completed", "escalated"}
    escalated = [sid for sid, (s, _) in final.items() if s == "escalated"]
    assert all(final[sid][1] == "UnknownOutcomeError" for sid in escalated)
    tool_calls = Counter(lines(d / "tool_calls.log"))
    assert max(tool_calls.values()) == 1  # no write was ever run twice
    writes = {key.split(":")[0] for key, _, _ in applied(d)}
    completed_ids = {sid for sid, (s, _) in final.items() if s == "completed"}
    assert completed_ids <= writes  # every completed session applied its write (once)


@pytest.mark.slow
def test_two_resume_processes_on_one_store_run_each_session_once(tmp_path: Path) -> None:
    """The reproduction of hole 1 with real processes: after a SIGKILL, two resume
    processes start at once on the same store; a write tool that is not idempotent must
    never run twice for a session, and every session ends exactly once."""
    d = tmp_path / "two"
    d.mkdir()
    proc = start("run", d, idempotent=False)
    deadline = time.monotonic() + 120
    while len(lines(d / "tool_calls.log")) < 40 and proc.poll() is None and \
            time.monotonic() < deadline:
        time.sleep(0.002)
    assert kill(proc), "the run finished before the kill; the test proves nothing"
    a, b = start("resume", d, idempotent=False), start("resume", d, idempotent=False)
    finish(a)
    finish(b)
    final = statuses(d)
    assert len(final) == N
    assert {s for s, _ in final.values()} <= {"completed", "escalated"}
    assert max(Counter(lines(d / "tool_calls.log")).values()) == 1
    # Each model call at most twice: once before the kill (in flight), once after; never
    # once by each resumer.
    calls = Counter(lines(d / "model_calls.log"))
    assert max(calls.values()) <= 2


def _cli(args: list[str], cwd: Path, crm: str) -> subprocess.Popen[bytes]:
    # The repo (for examples) and the convoy under test (this worktree's src).
    path = [str(Path(__file__).parents[1]), str(Path(convoy.__file__).resolve().parents[1])]
    env = {**os.environ, "CONVOY_CRM_DB": crm, "PYTHONPATH": os.pathsep.join(path)}
    return subprocess.Popen([sys.executable, "-m", "convoy.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_support_desk_cli_killed_three_times_matches_a_clean_run(tmp_path: Path) -> None:
    tickets = Path(__file__).parents[1] / "examples" / "support_desk" / "tickets.jsonl"
    run = ["run", "examples.support_desk.workflow:handle_ticket", "-i", str(tickets)]
    finish(_cli([*run, "--db", "ref.db"], tmp_path, "ref_crm.db"))
    for _ in range(3):
        proc = _cli([*run, "--db", "crash.db"], tmp_path, "crash_crm.db")
        before = _done(tmp_path / "crash.db")
        deadline = time.monotonic() + 60
        while _done(tmp_path / "crash.db") < before + 40 and proc.poll() is None and \
                time.monotonic() < deadline:
            time.sleep(0.01)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    finish(_cli([*run, "--db", "crash.db"], tmp_path, "crash_crm.db"))

    def rows(db: str, sql: str) -> list[tuple[object, ...]]:
        with sqlite3.connect(tmp_path / db) as c:
            return sorted(c.execute(sql))

    sessions = "SELECT id, status, output FROM sessions"
    assert rows("crash.db", sessions) == rows("ref.db", sessions)
    assert len(rows("ref.db", sessions)) == 222
    for table in ("refunds", "bug_reports", "account_events", "applied_requests"):
        q = f"SELECT COUNT(*) FROM {table}"
        assert rows("crash_crm.db", q) == rows("ref_crm.db", q), table


def _done(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return int(c.execute("SELECT COUNT(*) FROM sessions WHERE status='completed'")
                       .fetchone()[0])
    except sqlite3.OperationalError:
        return 0
