"""Helpers shared by the CLI tests: ``convoy ARGS`` in-process (``CliRunner``) or as a real
subprocess, input files, summary-table cells, and the store read through its API."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import convoy
from convoy.cli import app
from convoy.stores import SessionFilter, SessionRow, StepRecord, store_from_url

FIXTURES = Path(__file__).parent / "fixtures"
SRC = Path(convoy.__file__).resolve().parents[1]  # the convoy under test, for subprocesses
FLOW = "cli_flows:handle"

GOOD = [
    {"subject": "refund", "body": "please refund me", "customer": "c-1"},
    {"subject": "login", "body": "cannot log in"},
    {"subject": "late", "body": "where is my order"},
]


@dataclass
class Res:
    code: int
    stdout: str
    stderr: str


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs in its own directory, with the fixture workflows importable."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(FIXTURES))  # also restores sys.path afterwards
    monkeypatch.delenv("CONVOY_DB", raising=False)
    monkeypatch.delenv("CONVOY_BUSY_TIMEOUT", raising=False)
    monkeypatch.delenv("CONVOY_TENANT", raising=False)
    return tmp_path


def cli(*args: str, env: dict[str, str] | None = None) -> Res:
    """``convoy ARGS`` in this process. A Python exception that escapes the command (a
    traceback for the user) fails the test."""
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Res(result.exit_code, result.stdout, result.stderr)


def subprocess_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m convoy.cli ARGS`` for real."""
    env = {k: v for k, v in os.environ.items() if k not in ("CONVOY_DB", "CONVOY_TENANT")}
    env.update({"PYTHONPATH": os.pathsep.join([str(FIXTURES), str(SRC)]),
                "PYTHONIOENCODING": "utf-8", "COLUMNS": "200", "NO_COLOR": "1"})
    return subprocess.run([sys.executable, "-m", "convoy.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def write_jsonl(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n"
                            for x in lines))
    return path


def summary(stdout: str, label: str) -> str:
    """The value cell of a summary-table row."""
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) >= 3 and cells[1] == label:
            return cells[2]
    raise AssertionError(f"no {label!r} row in:\n{stdout}")


def no_row(stdout: str, label: str) -> bool:
    try:
        summary(stdout, label)
    except AssertionError:
        return True
    return False


def one_line_error(res: Res, code: int, text: str) -> None:
    assert res.code == code, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and text in lines[0], lines[0]
    assert "Traceback" not in res.stderr + res.stdout


# -- the store, read through its API -------------------------------------------------------


def sessions(db: str | Path = Path("convoy.db")) -> list[SessionRow]:
    async def read() -> list[SessionRow]:
        store = store_from_url(db)
        await store.open()
        try:
            return await store.list_sessions(SessionFilter(limit=10_000))
        finally:
            await store.aclose()

    return asyncio.run(read())


def session(sid: str, db: Path = Path("convoy.db")) -> SessionRow:
    (row,) = [r for r in sessions(db) if r.id == sid]
    return row


def journal(sid: str, db: str | Path = Path("convoy.db")) -> list[StepRecord]:
    async def read() -> list[StepRecord]:
        store = store_from_url(db)
        await store.open()
        try:
            return await store.journal(sid)
        finally:
            await store.aclose()

    return asyncio.run(read())


def session_ids(db: Path = Path("convoy.db")) -> list[str]:
    return sorted(r.id for r in sessions(db))


def ids_of(lines: list[object], flow: str = FLOW) -> list[str]:
    """The session ids ``convoy run`` gives these input lines (content hashes)."""
    from convoy.cli._inputs import content_id

    wf = convoy.load_workflow(flow)
    return [content_id(wf, wf.input_adapter.validate_python(
        json.loads(x) if isinstance(x, str) else x)) for x in lines]


def tamper(sql: str, *params: Any, db: Path = Path("convoy.db")) -> None:
    """Change the store behind Convoy's back: what a crash (or another engine) leaves."""
    with sqlite3.connect(db) as conn:
        conn.execute(sql, params)


def run_ok(*extra: str, lines: list[object] | None = None, flow: str = FLOW) -> Res:
    write_jsonl(Path("in.jsonl"), GOOD if lines is None else lines)
    res = cli("run", flow, "--input", "in.jsonl", *extra)
    assert res.code == 0, res.stderr + res.stdout
    return res
