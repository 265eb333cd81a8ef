"""``convoy run WF -i -`` stops at the first SIGINT or SIGTERM while it waits for its
inputs on standard input (a pipe whose writer stays open, as ``producer | convoy run``
while the producer thinks), with one honest line: no session started, nothing was saved.
So do ``convoy chaos WF -i -`` (nothing was run), ``convoy signal ... --payload-file -``,
``convoy audit check -`` and ``convoy audit verify --checkpoint -`` (nothing was done).

The moment is observable state, not a clock: the signal is sent once the command's main
thread sleeps reading the pipe (its ``/proc`` wait channel names the pipe read)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.clikit import (
    FLOW,
    GOOD,
    LIMIT,
    STOPS,
    Background,
    background_fixture,  # noqa: F401  (the background fixture)
    cli,
    workdir,  # noqa: F401  (autouse fixture)
    write_jsonl,
)

_WCHAN = Path("/proc/self/wchan")


def _wait_reading_stdin(run: Background) -> None:
    """Until the command's main thread sleeps in a pipe read (its stdin: it holds no other
    pipe yet). Fails after :data:`LIMIT` seconds, or if the command exits first."""
    wchan = Path(f"/proc/{run.proc.pid}/wchan")
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline:
        if run.proc.poll() is not None:
            pytest.fail(f"exited with {run.proc.returncode}: {run.wait()}")
        try:
            if "pipe" in wchan.read_text():
                return
        except OSError:  # (between exec and the new image's start)
            pass
        os.sched_yield()
    pytest.fail(f"never seen reading its standard input in {LIMIT:.0f} s")


#: ``(command, the line it says, what it must not have made)``: ``run`` (no store),
#: ``chaos`` (no phase's store), ``signal`` (no store, nothing sent), ``audit check -``
#: (a proof) and ``audit verify --checkpoint -`` (published checkpoints; on a store that
#: exists: a bare 'interrupted' at SIGINT, silence at SIGTERM, before).
CASES = {
    "run": (("run", "cli_flows:handle", "-i", "-", "--db", "c.db"),
            "interrupted before any session started: nothing was saved (the inputs read from "
            "standard input are not kept: send them again)", "c.db"),
    "chaos": (("chaos", "cli_flows:handle", "-i", "-", "--db-dir", "exp"),
              "interrupted before the experiment started: nothing was run (the inputs read "
              "from standard input are not kept: send them again)", "exp"),
    "signal": (("signal", "s-1", "approved", "--payload-file", "-", "--db", "c.db"),
               "interrupted before the signal was sent: nothing was done (the payload read "
               "from standard input is not kept: send it again)", "c.db"),
    "audit-check": (("audit", "check", "-"),
                    "interrupted before the proof was checked: nothing was done (the proof "
                    "read from standard input is not kept: send it again)", None),
    "audit-verify": (("audit", "verify", "--checkpoint", "-"),
                     "interrupted before the log was verified: nothing was done (the "
                     "checkpoints read from standard input are not kept: send them again)",
                     None),
}


@pytest.mark.skipif(not _WCHAN.exists(), reason="reads /proc/PID/wchan (Linux)")
@pytest.mark.parametrize(("sig", "sigint", "code"), STOPS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_stop_while_a_command_waits_for_standard_input_stops_it_at_once(
        background: Callable[..., Background], sig: signal.Signals, sigint: str,
        code: int, case: str) -> None:
    args, said, not_made = CASES[case]
    if case == "audit-verify":  # (it reads the store first: one to verify)
        assert cli("run", FLOW, "--input", str(write_jsonl(Path("in.jsonl"), GOOD[:1]))
                   ).code == 0
    run = background(*args, sigint=sigint)
    _wait_reading_stdin(run)
    res = run.stop(sig)  # (its stdin stays open: the writer has more to say)
    assert res.code == code, res
    assert res.stderr.strip().splitlines() == [said], res.stderr
    assert res.stdout == ""
    if not_made is not None:
        assert not Path(not_made).exists()
