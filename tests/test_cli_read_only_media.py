"""A SQLite store where it cannot be written (a backup on read-only media, a directory or
file without write permission): the commands that only read it read it (the file as it
is, a write-ahead log through its shared-memory file), and the commands that write give
the one clear line they gave. A write-ahead log that holds commits SQLite cannot read
there (its shared-memory file missing) is one line saying to copy the store, never a
read that leaves those commits out.

Read-only media for real: a read-only bind mount in a private mount namespace (``unshare
-m``; ``-r -m`` when not root), which stops root as well; skipped where the system lets
no test make one. Permissions for real: only as a user that is not root (``chmod`` does
not stop root), so that test is skipped as root."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.clikit import (
    Res,
    cli,
    ids_of,
    one_line_error,
    subprocess_env,
    workdir,  # noqa: F401  (autouse fixture)
    write_jsonl,
)
from tests.test_cli_read_only import populate, reads

#: ``python -c`` code that runs each ``convoy`` command of the JSON list ARGV[1] in one
#: process (an import of Convoy for each would take a second each) and prints, as JSON,
#: each one's exit code, stdout and stderr; an exception that escapes one is a traceback.
_DRIVER = """
import json, sys, traceback
from typer.testing import CliRunner
from convoy.cli import app
out = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(app, args)
    tb = "".join(traceback.format_exception(r.exception)) if r.exception is not None \\
        and not isinstance(r.exception, SystemExit) else ""
    out.append([r.exit_code, r.stdout, r.stderr + tb])
print(json.dumps(out))
"""

#: What a command that writes says of a store in a directory it cannot write.
CANNOT_WRITE = "check that its directory exists and is writable"


def _ro_prefix(directory: Path) -> list[str]:
    """A command prefix that runs its command with ``directory`` mounted read-only over
    itself, seen by that command alone; skips the test where no such mount can be made."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) to make a read-only mount with")
    mount = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'
    prefix = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]
    prefix += ["sh", "-c", mount, str(directory)]
    probe = subprocess.run([*prefix, "sh", "-c", f"! touch '{directory}/probe'"],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"this system lets no test mount a directory read-only: {probe.stderr!r}")
    return prefix


def _on_media(media: Path, commands: list[list[str]],
              env: dict[str, str] | None = None) -> list[Res]:
    """``convoy ARGS`` for each of ``commands``, in one process that sees ``media``
    read-only."""
    done = subprocess.run([*_ro_prefix(media), sys.executable, "-c", _DRIVER,
                           json.dumps(commands)], cwd=Path.cwd(),
                          env={**subprocess_env(), **(env or {})}, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return [Res(*r) for r in json.loads(done.stdout)]


def _files(media: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(media.iterdir())}


def _writes(db: str) -> list[list[str]]:
    """Commands that write to a store (each with its ``--db``)."""
    return [["state", "set", "customer:1", "credit", "11", "--db", db],
            ["run", "cli_flows:handle", "-i", "in.jsonl", "--db", db],
            ["db", "migrate", "--db", db]]


def test_read_only_commands_read_a_store_on_read_only_media(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    db = str(media / "convoy.db")
    assert cli("keygen", str(tmp_path / "m.key")).code == 0
    env = {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}
    sid = populate(db)
    before = _files(media)
    assert list(before) == ["convoy.db"]  # (closed: no -wal, no -shm)
    commands = reads(sid)
    said = _on_media(media, [[*args, "--db", db] for args, _ in commands]
                     + _writes(db), env)
    for (args, code), res in zip(commands, said, strict=False):
        assert res.code == code, (args, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr, (args, res.stderr)
    listed = said[0].stdout
    assert sid in listed and "r1" in listed, listed
    for res in said[len(commands):]:
        one_line_error(res, 1, CANNOT_WRITE)
    assert _files(media) == before


def _killed_mid_session(media: Path) -> tuple[str, str]:
    """A store in ``media`` whose ``convoy run`` process was SIGKILLed mid-session (in
    a step of ``busy_flows:gated`` that waits for the file ``gate``): its commits are in
    its write-ahead log. The store and the session's id."""
    db = str(media / "convoy.db")
    write_jsonl(Path("gated.jsonl"), [5])
    with Path("run.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "convoy.cli", "run",
                                 "busy_flows:gated", "-i", "gated.jsonl", "--db", db],
                                cwd=Path.cwd(), env=subprocess_env(), stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 120
            while not Path("at-gate").exists():  # (observable state: it is in the step)
                assert proc.poll() is None, Path("run.log").read_text()
                assert time.monotonic() < deadline, "the session never reached its gate"
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert Path(f"{db}-wal").stat().st_size > 0 and Path(f"{db}-shm").exists()
    return db, ids_of([5], flow="busy_flows:gated")[0]


def test_a_killed_stores_log_is_read_on_read_only_media_or_refused_in_one_line(
        tmp_path: Path) -> None:
    """A store whose engine was killed, backed up with its ``-wal`` and ``-shm``: read
    with the commits its log holds. Backed up without the ``-shm`` (which SQLite cannot
    make on read-only media): one line saying so and what to do, not a read of the
    database file alone, which would leave those commits out."""
    media = tmp_path / "media"
    media.mkdir()
    db, sid = _killed_mid_session(media)
    before = _files(media)
    [listed, shown] = _on_media(media, [["sessions", "list", "--json", "--db", db],
                                        ["sessions", "show", sid, "--json", "--db", db]])
    assert listed.code == 0, listed.stderr
    [row] = json.loads(listed.stdout)["sessions"]
    assert (row["id"], row["status"], row["steps"]) == (sid, "running", 5), row
    assert shown.code == 0 and len(json.loads(shown.stdout)["journal"]) == 5, shown.stderr
    assert _files(media) == before
    Path(f"{db}-shm").unlink()
    without = _files(media)
    said = _on_media(media, [["sessions", "list", "--db", db], ["trace", sid, "--db", db],
                             ["audit", "verify", "--db", db]])
    for res in said:
        one_line_error(res, 1, f"the store {db!r} cannot be read where it is")
        assert "write-ahead log" in res.stderr and "copy" in res.stderr, res.stderr
    assert _files(media) == without
    # Copied where it can be written, it reads as it was.
    copy = tmp_path / "copy"
    shutil.copytree(media, copy)
    [row] = json.loads(cli("sessions", "list", "--json", "--db",
                           str(copy / "convoy.db")).stdout)["sessions"]
    assert (row["id"], row["steps"]) == (sid, 5), row


def test_a_store_with_its_shared_memory_file_and_no_log_is_read_on_read_only_media(
        tmp_path: Path) -> None:
    """A backup that kept the ``-shm`` but skipped the empty ``-wal``: every commit is in
    the file, so it is read (as an immutable file); it was refused as if another user's
    engine were writing it (the review of stop 56)."""
    media = tmp_path / "media"
    media.mkdir()
    db = str(media / "convoy.db")
    sid = populate(db)
    (media / "convoy.db-shm").write_bytes(b"\0" * 32768)
    [res] = _on_media(media, [["sessions", "list", "--json", "--db", db]])
    assert res.code == 0, res.stderr
    assert sid in [s["id"] for s in json.loads(res.stdout)["sessions"]]


@pytest.mark.skipif(os.geteuid() == 0, reason="chmod does not stop root from writing: run "
                    "as another user (the read-only mount test covers root)")
def test_read_only_commands_read_a_store_they_have_no_write_permission_for(
        tmp_path: Path) -> None:
    """A file this process may not write is read (its directory takes the log's files). A
    closed store in a directory it may not write is refused in one line saying to copy
    it: an engine that may write there could change the file under an immutable read,
    which would read stale or torn pages without an error (the review of stop 56)."""
    media = tmp_path / "media"
    media.mkdir()
    db = str(media / "convoy.db")
    assert cli("keygen", str(tmp_path / "m.key")).code == 0
    env = {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}
    sid = populate(db)
    before = _files(media)
    told = "is read-only; give this process write access to the file and its directory"
    for locked, mode in ((media, 0o555), (media / "convoy.db", 0o444)):
        locked.chmod(mode)
        try:
            for args, code in reads(sid):
                res = cli(*args, "--db", db, env=env)
                if locked.is_dir():
                    one_line_error(res, 1, f"the store {db!r} cannot be read where it is")
                    assert "an engine that may could change" in res.stderr, res.stderr
                else:
                    assert res.code == code, (locked, args, res.stdout, res.stderr)
            for args in _writes(db)[:1]:  # (the others: 'convoy run' may have no write)
                one_line_error(cli(*args), 1, told)
        finally:
            locked.chmod(0o755 if locked.is_dir() else 0o644)
        # (SQLite makes the -wal and -shm of a read where the directory can be written)
        assert (media / "convoy.db").read_bytes() == before["convoy.db"]
