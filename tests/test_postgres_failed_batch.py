"""A group commit that fails on PostgreSQL fails every write of its batch; a call that
submitted several writes and awaits the last (an audit seal of several sessions, several
key-value rows, statements that commit as one) must not leave the others' futures holding
an error nobody retrieves: asyncio then printed "Future exception was never retrieved"
with a traceback for each, on stderr, during a database outage (an operator's trial: 14
of them from one worker in 8 seconds)."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import pytest

from convoy import StoreError
from convoy.stores import AuditSeal

from .store_backends import FakeClock, PostgresBackend


async def test_a_failed_batch_leaves_no_error_unretrieved(tmp_path: Path) -> None:
    backend = PostgresBackend(tmp_path)
    store: Any = backend.new(FakeClock())
    await store.open()
    unretrieved: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, ctx: unretrieved.append(ctx["message"]))

    async def outage(conn: Any, batch: Any) -> Any:
        raise StoreError("the store is down (a test's outage)", transient=True)

    try:
        store._run_batch = outage
        seals = [AuditSeal(tenant="t", namespace="convoy.audit.cursor", session_id=f"s{i}",
                           before=None, after="1", bodies=[b"{}"]) for i in range(3)]
        with pytest.raises(StoreError):
            await store.audit_seal(seals)
        with pytest.raises(StoreError):
            await store.kv_put_many([("n", f"k{i}", "v") for i in range(3)])
        with pytest.raises(StoreError):
            await store._submit_once([("SELECT 1", ()), ("SELECT 2", ()), ("SELECT 3", ())],
                                     wait=True)
        gc.collect()
        await asyncio.sleep(0)  # (the handler is called from a callback)
        assert unretrieved == []
    finally:
        loop.set_exception_handler(None)
        del store._run_batch
        await store.aclose()
        backend.cleanup()
