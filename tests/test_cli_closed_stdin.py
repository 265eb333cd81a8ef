"""A command told to read standard input (``-``) when it is closed (``<&-``, a job started
without one): one line saying so and exit 2, as for a file that cannot be read, never a
traceback (``audit check -``, ``audit verify --checkpoint -`` and ``signal
--payload-file -`` showed Python's ``AttributeError``; ``run -i -`` quoted it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.clikit import (
    LIMIT,
    cli,
    ids_of,
    run_ok,
    subprocess_env,
    workdir,  # noqa: F401  (autouse fixture)
)

#: ``python -c`` code that runs ``python ARGV[1:]`` with its standard input closed.
_CLOSED = ("import os, sys; os.close(0); "
           "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


@pytest.mark.parametrize("args", [
    ("audit", "check", "-"),
    ("audit", "verify", "--checkpoint", "-"),
    ("signal", "ID", "approve", "--payload-file", "-"),
    ("run", "cli_flows:approval", "-i", "-", "--db", "other.db"),
], ids=" ".join)
def test_reading_a_closed_standard_input_is_one_line(args: tuple[str, ...]) -> None:
    run_ok(lines=['"order 1"'], flow="cli_flows:approval")
    [sid] = ids_of(['"order 1"'], "cli_flows:approval")
    assert cli("sessions", "show", sid).code == 0
    res = subprocess.run([sys.executable, "-c", _CLOSED, "-m", "convoy.cli",
                          *(sid if a == "ID" else a for a in args)],
                         env=subprocess_env(), capture_output=True, text=True, timeout=LIMIT,
                         check=False, cwd=Path.cwd())
    assert res.returncode == 2, res
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and "standard input is closed" in lines[0], lines
    assert "NoneType" not in lines[0]


def test_the_inbox_form_with_a_closed_standard_input_is_one_line() -> None:
    """``convoy inbox answer`` with no ``--value`` asks on standard input: closed, it
    showed ``RuntimeError: input(): lost sys.stdin`` where an empty one says to give the
    answer with ``--value`` or ``--set``."""
    import asyncio

    import hitl_flows

    import convoy

    async def start() -> None:
        async with convoy.Engine("convoy.db") as eng:
            res = await eng.run(hitl_flows.refund, "c-8", session_id="r2")
            assert res.status == "waiting", res

    asyncio.run(start())
    res = subprocess.run([sys.executable, "-c", _CLOSED, "-m", "convoy.cli", "inbox",
                          "answer", "r2:0", "--by", "ann"], env=subprocess_env(),
                         capture_output=True, text=True, timeout=LIMIT, check=False,
                         cwd=Path.cwd())
    assert res.returncode == 2, res
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: no answer: standard input is closed"), lines
    assert "--value JSON or --set FIELD=VALUE" in lines[0]
    assert cli("inbox", "list").stdout.count("r2:0") == 1  # (still open: nothing answered)
