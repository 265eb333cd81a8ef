"""A session whose engine was SIGKILLed mid-run: ``convoy sessions list`` (its table and
``--json``) and ``sessions show --json`` count the steps its journal holds, as ``sessions
show`` does, on both stores. The row's own count is written only when a run ends, parks or
is given up, so a killed run left it at 0."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.clikit import (
    cli,
    ids_of,
    subprocess_env,
    workdir,  # noqa: F401  (autouse fixture)
    write_jsonl,
)
from tests.store_backends import Backend
from tests.test_cli_db import backend, url  # noqa: F401  (the fixture)

FLOW = "busy_flows:gated"


def _killed_mid_session(db: str, n: int) -> str:
    """Run ``busy_flows:gated`` (``n`` clock steps, then a step that waits for the file
    ``gate``) in a real ``convoy run`` process, SIGKILL it inside the waiting step; the
    session's id."""
    write_jsonl(Path("in.jsonl"), [n])
    with Path("run.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "convoy.cli", "run", FLOW, "-i",
                                 "in.jsonl", "--db", db], cwd=Path.cwd(),
                                env=subprocess_env(), stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 120
            while not Path("at-gate").exists():  # (observable state: it is in the step)
                assert proc.poll() is None, Path("run.log").read_text()
                assert time.monotonic() < deadline, "the session never reached its gate"
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return ids_of([n], flow=FLOW)[0]


def test_sessions_list_counts_the_steps_of_a_session_killed_mid_run(
        backend: Backend) -> None:  # noqa: F811
    db = url(backend)
    n = 7
    sid = _killed_mid_session(db, n)
    shown = json.loads(cli("sessions", "show", sid, "--json", "--db", db).stdout)
    assert shown["status"] == "running"
    journaled = len(shown["journal"])
    assert journaled >= n, shown["journal"]  # (the clock steps; maybe the gate's start)
    assert shown["steps"] == journaled
    [row] = json.loads(cli("sessions", "list", "--json", "--db", db).stdout)["sessions"]
    assert (row["id"], row["status"], row["steps"]) == (sid, "running", journaled), row
    table = cli("sessions", "list", "--db", db, env={"COLUMNS": "200"}).stdout
    [line] = [ln for ln in table.splitlines() if sid in ln]
    cells = [c.strip() for c in line.split("│")]
    assert str(journaled) in cells and "0" not in cells, line
    assert f"steps {journaled} " in " ".join(cli("sessions", "show", sid,
                                                 "--db", db).stdout.split())


def test_a_running_sessions_tokens_and_cost_are_what_its_journal_spent(
        backend: Backend) -> None:  # noqa: F811
    """A new user's trial: a running session (its run writes its totals when it ends)
    showed 0 / 0 tokens and $0 beside the steps it had taken. ``sessions list`` and
    ``sessions show`` (and their ``--json``) count what its journaled steps spent."""
    import asyncio

    from convoy.stores import NewSession, StepRecord, store_from_url

    db = url(backend)
    assert cli("db", "migrate", "--db", db).code == 0

    async def running() -> None:
        store = store_from_url(db)
        await store.open()
        try:
            await store.create_session(NewSession(id="r1", workflow="wf", version="1",
                                                  tenant="default", input="{}"),
                                       owner="gone", lease_s=3600)
            for key, tokens, cost in (("0", (1, 5), 0.25), ("1", (10, 5), 0.5)):
                await store.append("r1", "gone", StepRecord(
                    key=key, kind="model", target="a", status="completed", result='"ok"',
                    input_tokens=tokens[0], output_tokens=tokens[1], cost=cost))
        finally:
            await store.aclose()

    asyncio.run(running())
    shown = json.loads(cli("sessions", "show", "r1", "--json", "--db", db).stdout)
    assert (shown["usage"], shown["cost"]) == ({"input_tokens": 11, "output_tokens": 10},
                                               0.75), shown
    [row] = json.loads(cli("sessions", "list", "--json", "--db", db).stdout)["sessions"]
    assert (row["usage"], row["cost"]) == ({"input_tokens": 11, "output_tokens": 10}, 0.75)
    text = " ".join(cli("sessions", "show", "r1", "--db", db).stdout.split())
    assert "tokens in / out 11 / 10" in text and "cost $0.75" in text, text
