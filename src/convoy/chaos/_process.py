"""Running a phase in a child engine process, SIGKILLing it, and resuming in a new one."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convoy._errors import ConvoyError
from convoy.chaos._phase import PhaseConfig
from convoy.chaos._worker import READY
from convoy.stores import UNFINISHED, SQLiteStore


class ChaosAborted(ConvoyError):
    """The experiment could not run as planned (a worker process failed)."""


@dataclass(slots=True, kw_only=True)
class Worker:
    """One engine process and the file its stderr goes to."""

    proc: subprocess.Popen[bytes]
    log: Path
    started: float

    def reap(self) -> int:
        """Wait for the process and close its pipe; returns the exit code."""
        code = self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def child_env() -> dict[str, str]:
    """This process's environment, with every import path it added (a test's rootdir,
    ``src``) on ``PYTHONPATH`` so the child imports the same workflow module."""
    base = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    extra = [p for p in sys.path if p and os.path.isdir(p)
             and not any(os.path.realpath(p).startswith(b) for b in base)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(
        [os.getcwd(), *extra, *filter(None, [env.get("PYTHONPATH")])]))
    return env


#: How an engine process starts (not ``-m convoy.chaos._worker``: the package imports that
#: module first, so runpy would run it a second time, and warn).
ENTRY = "from convoy.chaos._worker import run; run()"


def start_worker(config_file: Path, log: Path) -> Worker:
    with open(log, "ab") as err:
        proc = subprocess.Popen([sys.executable, "-c", ENTRY, str(config_file)],
                                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                env=child_env())
    return Worker(proc=proc, log=log, started=time.monotonic())


def wait_ready(w: Worker, timeout: float) -> None:
    """Block until the worker printed ``ready`` (all sessions exist in the store)."""
    assert w.proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            w.proc.kill()
            w.reap()
            raise ChaosAborted(f"engine process {w.proc.pid} was not ready after {timeout:g}s; "
                               f"its stderr:\n{w.tail()}")
        r, _, _ = select.select([w.proc.stdout], [], [], left)
        if r:
            chunk = os.read(w.proc.stdout.fileno(), 256)
            if not chunk:
                w.reap()
                raise ChaosAborted(f"engine process {w.proc.pid} exited with code "
                                   f"{w.proc.returncode} before it was ready; its stderr:\n"
                                   f"{w.tail()}")
            buf += chunk
    if buf.strip() != READY.encode():
        w.proc.kill()
        w.reap()
        raise ChaosAborted(f"engine process {w.proc.pid} printed {buf!r} instead of "
                           f"{READY!r}")


def finish(w: Worker, timeout: float) -> None:
    try:
        w.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        w.proc.kill()
        w.reap()
        raise ChaosAborted(f"engine process {w.proc.pid} did not finish within {timeout:g}s"
                           ) from None
    code = w.reap()
    if code != 0:
        raise ChaosAborted(f"engine process {w.proc.pid} exited with code {code}; its "
                           f"stderr:\n{w.tail()}")


def status_counts(db: str) -> dict[str, int]:
    """Sessions of the store at ``db`` by status (no engine process is running on it)."""
    return asyncio.run(_counts(db))


async def _counts(db: str) -> dict[str, int]:
    store = SQLiteStore(db)
    await store.open()
    try:
        return await store.counts()
    finally:
        await store.aclose()


def _unfinished(counts: dict[str, int]) -> int:
    return sum(counts.get(s, 0) for s in UNFINISHED)


@dataclass(slots=True, frozen=True, kw_only=True)
class KillPoint:
    """When to SIGKILL the engine process: ``seconds`` after its sessions exist, or once
    ``sessions`` of them finished (whichever comes first). A kill by count happens while
    the phase is still running however fast its sessions are."""

    seconds: float | None = None
    sessions: int | None = None

    def describe(self) -> str:
        parts = ([f"after {self.seconds:g}s"] if self.seconds is not None else []) + (
            [f"once {self.sessions} sessions finished"] if self.sessions is not None else [])
        return " or ".join(parts)


def kill_after(config: PhaseConfig, config_file: Path, work: Path, kill: KillPoint,
               timeout: float) -> dict[str, Any]:
    """Start the phase in an engine process, SIGKILL it at ``kill`` (counted from when it
    is ready)."""
    w = start_worker(config_file, work / f"{config.name}-engine-1.log")
    wait_ready(w, timeout)
    t_ready = time.monotonic()
    killed = asyncio.run(_watch(w, config.db, kill, t_ready))
    w.reap()
    if not killed and w.proc.returncode != 0:
        raise ChaosAborted(f"engine process {w.proc.pid} exited with code "
                           f"{w.proc.returncode}; its stderr:\n{w.tail()}")
    counts = status_counts(config.db)
    unfinished = _unfinished(counts)
    return {"pid": w.proc.pid, "signal": "SIGKILL" if killed else None, "killed": killed,
            "after_s": round(time.monotonic() - t_ready, 4),
            "finished_at_kill": sum(counts.values()) - unfinished,
            "unfinished_at_kill": unfinished,
            **({} if killed else {"note": "the engine finished before the kill was due"})}


async def _watch(w: Worker, db: str, kill: KillPoint, t_ready: float,
                 poll: float = 0.01) -> bool:
    """Wait until the process exits (``False``) or the kill point, then SIGKILL it."""
    store = SQLiteStore(db) if kill.sessions is not None else None
    if store is not None:
        await store.open()
    try:
        while w.proc.poll() is None:
            due = kill.seconds is not None and time.monotonic() - t_ready >= kill.seconds
            if not due and store is not None and kill.sessions is not None:
                counts = await store.counts()
                due = sum(counts.values()) - _unfinished(counts) >= kill.sessions
            if due:
                os.kill(w.proc.pid, signal.SIGKILL)
                return True
            await asyncio.sleep(poll)
        return False
    finally:
        if store is not None:
            await store.aclose()


def resume(config: PhaseConfig, config_file: Path, work: Path, timeout: float
           ) -> dict[str, Any]:
    """Start a new engine process on the same store and let it finish every session."""
    before = status_counts(config.db)
    unfinished = _unfinished(before)
    w = start_worker(config_file, work / f"{config.name}-engine-2.log")
    wait_ready(w, timeout)
    finish(w, timeout)
    after = status_counts(config.db)
    return {"pid": w.proc.pid, "resumed": unfinished,
            "unfinished_after": _unfinished(after),
            "statuses": after, "duration_s": round(time.monotonic() - w.started, 4)}
