"""What a third party runs on a published inclusion proof: no store, only hashes and the
signer's public key."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from convoy._errors import AuditProofError
from convoy.audit._checkpoint import Checkpoint
from convoy.audit._event import AuditEvent
from convoy.audit._merkle import entry_leaf
from convoy.audit._proofs import verify_inclusion


def check_inclusion(doc: Any, *, public_key: str | None = None) -> AuditEvent:
    """Check a proof made by :meth:`AuditLog.prove <convoy.audit.AuditLog.prove>`: the
    checkpoint's signature (by ``public_key``, base64, when given: pin it), that the entry
    hashes to the leaf at its index, and that the path leads to the signed root. Returns
    the entry's event; raises :class:`~convoy.AuditProofError` if anything does not hold."""
    try:
        tenant, index = str(doc["tenant"]), int(doc["index"])
        body = base64.b64decode(doc["entry"], validate=True)
        proof = [base64.b64decode(h, validate=True) for h in doc["proof"]]
        size = int(doc["tree_size"])
        cp = Checkpoint.from_dict(doc["checkpoint"])
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        raise AuditProofError(f"not a Convoy inclusion proof: {e}") from None
    cp.check(public_key)
    if cp.tenant != tenant or cp.size != size:
        raise AuditProofError("the proof and its checkpoint name different logs or sizes")
    verify_inclusion(entry_leaf(tenant, index, body), index, size, proof, cp.root)
    return AuditEvent.decode(body)
