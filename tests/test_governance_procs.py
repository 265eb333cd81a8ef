"""Engine processes with governance on (audit, live tracing to the store, metrics, sealed
data subjects) share one store: one is SIGKILLed mid-run, another takes its sessions over
on a shared clock, and a data subject is erased while that one is still running (refused
while it holds one of the subject's sessions, with nothing deleted, then erased). After:
every session is finished or erased, nothing of the subject is left (no row names it, no
span, no byte of its data in the SQLite files), the audit log verifies and holds every
step the journal holds as done (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy import MasterKey
from convoy.audit import AuditEvent, AuditInterceptor, AuditLog, verify_log
from convoy.stores import NewSession, SessionFilter, store_from_url
from convoy.stores._protocol import SPANS_NAMESPACE

from .conftest import store_db
from .engine_procs import T0, advance, lines, wait_until
from .gov_worker import IBAN, PERSON

WORKER = Path(__file__).with_name("gov_worker.py")
SRC = Path(convoy.__file__).resolve().parents[1]
KEY = MasterKey.generate()
N = 40  # sessions, half of them the subject's


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    made = store_db(request.param, tmp_path)
    yield str(next(made))
    next(made, None)


def _start(d: Path, url: str, **env: str) -> subprocess.Popen[bytes]:
    full = {**os.environ, "GOV_DB": url, "CONVOY_MASTER_KEY": KEY,
            "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH"))
                                          if p), **env}
    return subprocess.Popen([sys.executable, str(WORKER), str(d)], stderr=subprocess.PIPE,
                            env=full)


def _engine(url: str, clock: Path) -> convoy.Engine:
    from .gov_worker import serve

    store = store_from_url(url, clock=lambda: float(clock.read_text()))
    return convoy.Engine(store, workflows=[serve], master_key=MasterKey.from_text(KEY),
                         interceptors=[AuditInterceptor()])


@pytest.mark.slow
def test_governed_engines_through_a_kill_a_takeover_and_an_erasure(
        tmp_path: Path, url: str) -> None:
    clock = tmp_path / "clock"
    clock.write_text(repr(T0))
    gate = tmp_path / "go"
    subject_ids = [f"p{i}" for i in range(N // 2)]
    other_ids = [f"o{i}" for i in range(N // 2)]

    async def submit() -> None:
        async with _engine(url, clock) as eng:
            await eng.store.create_sessions(
                [NewSession(id=sid, workflow="gov.serve", version="1", tenant="default",
                            input=json.dumps({"name": PERSON}), subject="p-1")
                 for sid in subject_ids] +
                [NewSession(id=sid, workflow="gov.serve", version="1", tenant="default",
                            input=json.dumps({"name": f"someone {sid}"}))
                 for sid in other_ids])

    asyncio.run(submit())
    shared = {"GOV_CLOCK": str(clock), "GOV_GATE": str(gate)}
    a = _start(tmp_path, url, GOV_HOST="machine-a", GOV_WHO="a", GOV_LEASE="30", **shared)
    b = _start(tmp_path, url, GOV_HOST="machine-b", GOV_WHO="b", GOV_LEASE="1e9", **shared)
    try:
        wait_until("two engines open", lambda: len(list(tmp_path.glob("ready-*"))) == 2, a, b)
        gate.touch()

        def calls_by(who: str) -> int:
            return sum(x.startswith(f"{who} ") for x in lines(tmp_path / "tool_calls.log"))

        wait_until("a and b calling tools", lambda: min(map(calls_by, "ab")) >= 6, a, b)
        a.send_signal(signal.SIGKILL)
        a.communicate()
        advance(clock, 31)  # a's leases lapsed: b takes its sessions over

        async def erase() -> tuple[Any, int]:
            refused = 0
            async with _engine(url, clock) as eng:
                while True:
                    seen = len(lines(tmp_path / "tool_calls.log"))
                    try:
                        return await eng.erase("p-1", by="dpo"), refused
                    except convoy.SessionsHeld:
                        refused += 1
                    # (b holds one of the subject's sessions: again once it moved on)
                    await asyncio.to_thread(wait_until, "b to move on", lambda n=seen: (
                        b.poll() is not None or len(lines(tmp_path / "tool_calls.log")) > n))

        event, refused = asyncio.run(erase())
        _, err = b.communicate(timeout=300)
        assert b.returncode == 0, err.decode()[-3000:]
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
                p.communicate()

    async def check() -> dict[str, Any]:
        store = store_from_url(url)
        await store.open()
        try:
            rows = {r.id: r for r in await store.list_sessions(SessionFilter(limit=10 * N))}
            done = [(sid, rec.key, rec.kind) for sid in rows
                    for rec in (await store.load_journal(sid)).values()
                    if rec.status == "completed" and rec.kind in ("model", "tool")]
            size = await store.audit_size("default")
            entries = [AuditEvent.decode(r.body)
                       for r in await store.audit_entries("default", 0, size + 10)]
            verified = (await verify_log(AuditLog(store), "default")).size
            spans = {sid: await store.kv_all(SPANS_NAMESPACE + sid)
                     for sid in subject_ids + other_ids}
            return {"rows": rows, "done": done, "entries": entries, "verified": verified,
                    "size": size, "spans": spans,
                    "named": await store.subject_sessions("default", "p-1")}
        finally:
            await store.aclose()

    got = asyncio.run(check())
    rows = got["rows"]
    assert event.sessions == N // 2 and event.key, (event, refused)
    assert sorted(rows) == sorted(other_ids) and got["named"] == []
    assert all(r.status == "completed" for r in rows.values()), rows
    assert got["verified"] == got["size"] == len(got["entries"])
    audited = Counter((e.session_id, e.step_key, e.kind) for e in got["entries"])
    kind = {"model": "model_call", "tool": "tool_call"}
    assert [d for d in got["done"] if not audited[(d[0], d[1], kind[d[2]])]] == []
    assert [e.kind for e in got["entries"]].count("erasure") == 1
    left = {sid: v for sid, v in got["spans"].items() if sid in subject_ids and v}
    assert left == {}, f"span chunks of erased sessions: {sorted(left)}"
    assert all(got["spans"][sid] for sid in other_ids)
    if not url.startswith("postgresql"):
        for f in sorted(tmp_path.glob("*.db*")):
            data = f.read_bytes()
            assert PERSON.encode() not in data and IBAN.encode() not in data, f.name
