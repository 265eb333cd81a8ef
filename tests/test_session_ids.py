"""An empty (or blank) session id names no session: every public entry that takes one
refuses it with a :class:`~convoy.UserError` naming the parameter, before it writes
anything; signal names, state namespaces and keys likewise."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy import UserError
from convoy.stores import SQLiteStore
from tests.clikit import workdir  # noqa: F401  (autouse fixture: the fixture workflows)

BLANK = ["", " ", "\u3000"]


@pytest.mark.parametrize("sid", BLANK)
async def test_an_empty_session_id_is_refused_naming_the_parameter(tmp_path: Path,
                                                                   sid: str) -> None:
    flow = convoy.load_workflow("cli_flows:shout")
    async with convoy.Engine(SQLiteStore(tmp_path / "c.db")) as engine:
        acme = engine.tenant("acme")
        calls: list[tuple[Callable[[], Awaitable[Any]], str]] = [
            (lambda: engine.run(flow, "a", session_id=sid), "session_id"),
            (lambda: acme.run(flow, "a", session_id=sid), "session_id"),
            (lambda: engine.run_many(flow, ["a", "b"], ids=["x", sid]), r"ids\[1\]"),
            (lambda: acme.run_many(flow, ["a"], ids=[sid]), r"ids\[0\]"),
        ]
        for view in (engine, acme):
            calls += [
                (lambda v=view: v.session(sid), "session_id"),
                (lambda v=view: v.result(sid), "session_id"),
                (lambda v=view: v.journal(sid), "session_id"),
                (lambda v=view: v.signal(sid, "go"), "session_id"),
                (lambda v=view: v.cancel(sid), "session_id"),
                (lambda v=view: v.replay(sid), "session_id"),
                (lambda v=view: v.retry(sid), "session_id"),
                (lambda v=view: v.retryable(ids=[sid]), r"ids\[0\]"),
                (lambda v=view: v.retry_many([sid]), r"session_ids\[0\]"),
            ]
        for call, param in calls:
            with pytest.raises(UserError, match=f"^{param} is empty"):
                await call()
        assert await engine.sessions() == []


async def test_empty_signal_names_namespaces_and_keys_are_refused(tmp_path: Path) -> None:
    flow = convoy.load_workflow("cli_flows:shout")
    async with convoy.Engine(SQLiteStore(tmp_path / "c.db")) as engine:
        await engine.run(flow, "a", session_id="s-1")
        with pytest.raises(UserError, match="the signal name is empty"):
            await engine.signal("s-1", "", True)
        with pytest.raises(UserError, match="the state namespace is empty"):
            engine.state("")
        with pytest.raises(UserError, match=r"state key .*empty"):
            await engine.state("ns").set("", 1, expected_version=0)
        assert await engine.state("ns").keys() == []


async def test_a_session_an_earlier_release_stored_with_an_empty_id_can_still_be_read(
        tmp_path: Path) -> None:
    flow = convoy.load_workflow("cli_flows:shout")
    async with convoy.Engine(SQLiteStore(tmp_path / "c.db")) as engine:
        await engine.run(flow, "a", session_id="s-1")
    conn = sqlite3.connect(tmp_path / "c.db")
    with conn:  # what engine.run(..., session_id="") stored before it was refused
        conn.execute("UPDATE sessions SET id='' WHERE id='s-1'")
        conn.execute("UPDATE journal SET session_id='' WHERE session_id='s-1'")
    conn.close()
    async with convoy.Engine(SQLiteStore(tmp_path / "c.db")) as engine:
        assert (await engine.session("")).status == "completed"
        assert (await engine.result("")).output == "A"
        with pytest.raises(UserError, match="is already completed"):
            await engine.cancel("")
