"""Helpers shared by the CLI tests: ``convoy ARGS`` in-process (``CliRunner``) or as a real
subprocess, input files, summary-table cells, and the store read through its API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
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
    monkeypatch.delenv("CONVOY_INTERCEPTORS", raising=False)
    return tmp_path


def cli(*args: str, env: dict[str, str] | None = None) -> Res:
    """``convoy ARGS`` in this process. A Python exception that escapes the command (a
    traceback for the user) fails the test."""
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Res(result.exit_code, result.stdout, result.stderr)


def subprocess_env() -> dict[str, str]:
    """The environment of a real ``python -m convoy.cli``: the convoy under test and the
    fixture workflows importable, no store, tenant or interceptors from the caller's
    shell."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CONVOY_DB", "CONVOY_TENANT", "CONVOY_INTERCEPTORS")}
    env.update({"PYTHONPATH": os.pathsep.join([str(FIXTURES), str(SRC)]),
                "PYTHONIOENCODING": "utf-8", "COLUMNS": "200", "NO_COLOR": "1"})
    return env


def subprocess_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m convoy.cli ARGS`` for real."""
    return subprocess.run([sys.executable, "-m", "convoy.cli", *args], cwd=cwd,
                          env=subprocess_env(), capture_output=True, text=True, timeout=120,
                          check=False)


#: How long a background command may take to print a line or to exit after a signal: a
#: limit for a broken setup (a hang), not a timing any test relies on.
LIMIT = 120.0


#: ``python -c`` code that starts ``python ARGV[2:]`` in its place with SIGINT ignored
#: (ARGV[1] ``ignored``) or at its default: a background job of a non-interactive shell
#: (``cmd &`` in a script, a CI runner's step) and everything it starts inherit SIGINT
#: ignored, and Python then raises no ``KeyboardInterrupt``.
WITH_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN "
               "if sys.argv[1] == 'ignored' else signal.SIG_DFL); "
               "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])")


class Background:
    """``python -m convoy.cli ARGS`` running alongside the test: what it prints read line by
    line as it comes (the lines a command prints once it is ready, or as it works), its
    stdin a pipe the test may write to. Start it with the ``background`` fixture, which
    kills it if the test did not stop it, so a failure cannot leave it running into other
    tests. It starts with SIGINT at its default, or ``sigint="ignored"`` (see
    :data:`WITH_SIGINT`), whatever the test process inherited."""

    def __init__(self, cwd: Path, args: tuple[str, ...], sigint: str = "default") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WITH_SIGINT, sigint, "-m", "convoy.cli", *args], cwd=cwd,
            env=subprocess_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.printed: dict[str, list[str]] = {"stdout": [], "stderr": []}  # lines seen
        self._lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
        self._readers = [threading.Thread(target=self._read, args=(name,), daemon=True)
                         for name in self.printed]
        for t in self._readers:
            t.start()

    def _read(self, name: str) -> None:
        with getattr(self.proc, name) as stream:
            for line in stream:
                self._lines.put((name, line))
        self._lines.put((name, None))

    def _next(self, timeout: float | None) -> tuple[str, str | None]:
        name, line = self._lines.get(timeout=timeout)
        if line is not None:
            self.printed[name].append(line)
        return name, line

    def wait_for_line(self, *texts: str) -> str:
        """The next line (stdout or stderr) that contains one of ``texts``; fails if the
        process closes its output first."""
        while True:
            try:
                _, line = self._next(LIMIT)
            except queue.Empty:
                pytest.fail(f"no line with {texts} after {LIMIT:.0f} s: {self.printed}")
            if line is None:
                self.proc.wait(timeout=LIMIT)
                pytest.fail(f"exited with {self.proc.returncode} before a line with "
                            f"{texts}: {self.printed}")
            if any(text in line for text in texts):
                return line

    def send(self, line: str) -> None:
        """Write ``line`` to the process's stdin (nothing if it exited already)."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()

    def stop(self, sig: int = signal.SIGINT) -> Res:
        """Send ``sig`` and :meth:`wait`."""
        self.proc.send_signal(sig)
        return self.wait()

    def wait(self) -> Res:
        """Wait for the exit: the exit code, all of stdout and stderr."""
        try:
            self.proc.wait(timeout=LIMIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {LIMIT:.0f} s later (the fixture kills it); it "
                        f"printed {self.printed}")
        self._close_stdin()
        for t in self._readers:
            t.join(timeout=LIMIT)
        while not self._lines.empty():
            self._next(None)
        return Res(self.proc.returncode, "".join(self.printed["stdout"]),
                   "".join(self.printed["stderr"]))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close_stdin()
        for t in self._readers:
            t.join()

    def _close_stdin(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()


def when_mapped(proc: Background, marker: str) -> None:
    """Return once ``marker`` is in the process's memory map (a shared library it loaded,
    a file it opened and mapped: a store's -shm), or once it has exited."""
    maps = Path(f"/proc/{proc.proc.pid}/maps")
    while proc.proc.poll() is None:
        try:
            if marker in maps.read_text():
                return
        except OSError:  # exiting
            return
        os.sched_yield()


#: A stop signal, how SIGINT was when the process started, the exit code: Ctrl-C; SIGINT to
#: a worker started from a script's or CI runner's background job (SIGINT ignored: Python
#: raises no KeyboardInterrupt); SIGTERM.
STOPS = [pytest.param(signal.SIGINT, "default", 130, id="SIGINT"),
         pytest.param(signal.SIGINT, "ignored", 130, id="SIGINT-inherited-ignored"),
         pytest.param(signal.SIGTERM, "default", 143, id="SIGTERM")]


@pytest.fixture(name="background")
def background_fixture(tmp_path: Path) -> Iterator[Callable[..., Background]]:
    """Start ``convoy ARGS`` in the background (in ``tmp_path``); each one still running
    when the test ends is killed (finalizer), whatever the test's outcome."""
    started: list[Background] = []

    def start(*args: str, sigint: str = "default") -> Background:
        started.append(Background(tmp_path, args, sigint))
        return started[-1]

    yield start
    for b in started:
        b.kill()


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


def ids_of(lines: list[object], flow: str = FLOW, tenant: str = "default") -> list[str]:
    """The session ids ``convoy run`` gives these input lines (content hashes) without
    ``--subject``, in ``tenant``."""
    from convoy.cli._inputs import content_id

    wf = convoy.load_workflow(flow)
    return [content_id(wf, wf.input_adapter.validate_python(
        json.loads(x) if isinstance(x, str) else x), tenant) for x in lines]


def run_live_traced(lines: list[object], flow: str = FLOW,
                    db: Path = Path("convoy.db")) -> list[str]:
    """Run ``flow`` on ``lines`` as ``convoy run --input`` would (the same session ids),
    with spans recorded live and kept in the store (``Tracing(["store"], live=True)``:
    ``--trace store`` derives them when read, and keeps none); their ids."""
    from convoy.observability import Tracing, observe

    wf = convoy.load_workflow(flow)
    ids = ids_of(lines, flow)

    async def run() -> None:
        async with convoy.Engine(db, interceptors=observe(Tracing(["store"], live=True))
                                 ) as engine:
            for sid, line in zip(ids, lines, strict=True):
                value = json.loads(line) if isinstance(line, str) else line
                assert (await engine.run(wf, value, session_id=sid)).status == "completed"

    asyncio.run(run())
    return ids


def tamper(sql: str, *params: Any, db: Path = Path("convoy.db")) -> None:
    """Change the store behind Convoy's back: what a crash (or another engine) leaves."""
    with sqlite3.connect(db) as conn:
        conn.execute(sql, params)


def run_ok(*extra: str, lines: list[object] | None = None, flow: str = FLOW) -> Res:
    write_jsonl(Path("in.jsonl"), GOOD if lines is None else lines)
    res = cli("run", flow, "--input", "in.jsonl", *extra)
    assert res.code == 0, res.stderr + res.stdout
    return res
