"""What the command line prints of a data subject's session that failed: the error's type
and kind, never its message (it may quote the subject's data, and a batch job's output is
kept beyond 'convoy erase''s reach); 'convoy sessions show ID' with the master key reads
it. A sealed error read without the key says it is sealed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from convoy.stores import NewSession

from .clikit import cli, sessions, workdir, write_jsonl

__all__ = ["workdir"]  # the autouse fixture: each test in its own directory

PLANTED = "Margaret Hamilton, 12 Elm St"
WITHHELD = "(message withheld: a data subject's session)"
BOOM = "cli_flows:boom"


def _keyed(tmp_path: Path) -> dict[str, str]:
    assert cli("keygen", "m.key").code == 0
    return {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}


def _clean(res: object) -> None:
    text = res.stdout + res.stderr  # type: ignore[attr-defined]
    assert PLANTED not in text and "Margaret" not in text, text
    assert "Traceback" not in text


def _line_of(stdout: str, sid: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith(sid))


def test_run_and_retry_print_a_subjects_error_type_and_kind_only(tmp_path: Path) -> None:
    env = _keyed(tmp_path)
    write_jsonl(tmp_path / "in.jsonl", [json.dumps("boom " + PLANTED)])
    res = cli("run", BOOM, "-i", "in.jsonl", "--subject", "margaret", env=env)
    assert res.code == 0, res
    _clean(res)
    [row] = sessions()
    line = _line_of(res.stdout, row.id)
    assert "failed" in line and "RuntimeError" in line and WITHHELD in line, line
    assert f"details: convoy sessions show {row.id}" in res.stdout
    # the explicit read, with the key, shows it
    shown = cli("sessions", "show", row.id, env=env)
    assert shown.code == 0 and PLANTED in shown.stdout
    # a session of no subject: its message, as ever
    plain = cli("run", BOOM, "-i", "in.jsonl", "--db", "plain.db")
    assert plain.code == 0 and f"RuntimeError: boom {PLANTED}" in plain.stdout, plain
    # retry: the dry run reads the error with the key (its type and kind only, never ':'
    # and the message); without it, the session cannot be retried, and it says so first
    opened = cli("retry", "--status", "failed", "-n", "--import", "cli_flows", env=env)
    assert opened.code == 0 and row.id in opened.stdout, opened
    _clean(opened)
    assert "RuntimeError (message withheld" in opened.stdout, opened.stdout
    assert "│ :" not in opened.stdout and "(sealed)" not in opened.stdout, opened.stdout
    locked = cli("retry", "--status", "failed", "-n", "--import", "cli_flows")
    assert locked.code == 2 and f"cannot retry 1 session of data subjects ('{row.id}')" in \
        locked.stderr, locked
    _clean(locked)
    again = cli("retry", "--status", "failed", "--import", "cli_flows", env=env)
    assert again.code == 0, again
    _clean(again)
    retried = _line_of(again.stdout, f"{row.id}.r1")
    assert "RuntimeError" in retried and WITHHELD in retried, retried
    # sessions list reads the rows as stored: the error sealed, with the key or without
    for keyed in (env, None):
        listed = cli("sessions", "list", "--json", env=keyed)
        assert listed.code == 0 and row.id in listed.stdout, listed
        _clean(listed)


def _pending(env: dict[str, str]) -> str:
    """A session of subject 'margaret' created and not run (a crash before it ran)."""
    import convoy

    key = convoy.MasterKey.from_text(Path(env["CONVOY_MASTER_KEY_FILE"]).read_text())

    async def make() -> None:
        async with convoy.Engine("convoy.db", master_key=key) as engine:
            await engine.store.create_sessions([NewSession(
                id="b-1", workflow=BOOM, version="1", tenant="default",
                input=json.dumps("boom " + PLANTED), subject="margaret")])

    asyncio.run(make())
    return "b-1"


def test_resume_prints_a_subjects_error_type_and_kind_only(tmp_path: Path) -> None:
    env = _keyed(tmp_path)
    sid = _pending(env)
    res = cli("resume", "--import", "cli_flows", env=env)
    assert res.code == 0, res
    _clean(res)
    line = _line_of(res.stdout, sid)
    assert "RuntimeError" in line and WITHHELD in line, line


def test_worker_prints_a_subjects_error_type_and_kind_only(tmp_path: Path) -> None:
    env = _keyed(tmp_path)
    sid = _pending(env)
    res = cli("worker", "cli_flows", "--until-idle", "--poll-interval", "0.05", env=env)
    assert res.code == 0, res
    _clean(res)
    line = _line_of(res.stdout, sid)
    assert "failed" in line and "RuntimeError" in line and WITHHELD in line, line


def test_worker_withholds_the_error_of_a_session_that_read_a_subjects_data(
        tmp_path: Path) -> None:
    """A session of no subject that read a subject's shared state and failed quoting it:
    its stored error is sealed, and the worker's line is its type alone (it asked the
    store before the error was written, found nothing sealed, and printed the message)."""
    import subject_state_flows as flows  # (tests/fixtures: the workdir fixture's path)

    import convoy

    env = _keyed(tmp_path)
    key = convoy.MasterKey.from_text(Path(env["CONVOY_MASTER_KEY_FILE"]).read_text())

    async def make() -> None:
        async with convoy.Engine("convoy.db", master_key=key) as engine:
            assert (await engine.run(flows.write_person, PLANTED, session_id="w",
                                     subject="margaret")).ok
            engine.drain()
            await engine.run_many(flows.read_person, ["m"], ids=["r"])

    asyncio.run(make())
    res = cli("worker", "subject_state_flows", "--until-idle", "--poll-interval", "0.05",
              env=env)
    assert res.code == 0, res
    _clean(res)
    line = _line_of(res.stdout, "r ")
    assert "failed" in line and "ValueError" in line and WITHHELD in line, line
