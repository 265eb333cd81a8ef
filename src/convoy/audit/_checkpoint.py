"""Signed checkpoints: a tenant's tree size and root hash at a moment, signed with Ed25519.

The signed text is line-based, in the spirit of C2SP's ``tlog-checkpoint`` notes::

    convoy-audit-checkpoint/v1
    <tenant>
    <tree size>
    <root hash, base64>
    <timestamp, seconds since the epoch>

A checkpoint is published as JSON (:meth:`Checkpoint.to_json`): those fields, the signer's
public key and the signature, both base64.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from convoy.audit._needs import MISSING_CRYPTOGRAPHY

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
except ImportError as e:  # the extra is not installed
    raise ImportError(MISSING_CRYPTOGRAPHY) from e

from convoy._errors import AuditProofError, UserError
from convoy.audit._keys import key_id, public_key_from_text, public_key_text

HEADER = "convoy-audit-checkpoint/v1"


@dataclass(slots=True, frozen=True, kw_only=True)
class Checkpoint:
    """A signed statement that ``tenant``'s log had ``size`` entries with root ``root``."""

    tenant: str
    size: int
    root: bytes
    timestamp: float
    public_key: str
    signature: str

    @staticmethod
    def text(tenant: str, size: int, root: bytes, timestamp: float) -> bytes:
        """The bytes that are signed."""
        return (f"{HEADER}\n{tenant}\n{size}\n{base64.b64encode(root).decode()}\n"
                f"{timestamp!r}\n").encode()

    @classmethod
    def sign(cls, key: Ed25519PrivateKey, *, tenant: str, size: int, root: bytes,
             timestamp: float) -> Checkpoint:
        """Sign a checkpoint with ``key``."""
        sig = key.sign(cls.text(tenant, size, root, timestamp))
        return cls(tenant=tenant, size=size, root=root, timestamp=timestamp,
                   public_key=public_key_text(key.public_key()),
                   signature=base64.b64encode(sig).decode())

    @property
    def key_id(self) -> str:
        """A short name of the signing key."""
        return key_id(self.public_key)

    def check(self, public_key: str | None = None) -> None:
        """Check the signature, with ``public_key`` (base64) when given (pin it: a
        checkpoint's own key proves only that someone signed it), else the checkpoint's."""
        if public_key is not None:
            public_key_from_text(public_key)  # a malformed pin is the caller's error
        if public_key is not None and public_key != self.public_key:
            raise AuditProofError(f"checkpoint of size {self.size} is signed by key "
                                  f"{self.key_id}, not by the expected key {key_id(public_key)}")
        key = public_key_from_text(self.public_key)
        try:
            key.verify(base64.b64decode(self.signature),
                       self.text(self.tenant, self.size, self.root, self.timestamp))
        except (InvalidSignature, binascii.Error, ValueError):
            raise AuditProofError(f"checkpoint of size {self.size} of tenant {self.tenant!r} "
                                  "has an invalid signature") from None

    def to_dict(self) -> dict[str, Any]:
        """The published form (JSON-ready)."""
        return {"format": HEADER, "tenant": self.tenant, "size": self.size,
                "root": base64.b64encode(self.root).decode(), "timestamp": self.timestamp,
                "key_id": self.key_id, "public_key": self.public_key,
                "signature": self.signature}

    def to_json(self) -> str:
        """One line of JSON."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any) -> Checkpoint:
        """Read the published form; :class:`~convoy.UserError` if it is not one."""
        try:
            if d["format"] != HEADER:
                raise ValueError(f"format {d['format']!r}")
            return cls(tenant=str(d["tenant"]), size=int(d["size"]),
                       root=base64.b64decode(d["root"], validate=True),
                       timestamp=float(d["timestamp"]), public_key=str(d["public_key"]),
                       signature=str(d["signature"]))
        except (KeyError, TypeError, ValueError, binascii.Error) as e:
            raise UserError(f"not a Convoy audit checkpoint ({HEADER}): {e}") from None

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        """Read :meth:`to_json`'s output."""
        try:
            d = json.loads(text)
        except ValueError as e:
            raise UserError(f"a checkpoint must be JSON: {e}") from None
        except RecursionError:  # (nested deeper than the decoder goes)
            raise UserError("a checkpoint must be a JSON object: this one nests arrays or "
                            "objects thousands of levels deep") from None
        return cls.from_dict(d)
