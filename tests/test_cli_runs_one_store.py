"""Two ``convoy run`` processes on one SQLite file: each one's summary counts the sessions
it ran, not those the other ran. A session the other run finished while this one was
starting (its row read as unfinished, then as finished) is reported as already finished,
not as run here, with the other's tokens, cost and latency."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .clikit import Background, background_fixture, sessions, summary, workdir, write_jsonl

__all__ = ["background_fixture", "workdir"]

FLOW = "shared_store_flows:work"


def test_two_runs_on_one_store_count_only_their_own_sessions(
        background: Callable[..., Background], tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"name": "shared"}, {"name": "a-only"}])
    write_jsonl(tmp_path / "b.jsonl", [{"name": "shared"}, {"name": "b-only"}])
    (tmp_path / "hold").touch()
    a = background("run", FLOW, "-i", "a.jsonl", "--db", "s.db")
    a.wait_for_line("holding shared")  # run A is running the shared session
    (tmp_path / "gate").touch()
    b = background("run", FLOW, "-i", "b.jsonl", "--db", "s.db")
    b.wait_for_line("gated")  # run B read it unfinished, and is about to run its inputs
    (tmp_path / "hold").unlink()  # run A finishes it, and exits
    ran_a = a.wait()
    b.send("")
    ran_b = b.wait()
    assert ran_a.code == 0 and ran_b.code == 0, (ran_a, ran_b)
    assert summary(ran_a.stdout, "sessions run") == "2", ran_a.stdout
    assert summary(ran_a.stdout, "completed") == "2", ran_a.stdout
    assert summary(ran_b.stdout, "sessions run") == "1", ran_b.stdout
    assert summary(ran_b.stdout, "completed") == "1", ran_b.stdout
    assert summary(ran_b.stdout, "already finished") == \
        "1 (not re-run: completed 1)", ran_b.stdout
    rows = sessions(tmp_path / "s.db")
    assert sorted(r.output or "" for r in rows) == \
        ['"a-only done"', '"b-only done"', '"shared done"']
