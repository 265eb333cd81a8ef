"""An erasure (or a retention purge) whose process is SIGKILLed right after the store
committed it: the tenant's audit log still records it (the entry is appended in the
purge's transaction), and verifies. Before, the entry was appended after the purge, so a
kill in between left an erasure the log never heard of, for good: a repeated request is
answered "erased already" (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import convoy
from convoy import MasterKey
from convoy.audit import AuditEvent, AuditInterceptor, AuditLog, verify_log
from convoy.stores import store_from_url

from .conftest import STORE_KINDS, store_db
from .engine_procs import T0, advance, wait_until
from .test_privacy import IN_NAME, Customer, serve

WORKER = Path(__file__).with_name("erase_killed_worker.py")
SRC = Path(convoy.__file__).resolve().parents[1]
KEY = MasterKey.generate()


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


def _engine(db: str | Path, clock: Path) -> convoy.Engine:
    store = store_from_url(db, clock=lambda: float(clock.read_text()))
    return convoy.Engine(store, master_key=MasterKey.from_text(KEY),
                         interceptors=[AuditInterceptor()])


@pytest.mark.parametrize("mode", ["erase", "purge"])
def test_an_erasure_killed_after_its_commit_is_in_the_audit_log(
        db: str | Path, tmp_path: Path, mode: str) -> None:
    clock = tmp_path / "clock"
    clock.write_text(repr(T0))

    async def sessions() -> None:
        async with _engine(db, clock) as eng:
            assert (await eng.run(serve, Customer(name=IN_NAME), subject="s-1",
                                  session_id="mine")).ok

    asyncio.run(sessions())
    advance(clock, 40 * 86400)  # (old enough for a purge of 30 days)
    ready = tmp_path / "purged"
    env = {**os.environ, "CONVOY_MASTER_KEY": KEY, "KILLED_CLOCK": str(clock),
           "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH"))
                                         if p)}
    proc = subprocess.Popen([sys.executable, str(WORKER), str(db), mode, str(ready)],
                            stderr=subprocess.PIPE, env=env)
    try:
        wait_until("the purge committed", ready.exists, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]

    async def check() -> None:
        async with _engine(db, clock) as eng:
            assert await eng.store.get_session("mine") is None  # (committed: purged)
            [erasure] = await eng.store.erasures()
            rows = await eng.store.audit_entries("default", 0, 1000)
            entries = [AuditEvent.decode(r.body) for r in rows]
            recorded = [e for e in entries if e.kind == "erasure"]
            assert [(e.refs["erasure"], e.refs["reason"], e.actor) for e in recorded] == \
                [(str(erasure.seq), erasure.reason, "dpo")], entries
            assert (await verify_log(AuditLog(eng.store), "default")).size == len(rows)
            if mode == "erase":
                with pytest.raises(convoy.SubjectErased):
                    await eng.erase("s-1")

    asyncio.run(check())
