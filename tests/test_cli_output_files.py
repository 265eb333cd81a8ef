"""``-o FILE`` (``export``, ``chaos``) never destroys a store: the store the command reads,
one of its files, or any existing SQLite database is refused in one line, untouched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .clikit import FLOW, cli, one_line_error, workdir, write_jsonl

__all__ = ["workdir"]  # the autouse fixture: each test in its own directory


@pytest.fixture(name="env")
def env_fixture(tmp_path: Path) -> dict[str, str]:
    """A master key, and a store ``sub.db`` with one session of subject ``c-9``."""
    assert cli("keygen", "m.key").code == 0
    env = {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}
    write_jsonl(tmp_path / "in.jsonl", [{"subject": "refund", "body": "b"}])
    assert cli("run", FLOW, "-i", "in.jsonl", "--subject", "c-9", "--db", "sub.db",
               env=env).code == 0
    return env


def test_keygen_prints_the_whole_path_to_export(tmp_path: Path) -> None:
    """A relative path exported names another file from any other directory."""
    (tmp_path / "my keys").mkdir()
    res = cli("keygen", "my keys/m.key")
    assert res.code == 0, res.stderr
    assert res.stdout.strip().endswith(
        f"export CONVOY_MASTER_KEY_FILE='{tmp_path / 'my keys' / 'm.key'}'"), res.stdout


def test_keygen_to_dash_is_refused_not_a_file_named_dash(tmp_path: Path) -> None:
    """'-' is standard output to `export -o -`: keygen wrote a file named '-' (review of
    stop 44). A key is never printed; one line says how to name the file."""
    one_line_error(cli("keygen", "--", "-"), 2, "FILE '-': a master key is written to a file")
    assert not (tmp_path / "-").exists()
    assert cli("keygen", "./-").code == 0 and (tmp_path / "-").exists()


def _files(tmp_path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}


def test_export_refuses_to_write_over_its_own_store(tmp_path: Path,
                                                    env: dict[str, str]) -> None:
    os.symlink("sub.db", tmp_path / "alias.db")
    before = _files(tmp_path)
    for target, what in (("sub.db", "is the store 'sub.db'"),
                         ("./sub.db", "is the store 'sub.db'"),
                         ("alias.db", "is the store 'sub.db'"),
                         ("sub.db-wal", "is the -wal file of the store 'sub.db'"),
                         ("sub.db-shm", "is the -shm file of the store 'sub.db'"),
                         ("sub.db-journal",  # (none yet: it would be the store's)
                          "is the -journal file of the store 'sub.db'")):
        res = cli("export", "c-9", "--db", "sub.db", "-o", target, env=env)
        one_line_error(res, 2, f"--output {str(Path(target))!r} {what}")
        assert "another path" in res.stderr
    res = cli("export", "c-9", "--db", f"sqlite:///{tmp_path}/sub.db", "-o", "sub.db", env=env)
    one_line_error(res, 2, "--output 'sub.db' is the store")
    assert _files(tmp_path) == before


def test_export_refuses_to_write_over_any_sqlite_database(tmp_path: Path,
                                                          env: dict[str, str]) -> None:
    assert cli("run", FLOW, "-i", "in.jsonl", "--db", "other.db").code == 0
    before = (tmp_path / "other.db").read_bytes()
    res = cli("export", "c-9", "--db", "sub.db", "-o", "other.db", env=env)
    one_line_error(res, 2, "--output 'other.db' is a SQLite database")
    assert "another path" in res.stderr
    assert (tmp_path / "other.db").read_bytes() == before
    # any other existing file is overwritten (an export written again)
    (tmp_path / "old.json").write_text("{}")
    assert cli("export", "c-9", "--db", "sub.db", "-o", "old.json", env=env).code == 0
    assert "c-9" in (tmp_path / "old.json").read_text()


def test_chaos_refuses_a_journal_that_would_destroy_a_store(tmp_path: Path,
                                                            env: dict[str, str]) -> None:
    before = (tmp_path / "sub.db").read_bytes()
    res = cli("chaos", FLOW, "-i", "in.jsonl", "--db-dir", "d", "-o", "sub.db")
    one_line_error(res, 2, "--journal 'sub.db' is a SQLite database")
    assert (tmp_path / "sub.db").read_bytes() == before
    # a phase's store, before the phase made it
    res = cli("chaos", FLOW, "-i", "in.jsonl", "--db-dir", "d", "-o", "d/during.db")
    one_line_error(res, 2, "--journal 'd/during.db' is the store of the during phase")
    assert not (tmp_path / "d").exists()  # refused before anything ran


def test_chaos_refuses_a_journal_that_is_its_own_input(tmp_path: Path) -> None:
    """The bug: ``convoy chaos FLOW -i victim.jsonl -o victim.jsonl`` exited 0 with the
    inputs replaced by the chaos journal. The input file is refused as the journal in one
    line, whatever path names it, before anything runs."""
    write_jsonl(tmp_path / "victim.jsonl", [{"subject": "refund", "body": "b"}])
    os.symlink("victim.jsonl", tmp_path / "alias.jsonl")
    (tmp_path / "d").mkdir()
    write_jsonl(tmp_path / "d" / "journal.json", [{"subject": "refund", "body": "b"}])
    before = _files(tmp_path)
    for args, named in ((("-i", "victim.jsonl", "-o", "victim.jsonl"), "victim.jsonl"),
                        (("-i", "victim.jsonl", "--journal", "./victim.jsonl"),
                         "victim.jsonl"),
                        (("-i", "alias.jsonl", "--journal", "victim.jsonl"), "victim.jsonl"),
                        (("--input", str(tmp_path / "victim.jsonl"), "-o", "d/../victim.jsonl"),
                         "d/../victim.jsonl"),
                        # no --journal: the default one, DB_DIR/journal.json, is the input
                        (("-i", "d/journal.json"), "d/journal.json")):
        res = cli("chaos", FLOW, *args, "--db-dir", "d")
        one_line_error(res, 2, f"--journal {named!r} is the --input file: writing there "
                               "would destroy it; pass another path")
    assert _files(tmp_path) == before
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["journal.json"]


def test_export_refuses_to_write_over_a_key_and_says_what_it_would_lose(
        tmp_path: Path, env: dict[str, str]) -> None:
    res = cli("export", "c-9", "--db", "sub.db", "-o", "m.key", env=env)
    one_line_error(res, 2, "--output 'm.key' is the master key file ($CONVOY_MASTER_KEY_FILE)"
                   ": writing there would destroy it, and with it every value sealed with it")
    assert "checkpoint" not in res.stderr
    audit_env = {**env, "CONVOY_AUDIT_KEY": str(tmp_path / "audit.key")}
    (tmp_path / "audit.key").write_text("a key")
    res = cli("export", "c-9", "--db", "sub.db", "-o", "audit.key", env=audit_env)
    one_line_error(res, 2, "is the audit log's signing key ($CONVOY_AUDIT_KEY): writing "
                   "there would destroy it, and with it the key that signed its checkpoints")


def test_a_store_locked_past_the_busy_timeout_says_what_is_left_unfinished() -> None:
    """The line is the same for every write (a step, an erasure, a purge): what it says of
    an unfinished session holds only if the write was a session's step."""
    import sqlite3

    from convoy.stores._sqlite_sql import _store_error

    e = _store_error(sqlite3.OperationalError("database is locked"), Path("s.db"), "write")
    assert str(e) == ("the store 's.db' stayed locked by another process past the busy "
                      "timeout (--busy-timeout): this write was not made; try again (if it "
                      "was a session's step, the session is left unfinished: resume it later)")


def test_a_read_kept_out_by_a_lock_says_nothing_was_read() -> None:
    """A read waits only on a lock that keeps readers out (another process's exclusive
    locking mode): the line said "this write was not made" and named --busy-timeout, which
    the read-only commands (audit verify, list, prove) do not have (review of stop 44)."""
    import sqlite3

    from convoy.stores._sqlite_sql import _store_error

    for what, done in (("read", "read"), ("open", "opened")):
        e = _store_error(sqlite3.OperationalError("database is locked"), Path("s.db"), what)
        assert str(e) == ("the store 's.db' stayed locked by another process past the busy "
                          f"timeout: nothing was {done}; try again once that process is "
                          "done with it")


def test_a_compaction_kept_out_suggests_compacting_that_store() -> None:
    """The line after an erasure or purge whose compaction another process kept out named
    'convoy db compact' without the store, which then compacted ./convoy.db (review of
    stop 44)."""
    from convoy.stores._subjects_sql import not_compacted

    assert "until 'convoy db compact --db lk.db' succeeds" in \
        str(not_compacted("'lk.db'", "lk.db"))


def test_export_to_a_pipe_leaves_its_mode_alone(tmp_path: Path, env: dict[str, str]) -> None:
    """The bug: ``-o`` set the mode of whatever it opened to 0600, a device or a named
    pipe too: ``convoy export SUBJECT -o /dev/null`` (as root) left /dev/null unwritable
    for everyone else. Only a regular file it writes is made the owner's alone."""
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo, 0o644)
    os.chmod(fifo, 0o644)  # (whatever the umask)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    res = cli("export", "c-9", "--db", "sub.db", "-o", str(fifo), env=env)
    reader.join(timeout=60)
    assert res.code == 0, res.stderr
    assert os.stat(fifo).st_mode & 0o777 == 0o644
    assert b'"subject": "c-9"' in got[0]


def test_export_to_dash_writes_stdout_and_a_replaced_file_is_said(
        tmp_path: Path, env: dict[str, str]) -> None:
    res = cli("export", "c-9", "--db", "sub.db", "-o", "-", env=env)
    assert res.code == 0 and '"subject": "c-9"' in res.stdout, res.stderr
    assert not (tmp_path / "-").exists()
    first = cli("export", "c-9", "--db", "sub.db", "-o", "c9.json", env=env)
    assert first.code == 0 and first.stdout == "wrote 1 session of subject 'c-9' to 'c9.json'\n"
    again = cli("export", "c-9", "--db", "sub.db", "-o", "c9.json", env=env)
    assert again.code == 0 and "(replacing the file that was there)" in again.stdout
    # (said before the subject's data is read, naming the directory to make, as --db does)
    gone = cli("export", "c-9", "--db", "sub.db", "-o", "no-such-dir/c9.json", env=env)
    one_line_error(gone, 2, "--output: cannot write 'no-such-dir/c9.json': the directory "
                            "'no-such-dir' does not exist; create it first (mkdir -p "
                            "no-such-dir)")


def test_export_to_a_path_ending_with_a_slash_writes_no_file_of_that_name(
        tmp_path: Path, env: dict[str, str]) -> None:
    """``-o new/`` (no such directory): it wrote the subject's data to a file named
    ``new`` and said so; a path that ends with ``/`` names a directory (as keygen says)."""
    res = cli("export", "c-9", "--db", "sub.db", "-o", "new/", env=env)
    one_line_error(res, 2, "--output 'new/' ends with '/', so it names a directory: pass "
                           "the path of a file to write (FILE.json), or - for stdout")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("where", ["", "  ", ".", "out"])
def test_export_to_a_directory_or_an_empty_path_says_so(
        tmp_path: Path, env: dict[str, str], where: str) -> None:
    (tmp_path / "out").mkdir()
    res = cli("export", "c-9", "--db", "sub.db", "-o", where, env=env)
    said = "is empty" if not where.strip() else "is a directory"
    one_line_error(res, 2, f"--output {where!r} {said}: pass the path of a file to write "
                           "(FILE.json), or - for stdout")

