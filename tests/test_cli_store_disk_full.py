"""Creating a store on a disk that is full: the one line every other write on a full disk
gives (``the disk holding the store ... is full``), not SQLite's ``cannot rollback - no
transaction is active`` (SQLite had rolled the failed schema back itself). What the failed
creation leaves (an empty database file) is a store the next run makes once there is
room. Needs a real full file system: a 64 KB tmpfs, mounted as root."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clikit import (
    FLOW,
    GOOD,
    cli,
    one_line_error,
    session_ids,
    workdir,  # noqa: F401  (autouse fixture)
    write_jsonl,
)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KB tmpfs (too small for a store's schema), unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a disk that fills up) needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_store_created_on_a_full_disk_says_the_disk_is_full(small_disk: Path) -> None:
    write_jsonl(Path("in.jsonl"), GOOD)
    db = small_disk / "s.db"
    res = cli("run", FLOW, "-i", "in.jsonl", "--db", str(db))
    one_line_error(res, 1, f"the disk holding the store {str(db)!r} is full")
    again = cli("run", FLOW, "-i", "in.jsonl", "--db", str(db))  # (still full: the same)
    one_line_error(again, 1, f"the disk holding the store {str(db)!r} is full")
    if db.exists():  # what it left is a store once there is room
        shutil.copy(db, "s.db")
        assert cli("run", FLOW, "-i", "in.jsonl", "--db", "s.db").code == 0
        assert len(session_ids(Path("s.db"))) == len(GOOD)
