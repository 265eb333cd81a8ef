"""``convoy trace`` of a session traced live whose engine was SIGKILLed mid-run: the
spans it kept (its first agent's) and the ones derived from its journal for the rest, in
one tree under the session's span (derived: the killed run never kept its own), each step
once. Before, the kept steps showed twice (kept and derived) with no root, and after a
resume the killed run's spans were rows of no parent beside the resumed run's."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.observability._spans import SPANS_NAMESPACE, load_chunks

from .clikit import cli
from .conftest import later_engine
from .trace_killed_app import chain, killed

APP = Path(__file__).with_name("trace_killed_app.py")


def _spans(db: Path) -> list[dict[str, Any]]:
    res = cli("trace", "k-1", "--db", str(db), "--json")
    assert res.code == 0, res.stderr
    spans: list[dict[str, Any]] = json.loads(res.stdout)
    return spans


def _one_tree_each_step_once(spans: list[dict[str, Any]]) -> None:
    ids = {s["span_id"] for s in spans}
    roots = [s for s in spans if not s["parent_id"]]
    assert [s["name"] for s in roots] == ["invoke_workflow trace.killed"], roots
    assert all(s["parent_id"] in ids for s in spans if s["parent_id"]), spans
    steps = Counter((s["attrs"].get("convoy.step.key"), s["name"]) for s in spans
                    if s["name"].startswith(("chat", "execute_tool")))
    assert all(n == 1 for n in steps.values()), steps


def test_the_trace_of_a_killed_live_traced_session_is_one_tree(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    env = {**os.environ, "RELEASE": str(tmp_path / "never"),
           "PYTHONPATH": os.pathsep.join([str(APP.parent.parent / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(APP), str(db)], env=env)
    try:
        async def a2_called_its_tool() -> bool:
            # (the model's answer to a2 journaled, and the spans of a2's run so far kept)
            async with convoy.Engine(db) as engine:
                if await engine.store.get_session("k-1") is None:
                    return False
                spans = load_chunks(list((await engine.store.kv_all(
                    SPANS_NAMESPACE + "k-1")).values()))
                return "1/0" in {r.key for r in await engine.journal("k-1")} and \
                    "1/0" in {s["attrs"].get("convoy.step.key") for s in spans}

        for _ in range(6000):  # (polling the store the child writes)
            if db.exists() and asyncio.run(a2_called_its_tool()):
                break
            assert proc.poll() is None, "the app exited"
            time.sleep(0.01)
        else:
            raise AssertionError("the app never reached its tool")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    before = _spans(db)
    _one_tree_each_step_once(before)
    kept = {(s["name"], s["attrs"].get("convoy.step.key")) for s in before
            if not s["attrs"].get("convoy.derived")}
    assert ("invoke_agent a1", "0/0") in kept and ("chat default", "1/0") in kept

    (tmp_path / "go").touch()

    async def resume() -> None:
        os.environ["RELEASE"] = str(tmp_path / "go")
        try:
            async with later_engine(db, workflows=[killed], interceptors=chain()) as eng:
                [res] = await eng.resume()
                assert res.ok, res
        finally:
            del os.environ["RELEASE"]

    asyncio.run(resume())
    after = _spans(db)
    _one_tree_each_step_once(after)
    lost = [s for s in after if "convoy.parent_lost" in s["attrs"]]
    assert [s["name"] for s in lost] == ["chat default"]  # (its agent's span never kept)


def test_a_session_under_a_callers_span_keeps_that_parent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session whose caller gave a ``traceparent``: its span's parent is the caller's,
    outside the session's spans, not lost (it was made its own parent, with the caller's
    span id as ``convoy.parent_lost``)."""
    (tmp_path / "go").touch()
    monkeypatch.setenv("RELEASE", str(tmp_path / "go"))
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    db = tmp_path / "p.db"

    async def run() -> None:
        async with convoy.Engine(db, interceptors=chain()) as engine:
            assert (await engine.run(killed, {"text": "x"}, session_id="k-1",
                                     headers={"traceparent": caller})).ok

    asyncio.run(run())
    spans = _spans(db)
    [top] = [s for s in spans if s["name"] == "invoke_workflow trace.killed"]
    assert top["parent_id"] == "b7ad6b7169203331"
    assert not any("convoy.parent_lost" in s["attrs"] for s in spans)
    assert all(s["parent_id"] != s["span_id"] for s in spans)
