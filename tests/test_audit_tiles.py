"""Proofs built from kept tile roots and a few tiles' leaves equal the proofs built from
every leaf; a tampered tile root is caught by the check of the proof and rebuilt."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from convoy.audit import (
    AuditEvent,
    AuditLog,
    check_inclusion,
    consistency_proof,
    inclusion_proof,
    tree_root,
    verify_consistency,
)
from convoy.audit._tiles import TILE
from convoy.stores import SQLiteStore

from .conftest import FakeClock

N = 2 * TILE + 700


@pytest.fixture
async def log(tmp_path: Path) -> AuditLog:
    store = SQLiteStore(tmp_path / "c.db", clock=FakeClock())
    await store.open()
    alog = AuditLog(store, key_path=tmp_path / "k", clock=FakeClock())
    events = [AuditEvent(kind="effect", status="ok", at=float(i), step_key=str(i))
              for i in range(N)]
    await alog.append("acme", events)
    return alog


async def test_proofs_from_tiles_equal_proofs_from_every_leaf(log: AuditLog) -> None:
    try:
        cp = await log.checkpoint("acme")  # keeps the tile roots
        leaves = await log.store.audit_leaves("acme", N)
        for index in (0, 1, TILE - 1, TILE, TILE + 1, 2 * TILE - 1, 2 * TILE, N - 2, N - 1):
            doc = await log.prove("acme", index)
            assert doc["tree_size"] == N
            check_inclusion(doc, public_key=cp.public_key)
            want = inclusion_proof(leaves, index, N)
            assert [base64.b64decode(h) for h in doc["proof"]] == want
        for size1 in (1, 5, TILE - 1, TILE, TILE + 3, 2 * TILE, N - 1, N):
            proof = await log.consistency("acme", size1, N)
            assert proof == consistency_proof(leaves, size1, N)
            verify_consistency(size1, N, proof, tree_root(leaves[:size1]), cp.root)
    finally:
        await log.store.aclose()


async def test_a_tampered_tile_root_is_rebuilt(log: AuditLog) -> None:
    try:
        cp = await log.checkpoint("acme")
        await log.store.kv_put("convoy.audit.tiles/acme", "0", "A" * 43 + "=")  # 32 zeros
        doc = await log.prove("acme", 1500)  # the path uses tile 0's root
        check_inclusion(doc, public_key=cp.public_key)
    finally:
        await log.store.aclose()
