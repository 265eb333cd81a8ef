"""Engine processes that see a workflow's new version at once (workers after a deploy)
record its ``config_change`` once: the audit's version record is moved by a
compare-and-set in the store, across processes as within one. Each engine is a real
process (``tests/audit_version_worker.py``) on one SQLite file or PostgreSQL schema."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import convoy
from convoy.audit import AuditEvent, AuditLog, verify_log
from convoy.stores import store_from_url
from tests.conftest import STORE_KINDS, store_db
from tests.engine_procs import wait_until

WORKER = Path(__file__).with_name("audit_version_worker.py")
SRC = Path(convoy.__file__).resolve().parents[1]
PROCESSES = 4
VERSIONS = ("v1", "v2", "v3")


@pytest.fixture(params=STORE_KINDS)
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


def _deploy(db: str, version: str, gate: Path) -> None:
    """Start the processes, wait until every engine is open, let them all go at once, and
    wait for each to finish."""
    gate.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)}
    procs = [subprocess.Popen([sys.executable, str(WORKER), db, version, str(gate), str(i)],
                              stderr=subprocess.PIPE, env=env) for i in range(PROCESSES)]
    try:
        wait_until("every engine open",
                   lambda: len(list(gate.glob("ready-*"))) == PROCESSES, *procs)
        (gate / "go").touch()
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err.decode()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def _log(db: str) -> list[AuditEvent]:
    """The tenant's log, verified whole."""
    async def read() -> list[AuditEvent]:
        store = store_from_url(db)
        await store.open()
        try:
            rows = await store.audit_entries("acme", 0, 10_000)
            assert (await verify_log(AuditLog(store), "acme")).size == len(rows)
            return [AuditEvent.decode(r.body) for r in rows]
        finally:
            await store.aclose()

    return asyncio.run(read())


def test_processes_that_start_a_new_version_at_once_record_one_config_change_each(
        any_db: str | Path, tmp_path: Path) -> None:
    db = str(any_db)
    for version in VERSIONS:
        _deploy(db, version, tmp_path / f"gate-{version}")
    events = _log(db)
    changes = [(e.actor, e.refs["version"], e.refs.get("previous"))
               for e in events if e.kind == "config_change"]
    assert changes == [("audit.deployed", "v1", None), ("audit.deployed", "v2", "v1"),
                       ("audit.deployed", "v3", "v2")]
    # (and every process's session has its step's entry)
    assert len({e.session_id for e in events if e.kind != "config_change"}) == \
        PROCESSES * len(VERSIONS)
