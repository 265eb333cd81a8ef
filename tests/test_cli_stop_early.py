"""``convoy metrics serve`` and ``convoy worker`` stop on SIGINT that lands while they are
still starting (importing Convoy, before they handle signals themselves), also when they
were started with SIGINT ignored (a background job of a script or CI step), where Python
itself would drop it: exit 130, one line at most, never a traceback, never a hang.

The moment is observable state, not a clock: SIGINT is sent as a shared library that the
import loads appears in the process's memory map."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from .clikit import Background, background_fixture, cli, when_mapped, workdir

__all__ = ["background_fixture", "workdir"]

#: Shared libraries loaded while ``convoy`` imports (after its first module ran), in order.
WHILE_IMPORTING = ["_pydantic_core", "_sqlite3", "_decimal"]

COMMANDS = [("metrics", "serve", "--port", "0"), ("worker", "cli_flows")]


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps")
@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
@pytest.mark.parametrize("sigint", ["ignored", "default"])
@pytest.mark.parametrize("marker", WHILE_IMPORTING)
def test_sigint_while_starting_stops_the_command(
        background: Callable[..., Background], args: tuple[str, ...], sigint: str,
        marker: str) -> None:
    assert cli("db", "migrate").code == 0  # (a store: the command would serve it)
    proc = background(*args, sigint=sigint)
    when_mapped(proc, marker)
    res = proc.stop(signal.SIGINT)  # fails after clikit.LIMIT if it never stops
    assert "Traceback" not in res.stderr, res.stderr
    if sigint == "ignored":  # Convoy handled it: the documented exit code
        assert res.code == 130, (res.code, res.stderr)
    else:  # Python did (KeyboardInterrupt): 130, or ended by SIGINT (a shell shows 130)
        assert res.code in (130, -signal.SIGINT), (res.code, res.stderr)
    assert len(res.stderr.strip().splitlines()) <= 1, res.stderr
