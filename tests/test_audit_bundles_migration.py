"""A log written in schema 7's layout (one ``audit_log`` row per entry, sizes in
``audit_head``) is moved to bundle rows when a store opens it (the ``audit_bundles``
add-on), on SQLite and PostgreSQL alike: it verifies against the checkpoints signed before,
proves entries, and appends go on at the next index."""

from __future__ import annotations

import asyncio
from pathlib import Path

from convoy.audit import AuditLog, check_inclusion, entry_leaf, verify_log
from convoy.stores._audit_sql import HEAD
from tests import test_audit_tamper as tamper
from tests.store_backends import Backend, FakeClock, SQLiteBackend
from tests.test_audit_tamper import Raw, _event

backend = tamper.backend  # the fixture: every store

T = "acme"


def _as_schema_7(backend: Backend) -> None:
    """Rewrite the store's audit log as the release with schema 7 left it (the one place
    these tests write the old tables: they play that release)."""
    raw = Raw(backend)
    blob, big = ("BLOB", "INTEGER") if isinstance(backend, SQLiteBackend) else ("BYTEA", "BIGINT")
    rows = raw.run(("SELECT tenant, idx, n, bodies, sizes, leaves FROM audit_bundles", ()))
    statements: list[tuple[str, tuple[object, ...]]] = [
        (f"CREATE TABLE audit_head(tenant TEXT PRIMARY KEY, size {big} NOT NULL)", ()),
        (f"CREATE TABLE audit_log(tenant TEXT NOT NULL, idx {big} NOT NULL, body {blob} NOT "
         f"NULL, leaf {blob} NOT NULL, PRIMARY KEY(tenant, idx))", ())]
    for tenant, idx, n, bodies, sizes, leaves in rows:
        if idx == HEAD:
            statements.append(("INSERT INTO audit_head VALUES(?,?)", (tenant, n)))
            continue
        at = 0
        for i, size in enumerate(int(x) for x in sizes.split(",")):
            statements.append(("INSERT INTO audit_log VALUES(?,?,?,?)", (
                tenant, idx + i, bytes(bodies[at:at + size]),
                bytes(leaves[32 * i:32 * i + 32]))))
            at += size
    statements += [("DROP TABLE audit_bundles", ()),
                   ("DELETE FROM meta WHERE key='addon:audit_bundles'", ())]
    raw.run(*statements)


def test_a_schema_7_log_moves_to_bundles_and_still_verifies(backend: Backend,
                                                            tmp_path: Path) -> None:
    key = tmp_path / "audit.key"

    async def before() -> object:
        store = backend.new(FakeClock())
        await store.open()
        try:
            log = AuditLog(store, key_path=key, clock=FakeClock())
            await log.append(T, [_event(i) for i in range(8)])
            await log.append(T, [_event(i) for i in range(8, 12)])
            await log.append("globex", [_event(0)])
            return await log.checkpoint(T)
        finally:
            await store.aclose()

    published = asyncio.run(before())
    _as_schema_7(backend)
    assert Raw(backend).run(("SELECT count(*) FROM audit_log", ()))[0][0] == 13

    async def after() -> None:
        store = backend.new(FakeClock())
        await store.open()  # the add-on moves the log
        try:
            log = AuditLog(store, key_path=key, clock=FakeClock())
            assert await store.audit_tenants() == ["acme", "globex"]
            assert await store.audit_size(T) == 12
            report = await verify_log(log, T, published=[published])  # type: ignore[list-item]
            assert report.size == 12 and report.checkpoints == 2
            rows = await store.audit_entries(T, 5, 3)
            assert [(r.index, r.body) for r in rows] == [(i, _event(i).encode())
                                                         for i in (5, 6, 7)]
            proof = await log.prove(T, 7)
            check_inclusion(proof, public_key=log.public_key)
            await log.append(T, [_event(12)])
            row = await store.audit_entry(T, 12)
            assert row is not None and row.leaf == entry_leaf(T, 12, _event(12).encode())
            assert (await verify_log(log, T, published=[published])).size == 13  # type: ignore[list-item]
        finally:
            await store.aclose()

    asyncio.run(after())
    tables = Raw(backend).run((
        "SELECT count(*) FROM audit_bundles WHERE idx<?", (HEAD,)))
    assert tables[0][0] == 12 + 1 + 1  # one bundle per moved entry, one for the new append
