"""``convoy audit verify`` against a log tampered with directly in the database (a real
SQLite file, a real PostgreSQL schema), as someone with write access to the store would:
every case is detected and the first bad entry named; ``prove`` prints a proof a third
party checks with ``convoy audit check``; errors are one line."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from convoy.audit import AuditEvent, AuditLog, Checkpoint, entry_leaf
from convoy.stores._audit_sql import HEAD
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

    # The log's layout, as the attacker reads it: bundle rows (see convoy.stores._audit_sql).

    def entries(self) -> dict[int, tuple[bytes, bytes]]:
        """Every entry of ``T``: index -> (body, leaf hash)."""
        out: dict[int, tuple[bytes, bytes]] = {}
        for idx, _n, bodies, sizes, leaves in self.run((
                f"SELECT idx, n, bodies, sizes, leaves FROM audit_bundles WHERE tenant=? "
                f"AND idx<{HEAD} ORDER BY idx", (T,))):
            at = 0
            for i, size in enumerate(int(x) for x in sizes.split(",")):
                out[idx + i] = (bytes(bodies[at:at + size]), bytes(leaves[32 * i:32 * i + 32]))
                at += size
        return out

    def rewrite(self, entries: dict[int, tuple[bytes, bytes]]) -> None:
        """Replace ``T``'s entries with ``entries``, one bundle row each (the head stays)."""
        self.run((f"DELETE FROM audit_bundles WHERE tenant=? AND idx<{HEAD}", (T,)),
                 *(("INSERT INTO audit_bundles(tenant,idx,n,bodies,sizes,leaves) "
                    "VALUES(?,?,1,?,?,?)", (T, i, body, str(len(body)), leaf))
                   for i, (body, leaf) in entries.items()))

    def body(self, i: int) -> bytes:
        return self.entries()[i][0]

    def leaf(self, i: int) -> bytes:
        return self.entries()[i][1]

    def set(self, i: int, body: bytes | None = None, leaf: bytes | None = None) -> None:
        e = self.entries()
        e[i] = (e[i][0] if body is None else body, e[i][1] if leaf is None else leaf)
        self.rewrite(e)

    def delete(self, *indexes: int) -> None:
        e = self.entries()
        self.rewrite({i: v for i, v in e.items() if i not in indexes})

    def insert(self, i: int, body: bytes, leaf: bytes) -> None:
        self.rewrite({**self.entries(), i: (body, leaf)})

    def move(self, where: Callable[[int], bool], by: int) -> None:
        """Renumber the entries ``where`` holds for."""
        e = self.entries()
        self.rewrite({**{i: v for i, v in e.items() if not where(i)},
                      **{i + by: v for i, v in e.items() if where(i)}})

    def set_size(self, size: int) -> None:
        self.run((f"UPDATE audit_bundles SET n=? WHERE tenant=? AND idx={HEAD}", (size, T)))


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
    assert "6 signed checkpoint(s) matched" in out  # three kept, three published


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
    raw.set(5, body=bytes(body))
    _bad(log, 5, "does not match its leaf hash")


def test_a_changed_leaf_hash_is_found(log: dict[str, Any]) -> None:
    log["raw"].set(9, leaf=b"\0" * 32)
    _bad(log, 9, "does not match its leaf hash")


def test_a_deleted_entry_is_found(log: dict[str, Any]) -> None:
    log["raw"].delete(7)
    _bad(log, 7, "is missing")


def test_a_deleted_entry_with_the_rest_renumbered_is_found(log: dict[str, Any]) -> None:
    raw: Raw = log["raw"]
    raw.delete(7)
    raw.move(lambda i: i > 7, -1)
    raw.set_size(N - 1)
    _bad(log, 7, "does not match its leaf hash")


def test_an_inserted_entry_is_found(log: dict[str, Any]) -> None:
    raw: Raw = log["raw"]
    leaf = raw.leaf(7)
    raw.move(lambda i: i >= 7, 1)
    raw.insert(7, _event(99).encode(), leaf)
    _bad(log, 7, "does not match its leaf hash")


def test_an_inserted_entry_with_a_well_formed_leaf_is_found(log: dict[str, Any]) -> None:
    """Whoever knows the leaf formula can make an inserted entry look right: the signed
    checkpoint of size 8 no longer matches (no earlier checkpoint: from entry 0 on)."""
    raw: Raw = log["raw"]
    raw.move(lambda i: i >= 7, 1)
    forged = _event(99).encode()
    raw.insert(7, forged, entry_leaf(T, 7, forged))
    _bad(log, 0, "forked from its signed checkpoint of size 8: entries 0 to 7")


def test_an_entry_appended_behind_convoys_back_is_found(log: dict[str, Any]) -> None:
    forged = _event(99).encode()
    log["raw"].insert(N, forged, entry_leaf(T, N, forged))
    _bad(log, N, "were inserted")


def test_reordered_entries_are_found(log: dict[str, Any]) -> None:
    raw: Raw = log["raw"]
    e = raw.entries()
    raw.rewrite({**e, 3: e[4], 4: e[3]})
    _bad(log, 3, "does not match its leaf hash")


def test_a_truncated_log_is_found(log: dict[str, Any]) -> None:
    log["raw"].delete(*range(15, N))
    _bad(log, 15, "truncated")


def test_a_truncation_that_covers_its_tracks_is_found_by_a_published_checkpoint(
        log: dict[str, Any]) -> None:
    raw: Raw = log["raw"]
    raw.delete(*range(15, N))
    raw.set_size(15)
    raw.run(("DELETE FROM audit_checkpoints WHERE tenant=?", (T,)))
    assert verify(log, "--tenant", T)[0] == 0  # nothing left in the store to tell
    _bad(log, 15, "truncated", "--checkpoint", str(log["published"]))


def test_a_fork_after_a_published_checkpoint_is_found(log: dict[str, Any]) -> None:
    """A rewrite of entries 10.. with every hash recomputed, the store's checkpoints
    deleted: only the published checkpoints can tell, and they bound the first bad entry
    (8: the last one that still matches)."""
    raw: Raw = log["raw"]
    raw.run(("DELETE FROM audit_checkpoints WHERE tenant=?", (T,)))
    e = raw.entries()
    for i in range(10, N):
        body = AuditEvent(kind="tool_call", status="ok", at=5.0, session_id="s1",
                          step_key=f"0/{i}", actor="clerk", target="other").encode()
        e[i] = (body, entry_leaf(T, i, body))
    raw.rewrite(e)
    assert verify(log, "--tenant", T)[0] == 0
    _bad(log, 8, "forked from its signed checkpoint of size 12", "--checkpoint",
         str(log["published"]))


# Tampering with a bundle row as it is (the fixture's appends of 8, 4 and 8 entries are the
# bundles at 0, 8 and 12).

def _bundle(raw: Raw, idx: int) -> tuple[bytes, str]:
    [(bodies, sizes)] = raw.run(("SELECT bodies, sizes FROM audit_bundles WHERE tenant=? AND "
                                 "idx=?", (T, idx)))
    return bytes(bodies), str(sizes)


def test_a_byte_changed_inside_a_bundle_names_its_entry(log: dict[str, Any]) -> None:
    raw: Raw = log["raw"]
    bodies, _ = _bundle(raw, 12)
    at = bodies.find(b"tool-015")
    assert at > 0
    changed = bytearray(bodies)
    changed[at + 6] ^= 0x01
    raw.run(("UPDATE audit_bundles SET bodies=? WHERE tenant=? AND idx=12",
             (bytes(changed), T)))
    _bad(log, 15, "does not match its leaf hash")


@pytest.mark.parametrize("sizes", ["oops", "1,2", "", "-5," + ",".join(["1"] * 3)])
def test_a_bundle_whose_sizes_do_not_hold_together_names_its_first_entry(
        log: dict[str, Any], sizes: str) -> None:
    log["raw"].run(("UPDATE audit_bundles SET sizes=? WHERE tenant=? AND idx=8", (sizes, T)))
    _bad(log, 8, "does not match its leaf hash")


def test_entries_moved_between_bundles_are_found(log: dict[str, Any]) -> None:
    """Sizes shifted so one entry's bytes end up in its neighbour: both leaf hashes break,
    the first is named."""
    raw: Raw = log["raw"]
    _, sizes = _bundle(raw, 8)
    first, second, *rest = [int(x) for x in sizes.split(",")]
    shifted = ",".join(str(x) for x in (first - 3, second + 3, *rest))
    raw.run(("UPDATE audit_bundles SET sizes=? WHERE tenant=? AND idx=8", (shifted, T)))
    _bad(log, 8, "does not match its leaf hash")


def test_a_deleted_bundle_is_found(log: dict[str, Any]) -> None:
    log["raw"].run(("DELETE FROM audit_bundles WHERE tenant=? AND idx=8", (T,)))
    _bad(log, 8, "is missing")


def test_a_deleted_head_is_found(log: dict[str, Any]) -> None:
    log["raw"].run((f"DELETE FROM audit_bundles WHERE tenant=? AND idx={HEAD}", (T,)))
    _bad(log, 0, "were inserted")


def test_a_forged_checkpoint_is_found(log: dict[str, Any]) -> None:
    raw: Raw = log["raw"]
    [[text]] = raw.run(("SELECT body FROM audit_checkpoints WHERE tenant=? AND size=12", (T,)))
    doc = json.loads(text)
    doc["size"] = 11
    raw.run(("UPDATE audit_checkpoints SET body=? WHERE tenant=? AND size=12",
             (json.dumps(doc), T)))
    code, out = verify(log, "--tenant", T)
    assert code == 1 and "invalid signature" in out and len(out.splitlines()) == 1, out


def test_a_checkpoint_signed_by_another_key_is_refused(log: dict[str, Any],
                                                       tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    assert cli("audit", "checkpoint", "--db", log["db"], "--tenant", T, "--key",
               str(other)).code == 0
    code, out = verify(log, "--tenant", T)
    assert code == 1 and "not by the expected key" in out, out


def test_prove_prints_a_proof_a_third_party_checks(log: dict[str, Any],
                                                   tmp_path: Path) -> None:
    r = cli("audit", "prove", "9", "--db", log["db"], "--tenant", T, "--key", str(log["key"]))
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["tree_size"] == N and doc["index"] == 9  # the newest checkpoint covering it
    public = log["cps"][0].public_key
    proof = tmp_path / "proof.json"
    proof.write_text(r.stdout)
    ok = cli("audit", "check", str(proof), "--public-key", public)
    assert ok.code == 0 and "entry 9 of tenant 'acme'" in ok.stdout, ok.stderr
    doc["entry"] = doc["entry"][:-4] + ("AAAA" if doc["entry"][-4:] != "AAAA" else "BBBB")
    proof.write_text(json.dumps(doc))
    bad = cli("audit", "check", str(proof), "--public-key", public)
    assert bad.code == 1 and "does not lead to the root" in bad.stderr


def test_checkpoint_prints_a_signed_checkpoint(log: dict[str, Any]) -> None:
    r = cli("audit", "checkpoint", "--db", log["db"], "--tenant", T, "--key", str(log["key"]))
    assert r.code == 0, r.stderr
    cp = Checkpoint.from_json(r.stdout)
    cp.check(log["cps"][0].public_key)
    assert cp.size == N and cp.root == log["cps"][2].root


def test_usage_errors_are_one_line(log: dict[str, Any], tmp_path: Path) -> None:
    r = cli("audit", "prove", "999", "--db", log["db"], "--tenant", T)
    assert r.code == 2 and "has no audit entry 999" in r.stderr
    r = cli("audit", "checkpoint", "--db", log["db"])
    assert r.code == 2 and "--key" in r.stderr
    r = cli("audit", "verify", "--db", log["db"], "--key", str(tmp_path / "nope.key"))
    assert r.code == 2 and "does not exist" in r.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{}\n")
    r = cli("audit", "verify", "--db", log["db"], "--checkpoint", str(bad))
    assert r.code == 2 and "line 1" in r.stderr
    for res in (r,):
        assert len(res.stderr.strip().splitlines()) == 1
