"""Standard output the command cannot write: a full disk (``> /dev/full``) or closed
(``>&-``). Every command says so in one line and exits 1: no traceback, and never exit 0
having written nothing. A command that did its work before printing it says what it kept
(``audit checkpoint``: the signed checkpoint is in the store, and running it again prints
it)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from convoy.audit import AuditEvent, AuditLog, Checkpoint
from convoy.stores import store_from_url
from tests.clikit import (
    FLOW,
    GOOD,
    LIMIT,
    cli,
    subprocess_env,
    workdir,  # noqa: F401  (autouse fixture)
    write_jsonl,
)

#: ``python -c`` code that runs ``python ARGV[1:]`` with its standard output closed.
_CLOSED = ("import os, sys; os.close(1); "
           "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store with sessions and an audit log of five entries, the first three under a
    checkpoint signed with ``other.key``."""
    write_jsonl(Path("in.jsonl"), GOOD)
    assert cli("run", FLOW, "-i", "in.jsonl", "--db", "s.db", "--trace", "store").code == 0

    async def build() -> None:
        db = store_from_url(tmp_path / "s.db")
        await db.open()
        try:
            log = AuditLog(db, key_path=tmp_path / "other.key")
            events = [AuditEvent(kind="tool_call", status="ok", at=1000.0 + i,
                                 session_id="s1", step_key=f"0/{i}", actor="clerk",
                                 target=f"tool-{i}") for i in range(5)]
            await log.append("default", events[:3])
            await log.checkpoint("default")
            await log.append("default", events[3:])
        finally:
            await db.aclose()

    asyncio.run(build())
    return tmp_path / "s.db"


def _convoy(*args: str, stdout: str) -> subprocess.CompletedProcess[str]:
    """``convoy ARGS`` with its standard output ``full`` (/dev/full) or ``closed``."""
    if stdout == "full":
        with open(os.devnull.replace("null", "full"), "w") as full:
            return subprocess.run([sys.executable, "-m", "convoy.cli", *args],
                                  env=subprocess_env(), stdout=full,
                                  stderr=subprocess.PIPE, text=True, timeout=LIMIT,
                                  check=False)
    return subprocess.run([sys.executable, "-c", _CLOSED, "-m", "convoy.cli", *args],
                          env=subprocess_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=LIMIT, check=False)


_WHY = {"full": "No space left on device", "closed": "it is closed"}

_COMMANDS = [
    ("sessions", "list"), ("sessions", "show", "ID"), ("audit", "list"),
    ("audit", "prove", "1"), ("audit", "verify", "--key", "other.key"), ("db", "info"),
    ("state", "list"), ("inbox", "list"), ("cost",), ("trace", "ID"),
]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("stdout", ["full", "closed"])
@pytest.mark.parametrize("args", _COMMANDS, ids=" ".join)
def test_a_command_whose_output_cannot_be_written_says_so_in_one_line(
        store: Path, args: tuple[str, ...], stdout: str) -> None:
    sid = cli("sessions", "list", "--db", str(store), "--json").stdout
    first = sid.split('"id": "', 1)[1].split('"', 1)[0] if '"id": "' in sid else \
        sid.split('"id":"', 1)[1].split('"', 1)[0]
    res = _convoy(*(first if a == "ID" else a for a in args), "--db", str(store),
                  stdout=stdout)
    assert res.returncode == 1, res
    assert res.stderr.splitlines() == [
        f"error: cannot write standard output: {_WHY[stdout]}"], res.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("stdout", ["full", "closed"])
def test_a_checkpoint_signed_but_not_printed_is_kept_and_printed_again(
        store: Path, stdout: str) -> None:
    res = _convoy("audit", "checkpoint", "--key", "other.key", "--db", str(store),
                  stdout=stdout)
    assert res.returncode == 1, res
    assert res.stderr.splitlines() == [
        f"error: cannot write standard output: {_WHY[stdout]}; the checkpoint was signed "
        "and kept in the store: run the same command again to print it"], res.stderr
    again = cli("audit", "checkpoint", "--key", "other.key", "--db", str(store))
    assert again.code == 0, again
    assert Checkpoint.from_json(again.stdout.strip()).size == 5


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("stdout", ["full", "closed"])
def test_a_worker_whose_output_cannot_be_written_stops_saying_so_once(stdout: str) -> None:
    """Its line per run could not be written: it logged 'an end tap raised' for every run
    and went on for good (the review of stop 56). It stops as for a reader that exited,
    and says why in the one line."""
    write_jsonl(Path("in.jsonl"), ['"order 1"', '"order 2"'])
    assert cli("run", "cli_flows:approval", "-i", "in.jsonl", "--db", "w.db").code == 0
    listed = json.loads(cli("sessions", "list", "--db", "w.db", "--status", "waiting",
                            "--json").stdout)["sessions"]
    assert len(listed) == 2
    for row in listed:
        assert cli("signal", row["id"], "approve", "--payload", "true", "--db",
                   "w.db").code == 0
    res = _convoy("worker", "cli_flows", "--until-idle", "--poll-interval", "0.05", "--db",
                  "w.db", stdout=stdout)
    assert res.returncode == 1, res
    assert "end tap raised" not in res.stderr, res.stderr
    last = res.stderr.splitlines()[-1]
    assert last.startswith("error: stopped after ") and \
        f"its standard output cannot be written ({_WHY[stdout]}); any session it was " \
        "running continues" in last, res.stderr
