"""A reader that exits while a command writes one large output (``state get --json`` of a
big value, ``export``, ``trace --json``): exit 141, as when it exited before the first
byte (``tests/test_cli_closed_output.py``). With ``PYTHONUNBUFFERED=1`` (as container
images set it) Python's text stream took the write the kernel cut short, the bytes the
pipe held, as the whole and dropped the rest without an error: the command exited 0 (a
new user's trial, s63)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

import convoy

from .clikit import subprocess_env, workdir

__all__ = ["workdir"]

#: Larger than any pipe's buffer (64 KiB by default, 1 MiB at most unprivileged).
_BIG = 3_000_000


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_a_reader_gone_midway_is_exit_141(workdir: Path, unbuffered: str) -> None:
    async def write() -> None:
        async with convoy.Engine(str(workdir / "convoy.db")) as engine:
            await engine.state("ns").set("big", "x" * _BIG, expected_version=0)

    asyncio.run(write())
    env = {**subprocess_env(), "PYTHONUNBUFFERED": unbuffered}
    with subprocess.Popen([sys.executable, "-m", "convoy.cli", "state", "get", "ns", "big",
                           "--json"], cwd=workdir, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.read(10)  # (the write has begun: the pipe is full behind it)
        proc.stdout.close()  # the reader exits, as `| head -c 10` does
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=120)
    assert code == 141, (code, err)
    assert err == "", err
    whole = subprocess.run([sys.executable, "-m", "convoy.cli", "state", "get", "ns", "big",
                            "--json"], cwd=workdir, env=env, capture_output=True,
                           timeout=120, check=False)
    assert whole.returncode == 0 and len(whole.stdout) > _BIG, whole.stderr
