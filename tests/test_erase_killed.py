"""An erasure (or a retention purge) whose process is SIGKILLed right after the store
committed it: the tenant's audit log still records it (the entry is appended in the
purge's transaction), and verifies; and the repeated request (answered "erased already",
or a purge with nothing left to purge) compacts the store, which the killed process never
did: on SQLite, the subject's wrapped key (or a purged session's plain data) stayed in the
database's free pages and WAL for good. Before, the entry was appended after the purge, so
a kill in between left an erasure the log never heard of (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sqlite3
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
from .test_privacy import IN_NAME, Customer, files_of, scan, serve

WORKER = Path(__file__).with_name("erase_killed_worker.py")
SRC = Path(convoy.__file__).resolve().parents[1]
KEY = MasterKey.generate()
#: A session's plain input (no subject): what a purge by age deletes (unique to this run:
#: the data files of the PostgreSQL cluster are scanned for it).
PLAIN = f"Bertrand Olafsdottir-{secrets.token_hex(6)}"


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

    async def sessions() -> str:
        async with _engine(db, clock) as eng:
            assert (await eng.run(serve, Customer(name=IN_NAME), subject="s-1",
                                  session_id="mine")).ok
            assert (await eng.run(serve, Customer(name=PLAIN), session_id="theirs")).ok
            wrapped = await eng.keys.store.subject_key_get(  # type: ignore[union-attr]
                "default", "s-1")
            assert wrapped is not None
            return wrapped

    # Another process has the store open throughout (an engine serving it): the WAL is
    # never deleted as the last connection closes, so what it holds stays until the store
    # is compacted.
    other = None if isinstance(db, str) else sqlite3.connect(db)
    if other is not None:
        other.execute("SELECT count(*) FROM sqlite_master").fetchone()
    wrapped = asyncio.run(sessions())
    # what must not be left in the files: the destroyed key; the purged plain input
    gone = wrapped if mode == "erase" else PLAIN
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
            if mode == "erase":  # (the repeated request)
                with pytest.raises(convoy.SubjectErased):
                    await eng.erase("s-1")
            else:
                assert await eng.purge(30 * 86400) == []

    asyncio.run(check())
    if other is not None:
        files = sorted(tmp_path.glob("convoy.db*"))
        assert [f.name for f in files if gone.encode() in f.read_bytes()] == []
        other.close()
    else:  # the cluster's data files, after a checkpoint (its WAL aside: see test_privacy)
        import psycopg

        from tests import pg_cluster

        with psycopg.connect(pg_cluster.server_url(), autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        datadir = Path(pg_cluster._state["dir"])
        assert scan([p for p in files_of(datadir) if "pg_wal" not in p.parts],
                    (gone,)) == {}
