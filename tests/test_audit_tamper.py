"""``convoy audit verify`` against a log tampered with directly in the database (a real
SQLite file, a real PostgreSQL schema), as someone with write access to the store would:
every case is detected and the first bad entry named; ``prove`` prints a proof a third
party checks with ``convoy audit check``; errors are one line."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy._command import command
from convoy.audit import AuditEvent, AuditLog, Checkpoint, entry_leaf
from convoy.stores import SQLiteStore
from tests.clikit import cli, workdir  # noqa: F401  (fixture)
from tests.store_backends import BACKENDS, Backend, FakeClock, PostgresBackend, SQLiteBackend

N = 20
T = "acme"


def _event(i: int) -> AuditEvent:
    return AuditEvent(kind="tool_call", status="ok", at=1000.0 + i, session_id="s1",
                      step_key=f"0/{i}", actor="clerk", target=f"tool-{i:03d}")


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b: Backend = request.param(tmp_path)
    yield b
    b.cleanup()


def _url(b: Backend) -> str:
    return str(b.path) if isinstance(b, SQLiteBackend) else b.url  # type: ignore[attr-defined]


class Raw:
    """Straight SQL on the store's database, bypassing Convoy (the attacker's access)."""

    def __init__(self, b: Backend) -> None:
        self.b = b

    def run(self, *statements: tuple[str, tuple[Any, ...]]) -> list[Any]:
        rows: list[Any] = []
        if isinstance(self.b, SQLiteBackend):
            conn = sqlite3.connect(self.b.path)
            with conn:
                for sql, params in statements:
                    rows = conn.execute(sql, params).fetchall()
            conn.close()
            return rows
        import psycopg

        assert isinstance(self.b, PostgresBackend)
        base, _, schema = self.b.url.partition("?schema=")
        with psycopg.connect(base) as pg:
            pg.execute(f'SET search_path TO "{schema}"')  # type: ignore[arg-type]
            for sql, params in statements:
                cur = pg.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]
                rows = cur.fetchall() if cur.description else []
        return rows

    def body(self, i: int) -> bytes:
        return bytes(self.run(("SELECT body FROM audit_log WHERE tenant=? AND idx=?",
                               (T, i)))[0][0])

    def move(self, where: str, by: int) -> None:
        """Renumber entries (in two steps, so the primary key never collides)."""
        self.run((f"UPDATE audit_log SET idx=idx+1000000 WHERE tenant=? AND {where}", (T,)),
                 ("UPDATE audit_log SET idx=idx-1000000+? WHERE tenant=? AND idx>=1000000",
                  (by, T)))


@pytest.fixture
def log(backend: Backend, tmp_path: Path) -> dict[str, Any]:
    """A log of N entries with checkpoints at 8 and 12 (published to a file) and N (kept
    in the store only)."""

    async def build() -> dict[str, Any]:
        store = backend.new(FakeClock())
        await store.open()
        try:
            alog = AuditLog(store, key_path=tmp_path / "audit.key", clock=FakeClock())
            await alog.append(T, [_event(i) for i in range(8)])
            cp8 = await alog.checkpoint(T)
            await alog.append(T, [_event(i) for i in range(8, 12)])
            cp12 = await alog.checkpoint(T)
            await alog.append(T, [_event(i) for i in range(12, N)])
            cp20 = await alog.checkpoint(T)
            await alog.append("globex", [_event(0)])
        finally:
            await store.aclose()
        published = tmp_path / "published.jsonl"
        published.write_text("".join(cp.to_json() + "\n" for cp in (cp8, cp12, cp20)))
        return {"cps": [cp8, cp12, cp20], "published": published}

    built = asyncio.run(build())
    return {**built, "key": tmp_path / "audit.key", "db": _url(backend), "raw": Raw(backend)}


def verify(log: dict[str, Any], *more: str) -> tuple[int, str]:
    r = cli("audit", "verify", "--db", log["db"], "--key", str(log["key"]), *more)
    return r.code, (r.stdout + r.stderr).strip()


def test_an_untouched_log_verifies(log: dict[str, Any]) -> None:
    code, out = verify(log, "--checkpoint", str(log["published"]))
    assert code == 0, out
    assert f"tenant 'acme': {N} entries verified" in out and "'globex': 1 entries" in out
    # three kept, the same three published: each counts once
    assert "3 signed checkpoints matched" in out
    # acme's last checkpoint covers every entry; globex's one entry is signed by none yet,
    # and the line says so (cutting it off with the count appended would not show)
    acme, globex = (next(line for line in out.splitlines() if f"'{t}'" in line)
                    for t in (T, "globex"))
    assert "signed by no checkpoint" not in acme, acme
    # (the key given to verify is the one the command suggests signing with)
    sign = command("audit checkpoint", options=f"--key {log['key']}", db=log["db"],
                   tenant="globex")
    assert globex.endswith("; entry 0 is signed by no checkpoint yet (a cut-off of "
                           f"it would not show: {sign} signs one)"), globex


def _bad(log: dict[str, Any], index: int, why: str, *more: str) -> None:
    code, out = verify(log, "--tenant", T, *more)
    assert code == 1, out
    assert len(out.splitlines()) == 1 and out.startswith("error: "), out
    assert why in out, out
    assert f"entry {index}" in out or f"index {index}" in out or f"from {index}" in out, out


def test_a_flipped_byte_in_the_sqlite_file_is_found(log: dict[str, Any],
                                                    backend: Backend) -> None:
    if not isinstance(backend, SQLiteBackend):
        pytest.skip("a byte of the file itself: the SQLite case")
    data = bytearray(backend.path.read_bytes())
    at = data.find(b"tool-005")
    assert at > 0 and data.find(b"tool-005", at + 1) == -1
    data[at + 5] ^= 0x01  # tool-005 -> tool-105
    backend.path.write_bytes(bytes(data))
    _bad(log, 5, "does not match its leaf hash")


def test_a_changed_entry_is_found(log: dict[str, Any]) -> None:
    raw: Raw = log["raw"]
    body = bytearray(raw.body(5))
    body[-3] ^= 0x01
    raw.run(("UPDATE audit_log SET body=? WHERE tenant=? AND idx=5", (bytes(body), T)))
    _bad(log, 5, "does not match its leaf hash")


def test_a_flipped_byte_in_a_stored_leaf_hash_names_its_entry(log: dict[str, Any]) -> None:
    """One byte of entry 5's stored leaf hash, under the checkpoint of size 8: the entry
    still hashes to the signed root, so it is the stored leaf that changed, and entry 5 is
    the one named (review of stop 44: "the first bad entry is at index 0 or after")."""
    raw: Raw = log["raw"]
    [[leaf]] = raw.run(("SELECT leaf FROM audit_log WHERE tenant=? AND idx=5", (T,)))
    flipped = bytearray(bytes(leaf))
    flipped[7] ^= 0x01
    raw.run(("UPDATE audit_log SET leaf=? WHERE tenant=? AND idx=5", (bytes(flipped), T)))
    _bad(log, 5, "audit entry 5 does not match its leaf hash: the stored leaf hash was "
                 "changed (the entry itself still hashes to the root its checkpoint of size "
                 "8 signed)")
    _, out = verify(log, "--tenant", T)
    assert "index 0" not in out, out


def test_every_tenant_is_reported_when_one_log_is_bad(log: dict[str, Any]) -> None:
    """The bug: one bad tenant's error was printed alone; the tenants whose logs verify
    were not reported (a log that verifies prints a line, the docs say)."""
    raw: Raw = log["raw"]
    body = bytearray(raw.body(5))
    body[-3] ^= 0x01
    raw.run(("UPDATE audit_log SET body=? WHERE tenant=? AND idx=5", (bytes(body), T)))
    r = cli("audit", "verify", "--db", log["db"], "--key", str(log["key"]))
    assert r.code == 1, r.stdout + r.stderr
    assert r.stdout.startswith("tenant 'globex': 1 entries verified"), r.stdout
    assert "acme" not in r.stdout
    [line] = r.stderr.splitlines()
    assert line.startswith("error: tenant 'acme': audit entry 5 does not match"), line


def test_the_commands_a_failure_suggests_name_the_store_and_tenant(
        log: dict[str, Any]) -> None:
    """The bug: ``prove`` and ``checkpoint`` failing on a tampered log said "run 'convoy
    audit verify'", without --db and --tenant: pasted, it verified another store."""
    raw: Raw = log["raw"]
    raw.run(("UPDATE audit_log SET leaf=? WHERE tenant=? AND idx=2", (b"\0" * 32, T)))
    verify_cmd = command("audit verify", db=log["db"], tenant=T)
    for args in (("prove", "3"), ("checkpoint",)):
        r = cli("audit", *args, "--db", log["db"], "--tenant", T, "--key", str(log["key"]))
        assert r.code == 1, r.stdout + r.stderr
        [line] = r.stderr.splitlines()
        assert verify_cmd in line and "'convoy audit verify'" not in line, line


def test_the_python_api_names_the_store_and_tenant_in_the_command_it_suggests(
        log: dict[str, Any], backend: Backend) -> None:
    """The library's own messages (not only the command line's) suggest a 'convoy audit
    verify' that acts on the log they are about: its --db and --tenant."""
    raw: Raw = log["raw"]
    raw.run(("UPDATE audit_log SET leaf=? WHERE tenant=? AND idx=2", (b"\0" * 32, T)))
    verify_cmd = command("audit verify", db=log["db"], tenant=T)
    assert "--db" in verify_cmd and "--tenant" in verify_cmd

    async def failures() -> list[str]:
        store = backend.new(FakeClock())
        await store.open()
        said = []
        try:
            alog = AuditLog(store, key_path=log["key"], clock=FakeClock())
            for call in (lambda: alog.prove(T, 3), lambda: alog.checkpoint(T)):
                with pytest.raises(convoy.AuditError) as caught:
                    await call()
                said.append(str(caught.value))
        finally:
            await store.aclose()
        return said

    for message in asyncio.run(failures()):
        assert verify_cmd in message and "'convoy audit verify'" not in message, message


def test_a_changed_leaf_hash_is_found(log: dict[str, Any]) -> None:
    log["raw"].run(("UPDATE audit_log SET leaf=? WHERE tenant=? AND idx=9", (b"\0" * 32, T)))
    _bad(log, 9, "does not match its leaf hash")


def test_a_deleted_entry_is_found(log: dict[str, Any]) -> None:
    log["raw"].run(("DELETE FROM audit_log WHERE tenant=? AND idx=7", (T,)))
    _bad(log, 7, "is missing")


def test_a_deleted_entry_with_the_rest_renumbered_is_found(log: dict[str, Any]) -> None:
    raw: Raw = log["raw"]
    raw.run(("DELETE FROM audit_log WHERE tenant=? AND idx=7", (T,)))
    raw.move("idx>7", -1)
    raw.run(("UPDATE audit_head SET size=size-1 WHERE tenant=?", (T,)))
    _bad(log, 7, "does not match its leaf hash")


def test_an_inserted_entry_is_found(log: dict[str, Any]) -> None:
    raw: Raw = log["raw"]
    leaf = raw.run(("SELECT leaf FROM audit_log WHERE tenant=? AND idx=7", (T,)))[0][0]
    raw.move("idx>=7", 1)
    raw.run(("INSERT INTO audit_log(tenant,idx,body,leaf) VALUES(?,7,?,?)",
             (T, _event(99).encode(), leaf)))
    _bad(log, 7, "does not match its leaf hash")


def test_an_inserted_entry_with_a_well_formed_leaf_is_found(log: dict[str, Any]) -> None:
    """Whoever knows the leaf formula can make an inserted entry look right: the signed
    checkpoint of size 8 no longer matches (no earlier checkpoint: from entry 0 on)."""
    raw: Raw = log["raw"]
    raw.move("idx>=7", 1)
    forged = _event(99).encode()
    raw.run(("INSERT INTO audit_log(tenant,idx,body,leaf) VALUES(?,7,?,?)",
             (T, forged, entry_leaf(T, 7, forged))))
    _bad(log, 0, "forked from its signed checkpoint of size 8: entries 0 to 7")


def test_an_entry_appended_behind_convoys_back_is_found(log: dict[str, Any]) -> None:
    forged = _event(99).encode()
    log["raw"].run(("INSERT INTO audit_log(tenant,idx,body,leaf) VALUES(?,?,?,?)",
                    (T, N, forged, entry_leaf(T, N, forged))))
    _bad(log, N, "were inserted")


def test_reordered_entries_are_found(log: dict[str, Any]) -> None:
    raw: Raw = log["raw"]
    raw.move("idx=3", 997)  # 3 -> 1000, 4 -> 3, 1000 -> 4
    raw.move("idx=4", -1)
    raw.move("idx=1000", -996)
    _bad(log, 3, "does not match its leaf hash")


def test_a_truncated_log_is_found(log: dict[str, Any]) -> None:
    log["raw"].run(("DELETE FROM audit_log WHERE tenant=? AND idx>=15", (T,)))
    _bad(log, 15, "truncated")
    # (the count of entries appended says entries from 15 on are gone: a cut, said as one)
    assert "rewritten" not in verify(log, "--tenant", T)[1]


def test_a_middle_entry_deleted_and_the_rest_hashed_again_is_not_called_a_cut(
        log: dict[str, Any]) -> None:
    """Entry 14 deleted, the rest renumbered with their leaves recomputed and the head
    moved: the log is shorter than its checkpoint of 20, and 12..18 are not what it
    signed. Not "entries from 19 on were cut off" alone: the first bad entry is at 12
    or after (the review of 2026-12-03, F3)."""
    raw: Raw = log["raw"]
    raw.run(("DELETE FROM audit_log WHERE tenant=? AND idx=14", (T,)))
    raw.move("idx>14", -1)
    for i in range(14, N - 1):
        raw.run(("UPDATE audit_log SET leaf=? WHERE tenant=? AND idx=?",
                 (entry_leaf(T, i, raw.body(i)), T, i)))
    raw.run(("UPDATE audit_head SET size=size-1 WHERE tenant=?", (T,)))
    code, out = verify(log, "--tenant", T)
    assert code == 1 and len(out.splitlines()) == 1, out
    assert "rewritten" in out and "index 12 or after" in out, out


def test_an_entry_inserted_far_past_the_end_names_where_it_is(log: dict[str, Any]) -> None:
    """Nothing was deleted: the message says an entry may have been inserted later on,
    and where (the review of 2026-12-03, F6)."""
    forged = _event(99).encode()
    log["raw"].run(("INSERT INTO audit_log(tenant,idx,body,leaf) VALUES(?,?,?,?)",
                    (T, 100000, forged, entry_leaf(T, 100000, forged))))
    _bad(log, N, "the next one stored is 100000")


def test_an_entry_inserted_before_the_first_is_found(log: dict[str, Any]) -> None:
    """A row at a negative index is outside the tree, and tampering all the same (review
    F7)."""
    forged = _event(99).encode()
    log["raw"].run(("INSERT INTO audit_log(tenant,idx,body,leaf) VALUES(?,?,?,?)",
                    (T, -1, forged, entry_leaf(T, 0, forged))))
    code, out = verify(log, "--tenant", T)
    assert code == 1 and len(out.splitlines()) == 1, out
    assert "stored at index -1, before the log's first (inserted)" in out, out


def test_every_bad_tenant_is_named_one_line_each(log: dict[str, Any]) -> None:
    """verify of every tenant goes on past the first bad one (review F10)."""
    log["raw"].run(("DELETE FROM audit_log WHERE tenant=? AND idx=7", (T,)),
                   ("UPDATE audit_log SET leaf=? WHERE tenant='globex' AND idx=0",
                    (b"\x01" * 32,)))
    code, out = verify(log)
    lines = out.splitlines()
    assert code == 1 and len(lines) == 2 and all(x.startswith("error: ") for x in lines), out
    assert "tenant 'acme': audit entry 7 is missing" in out, out
    assert "tenant 'globex': audit entry 0 does not match its leaf hash" in out, out


def _no_checkpoint_left(log: dict[str, Any]) -> None:
    """The store alone tells nothing of which entries changed: the pinned key only finds
    that no checkpoint it signed is left."""
    code, out = verify(log, "--tenant", T)
    assert code == 1 and "no checkpoint signed by key" in out and "--db" in out, out
    assert len(out.splitlines()) == 1, out


def test_a_truncation_that_covers_its_tracks_is_found_by_a_published_checkpoint(
        log: dict[str, Any]) -> None:
    raw: Raw = log["raw"]
    raw.run(("DELETE FROM audit_log WHERE tenant=? AND idx>=15", (T,)),
            ("UPDATE audit_head SET size=15 WHERE tenant=?", (T,)),
            ("DELETE FROM audit_checkpoints WHERE tenant=?", (T,)))
    _no_checkpoint_left(log)
    _bad(log, 15, "truncated", "--checkpoint", str(log["published"]))


def test_a_fork_after_a_published_checkpoint_is_found(log: dict[str, Any]) -> None:
    """A rewrite of entries 10.. with every hash recomputed, the store's checkpoints
    deleted: only the published checkpoints can tell, and they bound the first bad entry
    (8: the last one that still matches)."""
    raw: Raw = log["raw"]
    statements: list[tuple[str, tuple[Any, ...]]] = [
        ("DELETE FROM audit_checkpoints WHERE tenant=?", (T,))]
    for i in range(10, N):
        body = AuditEvent(kind="tool_call", status="ok", at=5.0, session_id="s1",
                          step_key=f"0/{i}", actor="clerk", target="other").encode()
        statements.append(("UPDATE audit_log SET body=?, leaf=? WHERE tenant=? AND idx=?",
                           (body, entry_leaf(T, i, body), T, i)))
    raw.run(*statements)
    _no_checkpoint_left(log)
    _bad(log, 8, "forked from its signed checkpoint of size 12", "--checkpoint",
         str(log["published"]))


def test_a_fork_signed_in_the_store_short_of_a_published_checkpoint_is_not_only_a_cut(
        log: dict[str, Any], backend: Backend, tmp_path: Path) -> None:
    """A copy of the store forked after the published checkpoint of size 12 and signed
    its own checkpoint of size 16 with the real key, short of the published one of size
    20: verify said the entries from 16 on were cut off, naming 16. Only the published
    checkpoints are the operator's: the first bad entry is from 12 on (the auditor's
    trial on PostgreSQL)."""
    raw: Raw = log["raw"]
    raw.run(("DELETE FROM audit_log WHERE tenant=? AND idx>=12", (T,)),
            ("UPDATE audit_head SET size=12 WHERE tenant=?", (T,)),
            ("DELETE FROM audit_checkpoints WHERE tenant=? AND size=?", (T, N)))

    async def fork() -> None:
        store = backend.new(FakeClock())
        await store.open()
        try:
            alog = AuditLog(store, key_path=log["key"], clock=FakeClock())
            await alog.append(T, [_event(100 + i) for i in range(12, 16)])
            await alog.checkpoint(T)
        finally:
            await store.aclose()

    asyncio.run(fork())
    code, out = verify(log, "--tenant", T, "--checkpoint", str(log["published"]))
    assert code == 1 and len(out.splitlines()) == 1, out
    assert "forked" in out and "the first bad entry is at index 12 to 16" in out, out


def test_a_cut_checked_against_the_newest_published_checkpoint_alone_says_both_causes(
        log: dict[str, Any], tmp_path: Path) -> None:
    """Only the checkpoint of size 20 published, the log cut to 12 entries (its kept
    checkpoints of 8 and 12 still match): a cut, or a rewrite the store signed again; no
    published checkpoint below 20 tells which, nor where (the review of stop 53)."""
    raw: Raw = log["raw"]
    raw.run(("DELETE FROM audit_log WHERE tenant=? AND idx>=12", (T,)),
            ("UPDATE audit_head SET size=12 WHERE tenant=?", (T,)),
            ("DELETE FROM audit_checkpoints WHERE tenant=? AND size=?", (T, N)))
    newest = tmp_path / "newest.jsonl"
    newest.write_text(log["cps"][-1].to_json() + "\n")
    code, out = verify(log, "--tenant", T, "--checkpoint", str(newest))
    assert code == 1 and len(out.splitlines()) == 1, out
    assert "entries from 12 on were cut off (truncated), or the log was rewritten and " \
        "signed again in the store" in out, out
    assert "the first bad entry is at index 0 to 12; a published checkpoint of size 12 or " \
        "less would narrow it" in out, out
    # with every published checkpoint: a cut, as it was
    _bad(log, 12, "cut off (truncated)", "--checkpoint", str(log["published"]))
    # the size named is the published one's, not a larger one the store keeps
    raw.run(("DELETE FROM audit_log WHERE tenant=? AND idx>=8", (T,)),
            ("UPDATE audit_head SET size=8 WHERE tenant=?", (T,)))
    middle = tmp_path / "middle.jsonl"
    middle.write_text(log["cps"][1].to_json() + "\n")
    code, out = verify(log, "--tenant", T, "--checkpoint", str(middle))
    assert code == 1 and "a published checkpoint signed 12 entries" in out, out


def test_a_bad_entry_after_an_earlier_rewrite_names_the_fork_too(log: dict[str, Any]
                                                                  ) -> None:
    """Entry 9 rewritten with its hash recomputed, and a byte of entry 10 flipped: the
    first entry that does not match its leaf is 10, but the checkpoint of size 12 shows the
    log was changed from 8 on; the line names both, and the first bad index is 8, not 10."""
    raw: Raw = log["raw"]
    body = AuditEvent(kind="tool_call", status="ok", at=5.0, session_id="s1",
                      step_key="0/9", actor="clerk", target="other").encode()
    flipped = bytearray(raw.body(10))
    flipped[5] ^= 1
    raw.run(("UPDATE audit_log SET body=?, leaf=? WHERE tenant=? AND idx=9",
             (body, entry_leaf(T, 9, body), T)),
            ("UPDATE audit_log SET body=? WHERE tenant=? AND idx=10", (bytes(flipped), T)))
    for more in ((), ("--checkpoint", str(log["published"]))):
        _bad(log, 8, "audit entry 10 does not match its leaf hash", *more)
        out = verify(log, "--tenant", T, *more)[1]
        assert "forked from its signed checkpoint of size 12" in out, out


def test_a_body_flipped_under_its_signed_leaf_is_named_alone(log: dict[str, Any]) -> None:
    raw: Raw = log["raw"]
    flipped = bytearray(raw.body(10))
    flipped[5] ^= 1
    raw.run(("UPDATE audit_log SET body=? WHERE tenant=? AND idx=10", (bytes(flipped), T)))
    _bad(log, 10, "audit entry 10 does not match its leaf hash")
    assert "forked" not in verify(log, "--tenant", T)[1]


def test_a_fork_signed_again_at_a_published_size_names_the_first_bad_entry(
        log: dict[str, Any]) -> None:
    """Whoever holds the key rewrites entry 10 (every hash recomputed), cuts the log back
    to 12 and signs a checkpoint of size 12 again, in place of the store's: two signed
    checkpoints of size 12 then disagree, and the entries that can differ are those after
    the last checkpoint both agree on (8), not an empty range after 12."""
    raw: Raw = log["raw"]
    body = AuditEvent(kind="tool_call", status="ok", at=5.0, session_id="s1",
                      step_key="0/10", actor="clerk", target="other").encode()
    raw.run(("DELETE FROM audit_checkpoints WHERE tenant=?", (T,)),
            ("DELETE FROM audit_log WHERE tenant=? AND idx>=12", (T,)),
            ("UPDATE audit_head SET size=12 WHERE tenant=?", (T,)),
            ("UPDATE audit_log SET body=?, leaf=? WHERE tenant=? AND idx=10",
             (body, entry_leaf(T, 10, body), T)))
    signed = cli("audit", "checkpoint", "--db", log["db"], "--key", str(log["key"]),
                 "--tenant", T)
    assert signed.code == 0, signed.stderr
    assert verify(log, "--tenant", T)[0] == 0  # the store alone cannot tell
    published = log["published"].read_text().splitlines()[:2]  # sizes 8 and 12
    Path(log["published"]).write_text("\n".join(published) + "\n")
    _bad(log, 8, "forked from its signed checkpoint of size 12: entries 8 to 11",
         "--checkpoint", str(log["published"]))
    _, out = verify(log, "--tenant", T, "--checkpoint", str(log["published"]))
    assert "another checkpoint of size 12" in out, out


def test_a_forged_checkpoint_is_found(log: dict[str, Any]) -> None:
    raw: Raw = log["raw"]
    [[text]] = raw.run(("SELECT body FROM audit_checkpoints WHERE tenant=? AND size=12", (T,)))
    doc = json.loads(text)
    doc["size"] = 11
    raw.run(("UPDATE audit_checkpoints SET body=? WHERE tenant=? AND size=12",
             (json.dumps(doc), T)))
    code, out = verify(log, "--tenant", T)
    assert code == 1 and "invalid signature" in out and len(out.splitlines()) == 1, out


@pytest.mark.parametrize("field", ["timestamp", "key_id"])
def test_a_changed_stored_checkpoint_is_found_beside_its_published_copy(
        log: dict[str, Any], field: str) -> None:
    """Its root and signature kept, another field changed: the published copy of the
    same checkpoint does not stand in for it; each signature is checked."""
    raw: Raw = log["raw"]
    [[text]] = raw.run(("SELECT body FROM audit_checkpoints WHERE tenant=? AND size=12", (T,)))
    doc = json.loads(text)
    doc[field] = doc[field] + 1 if field == "timestamp" else "0" * len(doc[field])
    raw.run(("UPDATE audit_checkpoints SET body=? WHERE tenant=? AND size=12",
             (json.dumps(doc), T)))
    for more in ((), ("--checkpoint", str(log["published"]))):
        code, out = verify(log, "--tenant", T, *more)
        assert code == 1 and len(out.splitlines()) == 1 and "checkpoint" in out, \
            (more, out)


def _grow(backend: Backend) -> None:
    """One more entry (a rotation signs the grown log: a kept checkpoint of the same size
    is never replaced)."""

    async def one_more() -> None:
        store = backend.new(FakeClock())
        await store.open()
        try:
            await AuditLog(store, clock=FakeClock()).append(T, [_event(N)])
        finally:
            await store.aclose()

    asyncio.run(one_more())


def test_a_checkpoint_row_moved_to_a_larger_size_does_not_make_checkpoint_drop_its_own(
        log: dict[str, Any], backend: Backend) -> None:
    """The kept checkpoint of size N moved (its ``size`` column only) to N + 1: the next
    checkpoint of size N + 1 could not be kept (a checkpoint is never replaced), and
    ``checkpoint`` printed it all the same, as kept; ``prove`` said so too. Both now say
    the store was edited, in one line, exit 1 (the auditor's trial on PostgreSQL)."""
    raw: Raw = log["raw"]
    raw.run(("UPDATE audit_checkpoints SET size=? WHERE tenant=? AND size=?", (N + 1, T, N)))
    _grow(backend)  # (the log reaches N + 1)
    for args in (("checkpoint",), ("prove", str(N))):
        r = cli("audit", *args, "--db", log["db"], "--key", str(log["key"]), "--tenant", T)
        out = (r.stdout + r.stderr).strip()
        assert r.code == 1 and len(out.splitlines()) == 1, (args, out)
        # (found as the kept checkpoints are read: the row's size is not its body's)
        assert f"its checkpoint of size {N} is kept under size {N + 1} (the store was " \
            "edited)" in out, (args, out)
        assert "convoy audit verify" in out, out
    [[kept]] = raw.run(("SELECT count(*) FROM audit_checkpoints WHERE tenant=? AND size=?",
                        (T, N + 1)))
    assert kept == 1  # (the edited row only: nothing was claimed kept)


@pytest.mark.parametrize("change", ["body_as_text", "leaf_as_text", "body_null",
                                    "leaf_null"])
def test_a_postgresql_column_changed_in_type_or_emptied_is_one_line(
        log: dict[str, Any], backend: Backend, change: str) -> None:
    """On PostgreSQL a column's type can be changed (``ALTER ... TYPE text``) or its
    value emptied (``DROP NOT NULL``, then NULL): verify, list and prove said so with a
    traceback (``TypeError: string argument without an encoding``), where SQLite's reader
    names the entry (the auditor's trial on PostgreSQL)."""
    if not isinstance(backend, PostgresBackend):
        pytest.skip("a column's type or NOT NULL: PostgreSQL's case")
    column = change.split("_", maxsplit=1)[0]
    raw: Raw = log["raw"]
    if change.endswith("as_text"):
        raw.run((f"ALTER TABLE audit_log ALTER COLUMN {column} TYPE text "
                 f"USING encode({column}, 'hex')", ()))
        first = 0
    else:
        raw.run((f"ALTER TABLE audit_log ALTER COLUMN {column} DROP NOT NULL", ()),
                (f"UPDATE audit_log SET {column}=NULL WHERE tenant=? AND idx=3", (T,)))
        first = 3
    stored = "text" if change.endswith("as_text") else "NULL"
    code, out = verify(log, "--tenant", T)
    assert code == 1 and len(out.splitlines()) == 1, out
    assert f"audit entry {first} was changed" in out and f"stored as {stored}" in out, out
    for args in (("list", "--tenant", T),
                 ("prove", "5", "--tenant", T, "--key", str(log["key"]))):
        r = cli("audit", *args, "--db", log["db"])
        text = (r.stdout + r.stderr).strip()
        assert "Traceback" not in text, (args, text)
        assert r.code in (0, 1), (args, text)


def test_a_checkpoint_signed_by_another_key_is_refused(log: dict[str, Any], backend: Backend,
                                                       tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    _grow(backend)
    assert cli("audit", "checkpoint", "--db", log["db"], "--tenant", T, "--key",
               str(other), "--new-key").code == 0  # (a rotation the verifier was not told of)
    code, out = verify(log, "--tenant", T)
    assert code == 1 and "not by the expected key" in out, out

    # a verifier told of the rotation pins both keys: each checkpoint is by one of them
    # (the re-check of 2026-12-03, N7)
    new_public = Checkpoint.from_json(cli("audit", "checkpoint", "--db", log["db"], "--tenant",
                                          T, "--key", str(other)).stdout).public_key
    old_public = log["cps"][0].public_key
    both = cli("audit", "verify", "--db", log["db"], "--tenant", T,
               "--public-key", old_public, "--public-key", new_public)
    assert both.code == 0 and "4 signed checkpoints matched" in both.stdout, both.stderr
    one = cli("audit", "verify", "--db", log["db"], "--tenant", T, "--public-key", new_public)
    assert one.code == 1 and "not by the expected key" in one.stderr, one.stderr
    assert f"of tenant {T!r}" in one.stderr  # (which log, when several are verified)


def test_prove_prints_a_proof_a_third_party_checks(log: dict[str, Any],
                                                   tmp_path: Path) -> None:
    r = cli("audit", "prove", "9", "--db", log["db"], "--tenant", T, "--key", str(log["key"]))
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["tree_size"] == N and doc["index"] == 9  # the newest checkpoint covering it
    public = log["cps"][0].public_key
    proof = tmp_path / "proof.json"
    proof.write_text(r.stdout)
    (tmp_path / "good.json").write_text(r.stdout)
    ok = cli("audit", "check", str(proof), "--public-key", public)
    assert ok.code == 0 and "entry 9 of tenant 'acme'" in ok.stdout, ok.stderr
    doc["entry"] = doc["entry"][:-4] + ("AAAA" if doc["entry"][-4:] != "AAAA" else "BBBB")
    proof.write_text(json.dumps(doc))
    bad = cli("audit", "check", str(proof), "--public-key", public)
    # (the entry altered: said as that, not as a path that fails: review s22 F8)
    assert bad.code == 1 and "entry 9 does not hash to the proof's leaf_hash" in bad.stderr
    del doc["leaf_hash"]  # (without it, the path from the altered entry leads elsewhere)
    proof.write_text(json.dumps(doc))
    bad = cli("audit", "check", str(proof), "--public-key", public)
    assert bad.code == 1 and "does not lead to the root" in bad.stderr
    unpinned = cli("audit", "check", str(tmp_path / "good.json"))
    assert unpinned.code == 0 and "the signer was not pinned" in unpinned.stderr, unpinned
    doc = json.loads(r.stdout)
    # (its first 3 bytes changed: a hash still, of 32 bytes; its last 4 characters hold
    # the padding, and 'AAAA' there made 33 bytes, a proof that is not one: exit 2)
    doc["leaf_hash"] = ("AAAA" if doc["leaf_hash"][:4] != "AAAA" else "BBBB") + \
        doc["leaf_hash"][4:]
    proof.write_text(json.dumps(doc))
    leaf = cli("audit", "check", str(proof), "--public-key", public)
    assert leaf.code == 1 and "leaf_hash" in leaf.stderr, leaf


def test_a_consistency_proof_a_third_party_checks(log: dict[str, Any], backend: Backend,
                                                  tmp_path: Path) -> None:
    """`convoy audit consistency SIZE` proves the newest signed log is the one of SIZE with
    entries appended; `convoy audit check` checks it with the signer's key alone."""
    public = log["cps"][0].public_key
    r = cli("audit", "consistency", "8", "--db", log["db"], "--tenant", T)
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert (doc["size1"], doc["size2"]) == (8, N) and doc["checkpoint1"] == \
        log["cps"][0].to_dict()
    proof = tmp_path / "consistency.json"
    proof.write_text(r.stdout)
    ok = cli("audit", "check", str(proof), "--public-key", public)
    assert ok.code == 0, ok.stderr
    assert f"the signed log of {N} entries" in ok.stdout and "of 8 entries" in ok.stdout
    doc["proof"][0] = ("AAAA" if doc["proof"][0][:4] != "AAAA" else "BBBB") + \
        doc["proof"][0][4:]  # (a hash still: see the test above)
    proof.write_text(json.dumps(doc))
    bad = cli("audit", "check", str(proof), "--public-key", public)
    assert bad.code == 1 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    # (the line names the file and says it does not hold: it said only what failed)
    assert bad.stderr.startswith(f"error: {str(proof)!r} does not hold: "), bad.stderr
    proof.write_text("")  # (what 'prove > proof.json' leaves when prove fails)
    empty = cli("audit", "check", str(proof))
    assert empty.code == 2 and f"{str(proof)!r} is empty: it holds no proof" in \
        empty.stderr, empty.stderr
    doc = json.loads(r.stdout)
    doc["checkpoint1"] = log["cps"][1].to_dict()  # another checkpoint: sizes differ
    proof.write_text(json.dumps(doc))
    assert cli("audit", "check", str(proof), "--public-key", public).code == 1
    proof.write_text(json.dumps({**json.loads(r.stdout), "size2": "x"}))
    assert cli("audit", "check", str(proof)).code == 2
    unknown = cli("audit", "consistency", "9", "--db", log["db"], "--tenant", T)
    assert unknown.code == 2 and "kept sizes: 8, 12, 20" in unknown.stderr, unknown.stderr
    newest = cli("audit", "consistency", str(N), "--db", log["db"], "--tenant", T)
    assert newest.code == 2 and "nothing to prove" in newest.stderr, newest.stderr
    # a rewrite under the checkpoints: no proof leads from 8 to the newest any more
    raw = log["raw"]
    body = raw.body(9).replace(b"tool-009", b"tool-999")
    raw.run(("UPDATE audit_log SET body=?, leaf=? WHERE tenant=? AND idx=9",
             (body, entry_leaf(T, 9, body), T)))
    raw.run(("DELETE FROM kv WHERE namespace LIKE ?", ("%tile%",)))  # (and any tile roots)
    forked = cli("audit", "consistency", "8", "--db", log["db"], "--tenant", T)
    assert forked.code == 1 and "audit verify" in forked.stderr, (forked.stdout, forked.stderr)


def test_checkpoint_prints_a_signed_checkpoint(log: dict[str, Any]) -> None:
    r = cli("audit", "checkpoint", "--db", log["db"], "--tenant", T, "--key", str(log["key"]))
    assert r.code == 0, r.stderr
    cp = Checkpoint.from_json(r.stdout)
    cp.check(log["cps"][0].public_key)
    assert cp.size == N and cp.root == log["cps"][2].root


def test_a_mistyped_key_does_not_start_a_second_signer(log: dict[str, Any], backend: Backend,
                                                        tmp_path: Path) -> None:
    typo = tmp_path / "audti.key"
    r = cli("audit", "checkpoint", "--db", log["db"], "--tenant", T, "--key", str(typo))
    assert r.code == 2 and not typo.exists()
    assert f"the checkpoints of tenant {T!r} are signed by key {log['cps'][0].key_id}" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    _grow(backend)
    rotated = cli("audit", "checkpoint", "--db", log["db"], "--tenant", T, "--key", str(typo),
                  "--new-key")
    assert rotated.code == 0 and typo.exists()
    assert "created a new audit key" in rotated.stderr
    assert Checkpoint.from_json(rotated.stdout).key_id != log["cps"][0].key_id


def test_prove_with_a_mistyped_key_does_not_start_a_second_signer(
        log: dict[str, Any], backend: Backend, tmp_path: Path) -> None:
    """``prove`` with a key file that does not exist while the tenant's checkpoints are
    signed by another key is refused (as ``checkpoint`` refuses it), whether or not a kept
    checkpoint covers the entry (then it says to leave --key out: none is needed)."""

    _grow(backend)
    typo = tmp_path / "audti.key"
    covered = cli("audit", "prove", "3", "--db", log["db"], "--tenant", T, "--key", str(typo))
    assert covered.code == 2 and not typo.exists(), covered
    assert "leave --key out: a kept checkpoint covers entry 3" in covered.stderr
    assert cli("audit", "prove", "3", "--db", log["db"], "--tenant", T).code == 0
    r = cli("audit", "prove", str(N), "--db", log["db"], "--tenant", T, "--key", str(typo))
    assert r.code == 2 and not typo.exists(), r
    assert f"the checkpoints of tenant {T!r} are signed by key {log['cps'][0].key_id}" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    first = tmp_path / "first.key"
    made = cli("audit", "prove", "0", "--db", log["db"], "--tenant", "globex", "--key",
               str(first))
    assert made.code == 0 and first.exists() and "created a new audit key" in made.stderr


def test_usage_errors_are_one_line(log: dict[str, Any], tmp_path: Path) -> None:
    r = cli("audit", "prove", "999", "--db", log["db"], "--tenant", T)
    assert r.code == 2 and "has no audit entry 999" in r.stderr
    r = cli("audit", "prove", "0", "--db", log["db"], "--tenant", "nobody")
    assert r.code == 2 and "tenant 'nobody' has no audit log (tenants with one: acme, " \
        "globex)" in r.stderr, r
    r = cli("audit", "checkpoint", "--db", log["db"])
    assert r.code == 2 and "--key" in r.stderr
    # a proof with no checkpoint to cover it needs the key: said as the command line says it
    unsigned = cli("audit", "prove", "0", "--db", log["db"], "--tenant", "globex")
    assert unsigned.code == 2 and "needs the key: pass --key PATH (or set " \
        "CONVOY_AUDIT_KEY)" in unsigned.stderr and "key_path" not in unsigned.stderr, unsigned
    r = cli("audit", "verify", "--db", log["db"], "--key", str(tmp_path / "nope.key"))
    assert r.code == 2 and "does not exist" in r.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{}\n")
    r = cli("audit", "verify", "--db", log["db"], "--checkpoint", str(bad))
    assert r.code == 2 and "line 1" in r.stderr
    # a tenant's name mistyped is not a log that "verified 0 entries"
    typo = cli("audit", "verify", "--db", log["db"], "--tenant", "acmee")
    assert typo.code == 2 and "tenant 'acmee' has no audit log (tenants with one: acme, " \
        "globex)" in typo.stderr
    # a malformed pinned key is a usage error, not a traceback
    pinned = cli("audit", "verify", "--db", log["db"], "--public-key", "x")
    assert pinned.code == 2 and "--public-key: not a base64 Ed25519 public key" in \
        pinned.stderr
    proof = tmp_path / "proof.json"
    proof.write_text(cli("audit", "prove", "3", "--db", log["db"], "--tenant", T, "--key",
                         str(log["key"])).stdout)
    check = cli("audit", "check", str(proof), "--public-key", "not base64!")
    assert check.code == 2 and "--public-key: not a base64 Ed25519 public key" in \
        check.stderr
    for res in (r, typo, pinned, check):
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_a_log_deleted_entirely_says_so(log: dict[str, Any]) -> None:
    log["raw"].run(("DELETE FROM audit_log WHERE tenant=?", (T,)))
    code, out = verify(log, "--tenant", T)
    assert code == 1 and len(out.splitlines()) == 1, out
    assert "has no entries but had 20: every entry was cut off" in out, out
    assert "entry -1" not in out


def test_a_malformed_proof_is_one_line_not_a_traceback(log: dict[str, Any],
                                                        tmp_path: Path) -> None:
    r = cli("audit", "prove", "3", "--db", log["db"], "--tenant", T, "--key", str(log["key"]))
    good = json.loads(r.stdout)
    proof = tmp_path / "proof.json"
    cases: list[tuple[Any, str]] = [
        ({**good, "index": -1}, "'index'"),
        ({**good, "index": 3.0}, "'index'"),
        ({**good, "index": True}, "'index'"),
        ({**good, "index": 10**30}, "'index'"),  # (past 8 bytes: was an OverflowError)
        ({**good, "tree_size": 10**30}, "'tree_size'"),
        ({**good, "tree_size": "x"}, "'tree_size'"),
        ({k: v for k, v in good.items() if k != "tenant"}, "'tenant': Field required"),
        ({**good, "format": "something-else/v1"}, "'format'"),
        ({**good, "proof": "AAAA"}, "'proof'"),
        ([], "a JSON object"),
        ("x", "a JSON object"),
    ]
    for doc, why in cases:
        proof.write_text(json.dumps(doc))
        res = cli("audit", "check", str(proof))
        assert res.code == 2, (doc, res.stderr)  # a bad input file, as a file not JSON
        assert res.stderr.startswith("error: not a Convoy inclusion proof"), res.stderr
        assert why in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    # Files that are not even that: nested past what the decoder reads, not UTF-8
    proof.write_text("[" * 5000 + "]" * 5000)
    deep = cli("audit", "check", str(proof))
    assert deep.code == 2 and "thousands of levels deep" in deep.stderr, deep.stderr
    assert len(deep.stderr.strip().splitlines()) == 1
    cps = tmp_path / "cps"
    for content, said in ((b"\xff\xfe garbage", "is not UTF-8 text"),
                          (b"[" * 5000 + b"]" * 5000, "thousands of levels deep")):
        cps.write_bytes(content)
        res = cli("audit", "verify", "--db", log["db"], "--checkpoint", str(cps))
        assert res.code == 2 and said in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_checkpoint_of_a_tenant_with_no_log_is_refused(log: dict[str, Any]) -> None:
    """A mistyped --tenant signs nothing (an empty checkpoint would make the typo a
    tenant that 'verifies')."""
    r = cli("audit", "checkpoint", "--db", log["db"], "--tenant", "acmee", "--key",
            str(log["key"]))
    assert r.code == 2 and r.stdout == "", r.stdout
    assert "tenant 'acmee' has no audit log (tenants with one: acme, globex)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert cli("audit", "verify", "--db", log["db"], "--tenant", "acmee").code == 2


def test_a_damaged_stored_checkpoint_is_a_failure_of_the_log_for_prove_too(
        log: dict[str, Any]) -> None:
    log["raw"].run(("UPDATE audit_checkpoints SET body=? WHERE tenant=? AND size=12",
                    ("{bad", T)))
    for args in (("verify", "--tenant", T), ("prove", "3", "--tenant", T)):
        r = cli("audit", *args, "--db", log["db"], "--key", str(log["key"]))
        assert r.code == 1, (args, r.stderr)
        assert r.stderr.startswith("error: tenant 'acme': a stored checkpoint is unreadable")
        assert len(r.stderr.strip().splitlines()) == 1


def test_verify_help_says_it_checks_every_tenant_by_default() -> None:
    text = " ".join(cli("audit", "verify", "--help").stdout.replace("│", " ").split())
    assert "Verify this tenant's log only (default: every tenant's)" in text
    assert "Act as this tenant" not in text


@pytest.mark.parametrize("delete", ["head", "head and entries"])
def test_a_tenant_whose_head_row_is_deleted_is_still_verified(log: dict[str, Any],
                                                               delete: str) -> None:
    """Verifying every tenant finds the tenants from the entries and the checkpoints too,
    not only from the head row an attacker can delete with them."""
    raw: Raw = log["raw"]
    raw.run(("DELETE FROM audit_head WHERE tenant=?", (T,)))
    if delete == "head and entries":
        raw.run(("DELETE FROM audit_log WHERE tenant=?", (T,)))
    code, out = verify(log)
    assert code == 1, out
    assert f"'{T}'" in out, out


def _sqlite_only(backend: Backend) -> None:
    if not isinstance(backend, SQLiteBackend):
        pytest.skip("PostgreSQL's columns are typed: a value of another type is the SQLite case")


def _one_line_failure(r: Any, *why: str) -> None:
    out = (r.stdout + r.stderr).strip()
    assert r.code == 1, out
    assert len(out.splitlines()) == 1 and out.startswith("error: "), out
    for w in why:
        assert w in out, out


def test_a_row_of_another_type_after_a_bad_entry_does_not_hide_it(
        log: dict[str, Any], backend: Backend) -> None:
    """The store fails a chunk at a row it cannot read as an entry: the entries before it
    are still checked first, so the first bad entry is the one named (review F9)."""
    _sqlite_only(backend)
    log["raw"].run(("DELETE FROM audit_log WHERE tenant=? AND idx=5", (T,)),
                   ("UPDATE audit_log SET body=CAST(body AS TEXT) WHERE tenant=? AND idx=15",
                    (T,)))
    _bad(log, 5, "is missing")
    log["raw"].run(("UPDATE audit_log SET leaf=? WHERE tenant=? AND idx=3", (b"\x02" * 32, T)))
    _bad(log, 3, "does not match its leaf hash")


def test_a_leaf_made_text_that_is_not_utf8_names_its_entry(
        log: dict[str, Any], backend: Backend) -> None:
    """A binary leaf cast to text is no UTF-8: the store does not decode it (which failed
    the whole read, naming no entry, hiding an earlier bad one and every other tenant's
    result): the entry is named as changed, after the earlier bad one (re-check N9)."""
    _sqlite_only(backend)
    log["raw"].run(("UPDATE audit_log SET leaf=CAST(? AS TEXT) WHERE tenant=? AND idx=12",
                    (b"\xff\xfe\x00\x9f" * 8, T)))
    _bad(log, 12, "leaf hash is stored as text")
    log["raw"].run(("UPDATE audit_log SET leaf=? WHERE tenant=? AND idx=3", (b"\x02" * 32, T)))
    _bad(log, 3, "does not match its leaf hash")
    code, out = verify(log)
    # (exit 1: acme's error line, after globex's, whose log verifies)
    assert "'globex': 1 entries verified" in out
    assert code == 1 and "tenant 'acme': audit entry 3" in out, out


def test_a_row_of_another_type_far_past_the_end_is_found_at_once(
        log: dict[str, Any], backend: Backend) -> None:
    """A text row at index 10**9: the rows before it are found by halving the chunk (a
    few reads), not one read per index up to it (the re-check of 2026-12-03, N8)."""
    _sqlite_only(backend)
    log["raw"].run(("INSERT INTO audit_log(tenant,idx,body,leaf) VALUES(?,?,?,?)",
                    (T, 10**9, "x", b"\x00")))
    _bad(log, 10**9, "stored as text")
    log["raw"].run(("DELETE FROM audit_log WHERE tenant=? AND idx=4", (T,)))
    _bad(log, 4, "the next one stored is 5")


@pytest.mark.parametrize("change", [
    "body=replace(body, 'tool-005', 'tool-105')",  # a text function: the blob becomes text
    "body=CAST(body AS TEXT)",  # the same bytes, stored as text
    "leaf=hex(leaf)",
])
def test_an_entry_rewritten_as_text_is_found(log: dict[str, Any], backend: Backend,
                                             change: str) -> None:
    """SQLite stores whatever type an UPDATE gives it: an entry that is no longer the
    bytes Convoy stored is a changed entry, named, for every command that reads it."""
    _sqlite_only(backend)
    log["raw"].run((f"UPDATE audit_log SET {change} WHERE tenant=? AND idx=5", (T,)))
    _bad(log, 5, "audit entry 5 was changed")
    _one_line_failure(cli("audit", "list", "--db", log["db"], "--tenant", T),
                      "audit entry 5 was changed")
    if change.startswith("leaf"):  # the leaf hashes make checkpoints and proofs
        for args in (("prove", "3"), ("checkpoint",)):
            _one_line_failure(cli("audit", *args, "--db", log["db"], "--tenant", T, "--key",
                                  str(log["key"])), "audit entry 5 was changed")


def test_an_index_that_is_not_a_number_is_found(log: dict[str, Any],
                                                backend: Backend) -> None:
    _sqlite_only(backend)
    log["raw"].run(("UPDATE audit_log SET idx='5x' WHERE tenant=? AND idx=5", (T,)))
    for args in (("verify", "--key", str(log["key"])), ("list",)):
        _one_line_failure(cli("audit", *args, "--db", log["db"], "--tenant", T),
                          "tenant 'acme': an audit entry's index was changed to '5x'")


def test_a_head_size_that_is_not_a_number_is_found(log: dict[str, Any],
                                                   backend: Backend) -> None:
    _sqlite_only(backend)
    log["raw"].run(("UPDATE audit_head SET size='abc' WHERE tenant=?", (T,)))
    for args in (("verify", "--key", str(log["key"])), ("list",), ("prove", "3")):
        _one_line_failure(cli("audit", *args, "--db", log["db"], "--tenant", T),
                          "tenant 'acme': the audit log's head was changed: its size is "
                          "'abc'")


@pytest.mark.parametrize("table", ["audit_log", "audit_head"])
def test_a_tenant_that_is_not_text_is_found(log: dict[str, Any], backend: Backend,
                                            table: str) -> None:
    _sqlite_only(backend)
    log["raw"].run((f"UPDATE {table} SET tenant=CAST(tenant AS BLOB) WHERE tenant=?", (T,)))
    _one_line_failure(cli("audit", "verify", "--db", log["db"], "--key", str(log["key"])),
                      "an audit log's tenant was changed to b'acme'")


def _sign(log: dict[str, Any], *cmd: str) -> tuple[int, str]:
    r = cli("audit", *cmd, "--db", log["db"], "--tenant", T, "--key", str(log["key"]))
    return r.code, (r.stdout + r.stderr).strip()


def _kept_sizes(log: dict[str, Any]) -> list[int]:
    return sorted(r[0] for r in log["raw"].run(
        ("SELECT size FROM audit_checkpoints WHERE tenant=?", (T,))))


def _append(backend: Backend, first: int, n: int) -> None:
    async def more() -> None:
        store = backend.new(FakeClock())
        await store.open()
        try:
            await AuditLog(store, clock=FakeClock()).append(
                T, [_event(i) for i in range(first, first + n)])
        finally:
            await store.aclose()

    asyncio.run(more())


@pytest.mark.parametrize("how", ["prove", "checkpoint"])
def test_the_signer_never_signs_a_log_rolled_back_under_its_checkpoint(
        log: dict[str, Any], backend: Backend, how: str) -> None:
    """A store restored from a backup older than a checkpoint, then written to: its log is
    shorter than what was signed, its new entries others. Signing it would make two signed
    views of one log under one key (the review of 2026-12-03, F1): refused, nothing kept."""
    log["raw"].run(("DELETE FROM audit_log WHERE tenant=? AND idx>=10", (T,)),
                   ("DELETE FROM audit_checkpoints WHERE tenant=? AND size=12", (T,)),
                   ("UPDATE audit_head SET size=10 WHERE tenant=?", (T,)))
    _append(backend, 100, 5)  # 15 entries now, 10 to 14 new ones: under the checkpoint of 20
    code, out = _sign(log, *(["prove", "11"] if how == "prove" else ["checkpoint"]))
    assert code == 1 and len(out.splitlines()) == 1, out
    assert "checkpoint of size 20" in out and "audit verify" in out, out
    assert _kept_sizes(log) == [8, 20]


@pytest.mark.parametrize("how", ["prove", "checkpoint"])
def test_the_signer_never_signs_a_log_rewritten_under_its_checkpoint(
        log: dict[str, Any], backend: Backend, how: str) -> None:
    """An entry rewritten with a well-formed leaf (so no leaf check finds it), then the log
    grown: its first entries no longer hash to a kept checkpoint's root. Refused."""
    raw = log["raw"]
    body = raw.body(3).replace(b"tool-003", b"tool-999")
    raw.run(("UPDATE audit_log SET body=?, leaf=? WHERE tenant=? AND idx=3",
             (body, entry_leaf(T, 3, body), T)))
    _append(backend, N, 3)
    code, out = _sign(log, *(["prove", "21"] if how == "prove" else ["checkpoint"]))
    assert code == 1 and len(out.splitlines()) == 1, out
    assert "first 8 entries no longer hash" in out and "audit verify" in out, out
    assert _kept_sizes(log) == [8, 12, 20]


@pytest.mark.parametrize("how", ["prove", "checkpoint"])
def test_the_signer_never_signs_an_entry_whose_leaf_is_not_its_own(
        log: dict[str, Any], backend: Backend, how: str) -> None:
    """A leaf hash changed after the last checkpoint: a checkpoint would sign a tree that
    does not hold the entry (and a prove that then fails would leave it behind). Refused
    before anything is signed."""
    _append(backend, N, 3)
    raw = log["raw"]
    raw.run(("UPDATE audit_log SET leaf=? WHERE tenant=? AND idx=21", (b"\x00" * 32, T)))
    code, out = _sign(log, *(["prove", "21"] if how == "prove" else ["checkpoint"]))
    assert code == 1 and len(out.splitlines()) == 1, out
    assert "entry 21 does not match its leaf hash" in out and "audit verify" in out, out
    assert _kept_sizes(log) == [8, 12, 20]


def test_a_checkpoint_kept_under_another_tenant_is_found(log: dict[str, Any]) -> None:
    """A kept checkpoint names its tenant in what it signs: one moved to another tenant's
    rows is reported as that, not as the other tenant's log cut off (review F5)."""
    log["raw"].run(("UPDATE audit_checkpoints SET tenant='globex' WHERE tenant=? AND size=20",
                    (T,)))
    code, out = verify(log, "--tenant", "globex")
    assert code == 1 and len(out.splitlines()) == 1, out
    assert "tenant 'acme'" in out and "kept under tenant 'globex'" in out, out


async def test_a_kept_checkpoint_is_never_replaced(tmp_path: Path) -> None:
    """Signing again a log that has not grown gives back the checkpoint kept (the same
    signature); another key is refused; the store keeps one checkpoint per size, even if
    two signers race (the second one's put is not kept, and it returns the first)."""
    store = SQLiteStore(tmp_path / "convoy.db")
    await store.open()
    try:
        log = AuditLog(store, key_path=tmp_path / "a.key")
        await store.audit_append("acme", [_event(0).encode(), _event(1).encode()])
        first = await log.checkpoint("acme")
        again = await log.checkpoint("acme")
        assert again.signature == first.signature
        other = AuditLog(store, key_path=tmp_path / "b.key")
        with pytest.raises(convoy.UserError, match="signed by another key"):
            await other.checkpoint("acme")
        assert not await store.audit_put_checkpoint("acme", 2, "{}")
        assert len(await store.audit_checkpoints("acme")) == 1
        await store.audit_append("acme", [_event(2).encode()])
        grown = await other.checkpoint("acme")  # the log grew: the new key signs
        assert grown.size == 3 and grown.key_id != first.key_id
        assert [cp.size for cp in await log.checkpoints("acme")] == [2, 3]
    finally:
        await store.aclose()


async def test_an_empty_log_is_not_signed(tmp_path: Path) -> None:
    """A log whose entries were all deleted (its head row left at 0) or that never had one:
    a size-0 checkpoint would make `verify --key` pass over a wiped log again."""
    store = SQLiteStore(tmp_path / "convoy.db")
    await store.open()
    try:
        log = AuditLog(store, key_path=tmp_path / "a.key")
        with pytest.raises(convoy.UserError,
                           match=r"audit log of tenant .* is empty: there is nothing to sign"):
            await log.checkpoint("acme")
        assert await store.audit_checkpoints("acme") == []
    finally:
        await store.aclose()


# -- a log longer than a tile (1,024 leaves): proofs read kept tile roots and a few tiles --

LONG = 1290  # two tiles: a complete one, and 266 leaves of the next


@pytest.fixture
def long_log(backend: Backend, tmp_path: Path) -> dict[str, Any]:
    """A log of LONG entries with checkpoints at 1201 and LONG (its tile roots kept)."""
    _grown(backend, tmp_path, [1201, LONG], LONG)
    return {"key": tmp_path / "audit.key", "db": _url(backend), "raw": Raw(backend)}


def _grown(backend: Backend, tmp_path: Path, signed: list[int], size: int) -> None:
    """A log of ``size`` entries, a checkpoint (audit.key) signed as it reached each of
    the sizes ``signed``."""
    async def build() -> None:
        store = backend.new(FakeClock())
        await store.open()
        try:
            alog = AuditLog(store, key_path=tmp_path / "audit.key", clock=FakeClock())
            start = 0
            for n in [*signed, size]:
                await alog.append(T, [_event(i) for i in range(start, n)])
                if n in signed:
                    await alog.checkpoint(T)
                start = n
        finally:
            await store.aclose()

    asyncio.run(build())


def _store_rows(raw: Raw) -> list[Any]:
    """Every row a read command must leave as it found it (the tile roots' included)."""
    return [sorted(raw.run((f"SELECT * FROM {table}", ())), key=repr)
            for table in ("audit_log", "audit_head", "audit_checkpoints", "kv")]


@pytest.mark.parametrize("tiles", ["kept", "deleted"])
def test_prove_names_an_entry_deleted_from_a_long_log(long_log: dict[str, Any],
                                                      tiles: str) -> None:
    """The review of 2026-12-05: `prove 500` on a log of more than a tile whose entry 700
    was deleted printed a 146-line traceback (IndexError in range_root), with the tile
    roots kept or not; `checkpoint` said the log was damaged. One line, exit 1, naming the
    entry and `audit verify`; nothing in the store changed."""
    raw: Raw = long_log["raw"]
    raw.run(("DELETE FROM audit_log WHERE tenant=? AND idx=700", (T,)))
    if tiles == "deleted":
        raw.run(("DELETE FROM kv WHERE namespace LIKE ?", ("%tile%",)))
    before = _store_rows(raw)
    verify_cmd = command("audit verify", db=long_log["db"], tenant=T)
    # (with the tile roots kept, a proof of entry 1100 reads tile 0's root, not its
    # entries: it is printed, and holds; see the test below)
    more = [("prove", "1100")] if tiles == "deleted" else []
    for args in (("prove", "500", "--key", str(long_log["key"])), ("prove", "500"),
                 ("prove", "700", "--key", str(long_log["key"])), ("prove", "700"),
                 *more, ("checkpoint", "--key", str(long_log["key"]))):
        r = cli("audit", *args, "--db", long_log["db"], "--tenant", T)
        _one_line_failure(r, "audit verify")
        if args[0] == "prove":
            assert r.stderr.strip() == (
                f"error: tenant {T!r}: audit entry 700 is missing (deleted, or the entries "
                f"after it renumbered): no proof is made; run {verify_cmd}"), (args, r.stderr)
    assert _store_rows(raw) == before


@pytest.mark.parametrize("tiles", ["kept", "deleted"])
async def test_the_python_api_raises_an_audit_error_for_a_deleted_entry(
        long_log: dict[str, Any], backend: Backend, tiles: str) -> None:
    raw: Raw = long_log["raw"]
    raw.run(("DELETE FROM audit_log WHERE tenant=? AND idx=700", (T,)))
    if tiles == "deleted":
        raw.run(("DELETE FROM kv WHERE namespace LIKE ?", ("%tile%",)))
    store = backend.new(FakeClock())
    await store.open()
    try:
        alog = AuditLog(store, key_path=long_log["key"])
        for index in (500, 700, *([1100] if tiles == "deleted" else [])):
            with pytest.raises(convoy.AuditError, match="audit entry 700 is missing") as e:
                await alog.prove(T, index)
            assert e.value.index == 700
    finally:
        await store.aclose()


@pytest.mark.parametrize("tiles", ["kept", "deleted"])
@pytest.mark.parametrize("damage", ["entry 700 deleted", "entry 500 changed"])
def test_consistency_proves_the_signed_checkpoints_verify_checks_the_entries(
        long_log: dict[str, Any], tmp_path: Path, damage: str, tiles: str) -> None:
    """The review of 2026-12-05: `consistency 1201` exited 0 on a log whose entry 700 was
    deleted, or whose entry 500 was changed, though the docs said a log that no longer
    holds both checkpoints exits 1. A consistency proof is hashed from the kept tile roots
    and the leaves of the tiles it cuts, not from every entry (docs/how-to/audit.md, as
    corrected): what it prints links the two signed roots, and still holds; `verify`
    names the damaged entry. An entry missing from what it does read is one line, exit 1
    (a traceback before, like `prove`'s)."""
    raw: Raw = long_log["raw"]
    if damage == "entry 700 deleted":
        raw.run(("DELETE FROM audit_log WHERE tenant=? AND idx=700", (T,)))
        found = "audit entry 700 is missing"
    else:
        body = raw.body(500).replace(b"tool-500", b"tool-999")
        raw.run(("UPDATE audit_log SET body=? WHERE tenant=? AND idx=500", (body, T)))
        found = "audit entry 500 does not match its leaf hash"
    if tiles == "deleted":
        raw.run(("DELETE FROM kv WHERE namespace LIKE ?", ("%tile%",)))
    before = _store_rows(raw)
    r = cli("audit", "consistency", "1201", "--db", long_log["db"], "--tenant", T)
    if damage == "entry 700 deleted" and tiles == "deleted":  # (tile 0 built from entries)
        _one_line_failure(r, "audit entry 700 is missing", "audit verify")
        assert _store_rows(raw) == before
    else:
        assert r.code == 0, r.stderr
        proof = tmp_path / "consistency.json"
        proof.write_text(r.stdout)
        public = json.loads(r.stdout)["checkpoint2"]["public_key"]
        ok = cli("audit", "check", str(proof), "--public-key", public)
        assert ok.code == 0, ok.stderr
        assert _store_rows(raw)[:3] == before[:3]  # (tile roots it built and checked: kept)
    _one_line_failure(cli("audit", "verify", "--db", long_log["db"], "--tenant", T), found)


def test_tile_roots_of_a_rewritten_log_are_not_kept(long_log: dict[str, Any]) -> None:
    """Tile roots built from leaves that no longer lead to the signed root (entry 500
    rewritten with a well-formed leaf, the kept roots gone) are not kept by the proof that
    fails with them: a command that only reads the store leaves it as it found it."""
    raw: Raw = long_log["raw"]
    body = raw.body(500).replace(b"tool-500", b"tool-999")
    raw.run(("UPDATE audit_log SET body=?, leaf=? WHERE tenant=? AND idx=500",
             (body, entry_leaf(T, 500, body), T)),
            ("DELETE FROM kv WHERE namespace LIKE ?", ("%tile%",)))
    before = _store_rows(raw)
    for args, why in ((("prove", "1100"), "so entry 1100 cannot be proven"),
                      (("consistency", "1201"), "no longer holds both")):
        _one_line_failure(cli("audit", *args, "--db", long_log["db"], "--tenant", T), why,
                          "audit verify")
        assert _store_rows(raw) == before, args


def test_entries_appended_while_verify_reads_are_not_taken_for_inserted(
        backend: Backend, tmp_path: Path) -> None:
    """An engine appends while verify reads: the count it read first is behind the
    entries it then reads (review of stop 44: a live log of more than 10,000 entries
    failed verify 3 times in 4 with 'entries from N on were inserted'). The entries
    appended since are verified with the rest; entries stored past a count that no
    append moved are still inserted ones."""
    from convoy.audit._verify import verify_log

    async def go() -> None:
        store = backend.new(FakeClock())
        await store.open()
        try:
            alog = AuditLog(store, key_path=tmp_path / "audit.key", clock=FakeClock())
            await alog.append(T, [_event(i) for i in range(8)])
            await alog.checkpoint(T)
            read = store.audit_entries
            live = [4]

            async def appending(tenant: str, start: int, limit: int) -> Any:
                if start == 0 and live:  # (an engine's append lands after the count read)
                    await alog.append(T, [_event(i) for i in range(8, 8 + live.pop())])
                return await read(tenant, start, limit)

            store.audit_entries = appending  # type: ignore[method-assign]
            report = await verify_log(alog, T)
            assert report.size == 12 and report.covered == 8, report
        finally:
            await store.aclose()

    asyncio.run(go())
    raw = Raw(backend)
    body = raw.body(11)
    raw.run(("INSERT INTO audit_log(tenant, idx, body, leaf) VALUES (?, ?, ?, ?)",
             (T, 12, body, entry_leaf(T, 12, body))))
    code, out = verify({"db": _url(backend), "key": tmp_path / "audit.key"}, "--tenant", T)
    assert code == 1 and ("the log has 13 entries but 12 were appended: entries from 12 "
                          "on were inserted") in out, out


def test_a_checkpoint_signed_at_a_whole_number_time_verifies(tmp_path: Path) -> None:
    """A clock that returns an integer (``clock=lambda: 1_800_000_000``): the checkpoint
    signed the time as ``1800000000`` and read it back as ``1800000000.0``, so it never
    verified, and no later checkpoint of the tenant could be signed (review of stop 44).
    One signed so by an earlier Convoy verifies too."""
    from convoy.audit._checkpoint import HEADER
    from convoy.audit._keys import load_or_create_key
    from convoy.audit._verify import verify_log

    async def go() -> None:
        store = SQLiteStore(str(tmp_path / "c.db"), clock=lambda: 1_800_000_000)
        await store.open()
        try:
            alog = AuditLog(store, key_path=tmp_path / "audit.key",
                            clock=lambda: 1_800_000_000)
            await alog.append(T, [_event(i) for i in range(3)])
            cp = await alog.checkpoint(T)
            Checkpoint.from_json(cp.to_json()).check(cp.public_key)
            await alog.append(T, [_event(i) for i in range(3, 5)])
            await alog.checkpoint(T)
            assert (await verify_log(alog, T)).checkpoints == 2
        finally:
            await store.aclose()

    asyncio.run(go())
    key = load_or_create_key(tmp_path / "audit.key")
    root = b"r" * 32
    old = Checkpoint.sign(key, tenant=T, size=1, root=root, timestamp=1.8e9)
    signed = key.sign(f"{HEADER}\n{T}\n1\n{old.to_dict()['root']}\n1800000000\n".encode())
    import base64
    earlier = Checkpoint(tenant=T, size=1, root=root, timestamp=1.8e9,
                         public_key=old.public_key, signature=base64.b64encode(signed).decode())
    earlier.check(old.public_key)


def test_no_proof_is_made_against_a_kept_checkpoint_whose_signature_fails(
        log: dict[str, Any]) -> None:
    """``prove`` and ``consistency`` printed, exit 0, a proof against a kept checkpoint
    whose signature was changed in the database, which ``check`` then refused (review of
    stop 44): the checkpoint's signature is checked first; one line, exit 1, no proof."""
    import base64

    raw: Raw = log["raw"]
    [[text]] = raw.run(("SELECT body FROM audit_checkpoints WHERE tenant=? AND size=?",
                        (T, N)))
    doc = json.loads(text)
    sig = bytearray(base64.b64decode(doc["signature"]))
    sig[5] ^= 1
    doc["signature"] = base64.b64encode(bytes(sig)).decode()
    raw.run(("UPDATE audit_checkpoints SET body=? WHERE tenant=? AND size=?",
             (json.dumps(doc), T, N)))
    for args in (["prove", "15"], ["prove", "15", "--key", str(log["key"])],
                 ["consistency", "12"]):
        r = cli("audit", *args, "--db", log["db"], "--tenant", T)
        out = (r.stdout + r.stderr).strip()
        assert r.code == 1 and len(out.splitlines()) == 1, (args, out)
        assert f"checkpoint of size {N} of tenant 'acme' has an invalid signature" in out, out
        assert "verify" in out, out


def test_a_tenant_name_that_would_move_the_cursor_is_shown_escaped(
        log: dict[str, Any]) -> None:
    """A log added under a name no engine accepts, with a line break and terminal escapes
    (erase the line, move up: a fake "all good" line drawn over the real one): each line
    of verify's output names it escaped, the suggested command too (review of stop 44)."""
    if not isinstance(log["raw"].b, SQLiteBackend):
        pytest.skip("the name's escapes are the same on both stores: SQLite's case")
    raw: Raw = log["raw"]
    forged = "x\x1b[2K\x1b[1A\r\ntenant 'acme': all good"
    body = raw.body(0)
    raw.run(("INSERT INTO audit_log(tenant, idx, body, leaf) VALUES (?, ?, ?, ?)",
             (forged, 0, body, entry_leaf(forged, 0, body))),
            ("INSERT INTO audit_head VALUES (?, 1)", (forged,)))
    code, out = verify(log)
    assert code == 0, out
    assert all(c == "\n" or c.isprintable() for c in out), repr(out)
    line = next(ln for ln in out.splitlines() if "x\\x1b[2K" in ln)
    assert "--tenant" in line and line.count("x\\x1b[2K") == 2, line


def test_a_count_of_entries_set_below_zero_is_said_as_changed(log: dict[str, Any]) -> None:
    """No append writes a negative count: verify said "entries from -5 on were inserted",
    prove a usage error, checkpoint "the log has 0 entries" (review of stop 44)."""
    log["raw"].run(("UPDATE audit_head SET size=-5 WHERE tenant=?", (T,)))
    for args in (["verify"], ["prove", "5"], ["checkpoint"], ["list"]):
        key = [] if args == ["list"] else ["--key", str(log["key"])]
        r = cli("audit", *args, "--db", log["db"], "--tenant", T, *key)
        out = (r.stdout + r.stderr).strip()
        assert r.code == 1 and "its size is -5, not a count of entries" in out, (args, out)


def test_an_index_made_a_fraction_does_not_hide_an_earlier_deletion(
        log: dict[str, Any], backend: Backend) -> None:
    """Entry 5 deleted, entry 15's index made 15.5: the entries before the unreadable row
    are checked first, so the deletion is the one named (review of stop 44: only "an
    index was changed to 15.5" was said)."""
    _sqlite_only(backend)
    log["raw"].run(("DELETE FROM audit_log WHERE tenant=? AND idx=5", (T,)),
                   ("UPDATE audit_log SET idx=15.5 WHERE tenant=? AND idx=15", (T,)))
    _bad(log, 5, "audit entry 5 is missing")



def test_a_fork_found_beside_a_bad_entry_bounds_the_first_bad_one_by_it(
        log: dict[str, Any]) -> None:
    """Entry 10 deleted and the rest renumbered (their leaves not recomputed): entry 10 no
    longer matches its leaf, and the checkpoint of 12 no longer matches. The first bad
    entry is between the last checkpoint that matches (8) and entry 10, said so (it said
    "at index 8 or after", after naming entry 10)."""
    raw: Raw = log["raw"]
    raw.run(("DELETE FROM audit_log WHERE tenant=? AND idx=10", (T,)))
    raw.move("idx>10", -1)
    raw.run(("UPDATE audit_head SET size=size-1 WHERE tenant=?", (T,)))
    code, out = verify(log, "--tenant", T)
    assert code == 1 and len(out.splitlines()) == 1, out
    assert "audit entry 10 does not match its leaf hash" in out, out
    assert "entries 8 to 11 no longer hash to the signed root; the first bad entry is at " \
        "index 8 to 10" in out and "or after" not in out, out


def test_prove_blames_no_intact_entry_for_another_ones_rewrite(log: dict[str, Any]) -> None:
    """Entry 5 rewritten with its leaf hash recomputed: proving entry 9 (intact, against the
    newest checkpoint, of 20) fails, and says the signed entries no longer hash to their root (it
    or another was changed), not that entry 9 is not in the log; entry 5 itself, with its
    leaf left as signed, is said to have changed."""
    raw: Raw = log["raw"]
    body = bytearray(raw.body(5))
    body[-3] ^= 0x01
    raw.run(("UPDATE audit_log SET body=?, leaf=? WHERE tenant=? AND idx=5",
             (bytes(body), entry_leaf(T, 5, bytes(body)), T)))
    r = cli("audit", "prove", "9", "--db", log["db"], "--tenant", T)
    assert r.code == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "the log's first 20 entries no longer hash to the root their checkpoint signed, " \
        "so entry 9 cannot be proven: it or another of them was changed since" in r.stderr
    raw.run(("UPDATE audit_log SET leaf=? WHERE tenant=? AND idx=7",
             (entry_leaf(T, 6, raw.body(7)), T)))  # (entry 7's leaf: not its own)
    r = cli("audit", "prove", "7", "--db", log["db"], "--tenant", T)
    assert r.code == 1 and "entry 7 was changed: it no longer matches its leaf hash" in \
        r.stderr, r.stderr


@pytest.mark.parametrize(("by", "said"), [
    (-1, "entries from 10 on were inserted, or the count was lowered"),
    (+5, "entries from 11 on were cut off (truncated), or the count was raised")])
def test_a_count_changed_over_the_unsigned_tail_names_both_causes(
        backend: Backend, tmp_path: Path, by: int, said: str) -> None:
    """Past the last checkpoint, nothing tells an entry inserted from a count lowered, or
    entries cut off from a count raised: verify names both (it named one, and the
    review that lowered the count of a genuine log read 'inserted')."""
    _grown(backend, tmp_path, [8], 11)  # (entries 8 to 10 signed by none)
    Raw(backend).run((f"UPDATE audit_head SET size = size + ({by}) WHERE tenant=?", (T,)))
    code, out = verify({"db": _url(backend), "key": tmp_path / "audit.key"}, "--tenant", T)
    assert code == 1 and said in out, out


@pytest.mark.parametrize("edit", ["moved", "copied"])
def test_a_checkpoint_row_kept_under_another_size_fails_verify(
        log: dict[str, Any], edit: str) -> None:
    """An auditor's probe: a signed checkpoint's row moved to the size the log has reached
    (``UPDATE ... SET size=...``), or its body copied into rows of every size above it,
    made ``audit checkpoint`` and ``audit prove`` refuse to sign there ("run 'convoy
    audit verify'"), while ``verify`` passed, with every pin: the tail past the last
    checkpoint could then be rewritten with no sign of it. A row whose size is not its
    signed body's fails verify now, naming both."""
    raw: Raw = log["raw"]
    raw.run(("DELETE FROM audit_checkpoints WHERE tenant=? AND size=?", (T, N)))
    if edit == "moved":
        raw.run(("UPDATE audit_checkpoints SET size=? WHERE tenant=? AND size=8", (N, T)))
    else:
        [[body]] = raw.run(("SELECT body FROM audit_checkpoints WHERE tenant=? AND size=8",
                            (T,)))
        raw.run(*[("INSERT INTO audit_checkpoints(tenant,size,body) VALUES(?,?,?)",
                   (T, size, body)) for size in range(13, N + 5)])
    above = N if edit == "moved" else 13
    for more in ((), ("--checkpoint", str(log["published"]))):
        code, out = verify(log, "--tenant", T, *more)
        assert code == 1 and len(out.splitlines()) == 1, out
        assert f"its checkpoint of size 8 is kept under size {above} (the store was " \
            "edited)" in out, out
