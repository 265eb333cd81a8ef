"""What a third party runs on a published inclusion or consistency proof: no store, only
hashes and the signer's public key."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from convoy._errors import AuditProofError
from convoy._text import json_type
from convoy.audit._checkpoint import Checkpoint, Published
from convoy.audit._event import AuditEvent
from convoy.audit._log import CONSISTENCY_FORMAT, PROOF_FORMAT
from convoy.audit._merkle import HASH_SIZE, entry_leaf
from convoy.audit._proofs import verify_consistency, verify_inclusion


class _Proof(BaseModel):
    """The fields of a proof :meth:`AuditLog.prove` prints, as their JSON types (strict:
    an index of ``-1``, ``3.0`` or ``true`` is not a proof's)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    format: str
    tenant: str
    index: Annotated[int, Field(ge=0, lt=2**63)]  # (a log's indexes are 8 bytes)
    entry: str
    leaf_hash: str | None = None  # (recomputed from the entry; checked against it if given)
    tree_size: Annotated[int, Field(ge=1, le=2**63)]
    proof: list[str]
    checkpoint: Published  # (as strict: 'checkpoint.size' names a field at fault)


_M = TypeVar("_M", bound=BaseModel)


def _validated(model: type[_M], doc: Any, what: str, fmt: str) -> _M:
    """``doc`` as ``model``, or an :class:`~convoy.AuditProofError` naming the field at
    fault (``what``: "not a Convoy ... proof"; ``fmt``: the format it must declare)."""
    if not isinstance(doc, dict):
        raise AuditProofError(f"{what}: expected a JSON object, got {json_type(doc)}")
    try:
        p = model.model_validate(doc)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        msg = "expected a JSON object" if first["type"] == "model_type" else first["msg"]
        raise AuditProofError(f"{what}: {where!r}: {msg}") from None
    declared = getattr(p, "format", None)
    if declared != fmt:
        raise AuditProofError(f"{what}: 'format' is {declared!r}, not {fmt!r}")
    return p


_INCLUSION = "not a Convoy inclusion proof"
_CONSISTENCY = "not a Convoy consistency proof"


def _parse(doc: Any) -> _Proof:
    return _validated(_Proof, doc, _INCLUSION, PROOF_FORMAT)


def _base64(text: str, where: str, what: str, kind: str = _INCLUSION) -> bytes:
    """A field's base64; a proof that holds something else names the field (as ``_parse``
    names one of the wrong JSON type). ``kind``: "not a Convoy ... proof"."""
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise AuditProofError(f"{kind}: {where!r}: not base64 (it holds {what}, in "
                              "base64)") from None


def _hash(text: str, where: str, kind: str) -> bytes:
    """A SHA-256 hash of a proof (``where``: its field); one that is not 32 bytes of base64
    is a field out of range (the proof is malformed, not one that does not hold)."""
    h = _base64(text, where, "a SHA-256 hash", kind)
    if len(h) != HASH_SIZE:
        raise AuditProofError(f"{kind}: {where!r}: not a SHA-256 hash ({len(h)} bytes, not "
                              f"{HASH_SIZE})")
    return h


def _hashes(texts: Sequence[str], kind: str) -> list[bytes]:
    """A proof's path (its field ``proof``), each hash as :func:`_hash` reads it."""
    return [_hash(h, f"proof.{i}", kind) for i, h in enumerate(texts)]


def check_inclusion(doc: Any, *, public_key: str | Sequence[str] | None = None
                    ) -> AuditEvent:
    """Check a proof made by :meth:`AuditLog.prove <convoy.audit.AuditLog.prove>`: the
    checkpoint's signature (by ``public_key``, base64, when given: pin it; several keys,
    a rotation's old and new ones: by one of them), that the entry
    hashes to the leaf at its index, and that the path leads to the signed root. Returns
    the entry's event; raises :class:`~convoy.AuditProofError` if anything does not hold."""
    p = _parse(doc)
    body = _base64(p.entry, "entry", "the entry's body")
    proof = _hashes(p.proof, _INCLUSION)
    given_leaf = None if p.leaf_hash is None else _hash(p.leaf_hash, "leaf_hash", _INCLUSION)
    cp = Checkpoint.from_published(p.checkpoint)
    cp.check(public_key)
    if cp.tenant != p.tenant or cp.size != p.tree_size:
        raise AuditProofError("the proof and its checkpoint name different logs or sizes")
    if p.index >= p.tree_size:  # (its leaf would hash to nothing the path can reach)
        raise AuditProofError(f"entry index {p.index} is outside the proof's tree of "
                              f"{p.tree_size} entries")
    leaf = entry_leaf(p.tenant, p.index, body)
    if given_leaf is not None and given_leaf != leaf:
        # (said first: an entry altered in the proof is what a path that fails means)
        raise AuditProofError(f"entry {p.index} does not hash to the proof's leaf_hash: "
                              "the entry or the proof was altered")
    verify_inclusion(leaf, p.index, p.tree_size, proof, cp.root)
    return AuditEvent.decode(body)


class _Consistency(BaseModel):
    """The fields of a proof :meth:`AuditLog.prove_consistency
    <convoy.audit.AuditLog.prove_consistency>` prints, as their JSON types (strict)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    format: str
    tenant: str
    size1: Annotated[int, Field(ge=1, le=2**63)]
    size2: Annotated[int, Field(ge=1, le=2**63)]
    proof: list[str]
    checkpoint1: Published
    checkpoint2: Published


def check_consistency(doc: Any, *, public_key: str | Sequence[str] | None = None
                      ) -> tuple[Checkpoint, Checkpoint]:
    """Check a consistency proof: both checkpoints' signatures (by ``public_key``, base64,
    when given: pin it; several keys, a rotation's old and new ones: each checkpoint by
    one of them, so a proof across a rotation checks pinned), that they are of the
    proof's log and sizes, and that the proof shows the older log is the first part of
    the newer one. Returns the two checkpoints (compare the older with the one you hold);
    raises :class:`~convoy.AuditProofError` if anything does not hold."""
    p = _validated(_Consistency, doc, _CONSISTENCY, CONSISTENCY_FORMAT)
    proof = _hashes(p.proof, _CONSISTENCY)
    old, new = Checkpoint.from_published(p.checkpoint1), Checkpoint.from_published(p.checkpoint2)
    old.check(public_key)
    new.check(public_key)
    if {old.tenant, new.tenant} != {p.tenant} or (old.size, new.size) != (p.size1, p.size2):
        raise AuditProofError("the proof and its checkpoints name different logs or sizes")
    verify_consistency(p.size1, p.size2, proof, old.root, new.root)
    return old, new
