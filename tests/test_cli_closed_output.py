"""A command whose output is closed before it is all written (a pipe into ``head`` that
exited) exits 141, as a program the pipe's signal ends, saying nothing: not 1, which says
it could not do its work (a store error, tampering found)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .clikit import FLOW, GOOD, cli, subprocess_env, workdir, write_jsonl

__all__ = ["workdir"]


@pytest.mark.parametrize("args", [["sessions", "list"], ["sessions", "list", "--json"],
                                  ["cost", "--by", "session"]])
def test_a_closed_output_is_exit_141_and_nothing_said(workdir: Path, args: list[str]) -> None:
    res = cli("run", FLOW, "-i", str(write_jsonl(workdir / "in.jsonl", GOOD)))
    assert res.code == 0, res.stderr
    read, write = os.pipe()
    os.close(read)  # (the reader is gone before the command writes a byte)
    try:
        done = subprocess.run([sys.executable, "-m", "convoy.cli", *args], cwd=workdir,
                              env=subprocess_env(), stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=120, check=False)
    finally:
        os.close(write)
    assert done.returncode == 141, done.stderr
    assert done.stderr == "", done.stderr
