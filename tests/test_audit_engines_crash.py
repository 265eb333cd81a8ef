"""Two engine processes append to one tenant's audit log at once; one is SIGKILLed and the
other takes over its sessions. The log must stay one log: every step the journal holds as
done has its entry, no index is taken twice or skipped, and it verifies.

The processes are ``tests/crash_worker.py`` (``CRASH_AUDIT=1``), "on two machines" (their
death is seen only when their leases expire on a clock the test moves), on SQLite and on
PostgreSQL (a fresh schema in the tests' private cluster).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from convoy.audit import AuditEvent, AuditLog, verify_log
from convoy.stores import Store, store_from_url

from . import engine_procs as procs
from .conftest import store_db
from .engine_procs import T0, finish, kill, lines, wait_until

N = 200


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    made = store_db(request.param, tmp_path)
    yield str(next(made))
    next(made, None)


def start(mode: str, d: Path, url: str, **env: str) -> subprocess.Popen[bytes]:
    return procs.start(mode, d, url, N, CRASH_AUDIT="1", **env)


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
    kill(a)  # (asserts it was still running and died by SIGKILL)
    held = {sid for sid, r in procs.sessions(url, N).items()
            if r.unfinished and (r.owner or "").startswith("machine-a:")}
    assert held, "the killed engine held no session; the test proves nothing"
    procs.advance(clock, 31)  # a's leases have expired: b takes its sessions over
    finish(b)

    final = procs.sessions(url, N)
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

    async def checked() -> tuple[list[tuple[str, str, str]], list[AuditEvent], int]:
        store = store_from_url(url)
        await store.open()
        try:
            return await check(store)
        finally:
            await store.aclose()

    done, events, verified = asyncio.run(checked())
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
