"""SIGKILL the engine while sessions wait for people, and in the middle of an approved
tool call: after a restart every answer is applied once, attributed, and an approved
call retried after the crash is not asked for again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import convoy
from convoy.stores import SQLiteStore

WORKER = Path(__file__).with_name("hitl_crash_worker.py")
N = 40


def start(*args: str) -> subprocess.Popen[bytes]:
    src = str(Path(convoy.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.Popen([sys.executable, str(WORKER), *args], stderr=subprocess.PIPE,
                            env=env)


def finished(proc: subprocess.Popen[bytes]) -> None:
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-3000:]


def serving(d: Path) -> subprocess.Popen[bytes]:
    (d / "serving").unlink(missing_ok=True)
    proc = start("serve", str(d))
    deadline = time.monotonic() + 60
    while not (d / "serving").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.01)
    return proc


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()


async def until(d: Path, check: object, what: str) -> None:
    """Poll the store (a real observer: another process) until ``check(store)`` holds."""
    store = SQLiteStore(d / "convoy.db")
    await store.open()
    try:
        deadline = time.monotonic() + 120
        while not await check(store):  # type: ignore[operator]
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.02)
    finally:
        await store.aclose()


def completed(n: int) -> object:
    async def check(store: SQLiteStore) -> bool:
        return (await store.counts()).get("completed", 0) >= n

    return check


@pytest.mark.slow
def test_answers_survive_a_sigkill_of_the_engine(tmp_path: Path) -> None:
    finished(start("start", str(tmp_path), str(N)))

    async def answer(ids: range) -> None:
        async with convoy.Engine(tmp_path / "convoy.db") as eng:
            for i in ids:
                await eng.inbox.answer(f"s{i}:0", {"ok": i % 2 == 0, "amount": i * 10},
                                       by=f"person{i % 3}")

    proc = serving(tmp_path)
    kill(proc)  # killed while every session waits: nothing of them was in memory
    proc = serving(tmp_path)
    asyncio.run(answer(range(N // 2)))
    asyncio.run(until(tmp_path, completed(N // 4), "the first answers to resume"))
    kill(proc)  # in the middle of resuming the answered sessions
    asyncio.run(answer(range(N // 2, N)))
    proc = serving(tmp_path)
    try:
        asyncio.run(until(tmp_path, completed(N), "every session to complete"))
    finally:
        kill(proc)

    async def check() -> None:
        async with convoy.Engine(tmp_path / "convoy.db") as eng:
            for i in range(N):
                res = await eng.result(f"s{i}")
                assert res.output == [i, i % 2 == 0, i * 10, f"person{i % 3}"]
                versions = await eng.inbox.history(f"s{i}:0")
                assert [v.status for v in versions] == ["open", "answered"]  # once

    asyncio.run(check())


@pytest.mark.slow
def test_an_approved_call_retried_after_a_crash_is_not_asked_twice(tmp_path: Path) -> None:
    finished(start("pay", str(tmp_path)))
    proc = serving(tmp_path)
    kill(proc)  # a restart while the approval is pending

    async def approve() -> None:
        async with convoy.Engine(tmp_path / "convoy.db") as eng:
            [task] = await eng.inbox.tasks()
            assert task.kind == "approval"
            await eng.inbox.approve(task.id, by="finance")

    asyncio.run(approve())
    (tmp_path / "kill-in-tool").write_text("")  # the approved call crashes the engine
    proc = start("serve", str(tmp_path))
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    proc = serving(tmp_path)
    try:
        asyncio.run(until(tmp_path, completed(1), "the payment to complete"))
    finally:
        kill(proc)
    assert (tmp_path / "attempts").read_text() == "a-9 4200\na-9 4200\n"  # retried once

    async def check() -> None:
        async with convoy.Engine(tmp_path / "convoy.db") as eng:
            res = await eng.result("p")
            assert res.output == '"moved 4200"'
            tasks = await eng.inbox.tasks(status="all")
            assert [(t.kind, t.status) for t in tasks] == [("approval", "used")]  # one ask

    asyncio.run(check())
