"""``convoy resume`` (and ``engine.resume()``) need a session's workflow code only for the
sessions they run now: one waiting for a signal or a timer that is not due stays waiting,
whether or not its module is imported here; one that must run without its code is left
unfinished, one line naming ``--import`` (exit 1, after the others ran)."""

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
    tamper,
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
    assert summary(res.stdout, "waiting (timer, signal or person)") == "2"
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
    one_line_error(res, 1, "cannot resume 1 session of workflow 'desk.approve-waiting'")
    assert "--import MODULE" in res.stderr
    assert session("a-1").status == "pending"
    res = cli("resume", "--import", "waiting_flows")
    assert res.code == 0, res.stderr
    assert summary(res.stdout, "completed") == "1"
    assert summary(res.stdout, "waiting (timer, signal or person)") == "1"
    assert session("a-1").output == '"refund: approved"'
    assert "left waiting" not in res.stdout  # its code is here now


def test_engine_resume_runs_what_it_can_and_reports_the_rest(workdir: Path  # noqa: F811
                                                             ) -> None:
    _start_waiting_sessions(workdir)
    assert cli("signal", "a-1", "approve", "--payload", "true").code == 0
    # (a name no test imports: the registry of decorated workflows is this process's)
    tamper("UPDATE sessions SET workflow='desk.retired' WHERE id='a-1'")

    @convoy.workflow
    async def quick(ctx: convoy.Context, text: str) -> str:
        return text.upper()

    async def api() -> dict[str, tuple[str, str | None]]:
        async with convoy.Engine("convoy.db") as engine:
            await engine.run(quick, "x", session_id="q-1")
        tamper("UPDATE sessions SET status='pending', output=NULL WHERE id='q-1'")
        tamper("DELETE FROM journal WHERE session_id='q-1'")
        async with convoy.Engine("convoy.db", workflows=[quick]) as engine:
            return {r.id: (r.status, (r.error or {}).get("type"))
                    for r in await engine.resume()}

    # Not a UserError that stops them all: q-1 runs, a-1 says why it did not.
    assert asyncio.run(api()) == {"q-1": ("completed", None), "n-1": ("waiting", None),
                                  "a-1": ("pending", "WorkflowNotFound")}
    assert session("a-1").status == "pending"


SCRIPT = """
import asyncio, os
import convoy


@convoy.workflow
async def refund(ctx: convoy.Context, amount: int) -> str:
    ok = await ctx.wait_for("approve", bool)
    return f"{amount}: {ok}"


async def main() -> None:
    async with convoy.Engine("convoy.db", workflows=[refund]) as engine:
        if os.environ.get("SCRIPT_RESUMES"):
            print([r.output for r in await engine.resume()])
        else:
            print((await engine.run(refund, 120, session_id="r-1")).status)


asyncio.run(main())
"""


def test_a_script_workflow_says_how_to_resume_it(workdir: Path) -> None:  # noqa: F811
    """A workflow without an explicit name, defined in a script run directly (as the
    README's examples are), is stored as '__main__:refund': no other process can import it
    by that name."""
    (workdir / "refund_script.py").write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(SRC)}

    def script(**extra: str) -> str:
        return subprocess.run([sys.executable, "refund_script.py"], cwd=workdir,
                              env={**env, **extra}, check=True, capture_output=True,
                              text=True, timeout=120).stdout.strip()

    assert script() == "waiting"
    assert session("r-1").workflow == "__main__:refund"
    assert cli("signal", "r-1", "approve", "--payload", "true").code == 0
    advice = ("was defined in a script run directly", "await engine.resume()",
              "@convoy.workflow(name='refund')")
    res = cli("resume")
    one_line_error(res, 1, "cannot resume 1 session of workflow '__main__:refund'")
    assert all(text in res.stderr for text in advice), res.stderr
    assert "has no attribute" not in res.stderr
    # Importing the script runs it (no __main__ guard): its run of 'r-1' is now a run of
    # 'refund_script:refund', another workflow. Nothing runs; the line says what to do.
    res = cli("resume", "--import", "refund_script")
    one_line_error(res, 2, "belongs to workflow '__main__:refund', not "
                   "'refund_script:refund'")
    assert all(text in res.stderr for text in advice), res.stderr
    assert session("r-1").status == "pending"
    assert script(SCRIPT_RESUMES="1") == "['120: True']"  # what the message says works


def test_a_due_session_whose_module_is_gone_says_what_its_import_said(
        workdir: Path) -> None:  # noqa: F811
    """A retired ``module:name`` reference: the loader's own line (which names the module
    and how to put it on the path), not the advice for an explicit name."""
    _start_waiting_sessions(workdir)
    assert cli("signal", "a-1", "approve", "--payload", "true").code == 0
    for ref, why in (
            ("gone_flows_for_convoy:approve",
             "cannot import module 'gone_flows_for_convoy' for workflow "
             "'gone_flows_for_convoy:approve': No module named 'gone_flows_for_convoy'. Run "
             "from the directory that contains it, or put it on PYTHONPATH"),
            ("json:approve", "module 'json' has no attribute 'approve'; workflows it "
             "defines: (none)")):
        tamper("UPDATE sessions SET workflow=? WHERE id='a-1'", ref)
        res = cli("resume")
        one_line_error(res, 1, f"cannot resume 1 session of workflow {ref!r}: {why}")
        assert "nothing imported here defines it" not in res.stderr
        assert session("a-1").status == "pending"


SCRIPT_SESSIONS = """
import asyncio
import convoy


@convoy.workflow
async def refund(ctx: convoy.Context, amount: int) -> str:
    ok = await ctx.wait_for("approve", bool)
    return f"{amount}: {ok}"


@convoy.workflow
async def ask(ctx: convoy.Context, amount: int) -> str:
    got = await ctx.ask_human(f"Refund {amount}?", bool)
    return f"{amount}: {got.value}"


@convoy.workflow
async def boom(ctx: convoy.Context, amount: int) -> str:
    raise ValueError("boom")


async def main() -> None:
    async with convoy.Engine("convoy.db", workflows=[refund, ask, boom]) as engine:
        await engine.run(refund, 1, session_id="r-1")
        await engine.run(ask, 2, session_id="a-1")
        await engine.run(boom, 3, session_id="b-1")
        await engine.run(refund, 4, session_id="c-1")


asyncio.run(main())
"""

#: What every suggestion says of a session of a script's own workflow.
_NOBODY_ELSE = "no other process can import a script run directly"


def test_what_continues_a_script_workflow_is_the_script(workdir: Path) -> None:  # noqa: F811
    """The bug: for a workflow ``__main__:refund`` the commands suggested 'convoy worker
    MODULE' or 'convoy resume --import MODULE' (MODULE: the module that defines workflow
    '__main__:refund'), and 'convoy retry ID --import MODULE': no module can define it, and
    neither command can run its sessions. They say what 'convoy resume' and 'convoy retry'
    themselves say: the script resumes (retries) them."""
    (workdir / "desk_script.py").write_text(SCRIPT_SESSIONS)
    subprocess.run([sys.executable, "desk_script.py"], cwd=workdir,
                   env={**os.environ, "PYTHONPATH": str(SRC)}, check=True,
                   capture_output=True, text=True, timeout=120)
    assert session("a-1").workflow == "__main__:ask"

    def resume_from(wf: str, what: str = "it") -> str:
        return (f"resume {what} from the script that defines workflow '__main__:{wf}' "
                f"(await engine.resume(); {_NOBODY_ELSE})")

    said: dict[str, str] = {}
    shown = cli("sessions", "show", "r-1")
    said["show waiting"] = shown.stdout
    assert "waiting: convoy signal r-1 approve --payload JSON, then " \
        f"{resume_from('refund')}" in " ".join(shown.stdout.split()), shown.stdout
    shown = cli("sessions", "show", "a-1")
    said["show task"] = shown.stdout
    assert f"waiting for a person: convoy inbox show a-1:0; then {resume_from('ask')}" in \
        " ".join(shown.stdout.split()), shown.stdout
    res = cli("inbox", "answer", "a-1:0", "--value", "true", "--by", "b")
    assert res.code == 0, res.stderr
    said["answer"] = res.stdout
    assert " ".join(res.stdout.split()) == \
        f"answered task a-1:0 (by b); {resume_from('ask', 'session a-1')}", res.stdout
    res = cli("signal", "r-1", "approve", "--payload", "true")
    assert res.code == 0, res.stderr
    said["signal"] = res.stdout
    assert " ".join(res.stdout.split()) == \
        f"sent signal 'approve' to session r-1; {resume_from('refund')}", res.stdout
    shown = cli("sessions", "show", "b-1")
    said["show failed"] = shown.stdout
    assert ("run it again as a new session: retry it from the script that defines workflow "
            f"'__main__:boom' (await engine.retry('b-1'); {_NOBODY_ELSE})") in \
        " ".join(shown.stdout.split()), shown.stdout
    # a session another engine runs (its lease held far ahead)
    tamper("UPDATE sessions SET status='running', owner='elsewhere:1', "
           "lease_until=4102444800 WHERE id='c-1'")
    shown = cli("sessions", "show", "c-1")
    said["show running"] = shown.stdout
    assert ("running on engine elsewhere:1; if that engine stops, its lease lapses: then "
            f"{resume_from('refund')}") in " ".join(shown.stdout.split()), shown.stdout
    res = cli("cancel", "c-1")
    assert res.code == 0, res.stderr
    said["cancel"] = res.stdout
    assert " ".join(res.stdout.split()).endswith(
        "if it parks first, the engine that runs it next does: that of the script that "
        "defines workflow '__main__:refund', as it resumes its sessions: await "
        f"engine.resume(); {_NOBODY_ELSE})"), res.stdout
    tamper("UPDATE sessions SET status='pending', owner=NULL, lease_until=NULL "
           "WHERE id='c-1'")  # (that engine died before it saw the cancel)
    shown = cli("sessions", "show", "c-1")
    said["show cancel requested"] = shown.stdout
    assert f"a cancel is requested: {resume_from('refund')}, which ends it cancelled" in \
        " ".join(shown.stdout.split()), shown.stdout
    for what, text in said.items():
        assert "MODULE" not in text and "--import" not in text, (what, text)
        assert "convoy worker" not in text and "convoy resume" not in text, (what, text)
        assert "convoy retry" not in text, (what, text)
