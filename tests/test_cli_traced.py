"""The command line traces where the store keeps the trace: a session an application traced
to the store and parked, resumed by ``convoy resume`` (no ``--trace``), goes on in the
same trace, with the spans of the resumed run's agents and model calls; a session traced
nowhere the command line can see gets no spans from it."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import convoy
from convoy.observability import Tracing
from convoy.observability._spans import SPANS_NAMESPACE, load_chunks
from convoy.stores import SQLiteStore
from tests.clikit import cli, session, workdir  # noqa: F401  (workdir: a fixture)

OK = {"label": "billing"}


def _flows() -> ModuleType:
    return importlib.import_module("audited_flows")  # tests/fixtures, on the path


def _spans(db: Path, sid: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        store = SQLiteStore(db)
        await store.open()
        try:
            chunks = await store.kv_all(SPANS_NAMESPACE + sid)
            return load_chunks(chunks[k] for k in sorted(chunks))
        finally:
            await store.aclose()

    return asyncio.run(read())


def test_convoy_resume_goes_on_with_the_trace_the_store_keeps(tmp_path: Path) -> None:
    db = tmp_path / "traced.db"
    flows = _flows()

    async def park() -> None:
        sim = convoy.SimModel({"*": {"output": OK}})
        async with convoy.Engine(SQLiteStore(db), models={"sim:": sim},
                                 interceptors=[Tracing(["store"], live=True)]) as app:
            assert (await app.run(flows.flow, "hi", session_id="s1")).status == "waiting"
            await app.signal("s1", "go", "now")
        async with convoy.Engine(SQLiteStore(db), models={"sim:": sim}) as plain:
            assert (await plain.run(flows.flow, "hi", session_id="s2")).status == "waiting"
            await plain.signal("s2", "go", "now")

    asyncio.run(park())
    before = _spans(db, "s1")
    assert {s["name"] for s in before} >= {"invoke_agent au0", "invoke_agent au1"}
    res = cli("resume", "--db", str(db), "--model", "sim:")
    assert res.code == 0, res.stderr
    assert session("s1", db).status == session("s2", db).status == "completed"
    after = _spans(db, "s1")
    names = [s["name"] for s in after]
    assert "invoke_agent au2" in names and "invoke_agent au3" in names
    assert len({s["trace_id"] for s in after}) == 1  # the same trace, gone on
    runs = [s for s in after if s["name"] == "invoke_workflow cli.audited"]
    assert len(runs) == 2 and runs[1]["attrs"]["convoy.session.resumed"] is True
    assert _spans(db, "s2") == []  # traced nowhere the command line can see
    shown = cli("trace", "s1", "--db", str(db))
    assert shown.code == 0 and "invoke_agent au3" in shown.stdout, shown.stderr


async def test_a_session_found_traced_is_remembered_not_read_again_each_run(
        tmp_path: Path) -> None:
    from convoy.cli._traced import TraceWhereTraced
    from convoy.observability._tracing import TRACE_HEADER

    db = tmp_path / "known.db"
    async with convoy.Engine(db) as eng:
        await eng.store.kv_put(SPANS_NAMESPACE + "s1", "0", "{}")
        traced = TraceWhereTraced()
        await traced.start(eng)
        reads: list[str] = []
        real = eng.store.kv_all

        async def counted(namespace: str) -> dict[str, str]:
            reads.append(namespace)
            return await real(namespace)

        eng.store.kv_all = counted  # type: ignore[method-assign]
        headers = {TRACE_HEADER: "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"}
        assert await traced._kept("s1", headers) and await traced._kept("s1", headers)
        assert not await traced._kept("s2", headers) and not await traced._kept("s2", {})
        assert reads == [SPANS_NAMESPACE + "s1", SPANS_NAMESPACE + "s2"]
        await traced.close()
