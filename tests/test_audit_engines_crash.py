"""Two engine processes append to one tenant's audit log at once; one is SIGKILLed and the
other takes over its sessions. The log must stay one log: every step the journal holds as
done has its entry, no index is taken twice or skipped, and it verifies.

The processes are ``tests/crash_worker.py`` (``CRASH_AUDIT=1``), "on two machines" (their
death is seen only when their leases expire on a clock the test moves), on SQLite and on
PostgreSQL (a fresh schema in the tests' private cluster).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

import convoy
from convoy.audit import AuditEvent, AuditLog, verify_log
from convoy.stores import SessionFilter, SessionRow, Store, store_from_url

from .conftest import store_db

WORKER = Path(__file__).with_name("crash_worker.py")
SRC = Path(convoy.__file__).resolve().parents[1]
N = 200
T = TypeVar("T")
T0 = 1_800_000_000.0  # the shared clock's start: a fixed instant, never today's date


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    made = store_db(request.param, tmp_path)
    yield str(next(made))
    next(made, None)


def start(mode: str, d: Path, url: str, **env: str) -> subprocess.Popen[bytes]:
    full = {**os.environ, "CRASH_AUDIT": "1", "CRASH_DB": url,
            "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH"))
                                          if p), **env}
    return subprocess.Popen([sys.executable, str(WORKER), mode, str(d), str(N)],
                            stderr=subprocess.PIPE, env=full)


def finish(p: subprocess.Popen[bytes], timeout: float = 300) -> None:
    _, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err.decode()[-3000:]


def lines(path: Path) -> list[str]:
    return path.read_text().split("\n")[:-1] if path.exists() else []


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


async def _with_store(url: str, fn: Callable[[Store], Awaitable[T]]) -> T:
    store = store_from_url(url)
    await store.open()
    try:
        return await fn(store)
    finally:
        await store.aclose()


def sessions(url: str) -> dict[str, SessionRow]:
    async def read(store: Store) -> dict[str, SessionRow]:
        return {r.id: r for r in await store.list_sessions(SessionFilter(limit=10 * N))}

    return asyncio.run(_with_store(url, read))


@pytest.mark.slow
def test_two_engines_share_one_audit_log_through_a_kill_and_a_takeover(
        tmp_path: Path, url: str) -> None:
    clock = tmp_path / "clock"
    clock.write_text(repr(T0))
    gate = tmp_path / "go"
    shared = {"CRASH_CLOCK": str(clock), "CRASH_GATE": str(gate)}
    finish(start("submit", tmp_path, url, **shared))
    # a's leases last 30 s of the shared clock; b's never end during the test
    a = start("serve", tmp_path, url, CRASH_HOST="machine-a", CRASH_WHO="a", CRASH_LEASE="30",
              **shared)
    b = start("serve", tmp_path, url, CRASH_HOST="machine-b", CRASH_WHO="b",
              CRASH_LEASE="1e9", **shared)
    wait_until("two engines open", lambda: len(list(tmp_path.glob("ready-*"))) == 2, a, b)
    gate.touch()  # both start serving at once, appending to the same tenant's log

    def writes_by(who: str) -> int:
        return sum(line.startswith(f"{who} ") for line in lines(tmp_path / "who.log"))

    wait_until("a and b writing", lambda: min(writes_by(w) for w in "ab") >= 10, a, b)
    assert a.poll() is None, "a finished before the kill; the test proves nothing"
    os.kill(a.pid, signal.SIGKILL)
    a.communicate()
    assert a.returncode == -signal.SIGKILL
    held = {sid for sid, r in sessions(url).items()
            if r.unfinished and (r.owner or "").startswith("machine-a:")}
    assert held, "the killed engine held no session; the test proves nothing"
    tmp = tmp_path / "clock.tmp"
    tmp.write_text(repr(T0 + 31))  # a's leases have expired: b takes its sessions over
    tmp.replace(clock)
    finish(b)

    final = sessions(url)
    assert len(final) == N and all(not r.unfinished for r in final.values())

    async def check(store: Store) -> tuple[list[tuple[str, str, str]], list[AuditEvent], int]:
        done = [(sid, rec.key, rec.kind) for sid in final
                for rec in (await store.load_journal(sid)).values()
                if rec.status == "completed" and rec.kind in ("model", "tool")]
        size = await store.audit_size("default")
        rows = await store.audit_entries("default", 0, size + 10)
        assert [r.index for r in rows] == list(range(size))  # no index twice, none skipped
        verified = (await verify_log(AuditLog(store), "default")).size
        return done, [AuditEvent.decode(r.body) for r in rows], verified

    done, events, verified = asyncio.run(_with_store(url, check))
    assert len(done) >= N * 4
    audited = Counter((e.session_id, e.step_key, e.kind) for e in events)
    kind = {"model": "model_call", "tool": "tool_call"}
    missing = [(sid, key, k) for sid, key, k in done if not audited[(sid, key, kind[k])]]
    assert missing == []
    assert max(audited.values()) <= 2  # only a step in flight at the kill ran again
    assert verified == len(events)
    # both engines appended: entries of sessions a finished and of sessions b finished
    assert {e.session_id for e in events} == set(final)
    assert writes_by("a") > 0 and writes_by("b") > 0
