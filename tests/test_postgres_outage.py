"""A worker on PostgreSQL rides out a server that goes down and comes back (a restart, a
failover): it warns and tries the store again after a growing delay, rather than exiting,
and once the server answers it runs what is runnable. On a real server of its own (it is
stopped and started again on its port), with a fake clock for the delays; every wait is
for state the test can observe."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

import convoy
from convoy.stores import PostgresStore

from . import pg_cluster
from .clikit import FIXTURES, subprocess_env
from .fakeclock import FakeClock

pytestmark = pytest.mark.slow


@convoy.workflow(name="outage.double")
async def double(ctx: convoy.Context, n: int) -> int:
    got: int = await ctx.step("double", lambda: n * 2)
    return got


class Server:
    """A PostgreSQL server of this test's own, on a fixed port: stopped and started."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.url = self._script("start", str(where)).splitlines()[-1]
        self.port = self.url.rsplit(":", 1)[1].split("/", 1)[0]

    def _script(self, *args: str) -> str:
        done = subprocess.run(["bash", str(pg_cluster.SCRIPT), *args], capture_output=True,
                              text=True, check=False, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def stop(self) -> None:
        self._script("stop", str(self.where))

    def start(self) -> None:
        self._script("start", str(self.where), self.port)


@pytest.fixture
def server() -> Iterator[Server]:
    pg_cluster.server_url()  # (skips with CONVOY_SKIP_POSTGRES=1, says how to install)
    where = Path(tempfile.mkdtemp(prefix="convoy-pg-outage-"))
    srv = Server(where)
    try:
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(where, ignore_errors=True)


async def eventually(check: Callable[[], Awaitable[bool]], what: str,
                     between: Callable[[], None] = lambda: None) -> None:
    for _ in range(30_000):
        if await check():
            return
        between()
        await asyncio.sleep(0.001)
    raise AssertionError(f"never happened: {what}")


async def test_a_worker_rides_out_a_postgres_restart(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()

    async def pending(*ids: str) -> None:
        async with convoy.Engine(PostgresStore(server.url, clock=clock)) as e:
            e.drain()
            await e.run_many(double, [int(i[1:]) for i in ids], ids=list(ids))

    await pending("s1")
    store = PostgresStore(server.url, clock=clock, busy_timeout=2)
    async with convoy.Engine(store, workflows=[double]) as engine:

        def completed(*ids: str) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                try:
                    rows = [await store.get_session(sid) for sid in ids]
                except convoy.StoreError:
                    return False
                return all(r is not None and r.status == "completed" for r in rows)
            return check

        def warned() -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return any(r.getMessage().startswith("the store failed (")
                           for r in caplog.records)
            return check

        with caplog.at_level(logging.WARNING, logger="convoy"):
            worker = asyncio.create_task(engine.serve(poll_interval=0.005))
            await eventually(completed("s1"), "s1 completed")
            server.stop()
            await eventually(warned(), "a warning that the store failed")
            assert not worker.done()
            server.start()
            await pending("s2", "s3")
            # The clock moves on (a delay's worth at a time) until the worker is back.
            await eventually(completed("s2", "s3"), "s2 and s3 completed",
                             between=lambda: clock.advance(0.05))
            assert not worker.done()
            worker.cancel()
            with pytest.raises(asyncio.CancelledError):
                await worker
        assert [(await engine.result(s)).output for s in ("s1", "s2", "s3")] == [2, 4, 6]
        said = [r.getMessage() for r in caplog.records if r.name == "convoy"]
        assert all("\n" not in m and "tries it again in" in m for m in said), said


def test_convoy_worker_says_so_in_one_line_and_carries_on(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``convoy worker`` as a user runs it, its server stopped and started under it: it
    does not exit; stderr has its own one-line warnings, not the pool's two-line record of
    each failed reconnection, and no traceback; the sessions due meanwhile complete."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    import outage_flows

    ids = ["w1", "w2", "w3"]

    async def make() -> None:
        async with convoy.Engine(server.url) as e:
            res = await e.run_many(outage_flows.later, [1, 2, 3], ids=ids)
            assert [r.status for r in res] == ["waiting"] * 3

    async def statuses() -> list[str]:
        store = PostgresStore(server.url)
        await store.open()
        try:
            rows = [await store.get_session(sid) for sid in ids]
            return [r.status if r is not None else "missing" for r in rows]
        finally:
            await store.aclose()

    asyncio.run(make())
    err = tmp_path / "worker.err"
    with err.open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "convoy.cli", "worker", "outage_flows", "--db", server.url],
            cwd=tmp_path, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=log)

    def wait_for(check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 120  # (a bound for a broken worker, not a timing)
        while not check():
            assert worker.poll() is None, f"the worker exited: {err.read_text()}"
            assert time.monotonic() < deadline, f"never happened: {what}: {err.read_text()}"
            time.sleep(0.05)

    try:
        wait_for(lambda: "worker on " in err.read_text(), "the worker serving")
        server.stop()
        wait_for(lambda: "warning: the store failed (" in err.read_text(), "a warning")
        server.start()
        wait_for(lambda: asyncio.run(statuses()) == ["completed"] * 3, "every session run")
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    text = err.read_text()
    assert "Traceback" not in text and "error connecting" not in text, text
    assert "Is the server running" not in text, text
    for line in text.splitlines():
        assert line.startswith(("worker on ", "warning: the store failed (",
                                "warning: session ", "warning: could not renew the session "
                                "leases (", "stopping: ", "stopped after ")), text


PAID: list[int] = []


async def test_a_payment_made_as_the_server_stops_is_journaled_once_it_is_back(
        server: Server) -> None:
    """A non-idempotent step that ran while the server went down: its outcome is written
    again once the server answers, so the session completes, paid once, and is not
    escalated for an outcome the journal lacks."""
    failed: list[str] = []

    class Counted(PostgresStore):
        async def append(self, session_id: str, owner: str, record: object,
                         *a: object, **kw: object) -> object:
            try:
                return await super().append(session_id, owner, record, *a, **kw)  # type: ignore[arg-type]
            except convoy.StoreError as e:
                failed.append(f"{e.transient}: {e}")
                raise

    @convoy.workflow(name="outage.pay")
    async def pay(ctx: convoy.Context, n: int) -> int:
        def charge() -> int:
            PAID.append(n)
            server.stop()  # (the server goes down as the payment is made)
            return n

        got: int = await ctx.step("charge", charge)
        return got

    async with convoy.Engine(Counted(server.url, clock=FakeClock(), busy_timeout=2)) as e:
        run = asyncio.create_task(e.run(pay, 7, session_id="p"))
        await eventually(lambda: _true(bool(failed)), "the outcome's write failing")
        server.start()
        res = await run
        assert res.status == "completed" and res.output == 7, res
        assert PAID == [7] and failed[0].startswith("True: "), failed
        assert [(r.key, r.status) for r in await e.store.journal("p")] == \
            [("0", "completed")]


async def _true(value: bool) -> bool:
    return value
