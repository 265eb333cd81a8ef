"""``convoy erase`` stopped by Ctrl-C: exit 130 and one line saying whether the erasure
committed (it is one transaction: all of it or nothing) and what is left to do; nothing is
lost. It exited 0 and said nothing of the interrupt (a new user's trial): the engine's
close swallowed the cancellation that ``asyncio.run`` makes of a SIGINT landing in code
with no await in it (SQLite's writes), so the command went on as if it had not come.

The moments are observable state, not a clock: SIGINT is sent once the command has the
store open while the test holds its write lock (before the commit), or as the erasure's
compaction begins (after it)."""

from __future__ import annotations

import asyncio
import functools
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

import convoy
from convoy import StoreError
from convoy.cli import _privacy
from convoy.cli._common import run_async
from convoy.engine import _subjects

from .clikit import (
    Background,
    background_fixture,
    cli,
    sessions,
    when_mapped,
    workdir,
    write_jsonl,
)

__all__ = ["background_fixture", "workdir"]


def _subject(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A master key (in the environment: the command's subprocesses inherit it) and two
    sessions of subject 'c-9'."""
    assert cli("keygen", "m.key").code == 0
    monkeypatch.setenv("CONVOY_MASTER_KEY_FILE", str(workdir / "m.key"))
    write_jsonl(workdir / "in.jsonl", [{"subject": "refund", "body": f"x{i}"} for i in range(2)])
    assert cli("run", "cli_flows:handle", "-i", "in.jsonl", "--subject", "c-9").code == 0
    assert len(sessions()) == 2


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps")
def test_ctrl_c_before_the_erasure_commits_erases_nothing_and_says_so(
        workdir: Path, monkeypatch: pytest.MonkeyPatch,
        background: Callable[..., Background]) -> None:
    _subject(workdir, monkeypatch)
    lock = sqlite3.connect(workdir / "convoy.db", isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")  # another process writing: the erasure waits
        proc = background("erase", "c-9", "--busy-timeout", "600")
        when_mapped(proc, "convoy.db-shm")  # the store open (the command started)
        res = proc.stop(signal.SIGINT)
    finally:
        lock.close()
    assert res.code == 130, (res.code, res.stderr)
    assert res.stderr.splitlines() == [
        "interrupted before the erasure committed: nothing of subject 'c-9' of tenant "
        "'default' was erased; run the same command again"], res.stderr
    assert res.stdout == ""
    assert len(sessions()) == 2  # nothing lost, nothing half done
    again = cli("erase", "c-9")
    assert again.code == 0 and "2 sessions" in again.stdout and "(erasure #1)" in \
        again.stdout, again


def _erase_interrupted() -> str:
    """``convoy erase c-9`` in this process, interrupted: exit 130 and its one line."""
    res = cli("erase", "c-9")
    assert res.code == 130, (res.code, res.stdout, res.stderr)
    [line] = res.stderr.splitlines()
    return line


async def _second_ctrl_c(*args: object) -> None:
    """``compact_after`` stopped by a second Ctrl-C (asyncio.run raises it at once)."""
    raise KeyboardInterrupt


def test_ctrl_c_after_the_erasure_committed_says_it_is_erased(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGINT as the compaction begins (the erasure committed): the command went on,
    printed its line and exited 0, saying nothing of the interrupt."""
    _subject(workdir, monkeypatch)
    compact_after = _subjects.compact_after

    async def interrupted(*args: object) -> None:
        handler = signal.getsignal(signal.SIGINT)
        # (asyncio.run's handler, which cancels its task: never Python's default, which
        # would stop the test run itself)
        assert isinstance(handler, functools.partial), handler
        signal.raise_signal(signal.SIGINT)
        await compact_after(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_subjects, "compact_after", interrupted)
    assert _erase_interrupted() == (
        "interrupted after the erasure committed: subject 'c-9' of tenant 'default' is "
        "erased (erasure #1) and the store compacted; nothing more to do")
    assert sessions() == []
    again = cli("erase", "c-9")
    assert again.code == 0 and "was erased already (erasure #1 at" in again.stdout, again


def test_an_erasure_not_compacted_when_interrupted_says_to_compact(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second Ctrl-C stops the compaction itself: the erasure stands, and the line says
    what finishes it."""
    _subject(workdir, monkeypatch)
    compact_after = _subjects.compact_after
    monkeypatch.setattr(_subjects, "compact_after", _second_ctrl_c)
    assert _erase_interrupted() == (
        "interrupted after the erasure committed: subject 'c-9' of tenant 'default' is "
        "erased (erasure #1), but the store was not compacted, so deleted rows may remain "
        "in its files until 'convoy db compact' succeeds: run it")
    monkeypatch.setattr(_subjects, "compact_after", compact_after)
    assert cli("db", "compact").code == 0


def test_an_interrupted_erasure_the_store_cannot_tell_of_says_how_to_find_out(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store cannot be read after the interrupt: the line says so, and what tells."""
    _subject(workdir, monkeypatch)

    async def unreadable(*args: object) -> None:
        raise StoreError("the store went away")

    monkeypatch.setattr(_subjects, "compact_after", _second_ctrl_c)
    monkeypatch.setattr(_privacy, "_erasure_state", unreadable)
    assert _erase_interrupted() == (
        "interrupted: whether subject 'c-9' of tenant 'default' was erased is not known "
        "(the store could not be read: the store went away); 'convoy erase c-9 --dry-run' "
        "says what is left to erase")


def test_a_task_cancelled_while_its_engine_closes_is_cancelled_once_it_closed(
        tmp_path: Path) -> None:
    """The engine's close no longer swallows the caller's cancellation with its lease
    renewer's: it closes (the store too), then the cancellation goes on."""
    engine = convoy.Engine(tmp_path / "c.db")

    async def main() -> None:
        async with engine:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # what asyncio.run does at Ctrl-C, in code with no await in it

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    assert not engine._open
    assert run_async(_reopened(engine)) == []


async def _reopened(engine: convoy.Engine) -> list[object]:
    async with engine:  # (closed cleanly: it opens again)
        return list(await engine.sessions())
