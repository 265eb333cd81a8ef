"""``convoy run``, ``resume``, ``retry`` and ``worker`` stopped (SIGTERM) with a step still
in flight once ``--stop-grace`` ran out: the step is cancelled, and the command prints the
summary a graceful stop prints (the session that ended, the one left unfinished), a line
naming the session left in flight and the command that finishes it, and exits 143. It
printed no summary (its coroutine, cancelled, returned none). The step in flight stays so
until the test lets it go (its file removed), after the command exited: the grace runs out
whatever the machine's speed. Every wait is for a line the command prints or for the
store's state."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

import convoy

from .clikit import (
    Background,
    Res,
    background_fixture,
    cli,
    ids_of,
    session,
    summary,
    workdir,
    write_jsonl,
)

__all__ = ["background_fixture", "workdir"]

FLOW = "stop_flows:held"
GRACE = ("--stop-grace", "0.2")


def completed(db: Path, sid: str) -> None:
    """Return once session ``sid`` completed (the store's state)."""
    while True:
        try:
            if session(sid, db).status == "completed":
                return
        except ValueError:  # (not created yet)
            pass
        os.sched_yield()


def stopped_past_grace(job: Background, db: Path, ended: str) -> Res:
    """``job``, stopped by SIGTERM once session ``ended`` completed and ``a``'s step is in
    flight; the step is not let go, so the grace runs out."""
    job.wait_for_line("holding a")
    completed(db, ended)
    job.proc.send_signal(signal.SIGTERM)
    job.wait_for_line("stopping: the steps in flight finish first")
    return job.wait()


def left_in_flight(res: Res, sid: str, finishes: str) -> None:
    assert res.code == 143, (res.code, res.stderr)
    assert "Traceback" not in res.stdout + res.stderr, res.stderr
    assert (f"left in flight: 1 session ('{sid}'), its step cancelled as the stop's grace "
            f"(0.2 s) ran out; {finishes} finishes it (a cancelled step that is not "
            "idempotent is escalated to a person)") in res.stderr, res.stderr


def summarised(res: Res) -> None:
    assert summary(res.stdout, "sessions run") == "1", res.stdout
    assert summary(res.stdout, "completed") == "1", res.stdout
    assert summary(res.stdout, "interrupted (resume later)") == "1", res.stdout


def finished_by_resume(tmp_path: Path, sid: str) -> None:
    """The step let go, ``convoy resume`` (as the line says) finishes the session."""
    (tmp_path / "hold-a").unlink()
    done = cli("resume", "--db", "c.db", "--import", "stop_flows")
    assert done.code == 0, done.stderr
    row = session(sid, tmp_path / "c.db")
    assert (row.status, row.output) == ("completed", '"a done"'), row


def test_run(background: Callable[..., Background], tmp_path: Path) -> None:
    lines: list[object] = ['"a"', '"b"']
    write_jsonl(tmp_path / "in.jsonl", lines)
    a, b = ids_of(lines, FLOW)
    (tmp_path / "hold-a").touch()
    job = background("run", FLOW, "-i", "in.jsonl", "--db", "c.db", *GRACE)
    res = stopped_past_grace(job, tmp_path / "c.db", b)
    left_in_flight(res, a, "'convoy resume --db c.db'")  # (its name says its module)
    summarised(res)
    assert "interrupted: unfinished sessions are saved" in res.stderr, res.stderr
    finished_by_resume(tmp_path, a)


async def _pending(db: Path, *names: str) -> None:
    """Sessions ``s-NAME`` of :data:`FLOW`, created, not run (an engine drained first)."""
    async with convoy.Engine(db) as engine:
        engine.drain()
        await engine.run_many(convoy.load_workflow(FLOW), list(names),
                              ids=[f"s-{n}" for n in names])


def test_resume(background: Callable[..., Background], tmp_path: Path) -> None:
    asyncio.run(_pending(tmp_path / "c.db", "a", "b"))
    (tmp_path / "hold-a").touch()
    job = background("resume", "--db", "c.db", "--import", "stop_flows", *GRACE)
    res = stopped_past_grace(job, tmp_path / "c.db", "s-b")
    left_in_flight(res, "s-a", "'convoy resume --import stop_flows --db c.db'")
    summarised(res)
    assert "interrupted: run 'convoy resume --import stop_flows --db c.db' again" in \
        res.stderr, res.stderr
    finished_by_resume(tmp_path, "s-a")


def test_retry(background: Callable[..., Background], tmp_path: Path) -> None:
    asyncio.run(_pending(tmp_path / "c.db", "a", "b"))
    for name in "ab":
        (tmp_path / f"fail-{name}").touch()
    failed = cli("resume", "--db", "c.db", "--import", "stop_flows")
    assert failed.code == 0 and summary(failed.stdout, "failed") == "2", failed
    for name in "ab":
        (tmp_path / f"fail-{name}").unlink()
    (tmp_path / "hold-a").touch()
    job = background("retry", "--status", "failed", "--db", "c.db", *GRACE)
    res = stopped_past_grace(job, tmp_path / "c.db", "s-b.r1")
    left_in_flight(res, "s-a.r1", "'convoy resume --db c.db'")
    summarised(res)
    assert "interrupted: the retries already created are saved" in res.stderr, res.stderr
    finished_by_resume(tmp_path, "s-a.r1")


def test_worker(background: Callable[..., Background], tmp_path: Path) -> None:
    asyncio.run(_pending(tmp_path / "c.db", "a", "b"))
    (tmp_path / "hold-a").touch()
    job = background("worker", "stop_flows", "--db", "c.db", *GRACE)
    res = stopped_past_grace(job, tmp_path / "c.db", "s-b")
    left_in_flight(res, "s-a", "'convoy resume --import stop_flows --db c.db'")
    # (its summary: a line as each run ended, the one cut off too, and their count)
    assert [line.split()[:2] for line in res.stdout.splitlines()] == [
        ["s-b", "completed"], ["s-a", "pending"]], res.stdout
    assert "stopped after 2 session runs;" in res.stderr, res.stderr
    finished_by_resume(tmp_path, "s-a")
