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
