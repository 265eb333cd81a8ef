"""Tamper-evident audit log: a per-tenant RFC 9162 Merkle tree of events (hashes and
references only), signed checkpoints, inclusion and consistency proofs.

- :class:`AuditEvent` is one entry; :func:`digest` fingerprints what it must not hold raw.
- :class:`AuditLog` appends to a store's logs, signs :class:`Checkpoint` s (Ed25519, key
  file generated on first use), proves an entry (:meth:`AuditLog.prove`) and that a log
  only grew between two checkpoints (:meth:`AuditLog.prove_consistency`), which a third
  party checks with :func:`check_inclusion` and :func:`check_consistency`.
- :func:`verify_log` re-derives a log and names the first bad entry.
- :class:`AuditInterceptor` appends an entry for every step of every session.
"""

from typing import TYPE_CHECKING, Any

from convoy.audit._event import AuditEvent, AuditKind, digest
from convoy.audit._merkle import (
    EMPTY_ROOT,
    Frontier,
    entry_leaf,
    leaf_hash,
    node_hash,
    tree_root,
)
from convoy.audit._proofs import (
    consistency_proof,
    inclusion_proof,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)

if TYPE_CHECKING:
    from convoy.audit._check import check_consistency, check_inclusion
    from convoy.audit._checkpoint import Checkpoint
    from convoy.audit._interceptor import AuditInterceptor
    from convoy.audit._keys import load_or_create_key
    from convoy.audit._log import AuditLog
    from convoy.audit._verify import VerifyReport, verify_log

# What signs or checks a signature needs the ``cryptography`` package (the ``audit``
# extra): imported on first use, so that ``import convoy`` (whose stores append entries
# with :func:`entry_leaf`) works without it, and ``from convoy.audit import AuditLog``
# without it says which extra to install.
_SIGNED = {"check_inclusion": "_check", "check_consistency": "_check",
           "Checkpoint": "_checkpoint",
           "AuditInterceptor": "_interceptor", "load_or_create_key": "_keys",
           "AuditLog": "_log", "VerifyReport": "_verify", "verify_log": "_verify"}


def __getattr__(name: str) -> Any:
    module = _SIGNED.get(name)
    if module is None:
        raise AttributeError(f"module 'convoy.audit' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"convoy.audit.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "EMPTY_ROOT",
    "AuditEvent",
    "AuditInterceptor",
    "AuditKind",
    "AuditLog",
    "Checkpoint",
    "Frontier",
    "VerifyReport",
    "check_consistency",
    "check_inclusion",
    "consistency_proof",
    "digest",
    "entry_leaf",
    "inclusion_proof",
    "leaf_hash",
    "load_or_create_key",
    "node_hash",
    "root_from_inclusion",
    "tree_root",
    "verify_consistency",
    "verify_inclusion",
    "verify_log",
]
