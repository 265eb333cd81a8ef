"""A session this process cannot read: its stored input no longer matches its workflow's
input type (the code changed under it, without a new version), or a value of its row or
journal is damaged (the store was edited). ``convoy worker``, ``convoy resume`` and
``engine.run`` escalate that one session, with one line that says what is wrong and what
to do, and run the others. Before, a worker stopped with a traceback at the first such
session and left the sessions it was running held by its dead process; ``resume`` printed
a traceback and ran none.

Nothing of the session is lost: its input and journal stay as stored, and once the code
(or the store) is fixed a person approves the escalation in ``convoy inbox`` and the
session runs again from its journal."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.privacy import MasterKey
from convoy.privacy._seal import session_aad

from .clikit import GOOD, cli, journal, session, sessions, tamper, workdir

__all__ = ["workdir"]  # the autouse fixture: each test in its own directory

#: A stored input that the workflow ``cli_flows:handle`` (a ``Ticket``) does not take.
STALE = '{"subject": 5}'


def _pending(tmp_path: Path, *, keyed: bool = False) -> dict[str, str]:
    """Sessions ``sub-1`` (of data subject ``ada`` when ``keyed``), ``plain-1`` and
    ``plain-2`` of ``cli_flows:handle``, created and left pending; the environment that
    holds the master key (empty when not ``keyed``)."""
    import cli_flows

    text = MasterKey.generate()
    (tmp_path / "m.key").write_text(text + "\n")
    (tmp_path / "m.key").chmod(0o600)

    async def make() -> None:
        async with convoy.Engine("convoy.db", master_key=MasterKey.from_text(text)
                                 if keyed else None) as e:
            e.drain()
            await e.run_many(cli_flows.handle, [GOOD[0]], ids=["sub-1"],
                             subject="ada" if keyed else None)
            await e.run_many(cli_flows.handle, GOOD[1:], ids=["plain-1", "plain-2"])

    asyncio.run(make())
    return {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")} if keyed else {}


def _status() -> dict[str, tuple[str, str | None]]:
    return {r.id: (r.status, r.owner) for r in sessions()}


async def _append(sid: str, result: str) -> None:
    """A completed journal record of ``sid`` holding ``result``, written by a store of its
    own (the database edited: nothing a run of the session wrote)."""
    from convoy.stores import SQLiteStore, StepRecord

    store = SQLiteStore("convoy.db")
    await store.open()
    try:
        await store.append(sid, None, StepRecord(key="edited", kind="effect", target="x",
                                                 status="completed", result=result, at=1.0))
    finally:
        store.close()


def _escalated_for(sid: str, *words: str, keyed: dict[str, str] | None = None) -> str:
    """The one-line reason ``sid`` was escalated with (a data subject's is sealed: read
    with the master key ``keyed`` holds); it holds ``words``."""
    if keyed:
        key = MasterKey.from_text(Path(keyed["CONVOY_MASTER_KEY_FILE"]).read_text().strip())

        raw = session(sid)

        async def read() -> str | None:  # (the error alone: the input may not open)
            async with convoy.Engine("convoy.db", master_key=key) as e:
                assert e.keys is not None
                return (await e.keys.peel(raw.tenant, session_aad(raw.tenant, sid, "error"),
                                          raw.error))[1]

        err = json.loads(asyncio.run(read()) or "{}")
    else:
        err = session(sid).error_record or {}
    assert err.get("type") == "SessionUnreadable", err
    message = str(err.get("message"))
    assert "\n" not in message and all(w in message for w in words), message
    return message


def test_a_worker_escalates_a_session_whose_input_its_code_does_not_take_and_runs_the_rest(
        ) -> None:
    tmp = Path.cwd()
    _pending(tmp)
    tamper("UPDATE sessions SET input = ? WHERE id = 'plain-1'", STALE)
    res = cli("worker", "cli_flows", "--until-idle")
    assert res.code == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    assert _status() == {"sub-1": ("completed", None), "plain-1": ("escalated", None),
                         "plain-2": ("completed", None)}
    message = _escalated_for("plain-1", "input", "'cli_flows:handle'", "subject",
                             "convoy inbox")
    assert "5" not in message.replace("plain-1", "")  # no stored value is quoted
    assert "plain-1" in res.stdout + res.stderr  # the worker's line for that run

    shown = cli("sessions", "show", "plain-1")  # what to do (no step escalated: no "check")
    assert "fix what its error says first" in shown.stdout, shown.stdout
    assert "approve plain-1:escalated" in shown.stdout and "edit:" not in shown.stdout

    # The person fixes what was wrong (here: the stored input) and approves: it runs again.
    shown = cli("inbox", "list")
    assert shown.code == 0 and "plain-1:escalated" in shown.stdout, shown.stdout
    tamper("UPDATE sessions SET input = ? WHERE id = 'plain-1'",
           '{"subject": "login", "body": "cannot log in"}')
    res = cli("inbox", "approve", "plain-1:escalated", "--by", "ann")
    assert res.code == 0, res.stdout + res.stderr
    res = cli("worker", "cli_flows", "--until-idle")
    assert res.code == 0, res.stdout + res.stderr
    assert _status()["plain-1"] == ("completed", None)


def test_resume_escalates_a_session_whose_input_its_code_does_not_take_and_runs_the_rest(
        ) -> None:
    _pending(Path.cwd())
    tamper("UPDATE sessions SET input = ? WHERE id = 'plain-2'", STALE)
    res = cli("resume", "--import", "cli_flows")
    assert "Traceback" not in res.stdout + res.stderr, res.stdout + res.stderr
    assert res.code == 0, res.stdout + res.stderr
    assert _status() == {"sub-1": ("completed", None), "plain-1": ("completed", None),
                         "plain-2": ("escalated", None)}
    _escalated_for("plain-2", "input", "'cli_flows:handle'")


def test_a_worker_escalates_a_session_with_a_damaged_journal_row_and_runs_the_rest() -> None:
    _pending(Path.cwd())
    asyncio.run(_append("plain-1", '"fine"'))
    tamper("UPDATE journal SET cost = 'nan' WHERE session_id = 'plain-1'")
    res = cli("worker", "cli_flows", "--until-idle")
    assert res.code == 0 and "Traceback" not in res.stdout + res.stderr, res.stderr
    assert _status() == {"sub-1": ("completed", None), "plain-1": ("escalated", None),
                         "plain-2": ("completed", None)}
    _escalated_for("plain-1", "step 'edited'", "cost", "edited or damaged")


def test_a_worker_with_the_key_escalates_a_subjects_session_with_a_damaged_sealed_record(
        ) -> None:
    keyed = _pending(Path.cwd(), keyed=True)
    asyncio.run(_append("sub-1", '{"$sealed": oops'))
    res = cli("worker", "cli_flows", "--until-idle", env=keyed)
    assert res.code == 0 and "Traceback" not in res.stdout + res.stderr, res.stderr
    assert _status() == {"sub-1": ("escalated", None), "plain-1": ("completed", None),
                         "plain-2": ("completed", None)}
    _escalated_for("sub-1", "sealed value", "edited", "damaged", keyed=keyed)


def test_a_worker_with_the_key_escalates_a_subjects_session_whose_sealed_input_is_damaged(
        ) -> None:
    keyed = _pending(Path.cwd(), keyed=True)
    tamper("UPDATE sessions SET input = ? WHERE id = 'sub-1'", '{"$sealed": "x", "v": 2}')
    res = cli("worker", "cli_flows", "--until-idle", env=keyed)
    assert res.code == 0 and "Traceback" not in res.stdout + res.stderr, res.stderr
    assert _status() == {"sub-1": ("escalated", None), "plain-1": ("completed", None),
                         "plain-2": ("completed", None)}
    _escalated_for("sub-1", "sealed value", "input", "damaged", keyed=keyed)
    # Its escalation cannot be shown until the store is repaired: the inbox names it.
    listed = cli("inbox", "list", env=keyed)
    assert listed.code == 0 and "Traceback" not in listed.stdout + listed.stderr, listed
    assert "left out 1 damaged" in listed.stderr and "sub-1/input" in listed.stderr, listed


def test_run_with_the_id_of_a_session_its_code_cannot_read_escalates_it() -> None:
    import cli_flows

    _pending(Path.cwd())
    tamper("UPDATE sessions SET input = ? WHERE id = 'plain-1'", STALE)

    async def main() -> list[str]:
        async with convoy.Engine("convoy.db") as e:
            one = await e.run(cli_flows.handle, GOOD[1], session_id="plain-1")
            many = await e.run_many(cli_flows.handle, GOOD[1:],
                                    ids=["plain-1", "plain-2"])
            return [one.status, *(r.status for r in many)]

    assert asyncio.run(main()) == ["escalated", "escalated", "completed"]
    _escalated_for("plain-1", "input")


def _one_pending(flow: str, sid: str, value: object) -> None:
    """A pending session ``sid`` of ``stale_flows:<flow>`` (an engine drained before it ran)."""
    import stale_flows

    async def make() -> None:
        async with convoy.Engine("convoy.db") as e:
            e.drain()
            await e.run_many(getattr(stale_flows, flow), [value], ids=[sid])

    asyncio.run(make())


def test_an_input_whose_validator_raises_another_error_is_escalated_too() -> None:
    """New code's validator may raise a ``TypeError`` or ``AttributeError`` on an old input
    (Pydantic passes those on): that input's session is escalated, not the worker stopped
    (review of this stop: it stopped, leaving the sessions it ran held)."""
    _one_pending("order", "o-1", {"code": "A1"})
    _one_pending("order", "o-2", {"code": "B2"})
    tamper("UPDATE sessions SET input = ? WHERE id = 'o-1'", '{"code": 5}')
    res = cli("worker", "stale_flows", "--until-idle")
    assert res.code == 0 and "Traceback" not in res.stdout + res.stderr, res
    assert _status() == {"o-1": ("escalated", None), "o-2": ("completed", None)}
    _escalated_for("o-1", "'stale_flows:order'", "AttributeError")


def test_the_reason_is_one_line_whatever_keys_the_input_holds() -> None:
    """A field of a validation error can be a key of a mapping input: written escaped."""
    _one_pending("tally", "t-1", {"a": 1})
    tamper("UPDATE sessions SET input = ? WHERE id = 't-1'", '{"x\\ny\\u001b[2J": "z"}')
    res = cli("resume", "--import", "stale_flows")
    assert res.code == 0 and "Traceback" not in res.stdout + res.stderr, res
    assert _status() == {"t-1": ("escalated", None)}
    message = _escalated_for("t-1", "x\\ny\\x1b[2J")
    assert "\x1b" not in message


def test_a_worker_escalates_a_session_whose_stored_headers_are_damaged() -> None:
    _pending(Path.cwd())
    tamper("UPDATE sessions SET headers = '{bad' WHERE id = 'plain-1'")
    res = cli("worker", "cli_flows", "--until-idle")
    assert res.code == 0 and "Traceback" not in res.stdout + res.stderr, res.stderr
    assert _status() == {"sub-1": ("completed", None), "plain-1": ("escalated", None),
                         "plain-2": ("completed", None)}
    _escalated_for("plain-1", "headers", "edited or damaged")


def _cancel_requested(sid: str) -> None:
    """A cancel request for ``sid`` (as ``convoy cancel`` leaves one for a session another
    engine runs), and ``sid`` held by an engine of another machine whose lease lapsed."""
    tamper("UPDATE sessions SET status = 'running', owner = 'otherhost:1:abc', "
           "lease_until = 1 WHERE id = ?", sid)
    tamper("INSERT INTO signals (session_id, name, payload, at) VALUES "
           "(?, 'convoy.cancel', '{\"by\": \"op\"}', 2)", sid)


def test_a_cancel_request_ends_a_session_whose_journal_is_damaged_and_the_rest_run() -> None:
    """A worker that takes over a session with a cancel request ends it even though its
    journal does not read (review of this stop: the worker stopped, leaving the sessions
    it ran held, and each later worker stopped on it again)."""
    _pending(Path.cwd())
    asyncio.run(_append("plain-1", '"fine"'))
    tamper("UPDATE journal SET cost = 'nan' WHERE session_id = 'plain-1'")
    _cancel_requested("plain-1")
    res = cli("worker", "cli_flows", "--until-idle")
    assert res.code == 0 and "Traceback" not in res.stdout + res.stderr, res.stderr
    assert _status() == {"sub-1": ("completed", None), "plain-1": ("cancelled", None),
                         "plain-2": ("completed", None)}


def test_resume_with_the_key_ends_a_requested_cancel_of_a_session_whose_row_is_damaged(
        ) -> None:
    """A data subject's session whose sealed input is damaged, with a cancel request: it
    ends cancelled and the others run (review of this stop: they were left held)."""
    keyed = _pending(Path.cwd(), keyed=True)
    tamper("UPDATE sessions SET input = ? WHERE id = 'sub-1'", '{"$sealed": "x", "v": 2}')
    _cancel_requested("sub-1")
    res = cli("resume", "--import", "cli_flows", env=keyed)
    assert res.code == 0 and "Traceback" not in res.stdout + res.stderr, res.stderr
    assert _status() == {"sub-1": ("cancelled", None), "plain-1": ("completed", None),
                         "plain-2": ("completed", None)}


def test_a_worker_with_the_key_takes_over_a_dead_engines_session_whose_row_is_damaged(
        ) -> None:
    """Crash recovery: the session a dead engine held has a damaged sealed input. The
    worker's look for dead owners lists it; it is escalated and the others run (review of
    this stop: the worker stopped before it ran anything)."""
    keyed = _pending(Path.cwd(), keyed=True)
    tamper("UPDATE sessions SET input = ?, status = 'running', owner = 'otherhost:1:abc', "
           "lease_until = 1 WHERE id = 'sub-1'", '{"$sealed": "x", "v": 2}')
    res = cli("worker", "cli_flows", "--until-idle", env=keyed)
    assert res.code == 0 and "Traceback" not in res.stdout + res.stderr, res.stderr
    assert _status() == {"sub-1": ("escalated", None), "plain-1": ("completed", None),
                         "plain-2": ("completed", None)}


def test_a_worker_escalates_a_session_whose_own_row_holds_a_damaged_number() -> None:
    """The claim escalates it (the store: see the conformance suite) and the others run;
    once the row is repaired and the escalation approved, it runs."""
    _pending(Path.cwd())
    tamper("UPDATE sessions SET cost = 'nan' WHERE id = 'plain-1'")
    res = cli("worker", "cli_flows", "--until-idle")
    assert res.code == 0 and "Traceback" not in res.stdout + res.stderr, res.stderr
    tamper("UPDATE sessions SET cost = 0 WHERE id = 'plain-1'")
    assert _status() == {"sub-1": ("completed", None), "plain-1": ("escalated", None),
                         "plain-2": ("completed", None)}
    _escalated_for("plain-1", "cost", "repair the store")
    assert cli("inbox", "approve", "plain-1:escalated", "--by", "ann").code == 0
    assert cli("worker", "cli_flows", "--until-idle").code == 0
    assert _status()["plain-1"] == ("completed", None)


def test_an_escalation_the_store_fails_to_write_is_not_reported_as_written(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The store fails as the escalation is written: the session is given back unfinished
    and reported so, not as escalated (review of this stop)."""
    import cli_flows

    from convoy.stores import SQLiteStore

    _pending(Path.cwd())
    tamper("UPDATE sessions SET input = ? WHERE id = 'plain-1'", STALE)
    finish = SQLiteStore.finish

    def failing(self: SQLiteStore, sid: str, owner: str | None, outcome: Any,
                **kw: Any) -> Any:
        if outcome.status == "escalated":
            raise convoy.StoreError("disk I/O error", transient=True)
        return finish(self, sid, owner, outcome, **kw)

    monkeypatch.setattr(SQLiteStore, "finish", failing)

    async def main() -> dict[str, str]:
        async with convoy.Engine("convoy.db") as e:
            res = await e.run_many(cli_flows.handle, GOOD[1:], ids=["plain-1", "plain-2"])
            return {r.id: r.status for r in res}

    assert asyncio.run(main()) == {"plain-1": "pending", "plain-2": "completed"}
    assert _status()["plain-1"] == ("pending", None)


def test_resume_leaves_a_session_of_another_version_whose_journal_is_damaged() -> None:
    """Whether a session of another version can start on this one is told by its journal:
    one that does not read back is not adopted, and the others run (review of this stop:
    resume stopped, running none)."""
    _pending(Path.cwd())
    asyncio.run(_append("plain-1", '"fine"'))
    tamper("UPDATE journal SET cost = 'nan' WHERE session_id = 'plain-1'")
    tamper("UPDATE sessions SET version = '0' WHERE id = 'plain-1'")
    res = cli("resume", "--import", "cli_flows")
    assert "Traceback" not in res.stdout + res.stderr, res.stderr
    assert _status() == {"sub-1": ("completed", None), "plain-1": ("pending", None),
                         "plain-2": ("completed", None)}


def test_a_journaled_result_that_does_not_read_back_escalates_its_step() -> None:
    """A step's journaled result that is no longer JSON (the database edited): replaying
    it escalates the session at that step, rather than failing it (a final end). Approving
    runs that step again; the rest of the journal replays (review of this stop)."""
    import stale_flows

    async def waiting() -> None:
        async with convoy.Engine("convoy.db") as e:
            for sid in ("w-1", "w-2"):
                assert (await e.run(stale_flows.stepped, sid, session_id=sid)).status == \
                    "waiting"

    asyncio.run(waiting())
    tamper("UPDATE journal SET result = '{bad' WHERE session_id = 'w-1' AND kind = 'effect'")
    for sid in ("w-1", "w-2"):
        assert cli("signal", sid, "go", "--payload", "true").code == 0
    res = cli("worker", "stale_flows", "--until-idle")
    assert res.code == 0 and "Traceback" not in res.stdout + res.stderr, res.stderr
    assert _status() == {"w-1": ("escalated", None), "w-2": ("completed", None)}
    message = _escalated_for("w-1", "lookup", "does not read back", "edited or damaged")
    assert "{bad" not in message
    assert (session("w-1").error_record or {}).get("key") is not None  # (its step)
    assert cli("inbox", "approve", "w-1:escalated", "--by", "ann").code == 0
    assert cli("worker", "stale_flows", "--until-idle").code == 0
    assert _status()["w-1"] == ("completed", None)
    assert session("w-1").output == '"w-1: 3"'


def _waiting(flow: str, *sids: str) -> None:
    import stale_flows

    async def run() -> None:
        async with convoy.Engine("convoy.db") as e:
            for sid in sids:
                res = await e.run(getattr(stale_flows, flow), sid, session_id=sid)
                assert res.status == "waiting", res

    asyncio.run(run())


def test_a_non_idempotent_step_whose_result_does_not_read_back_asks_for_its_result(
        ) -> None:
    """Approving would run a charge again: the reason says to answer with the step's
    result instead, and ``sessions show`` offers the command that does (review of this
    stop: it offered 'approve --value', an option that does not exist)."""
    _waiting("charge", "c-1")
    tamper("UPDATE journal SET result = '{bad' WHERE session_id = 'c-1' AND kind = 'effect'")
    assert cli("signal", "c-1", "go", "--payload", "true").code == 0
    assert cli("worker", "stale_flows", "--until-idle").code == 0
    assert _status() == {"c-1": ("escalated", None)}
    _escalated_for("c-1", "not idempotent", "answer this escalation", "with the step's result")
    shown = cli("sessions", "show", "c-1").stdout
    [edit] = [ln.strip() for ln in shown.splitlines() if ln.strip().startswith("edit:")]
    assert edit.endswith("--edit JSON"), edit
    # (a new user's trial: it did not say the JSON is the step's result itself, and
    # {"result": ...}, as a signal nests it, became the result)
    [decide] = [ln for ln in shown.splitlines() if ln.startswith("decide")]
    assert "an edit's JSON is the step's result itself" in decide, decide
    args = edit.removeprefix("edit: convoy ").replace("JSON", '"charged"').split()
    res = cli(*[a.strip('"') if a != '"charged"' else a for a in args], "--by", "ann")
    assert res.code == 0, res.stdout + res.stderr
    assert cli("worker", "stale_flows", "--until-idle").code == 0
    assert _status() == {"c-1": ("completed", None)}
    assert session("c-1").output == '"c-1: charged"'  # (charged once: a second would fail)


def test_a_wait_or_clock_whose_journaled_value_does_not_read_back_escalates() -> None:
    """Waits and the clock read their journaled values outside a step's decoding: those
    escalate too, without quoting the value (review of this stop: they failed the
    session, quoting it)."""
    _waiting("timed", "t-1", "t-2", "t-3")
    for sid in ("t-1", "t-2", "t-3"):
        assert cli("signal", sid, "first", "--payload", "true").code == 0
    assert cli("worker", "stale_flows", "--until-idle").code == 0  # (now waits for go)
    tamper("UPDATE journal SET result = '\"ZQXWAIT\"' WHERE session_id = 't-1' AND "
           "kind = 'wait' AND target = 'first'")
    tamper("UPDATE journal SET result = '\"ZQXCLOCK\"' WHERE session_id = 't-2' AND "
           "target = 'clock'")
    for sid in ("t-1", "t-2", "t-3"):
        assert cli("signal", sid, "go", "--payload", "true").code == 0
    res = cli("worker", "stale_flows", "--until-idle")
    assert res.code == 0 and "Traceback" not in res.stdout + res.stderr, res.stderr
    assert _status() == {"t-1": ("escalated", None), "t-2": ("escalated", None),
                         "t-3": ("completed", None)}
    assert "ZQX" not in _escalated_for("t-1", "(first)", "ValidationError")
    assert "ZQX" not in _escalated_for("t-2", "clock", "ValueError")


def test_replay_of_a_session_whose_journal_was_damaged_since_says_so_in_one_line() -> None:
    """A replay writes nothing: its verdict names the step that does not read back, and
    asks nobody to answer an escalation that does not exist."""
    _waiting("stepped", "r-1")
    assert cli("signal", "r-1", "go", "--payload", "true").code == 0
    assert cli("worker", "stale_flows", "--until-idle").code == 0
    tamper("UPDATE journal SET result = '{bad' WHERE session_id = 'r-1' AND kind = 'effect'")
    res = cli("replay", "r-1", "--import", "stale_flows")
    assert res.code == 1 and "Traceback" not in res.stdout + res.stderr, res
    out = res.stdout + res.stderr
    assert "does not read back" in out and "convoy inbox" not in out, out


def test_rejecting_the_escalation_fails_the_session_and_says_so() -> None:
    """Nothing continues a rejected escalation's session: the line says how it ended
    (review of this stop: it said a worker would continue it)."""
    _pending(Path.cwd())
    tamper("UPDATE sessions SET input = ? WHERE id = 'plain-1'", STALE)
    assert cli("worker", "cli_flows", "--until-idle").code == 0
    res = cli("inbox", "reject", "plain-1:escalated", "--by", "ann")
    assert res.code == 0, res.stdout + res.stderr
    assert "session plain-1 is failed" in res.stdout and "continues" not in res.stdout, \
        res.stdout
    assert _status()["plain-1"] == ("failed", None)


def test_two_engines_a_killed_one_and_the_next_escalate_and_recover() -> None:
    """Two processes on one store. A worker process runs a long session and is killed
    mid-step; the session's input is then changed under it (new code's type). The next
    engine takes the dead worker's session over, escalates it with its journal kept, and
    once the input is fixed and the escalation approved, finishes it from that journal:
    the steps the killed worker journaled are not run again.

    The worker is killed inside a step that waits for the file ``gate``, so it is mid-run
    however fast it is (the CI once saw a worker finish 5,000 steps between two polls)."""
    import subprocess
    import sys
    import time

    import busy_flows
    import cli_flows

    from .clikit import subprocess_env

    n = 100
    flows = [busy_flows.gated, cli_flows.handle]

    async def make() -> None:
        async with convoy.Engine("convoy.db") as e:
            e.drain()
            await e.run_many(busy_flows.gated, [n], ids=["busy-1"])
            await e.run_many(cli_flows.handle, GOOD[1:], ids=["plain-1", "plain-2"])

    asyncio.run(make())
    script = ("import asyncio, convoy, busy_flows, cli_flows\n"
              "async def main():\n"
              "    async with convoy.Engine('convoy.db', "
              "workflows=[busy_flows.gated, cli_flows.handle]) as e:\n"
              "        await e.serve(poll_interval=0.05)\n"
              "asyncio.run(main())\n")
    with Path("worker.log").open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-c", script], cwd=Path.cwd(),
                                  env=subprocess_env(), stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 120
            while not Path("at-gate").exists():  # (observable state: it is in the step)
                assert worker.poll() is None, Path("worker.log").read_text()
                assert time.monotonic() < deadline, "busy-1 never reached its gate"
                time.sleep(0.05)
        finally:
            worker.kill()  # (SIGKILL, mid-step)
            worker.wait()
    held = session("busy-1")
    assert held.status == "running" and held.owner is not None  # (by the dead process)
    before = {r.key: (r.result, r.at) for r in journal("busy-1")}
    assert len(before) == n  # (the clock steps; the gate's step never ended)
    Path("gate").touch()
    tamper("UPDATE sessions SET input = '\"many\"' WHERE id = 'busy-1'")

    async def serve() -> None:
        async with convoy.Engine("convoy.db", workflows=flows) as e:
            await e.serve(until_idle=True, poll_interval=0.05)

    asyncio.run(serve())
    assert _status() == {"busy-1": ("escalated", None), "plain-1": ("completed", None),
                         "plain-2": ("completed", None)}
    _escalated_for("busy-1", "'busy_flows:gated'", "int")
    assert len(journal("busy-1")) == n  # (kept, nothing run)

    tamper("UPDATE sessions SET input = ? WHERE id = 'busy-1'", str(n))
    assert cli("inbox", "approve", "busy-1:escalated", "--by", "ann").code == 0
    asyncio.run(serve())
    assert _status()["busy-1"] == ("completed", None)
    assert session("busy-1").output == str(n)
    records = journal("busy-1")
    assert len(records) == 2 * n + 1 and len({r.key for r in records}) == 2 * n + 1
    after = {r.key: (r.result, r.at) for r in records}
    assert {k: after[k] for k in before} == before  # (replayed, not run again)
