"""``convoy run --subject``, ``erase``, ``export``, ``purge`` and ``keygen`` from the command
line: what they print, what they leave in the store's files, one line for each misuse."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from convoy.cli._render import fmt_time
from convoy.privacy import parse_age
from convoy.stores import Erasure, store_from_url

from .clikit import (
    FLOW,
    cli,
    ids_of,
    one_line_error,
    sessions,
    subprocess_env,
    summary,
    tamper,
    workdir,
    write_jsonl,
)

__all__ = ["workdir"]  # the autouse fixture: each test in its own directory

PLANTED = "Yolanda Verbatim-Personal"


def test_a_subject_is_run_sealed_exported_and_erased(tmp_path: Path) -> None:
    assert cli("keygen", "m.key").code == 0
    one_line_error(cli("keygen", "m.key"), 2, "never overwritten")
    # (a new user's trial: a link to nothing was said to exist already)
    (tmp_path / "dangling.key").symlink_to(tmp_path / "nowhere" / "k")
    one_line_error(cli("keygen", "dangling.key"), 2, "is a symbolic link to ")
    # (and a link to itself was said to be a link to a file that does not exist)
    (tmp_path / "loop.key").symlink_to("loop.key")
    one_line_error(cli("keygen", "loop.key"), 2, "'loop.key' is a symbolic link that leads "
                   "back to itself ('loop.key' -> 'loop.key': a loop); a master key is not "
                   "written through a link")
    assert not (tmp_path / "nowhere").exists()
    env = {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}
    write_jsonl(tmp_path / "in.jsonl", [{"subject": "refund", "body": PLANTED}])
    one_line_error(cli("run", FLOW, "-i", "in.jsonl", "--subject", "c-9"), 2,
                   "no master key is configured")
    # (and an empty subject is said to be one before the missing key)
    one_line_error(cli("run", FLOW, "-i", "in.jsonl", "--subject", ""), 2,
                   "a subject is a non-empty name")
    # (a new user's trial: a name with a line break was taken, where session ids and
    # tenants refuse what a terminal would obey)
    one_line_error(cli("run", FLOW, "-i", "in.jsonl", "--subject", "x\ny"), 2,
                   "data subject name 'x\\ny' holds the character \\n")
    # refused before the store is made, an input with no valid line too (review of stop
    # 44: an empty store was left behind; a file of bad lines was not refused at all)
    (tmp_path / "bad.jsonl").write_text("not json\n")
    one_line_error(cli("run", FLOW, "-i", "bad.jsonl", "--subject", "c-9"), 2,
                   "no master key is configured")
    assert not any(p.name.startswith("convoy.db") for p in tmp_path.iterdir())
    assert cli("run", FLOW, "-i", "in.jsonl", "--subject", "c-9", env=env).code == 0
    files = [p for p in tmp_path.iterdir() if p.name.startswith("convoy.db")]
    assert files and not any(PLANTED.encode() in p.read_bytes() for p in files)
    res = cli("export", "c-9", env=env)
    assert res.code == 0 and json.loads(res.stdout)["sessions"][0]["input"]["body"] == PLANTED
    unkeyed = cli("export", "c-9")
    one_line_error(unkeyed, 2, "needs the master key")
    assert "Engine(master_key=...)" in unkeyed.stderr  # the API's argument, said as such
    (tmp_path / "old.json").write_text("{}")
    (tmp_path / "old.json").chmod(0o644)
    for name in ("c-9.json", "old.json"):  # personal data in plaintext: the owner's only
        assert cli("export", "c-9", "-o", name, env=env).code == 0
        assert PLANTED in (tmp_path / name).read_text()
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600
    # The master key is never the output (the key file $CONVOY_MASTER_KEY_FILE names, or
    # a copy of it): overwriting it would make every sealed value unreadable.
    key = (tmp_path / "m.key").read_bytes()
    (tmp_path / "copy.key").write_bytes(key)
    one_line_error(cli("export", "c-9", "-o", "m.key", env=env), 2,
                   "--output 'm.key' is the master key file ($CONVOY_MASTER_KEY_FILE)")
    one_line_error(cli("export", "c-9", "-o", "copy.key", env=env), 2,
                   "--output 'copy.key' holds a key (a master key or a signing key), which "
                   "is never overwritten")
    assert (tmp_path / "m.key").read_bytes() == key == (tmp_path / "copy.key").read_bytes()
    res = cli("erase", "c-9", env=env)
    assert res.code == 0 and "1 session," in res.stdout and "key destroyed" in res.stdout
    again = cli("erase", "c-9", env=env)  # a repeated request: done already, not an error
    assert again.code == 0 and "subject 'c-9' of tenant 'default' was erased already " \
        "(erasure #1 at " in again.stdout, again
    # the right of access after erasure: said so, not 'unknown' (as if mistyped)
    one_line_error(cli("export", "c-9", env=env), 2,
                   "subject 'c-9' of tenant 'default' was erased already (erasure #1)")
    one_line_error(cli("export", "c-8", env=env), 2, "unknown subject 'c-8'")
    assert "pass --tenant NAME" in cli("export", "c-8", env=env).stderr
    assert not (tmp_path / "convoy.db-wal").exists() or \
        (tmp_path / "convoy.db-wal").stat().st_size == 0
    assert b"c-9" not in (tmp_path / "convoy.db").read_bytes()


def test_a_repeated_erasure_succeeds_and_appends_nothing(tmp_path: Path) -> None:
    """A subject erased already (a request sent twice, a retry of a script): exit 0, when
    it was erased, and nothing written: no second erasure recorded, no audit entry, the
    log still verifies. A subject the store never had stays a usage error (exit 2)."""
    assert cli("keygen", "m.key").code == 0
    env = {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}

    async def audited() -> None:  # the tenant has an audit log: the CLI audits it
        from convoy.audit import AuditEvent, AuditLog

        store = store_from_url("convoy.db")
        await store.open()
        try:
            await AuditLog(store).append("default", [AuditEvent(kind="config_change",
                                                                status="ok", at=1.0)])
        finally:
            await store.aclose()

    async def recorded() -> tuple[list[Erasure], int]:
        store = store_from_url("convoy.db", read_only=True)
        await store.open()
        try:
            return await store.erasures(), await store.audit_size("default")
        finally:
            await store.aclose()

    asyncio.run(audited())
    write_jsonl(tmp_path / "in.jsonl", [{"subject": "refund", "body": PLANTED}])
    assert cli("run", FLOW, "-i", "in.jsonl", "--subject", "c-9", env=env).code == 0
    assert cli("erase", "c-9", env=env).code == 0
    [erasure], size = asyncio.run(recorded())
    again = cli("erase", "c-9", env=env)
    assert again.code == 0 and again.stderr == "", again
    assert again.stdout.strip() == (
        f"subject 'c-9' of tenant 'default' was erased already (erasure #{erasure.seq} at "
        f"{fmt_time(erasure.at)}): nothing of it is left; nothing more to do")
    assert asyncio.run(recorded()) == ([erasure], size)
    verified = cli("audit", "verify")
    assert verified.code == 0 and f"{size} entries verified" in verified.stdout, verified
    one_line_error(cli("erase", "c-8", env=env), 2,
                   "unknown subject 'c-8' in tenant 'default': no session names it and it "
                   "has no key; if it is another tenant's, pass --tenant NAME")
    # another tenant's c-9 was never erased: unknown there
    # (the tenant was given: the hint names it, not a --tenant to add)
    one_line_error(cli("erase", "c-9", "--tenant", "acme", env=env), 2,
                   "unknown subject 'c-9' in tenant 'acme': no session names it and it has "
                   "no key; if it belongs to a tenant other than 'acme', name that one with "
                   "--tenant")
    assert asyncio.run(recorded()) == ([erasure], size)


def test_a_master_key_file_of_raw_bytes_is_one_line(tmp_path: Path) -> None:
    """Raw random bytes where the base64 text belongs: said so, not a UnicodeDecodeError."""
    (tmp_path / "raw.key").write_bytes(b"\xff\xfe" + bytes(range(30)))
    env = {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "raw.key")}
    assert cli("keygen", "m.key").code == 0
    write_jsonl(tmp_path / "in.jsonl", [{"subject": "refund", "body": PLANTED}])
    assert cli("run", FLOW, "-i", "in.jsonl", "--subject", "c-9", env={
        "CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}).code == 0
    for args in (("export", "c-9"), ("erase", "c-9")):
        one_line_error(cli(*args, env=env), 2,
                       "is not a Convoy master key: it holds binary data, not base64 text "
                       "(make one with 'convoy keygen FILE')")


def test_purge_parses_its_age_and_says_what_it_did(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"subject": "refund", "body": "x"}])
    assert cli("run", FLOW, "-i", "in.jsonl").code == 0
    one_line_error(cli("purge", "--older-than", "3x"), 2, "unit s, m, h, d or w")
    one_line_error(cli("purge", "--older-than", "1e306d"), 2, "age '1e306d' is too large")
    # 'M' reads as a month: never taken for minutes (a purge of all but the last minute)
    for age in ("1M", "6M", " 2M "):
        one_line_error(cli("purge", "--older-than", age), 2,
                       "M could mean months or minutes: write 'm' for minutes, or the age in "
                       "days (e.g. '30d')")
    assert parse_age("90m") == parse_age("90 m") == 90 * 60
    assert parse_age("30D") == parse_age("30d") == 30 * 86400  # (other units: any case)
    # a number as it is written, not whatever float() reads (30_0 as 300: review of stop 44)
    for age in ("30_0d", "1_000s", "nand", "infd", "0x10d", "30"):
        one_line_error(cli("purge", "--older-than", age), 2,
                       f"age {age!r} is not a positive number with a unit s, m, h, d or w")
    res = cli("purge", "--older-than", "30d")
    assert res.code == 0 and "purged 0 sessions older than 30d of tenant 'default'" in \
        res.stdout


def _settled(db: Path) -> bytes:
    """The store file's bytes with every committed write in it (its WAL checkpointed and
    emptied: a write a command made would be there)."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    wal = db.with_name(db.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    return db.read_bytes()


def test_purge_without_tenant_has_no_mistyped_tenant_note(tmp_path: Path) -> None:
    """The note on a tenant with no session is for a --tenant the user typed: the default
    tenant, not named, having none is no typo."""
    write_jsonl(tmp_path / "in.jsonl", [{"subject": "s0", "body": "x"}])
    assert cli("run", FLOW, "-i", "in.jsonl", "--tenant", "acme").code == 0
    for args in (["--dry-run"], []):
        res = cli("purge", "--older-than", "30d", *args)
        assert res.code == 0 and res.stderr == "", res


def test_purge_dry_run_lists_what_it_would_purge_and_writes_nothing(tmp_path: Path) -> None:
    """Twelve sessions, eleven finished 40 days ago (moved back in the store: no waiting):
    the dry run counts them per tenant, names the first ten (bounded), and leaves every
    file of the store as it was; the real purge then purges exactly those."""
    lines: list[object] = [{"subject": f"s{i}", "body": "x"} for i in range(12)]
    write_jsonl(tmp_path / "in.jsonl", lines)
    assert cli("run", FLOW, "-i", "in.jsonl").code == 0
    assert cli("run", FLOW, "-i", "in.jsonl", "--tenant", "acme").code == 0
    old = sorted(ids_of(lines)[1:])
    tamper("UPDATE sessions SET finished = finished - 40 * 86400 WHERE tenant = 'default' "
           f"AND id IN ({', '.join('?' * len(old))})", *old)
    tamper("UPDATE sessions SET finished = finished - 40 * 86400 WHERE tenant = 'acme'")
    before = _settled(tmp_path / "convoy.db")
    dry = cli("purge", "--older-than", "30d", "--dry-run")
    assert dry.code == 0 and dry.stderr == "", dry
    lines_out = dry.stdout.splitlines()
    assert lines_out[0] == "would purge 11 sessions older than 30d of tenant 'default'", dry
    shown = [ln.strip() for ln in lines_out[1:11]]
    assert shown == sorted(shown) and set(shown) <= set(old) and len(shown) == 10
    assert lines_out[11].strip() == "... and 1 more"
    assert lines_out[-1] == "dry run: nothing was purged; run the same command without " \
        "--dry-run to purge them"
    every = cli("purge", "--older-than", "30d", "--dry-run", "--all-tenants")
    assert every.stdout.splitlines()[0] == "would purge 23 sessions older than 30d " \
        "(acme: 12, default: 11)", every
    # (new user's trial: every tenant's ids, each with whose it is)
    listed = [ln.strip() for ln in every.stdout.splitlines()[1:11]]
    assert all(re.fullmatch(r"\S+ \(tenant '(acme|default)'\)", ln) for ln in listed), every
    none = cli("purge", "--older-than", "50d", "--dry-run")
    assert none.code == 0 and none.stdout.splitlines()[0] == \
        "dry run: nothing to purge: no session of tenant 'default' finished more than 50d " \
        "ago", none  # (one line, not "would purge 0 sessions" and then this)
    assert none.stderr == ""  # (the tenant has sessions: none old enough)
    # a tenant with no session at all: a mistyped --tenant, said (a nightly job that
    # purges nothing would say nothing otherwise); not an error
    typo_note = ("note: tenant 'acmee' has no sessions in convoy.db: a mistyped --tenant? "
                 "('convoy sessions list --all-tenants' shows every tenant's)")
    typo = cli("purge", "--older-than", "30d", "--tenant", "acmee", "--dry-run")
    assert typo.code == 0 and typo.stderr.strip() == typo_note, typo
    assert _settled(tmp_path / "convoy.db") == before  # nothing written
    one_line_error(cli("purge", "--older-than", "3x", "--dry-run"), 2, "unit s, m, h, d or w")
    # (a review: the name the purge would record is checked by its dry run too)
    one_line_error(cli("purge", "--older-than", "30d", "--dry-run", "--by", "ann\x07"), 2,
                   "--by 'ann\\x07' holds the character \\x07")
    one_line_error(cli("purge", "--older-than", "30d", "--dry-run",
                       env={"CONVOY_USER": "ann\x07"}), 2, "$CONVOY_USER 'ann\\x07'")
    one_line_error(cli("purge", "--older-than", "30d", "--dry-run", "--db", "absent.db"), 2,
                   "no Convoy store at 'absent.db'")
    res = cli("purge", "--older-than", "30d")
    assert res.code == 0 and "purged 11 sessions older than 30d" in res.stdout, res
    left = sessions()  # acme's twelve (not --all-tenants) and default's newest
    assert len(left) == 13 and not set(old) & {r.id for r in left if r.tenant == "default"}
    typo = cli("purge", "--older-than", "30d", "--tenant", "acmee")
    assert typo.code == 0 and typo.stderr.strip() == typo_note, typo
    assert len(sessions()) == 13
    every = cli("purge", "--older-than", "30d", "--all-tenants")  # (how many each)
    assert every.code == 0 and every.stdout.strip() == "purged 12 sessions older than 30d " \
        "(acme: 12)", every


def test_erase_and_purge_leave_a_database_that_is_no_convoy_store_as_it_is(
        tmp_path: Path) -> None:
    """An application's own SQLite file (or an empty one) passed as --db: erase and purge
    (and the commands that act on a store's sessions: resume, cancel, signal, retry, a
    decision) refuse it in one line and leave it byte for byte (they open the store writable, and a
    writable store is created as it opens); a missing file is not created, as for export."""
    assert cli("keygen", "m.key").code == 0
    env = {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}
    conn = sqlite3.connect(tmp_path / "app.db")
    with conn:
        conn.execute("CREATE TABLE customers(name TEXT)")
        conn.execute("INSERT INTO customers VALUES('Alice')")
    conn.close()
    app = (tmp_path / "app.db").read_bytes()
    (tmp_path / "empty.db").write_bytes(b"")
    for db in ("app.db", "empty.db"):
        for args in (("erase", "c-1"), ("purge", "--older-than", "1d"), ("resume",),
                     ("cancel", "s-1"), ("signal", "s-1", "go"), ("retry", "s-1"),
                     ("inbox", "answer", "s-1:1", "--value", "1", "--by", "ann"),
                     ("inbox", "comment", "s-1:1", "hi", "--by", "ann"),
                     ("audit", "checkpoint", "--key", "a.key"), ("audit", "prove", "0")):
            one_line_error(cli(*args, "--db", db, env=env), 2,
                           # (as the commands that read say it: which tables it has)
                           "'app.db' is a SQLite database that holds no Convoy store (it has "
                           "tables of its own: 'customers'): nothing to " if db == "app.db"
                           else "'empty.db' is an empty file (an empty SQLite database")
    assert (tmp_path / "app.db").read_bytes() == app
    assert (tmp_path / "empty.db").read_bytes() == b""
    one_line_error(cli("erase", "c-1", "--db", "missing.db", env=env), 2,
                   "no Convoy store at 'missing.db'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db", "empty.db", "m.key"]


def test_keygen_makes_the_directory_the_docs_put_it_in(tmp_path: Path) -> None:
    """`convoy keygen ~/.convoy/master.key`, as documented, on a machine with no
    ~/.convoy yet: the directory is made, readable by its owner only."""
    res = cli("keygen", "home/.convoy/master.key")
    assert res.code == 0, res.stderr
    assert (tmp_path / "home/.convoy").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "home/.convoy/master.key").stat().st_mode & 0o777 == 0o600
    (tmp_path / "file").write_text("")
    one_line_error(cli("keygen", "file/master.key"), 2, "cannot create 'file/master.key'")


@pytest.mark.parametrize("command", [["erase", "subject-c-9"], ["purge", "--older-than", "30d"]])
def test_an_erasure_or_purge_of_a_store_another_process_writes_is_one_line(
        tmp_path: Path, command: list[str]) -> None:
    """Another process holds a write transaction past the busy timeout: the command
    deletes nothing and says so in one line (exit 1), with no report of a write nobody
    waited for (``Future exception was never retrieved``) around it."""
    assert cli("keygen", "m.key").code == 0
    env = {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}
    write_jsonl(tmp_path / "in.jsonl", [{"subject": "refund", "body": PLANTED}])
    assert cli("run", FLOW, "-i", "in.jsonl", "--subject", "subject-c-9", env=env).code == 0
    tamper("UPDATE sessions SET created = created - 3456000, finished = finished - 3456000")
    writer = sqlite3.connect(tmp_path / "convoy.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        res = subprocess.run([sys.executable, "-m", "convoy", *command, "--busy-timeout",
                              "0.2"], cwd=tmp_path, env={**subprocess_env(), **env},
                             capture_output=True, text=True, timeout=120, check=False)
    finally:
        writer.close()
    assert res.returncode == 1, (res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if not ln.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "locked" in lines[0], \
        res.stderr
    assert f"nothing was {command[0]}d" in lines[0] and "session's step" not in lines[0], \
        lines[0]
    assert [r.status for r in sessions(tmp_path / "convoy.db")] == ["completed"]


def test_an_erasure_the_store_could_not_compact_says_so_and_db_compact_finishes_it(
        tmp_path: Path) -> None:
    """Another process holds a read transaction on the store (a backup, a long export):
    the erasure happens, but the file cannot be compacted; the command says both in one
    line (exit 1), and 'convoy db compact' finishes the job once the store is quiet."""
    assert cli("keygen", "m.key").code == 0
    env = {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}
    write_jsonl(tmp_path / "in.jsonl", [{"subject": "refund", "body": PLANTED}])
    assert cli("run", FLOW, "-i", "in.jsonl", "--subject", "subject-c-9", env=env).code == 0
    reader = sqlite3.connect(tmp_path / "convoy.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM sessions").fetchone()  # a read transaction
    try:
        res = cli("erase", "subject-c-9", "--busy-timeout", "0.2", env=env)
        one_line_error(res, 1, "erased subject 'subject-c-9' of tenant 'default' "
                               "(erasure #1: 1 session, 0 state versions, key destroyed), "
                               "but the store")
        assert "convoy db compact" in res.stderr
        # (a new user's trial: the command it names takes --busy-timeout too)
        busy = cli("db", "compact", "--busy-timeout", "0.2")
        assert busy.code == 1 and len(busy.stderr.strip().splitlines()) == 1, busy
    finally:
        reader.close()
    again = cli("erase", "subject-c-9", env=env)
    assert again.code == 0 and "was erased already (erasure #1 at " in again.stdout, again
    done = cli("db", "compact")
    assert done.code == 0 and "compacted" in done.stdout, done
    for p in tmp_path.iterdir():
        if p.name.startswith("convoy.db"):
            assert b"subject-c-9" not in p.read_bytes(), p.name


def test_keygen_makes_every_missing_directory_its_owners_only(tmp_path: Path) -> None:
    """The docs say the key's directory is made 0700: every directory keygen makes is, not
    only the last (mkdir(parents=True) gives the others the umask's mode)."""
    import stat

    assert cli("keygen", "a/b/c/m.key").code == 0
    for made in ("a", "a/b", "a/b/c"):
        assert stat.S_IMODE((tmp_path / made).stat().st_mode) == 0o700, made
    assert stat.S_IMODE((tmp_path / "a/b/c/m.key").stat().st_mode) == 0o600


@pytest.mark.parametrize("wrapped", ["garbage", "", "QUJD", "!!not base64!!", "flipped"])
def test_a_damaged_subject_key_is_one_line_in_every_command_that_opens_it(
        tmp_path: Path, wrapped: str) -> None:
    """A wrapped subject key changed in the database (not base64, cut short, a byte
    flipped): the commands that open the subject's data say so in one line, and exit 1 as
    for any row Convoy did not write (the docs' exit codes), not 2 (misuse)."""
    assert cli("keygen", "m.key").code == 0
    env = {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}
    write_jsonl(tmp_path / "in.jsonl", [{"subject": "refund", "body": PLANTED}])
    assert cli("run", FLOW, "-i", "in.jsonl", "--subject", "c-9", env=env).code == 0
    with sqlite3.connect("convoy.db") as conn:
        [(sid,)] = conn.execute("SELECT id FROM sessions").fetchall()
        if wrapped == "flipped":
            [(held,)] = conn.execute("SELECT wrapped FROM subject_keys").fetchall()
            raw = bytearray(base64.b64decode(held))
            raw[20] ^= 1
            wrapped = base64.b64encode(bytes(raw)).decode()
        conn.execute("UPDATE subject_keys SET wrapped=?", (wrapped,))
    conn.close()
    for args in (("sessions", "show", sid), ("export", "c-9"), ("trace", sid)):
        res = cli(*args, env=env)
        assert res.code == 1 and "Traceback" not in res.stdout + res.stderr, (args, res)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "does not open with this store's master key" in lines[0] \
            and "the store was edited or damaged" in lines[0], (args, lines)
        assert ("altered" if len(wrapped) == 80 else "is not a wrapped key") in lines[0]


def _run_engine(env: dict[str, str], sid: str, value: object, subject: str | None,
                tenant: str = "default") -> None:
    """A session made as an earlier Convoy's 'convoy run --subject' made it (its id the
    unkeyed content hash)."""
    import convoy

    key = convoy.MasterKey.from_text(Path(env["CONVOY_MASTER_KEY_FILE"]).read_text())

    async def go() -> None:
        from cli_flows import handle

        async with convoy.Engine("convoy.db", master_key=key) as engine:
            res = await engine.run(handle, value, session_id=sid, tenant=tenant,
                                   subject=subject)
            assert res.status == "completed"

    asyncio.run(go())


def test_a_subjects_content_ids_are_keyed_with_its_key_so_erasure_leaves_no_test(
        tmp_path: Path) -> None:
    """With --subject, a line's session id is keyed with the subject's key: nobody can test
    a guess of the input against it, the same command run again finds the same sessions,
    and once the key is destroyed the old id proves nothing (the same input run again for
    the subject gets another id). Without --subject the id is the unkeyed hash, as ever."""
    assert cli("keygen", "m.key").code == 0
    env = {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}
    line = {"subject": "refund", "body": PLANTED}
    write_jsonl(tmp_path / "in.jsonl", [line])
    (unkeyed,) = ids_of([line])
    assert cli("run", FLOW, "-i", "in.jsonl", "--subject", "c-9", env=env).code == 0
    [first] = sessions()
    assert first.id != unkeyed and first.id.startswith("handle-") and len(first.id) == 19
    assert first.subject == "c-9"
    again = cli("run", FLOW, "-i", "in.jsonl", "--subject", "c-9", env=env)  # idempotent
    assert again.code == 0 and [r.id for r in sessions()] == [first.id], again
    assert "already finished" in again.stdout and "completed 1" in again.stdout
    # another subject with the same input: its own key, its own session and id
    assert cli("run", FLOW, "-i", "in.jsonl", "--subject", "c-8", env=env).code == 0
    other = {r.subject: r.id for r in sessions()}["c-8"]
    assert other not in (first.id, unkeyed)
    # no subject: the unkeyed id, unchanged
    assert cli("run", FLOW, "-i", "in.jsonl", "--db", "plain.db").code == 0
    assert [r.id for r in sessions("plain.db")] == [unkeyed]
    assert cli("erase", "c-9", env=env).code == 0
    assert cli("run", FLOW, "-i", "in.jsonl", "--subject", "c-9", env=env).code == 0
    fresh = {r.subject: r.id for r in sessions()}["c-9"]
    assert fresh not in (first.id, unkeyed, other)


def test_a_subjects_session_made_under_the_unkeyed_id_is_found_again(tmp_path: Path) -> None:
    """A session an earlier Convoy made for 'convoy run --subject' (under the unkeyed
    content id) is the same command's: it is not run twice. One of no subject (or of
    another) under that id is not the subject's: the subject gets a session of its own."""
    assert cli("keygen", "m.key").code == 0
    env = {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}
    mine, theirs = {"subject": "refund", "body": PLANTED}, {"subject": "late", "body": "x"}
    write_jsonl(tmp_path / "in.jsonl", [mine, theirs])
    old_mine, old_theirs = ids_of([mine, theirs])
    _run_engine(env, old_mine, mine, "c-9")
    _run_engine(env, old_theirs, theirs, None)
    res = cli("run", FLOW, "-i", "in.jsonl", "--subject", "c-9", env=env)
    assert res.code == 0 and summary(res.stdout, "sessions run") == "1", res
    rows = sessions()
    assert len(rows) == 3 and {r.id for r in rows if r.subject == "c-9"} - {old_mine}
    assert old_mine in {r.id for r in rows if r.subject == "c-9"}
    # another tenant: its earlier ids (tenant hashed, and before that not) are found too
    old_acme = ids_of([mine], tenant="acme")[0]
    _run_engine(env, old_acme, mine, "c-9", tenant="acme")
    acme = cli("run", FLOW, "-i", "in.jsonl", "--subject", "c-9", "--tenant", "acme",
               env=env)
    assert acme.code == 0 and summary(acme.stdout, "sessions run") == "1", acme
    assert old_acme in {r.id for r in sessions() if r.tenant == "acme"}


def test_erase_dry_run_says_what_it_would_erase_and_writes_nothing(tmp_path: Path) -> None:
    """An erasure cannot be undone: --dry-run names the sessions it would delete (and
    whether the subject has a key), from a store opened read-only, and changes no byte;
    an unknown or erased subject gets the answer erase gives."""
    assert cli("keygen", "m.key").code == 0
    env = {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}
    write_jsonl(tmp_path / "in.jsonl", [{"subject": "refund", "body": PLANTED},
                                        {"subject": "login", "body": "again"}])
    assert cli("run", FLOW, "-i", "in.jsonl", "--subject", "c-9", env=env).code == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("convoy")}
    res = cli("erase", "c-9", "--dry-run", env=env)
    assert res.code == 0, res.stderr
    ids = [r.id for r in sessions()]
    assert res.stdout.startswith("would erase subject 'c-9' of tenant 'default': 2 sessions ("
                                 f"{', '.join(sorted(ids))}), the shared-state versions they "
                                 "wrote, and its key"), res.stdout
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("convoy")}
    assert after == before
    one_line_error(cli("erase", "c-8", "--dry-run", env=env), 2, "unknown subject 'c-8'")
    # (a review: the name the erasure would record is checked by its dry run, as purge's)
    one_line_error(cli("erase", "c-9", "--dry-run", "--by", "x\x07", env=env), 2,
                   "--by 'x\\x07' holds the character")
    # one of its sessions running on another live engine: the erase would refuse, and so
    # does the dry run, in the same words
    held, *_ = sorted(ids)
    tamper("UPDATE sessions SET status='running', owner='other-engine', lease_until=? "
           "WHERE id=?", 2.5e11, held)  # (a lease no clock reaches)
    dry, real = cli("erase", "c-9", "--dry-run", env=env), cli("erase", "c-9", env=env)
    one_line_error(dry, 1, f"session {held!r} is running on engine 'other-engine'")
    assert dry.code == real.code == 1 and re.sub(r"\d+ s\b", "N s", dry.stderr) == \
        re.sub(r"\d+ s\b", "N s", real.stderr), (dry, real)  # (the lease left: by the clock)
    tamper("UPDATE sessions SET status='completed', owner=NULL, lease_until=NULL WHERE id=?",
           held)
    one_line_error(cli("erase", "c-9", "--dry-run"), 2, "needs the master key")
    assert cli("erase", "c-9", env=env).code == 0
    again = cli("erase", "c-9", "--dry-run", env=env)
    assert again.code == 0 and "was erased already" in again.stdout, again


def test_export_help_says_where_the_json_goes() -> None:
    """``--output``'s help said ``Write here (default, or -: stdout).``: which reads as if
    the file were the default. It says the default is standard output, and the file's
    mode."""
    res = cli("export", "--help", env={"COLUMNS": "200"})
    assert res.code == 0, res.stderr
    said = " ".join(res.stdout.split())
    assert "Default, or -: standard output" in said and "mode 0600" in said, said


def test_a_dry_run_needs_no_login_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: a container running under a uid with no name and no ``$USER`` has no
    login name; a dry run records nothing, so it needs none (the purge itself asks for
    ``--by``)."""
    import getpass

    def no_name() -> str:
        raise KeyError("getpwuid(): uid not found: 4242")

    monkeypatch.setattr(getpass, "getuser", no_name)
    monkeypatch.delenv("CONVOY_USER", raising=False)
    assert cli("db", "migrate").code == 0
    dry = cli("purge", "--older-than", "30d", "--dry-run")
    assert dry.code == 0 and dry.stdout.startswith("dry run: nothing to purge"), dry
    one_line_error(cli("purge", "--older-than", "30d"), 2, "say who decides: --by NAME")


def test_a_value_sealed_under_an_erased_subjects_key_says_so_without_the_master_key(
        tmp_path: Path) -> None:
    """A new user's trial: a copy of an erased subject's value (written by a session of no
    subject, sealed under the subject's key) was shown without the master key as "set
    $CONVOY_MASTER_KEY_FILE to read it", which no key can any more: the store says the
    key is gone, no master key needed to tell."""
    assert cli("keygen", "m.key").code == 0
    env = {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}
    write_jsonl(tmp_path / "w.jsonl", [json.dumps(PLANTED)])  # (a line is JSON as given)
    write_jsonl(tmp_path / "c.jsonl", ['"m"'])
    assert cli("run", "subject_state_flows:write_person", "-i", "w.jsonl",
               "--subject", "c-9", env=env).code == 0
    assert cli("run", "subject_state_flows:copy_person", "-i", "c.jsonl", env=env).code == 0
    before = cli("state", "get", "people", "copy")
    assert before.code == 0 and "set $CONVOY_MASTER_KEY_FILE to the master key to read it" \
        in before.stdout, before
    # (a review: a value of format 1, an earlier release's, names its subject itself, not
    # a label: a live subject's is not taken for an erased one's)
    with sqlite3.connect(tmp_path / "convoy.db") as conn:
        [(value,)] = conn.execute("SELECT value FROM state WHERE key='copy'").fetchall()
        v1 = json.dumps({**json.loads(value), "$sealed": "c-9", "v": 1})
        conn.execute("INSERT INTO state SELECT tenant, namespace, 'v1', version, ?, "
                     "session_id, agent, step_key, at FROM state WHERE key='copy'", (v1,))
    old_format = cli("state", "get", "people", "v1")
    assert old_format.code == 0 and "set $CONVOY_MASTER_KEY_FILE to the master key to " \
        "read it" in old_format.stdout, old_format
    assert cli("erase", "c-9", env=env).code == 0
    after = cli("state", "get", "people", "copy")
    assert after.code == 0 and after.stdout.startswith(
        "(sealed under the key of a data subject who was erased: nothing can read it)"), after
    assert PLANTED not in after.stdout
