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


def test_a_closed_stderr_lets_the_command_go_on_to_its_own_exit_code(workdir: Path) -> None:
    """Standard error closed (a log reader gone): the command's notices go nowhere, and it
    does its work and exits as it would (a stop's notice that found stderr closed skipped
    the drain, and the steps in flight were cancelled)."""
    write_jsonl(workdir / "in.jsonl", [*GOOD[:1], "not json"])  # (a line it warns of)
    read, write = os.pipe()
    os.close(read)
    try:
        runs = [subprocess.run([sys.executable, "-m", "convoy.cli", *args], cwd=workdir,
                               env=subprocess_env(), stdout=subprocess.PIPE, stderr=write,
                               text=True, timeout=120, check=False)
                for args in (["run", FLOW, "-i", "in.jsonl"], ["sessions", "show", "nope"])]
    finally:
        os.close(write)
    ran, unknown = runs
    assert ran.returncode == 0 and "completed" in ran.stdout, ran
    assert unknown.returncode == 2, unknown
