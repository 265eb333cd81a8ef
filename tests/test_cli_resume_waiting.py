"""``convoy resume`` (and ``engine.resume()``) need a session's workflow code only for the
sessions they run now: one waiting for a signal or a timer that is not due stays waiting,
whether or not its module is imported here; one that must run without its code is one line
naming ``--import`` (exit 2)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import convoy
from tests.clikit import (
    SRC,
    cli,
    one_line_error,
    session,
    summary,
    workdir,  # noqa: F401  (autouse fixture)
)

FLOWS = '''
import convoy


@convoy.workflow(name="desk.approve-waiting")
async def approve(ctx: convoy.Context, request: str) -> str:
    ok = await ctx.wait_for("approve", bool)
    return f"{request}: {'approved' if ok else 'rejected'}"


@convoy.workflow(name="desk.nap-waiting")
async def nap(ctx: convoy.Context, request: str) -> str:
    await ctx.sleep(86_400)  # a day: not due during the test, whatever the clock says
    return request
'''


def _start_waiting_sessions(where: Path) -> None:
    """Sessions of both workflows, parked by another process that imported their module
    (this one never does until the end: their explicit names resolve nowhere else)."""
    (where / "waiting_flows.py").write_text(FLOWS)
    start = ("import convoy, waiting_flows as f\n"
             "e = convoy.Engine('convoy.db')\n"
             "print(e.run_sync(f.approve, 'refund', session_id='a-1').status)\n"
             "print(e.run_sync(f.nap, 'later', session_id='n-1').status)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(where), str(SRC)])}
    proc = subprocess.run([sys.executable, "-c", start], cwd=where, env=env, check=True,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["waiting", "waiting"], proc.stderr


def test_resume_leaves_waiting_sessions_waiting_without_their_code(workdir: Path  # noqa: F811
                                                                   ) -> None:
    _start_waiting_sessions(workdir)
    res = cli("resume")
    assert res.code == 0, res.stderr
    assert summary(res.stdout, "sessions run") == "0"
    assert summary(res.stdout, "waiting (timer or signal)") == "2"
    lines = [ln for ln in res.stdout.splitlines() if "left waiting" in ln]
    assert len(lines) == 2, res.stdout
    assert "'desk.approve-waiting'" in lines[0] and "'desk.nap-waiting'" in lines[1]
    assert all("--import" in ln for ln in lines), lines
    assert not res.stderr
    assert {session(s).status for s in ("a-1", "n-1")} == {"waiting"}

    async def api() -> list[str]:
        async with convoy.Engine("convoy.db") as engine:
            return sorted(r.status for r in await engine.resume())

    assert asyncio.run(api()) == ["waiting", "waiting"]

    # The signal makes a-1 due: now it must run, and its code is needed.
    assert cli("signal", "a-1", "approve", "--payload", "true").code == 0
    res = cli("resume")
    one_line_error(res, 2, "cannot resume 1 session(s) of workflow 'desk.approve-waiting'")
    assert "--import MODULE" in res.stderr
    assert session("a-1").status == "pending"
    res = cli("resume", "--import", "waiting_flows")
    assert res.code == 0, res.stderr
    assert summary(res.stdout, "completed") == "1"
    assert summary(res.stdout, "waiting (timer or signal)") == "1"
    assert session("a-1").output == '"refund: approved"'
    assert "left waiting" not in res.stdout  # its code is here now
