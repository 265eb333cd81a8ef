"""The Merkle proofs against every transparency-dev/merkle test vector (tests/data/merkle,
Apache-2.0, see its LICENSE file), and generated proofs against the verifiers."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convoy import AuditProofError
from convoy.audit import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    entry_leaf,
    inclusion_proof,
    leaf_hash,
    node_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)
from convoy.audit._merkle import entry_leaves

VECTORS = Path(__file__).parent / "data" / "merkle"


def _cases(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json"))


def _b64(s: str) -> bytes:
    return base64.b64decode(s)


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_every_vector_is_collected() -> None:
    # A glob that silently found nothing would pass every parametrised case below.
    assert len(_cases("inclusion")) + len(_cases("consistency")) == 196
    assert (VECTORS / "LICENSE-transparency-dev-merkle-Apache-2.0").is_file()


@pytest.mark.parametrize("path", _cases("inclusion"), ids=lambda p: str(p.relative_to(VECTORS)))
def test_inclusion_vector(path: Path) -> None:
    v = _load(path)
    args = (_b64(v["leafHash"]), v["leafIdx"], v["treeSize"], [_b64(p) for p in v["proof"] or ()],
            _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(AuditProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", _cases("consistency"),
                         ids=lambda p: str(p.relative_to(VECTORS)))
def test_consistency_vector(path: Path) -> None:
    v = _load(path)
    args = (v["size1"], v["size2"], [_b64(p) for p in v["proof"] or ()], _b64(v["root1"]),
            _b64(v["root2"]))
    if v["wantErr"]:
        with pytest.raises(AuditProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_hashing_is_rfc6962() -> None:
    assert EMPTY_ROOT.hex() == \
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"") == __import__("hashlib").sha256(b"\x00").digest()
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert tree_root([a, b]) == __import__("hashlib").sha256(b"\x01" + a + b).digest()
    c = leaf_hash(b"c")
    assert tree_root([a, b, c]) == node_hash(node_hash(a, b), c)


def test_generated_proofs_verify_and_frontier_matches() -> None:
    leaves = [leaf_hash(str(i).encode()) for i in range(70)]
    frontier = Frontier()
    roots = [EMPTY_ROOT]
    for leaf in leaves:
        frontier.append(leaf)
        roots.append(frontier.root())
    for n in range(1, 71):
        assert roots[n] == tree_root(leaves[:n])
        for i in range(n):
            verify_inclusion(leaves[i], i, n, inclusion_proof(leaves, i, n), roots[n])
        for m in range(1, n + 1):
            verify_consistency(m, n, consistency_proof(leaves, m, n), roots[m], roots[n])


def test_generated_proofs_reject_tampering() -> None:
    leaves = [leaf_hash(str(i).encode()) for i in range(13)]
    root = tree_root(leaves)
    proof = inclusion_proof(leaves, 5, 13)
    with pytest.raises(AuditProofError):
        verify_inclusion(leaves[6], 5, 13, proof, root)
    with pytest.raises(AuditProofError):
        verify_inclusion(leaves[5], 5, 13, proof[:-1], root)
    cons = consistency_proof(leaves, 6, 13)
    with pytest.raises(AuditProofError):
        verify_consistency(6, 13, cons, tree_root(leaves[:6]), tree_root(leaves[:12]))
    with pytest.raises(AuditProofError, match="no leaf"):
        inclusion_proof(leaves, 13, 13)


@settings(max_examples=200, deadline=None)
@given(tenant=st.text(max_size=20), first=st.integers(0, 2**63 - 1000),
       bodies=st.lists(st.binary(max_size=300), max_size=8))
def test_the_leaves_of_an_append_are_each_entrys_leaf(tenant: str, first: int,
                                                       bodies: list[bytes]) -> None:
    assert entry_leaves(tenant, first, bodies) == [
        entry_leaf(tenant, first + i, body) for i, body in enumerate(bodies)]
