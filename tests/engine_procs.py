"""Engine processes for the multi-process tests: ``tests/crash_worker.py`` started on a
store URL, waited for, SIGKILLed, and the store's sessions read back through its API."""

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
from convoy.stores import SessionFilter, SessionRow, store_from_url

WORKER = Path(__file__).with_name("crash_worker.py")
SRC = Path(convoy.__file__).resolve().parents[1]
T0 = 1_800_000_000.0  # a shared clock's start: a fixed instant, never today's date


def start(mode: str, d: Path, url: str, n: int, **env: str) -> subprocess.Popen[bytes]:
    """``crash_worker.py MODE D N`` on the store ``url`` (``CRASH_*`` settings in ``env``)."""
    full = {**os.environ, "CRASH_DB": url,
            "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH"))
                                          if p), **env}
    return subprocess.Popen([sys.executable, str(WORKER), mode, str(d), str(n)],
                            stderr=subprocess.PIPE, env=full)


def finish(p: subprocess.Popen[bytes], timeout: float = 300) -> None:
    _, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err.decode()[-3000:]


def kill(p: subprocess.Popen[bytes]) -> None:
    assert p.poll() is None, "the process ended before the kill; the test proves nothing"
    os.kill(p.pid, signal.SIGKILL)
    p.communicate()
    assert p.returncode == -signal.SIGKILL


def lines(path: Path) -> list[str]:
    return path.read_text().split("\n")[:-1] if path.exists() else []


def sessions(url: str, n: int) -> dict[str, SessionRow]:
    async def read() -> dict[str, SessionRow]:
        store = store_from_url(url)
        await store.open()
        try:
            return {r.id: r for r in await store.list_sessions(SessionFilter(limit=10 * n))}
        finally:
            await store.aclose()

    return asyncio.run(read())


def wait_until(what: str, cond: object, *procs: subprocess.Popen[bytes],
               limit: float = 120) -> None:
    """Poll an observable condition (a safety deadline only: never a timed assertion)."""
    deadline = time.monotonic() + limit
    while not cond():  # type: ignore[operator]
        for p in procs:
            if p.poll() is not None:
                _, err = p.communicate()
                pytest.fail(f"a worker ended while waiting for {what}: {err.decode()[-2000:]}")
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def advance(clock: Path, seconds: float) -> None:
    """Move the shared clock file ``clock`` on (an atomic replace: readers never see half)."""
    tmp = clock.with_suffix(".tmp")
    tmp.write_text(repr(float(clock.read_text()) + seconds))
    tmp.replace(clock)
