"""``convoy export -o FILE`` whose write fails midway (a full disk, a quota, a file size
limit): the export is written whole or not at all. It wrote over FILE in place, so a
failure left the first part of the subject's data there, the export that FILE held
before gone, and exited 2 as for a usage error (a new user's trial, s63)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from .clikit import cli, one_line_error, subprocess_env, workdir, write_jsonl

__all__ = ["workdir"]

#: The file size limit the export runs under: more than the store's own files need to
#: open (its -shm is 32 KiB), less than the export.
_LIMIT = 256 * 1024


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (_LIMIT, _LIMIT))


def test_an_export_that_cannot_be_written_whole_leaves_nothing(workdir: Path) -> None:
    assert cli("keygen", "m.key").code == 0
    env = {"CONVOY_MASTER_KEY_FILE": str(workdir / "m.key")}
    write_jsonl(workdir / "in.jsonl", [json.dumps("x" * (2 * _LIMIT))])
    ran = cli("run", "cli_flows:shout", "-i", "in.jsonl", "--subject", "c-1", env=env)
    assert ran.code == 0, ran.stderr
    before = '{"an": "earlier export"}\n'
    (workdir / "kept.json").write_text(before)
    for name in ("kept.json", "new.json"):
        done = subprocess.run([sys.executable, "-m", "convoy.cli", "export", "c-1", "-o",
                               name], cwd=workdir, env={**subprocess_env(), **env},
                              capture_output=True, text=True, timeout=120, check=False,
                              preexec_fn=_limited)
        assert done.returncode == 1, (done.returncode, done.stderr)
        assert done.stderr.count("\n") == 1 and "nothing was written there" in \
            done.stderr, done.stderr
    assert (workdir / "kept.json").read_text() == before
    assert not (workdir / "new.json").exists()
    assert [p.name for p in workdir.iterdir() if p.name.endswith(".part")] == []
    # with room, the whole export, readable by its owner only
    whole = cli("export", "c-1", "-o", "kept.json", env=env)
    assert whole.code == 0 and "replacing the file that was there" in whole.stdout, whole
    assert json.loads((workdir / "kept.json").read_text())["subject"] == "c-1"
    assert (workdir / "kept.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_an_export_to_a_full_device_is_a_failed_write_not_misuse(workdir: Path) -> None:
    """``-o /dev/full`` (a device or a pipe is written as a stream): a failed write (no
    space, an I/O error) exits 1, as a full disk does for a file or for standard output,
    in one line naming the file and the error. It exited 2, the code of a usage error."""
    assert cli("keygen", "m.key").code == 0
    env = {"CONVOY_MASTER_KEY_FILE": str(workdir / "m.key")}
    write_jsonl(workdir / "in.jsonl", [json.dumps("hello")])
    assert cli("run", "cli_flows:shout", "-i", "in.jsonl", "--subject", "c-1",
               env=env).code == 0
    res = cli("export", "c-1", "-o", "/dev/full", env=env)
    one_line_error(res, 1, "--output: cannot write '/dev/full': No space left on device")
    assert res.stderr == "error: --output: cannot write '/dev/full': No space left on " \
        "device\n"
    assert res.stdout == ""  # (no "wrote ..." line)
    assert [p.name for p in workdir.iterdir() if p.name.endswith(".part")] == []
    # a path that cannot be opened is still the user's to fix: exit 2
    one_line_error(cli("export", "c-1", "-o", "/proc/no-such-file.json", env=env), 2,
                   "--output: cannot write '/proc/no-such-file.json': ")
