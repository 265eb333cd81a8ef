"""Damaged rows of the store's key-value table that commands read, other than spans
(``tests/test_cli_store_damage.py``) and alert baselines: the master key's check, the
audit log's tiles (a cache of subtree roots), audit cursors, sealer markers, the audited
workflow versions and subject labels. Each is damaged in a real SQLite store (text that
is not JSON or not what Convoy writes, a number, bytes) and every command that reads it
runs: one clear line, or it does its work, never a traceback."""

from __future__ import annotations

import asyncio
import base64
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.audit import AuditEvent, AuditInterceptor, AuditLog
from convoy.stores import SQLiteStore
from tests.clikit import FIXTURES, Res, cli, workdir  # noqa: F401  (autouse fixture)

#: Values no Convoy writes: not JSON, JSON of the wrong type, not ASCII, not text.
DAMAGE: list[Any] = ["{nope", "[]", "éé", 5, b"\x00\xff"]
#: Each row (namespace, key: None for every key of it) and the commands that read it.
ROWS: list[tuple[str, str | None, list[tuple[str, ...]]]] = [
    ("convoy.master-key", "check", [("sessions", "show", "s1"), ("trace", "s1"),
                                    ("export", "c-1"), ("resume",), ("erase", "c-1")]),
    ("convoy.audit.tiles/acme", None, [("audit", "prove", "5", "--key", "a.key"),
                                       ("audit", "verify")]),
    ("convoy.audit.sealer", None, [("resume",), ("cancel", "s1")]),
    ("convoy.audit.config", None, [("resume",)]),
    ("convoy.subject-refs/acme", None, [("sessions", "show", "s1"), ("export", "c-1"),
                                        ("erase", "c-1")]),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of tenant acme: an audited session of subject c-1 waiting for a signal
    (sealed under the master key), an audit log past one tile, with a checkpoint."""
    where = tmp_path_factory.mktemp("kv")
    sys.path.insert(0, str(FIXTURES))
    try:
        import audited_flows
    finally:
        sys.path.remove(str(FIXTURES))

    key = where / "m.key"
    key.write_text(base64.b64encode(bytes(range(32))).decode())

    async def build() -> None:
        mp = pytest.MonkeyPatch()
        mp.setenv("CONVOY_MASTER_KEY_FILE", str(key))
        try:
            async with convoy.Engine(
                    SQLiteStore(where / "convoy.db"), interceptors=[AuditInterceptor()],
                    models={"sim:": convoy.SimModel({"*": {"output": {"label": "b"}}})}) as e:
                res = await e.tenant("acme").run(audited_flows.flow, "hi", session_id="s1",
                                                 subject="c-1")
                assert res.status == "waiting", res
        finally:
            mp.undo()
        store = SQLiteStore(where / "convoy.db")
        await store.open()
        try:
            log = AuditLog(store, key_path=where / "a.key")
            event = AuditEvent(kind="session", status="ok", at=1.0, session_id="x",
                               actor="a", target="t")
            await log.append("acme", [event] * 1100)
            await log.checkpoint("acme")
            store.kv_put("convoy.audit.sealer", "vm:1:dead", '{"through": 1, "beat": 1}')
        finally:
            await store.aclose()

    asyncio.run(build())
    with sqlite3.connect(where / "convoy.db") as conn:
        held = {ns for (ns,) in conn.execute("SELECT DISTINCT namespace FROM kv")}
    conn.close()
    assert {ns for ns, _, _ in ROWS} <= held, held
    return where


def _no_traceback(res: Res, args: tuple[str, ...]) -> None:
    assert "Traceback" not in res.stdout + res.stderr, (args, res.stderr)
    if res.code != 0:
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, res.stderr)


@pytest.mark.parametrize("value", DAMAGE, ids=repr)
@pytest.mark.parametrize(("namespace", "key", "commands"), ROWS, ids=[r[0] for r in ROWS])
def test_a_damaged_kv_row_is_one_line_or_does_no_harm(
        built: Path, namespace: str, key: str | None, commands: list[tuple[str, ...]],
        value: Any) -> None:
    env = {"CONVOY_MASTER_KEY_FILE": str(built / "m.key")}
    for args in commands:
        shutil.copy(built / "convoy.db", "convoy.db")
        shutil.copy(built / "a.key", "a.key")
        with sqlite3.connect("convoy.db") as conn:
            changed = conn.execute(
                "UPDATE kv SET value=? WHERE namespace=? AND (? IS NULL OR key=?)",
                (value, namespace, key, key)).rowcount
        conn.close()
        assert changed, namespace
        res = cli(*args, "--tenant", "acme", "--import", "audited_flows", env=env) \
            if args[0] == "resume" else cli(*args, "--tenant", "acme", env=env)
        _no_traceback(res, args)
        if namespace == "convoy.master-key":
            # (every key is refused by a damaged check: it says so, not "another key")
            assert res.code == 1 and "master key check" in res.stderr and \
                "the store was edited or damaged" in res.stderr, (args, res.stderr)


@pytest.mark.parametrize("value", DAMAGE, ids=repr)
def test_a_damaged_audit_cursor_is_one_line_or_does_no_harm(built: Path, value: Any) -> None:
    """The session's audit cursor, kept in its row (SQLite's store schema 9), changed to
    values no Convoy writes: resuming the session and verifying the log say one line or
    do no harm."""
    env = {"CONVOY_MASTER_KEY_FILE": str(built / "m.key")}
    for args in [("resume",), ("audit", "verify")]:
        shutil.copy(built / "convoy.db", "convoy.db")
        shutil.copy(built / "a.key", "a.key")
        with sqlite3.connect("convoy.db") as conn:
            changed = conn.execute("UPDATE sessions SET audit_cursor=? WHERE id='s1' AND "
                                   "audit_cursor IS NOT NULL", (value,)).rowcount
        conn.close()
        assert changed == 1
        res = cli(*args, "--tenant", "acme", "--import", "audited_flows", env=env) \
            if args[0] == "resume" else cli(*args, "--tenant", "acme", env=env)
        _no_traceback(res, args)
