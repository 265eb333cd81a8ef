"""What the command line prints of a failure in one line, where a batch job's or a
worker's output is kept (a log, in effect): the failures `convoy run` and `convoy worker`
list and the warnings it writes on stderr go through the default redactor, as JSON log
lines and spans do. 'convoy sessions show ID' (an explicit read of the store) shows the
message as stored."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from convoy.stores import NewSession

from .clikit import cli, ids_of, sessions, subprocess_cli, workdir, write_jsonl

__all__ = ["workdir"]  # the autouse fixture: each test in its own directory

EMAIL, CARD = "jane.doe+vip@example.com", "4539 1488 0343 6467"
MESSAGE = f"boom: mail {EMAIL}, card {CARD}"


def _clean(text: str) -> None:
    assert EMAIL not in text and "4539" not in text, text
    assert "Traceback" not in text, text


def test_run_and_worker_redact_the_failures_they_list() -> None:
    write_jsonl(Path("in.jsonl"), [json.dumps(MESSAGE)])
    ran = cli("run", "cli_flows:boom", "-i", "in.jsonl")
    assert ran.code == 0, ran
    _clean(ran.stdout + ran.stderr)
    [row] = sessions()
    assert "RuntimeError: boom: mail [EMAIL], card [CARD]" in ran.stdout, ran.stdout
    shown = cli("sessions", "show", row.id)  # (the explicit read: as stored)
    assert shown.code == 0 and EMAIL in shown.stdout, shown

    import convoy

    async def pending() -> None:
        async with convoy.Engine("w.db") as engine:
            await engine.store.create_sessions([NewSession(
                id="b-1", workflow="cli_flows:boom", version="1", tenant="default",
                input=json.dumps(MESSAGE))])

    asyncio.run(pending())
    worked = subprocess_cli(Path.cwd(), "worker", "cli_flows", "--until-idle",
                            "--poll-interval", "0.05", "--db", "w.db")
    assert worked.returncode == 0, worked.stderr
    _clean(worked.stdout + worked.stderr)
    line = next(ln for ln in worked.stdout.splitlines() if ln.startswith("b-1"))
    assert "failed" in line and "[EMAIL]" in line, line


def test_the_workers_warnings_are_redacted() -> None:
    """A session hook's refusal that names the account it refused: the worker's warning
    (stderr, the ``convoy`` logger's line) masks what the redactor finds."""
    write_jsonl(Path("in.jsonl"), [0, 1])
    assert cli("run", "app_interceptors:chat", "-i", "in.jsonl",
               "--interceptors", "app_interceptors:refusing").code == 2
    _, one = ids_of([0, 1], "app_interceptors:chat")
    worked = subprocess_cli(Path.cwd(), "worker", "app_interceptors", "--until-idle",
                            "--interceptors", "app_interceptors:suspending")
    assert worked.returncode == 0, worked.stderr
    _clean(worked.stdout + worked.stderr)
    assert f"session '{one}': a session hook refused its run (PermissionError: account " \
        "[EMAIL] (card [CARD]) is suspended)" in " ".join(worked.stderr.split()), \
        worked.stderr


def test_a_warning_redacts_what_it_quotes_from_a_session_not_convoys_own_text() -> None:
    """A store's URL or a webhook's host in a warning is what the operator needs (a
    review finding: the whole line was redacted, '[IP]' for the store that failed); the
    error message a session carried is redacted."""
    import logging

    from convoy.cli import _Lines
    from convoy.privacy._withheld import SessionText

    def line(*args: object) -> str:
        record = logging.LogRecord("convoy", logging.WARNING, __file__, 1,
                                   "store %s failed: %s", args, None)
        return _Lines().format(record)

    store = "postgresql://ops@10.1.2.3:5432/convoy"
    assert line(store, SessionText(f"mail {EMAIL}")) == \
        f"warning: store {store} failed: mail [EMAIL]"
    # an exception is Convoy's own (a store error's message names its store's URL)
    assert line(store, ValueError(f"cannot reach {store}")) == \
        f"warning: store {store} failed: cannot reach {store}"
    assert line(store, "connection refused") == \
        f"warning: store {store} failed: connection refused"
