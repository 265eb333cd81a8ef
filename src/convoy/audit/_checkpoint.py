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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from convoy.audit._needs import MISSING_CRYPTOGRAPHY

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
except ImportError as e:  # the extra is not installed
    raise ImportError(MISSING_CRYPTOGRAPHY) from e

from convoy._errors import AuditProofError, UserError
from convoy._text import TOO_DEEP, json_type, readable_validation_error, strict_json
from convoy.audit._keys import key_id, public_key_from_text, public_key_text

HEADER = "convoy-audit-checkpoint/v1"
#: A root is a SHA-256 hash; an Ed25519 signature is 64 bytes.
_ROOT_BYTES, _SIGNATURE_BYTES = 32, 64


def _base64_of(n: int, what: str) -> AfterValidator:
    def check(text: str) -> str:
        try:
            raw = base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            raise _wrong(f"not base64 (it holds {what}, {n} bytes, in base64)") from None
        if len(raw) != n:
            raise _wrong(f"{len(raw)} bytes in base64, not the {n} of {what}")
        return text

    return AfterValidator(check)


def _wrong(message: str) -> PydanticCustomError:
    """A field's error, said as is (no "Value error, " before it)."""
    return PydanticCustomError("checkpoint_field", message)


def _public_key(text: str) -> str:
    try:
        public_key_from_text(text)
    except UserError:
        raise _wrong("not an Ed25519 public key (its 32 bytes, in base64)") from None
    return text


def pinned(public_key: object) -> list[str]:
    """The public keys (base64) ``public_key`` pins: one, several, or none for ``None``
    (the checkpoint's own key is then trusted). An empty string or list pins no key, and
    would trust any signer: refused, as anything but text is."""
    if public_key is None:
        return []
    keys = [public_key] if isinstance(public_key, str) else \
        list(public_key) if isinstance(public_key, list | tuple) else None
    if keys is None or not all(isinstance(k, str) for k in keys):
        raise UserError(f"public_key: give a public key's base64 text, a list of them, or "
                        f"None, not {type(public_key).__name__}")
    if not keys or "" in keys:
        raise UserError("public_key: an empty key or list pins no key, so any signer would "
                        "pass; give the tenant's public key (base64), or several, or None "
                        "to check against the key the checkpoint names")
    return keys


class Published(BaseModel):
    """The published form of a checkpoint (:meth:`Checkpoint.to_dict`), field by field as
    its JSON types: strict, since a third party hands it over (a size of ``"3"``, ``-1``,
    ``3.0`` or ``true``, a signature of ``null`` are no checkpoint's). Other fields are
    ignored (a later version may add some)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    format: Literal["convoy-audit-checkpoint/v1"]
    tenant: Annotated[str, Field(min_length=1)]
    size: Annotated[int, Field(ge=0, lt=2**63)]  # (a log's indexes are 8 bytes)
    root: Annotated[str, _base64_of(_ROOT_BYTES, "a SHA-256 root hash")]
    timestamp: Annotated[float, Field(allow_inf_nan=False)]
    public_key: Annotated[str, AfterValidator(_public_key)]
    key_id: str | None = None  # (derived from public_key; checked against it if given)
    signature: Annotated[str, _base64_of(_SIGNATURE_BYTES, "an Ed25519 signature")]

    @field_validator("key_id")
    @classmethod
    def _key_id_is_the_keys(cls, value: str | None, info: ValidationInfo) -> str | None:
        public = info.data.get("public_key")  # (absent: public_key's own error says why)
        if value is not None and public is not None and value != key_id(public):
            raise _wrong(f"not the id of its public_key (that is {key_id(public)})")
        return value


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
        """The bytes that are signed (the time as a float's ``repr``: ``1800000000.0``, as
        it reads back from JSON, for a clock that returns an integer too)."""
        return (f"{HEADER}\n{tenant}\n{size}\n{base64.b64encode(root).decode()}\n"
                f"{float(timestamp)!r}\n").encode()

    @classmethod
    def sign(cls, key: Ed25519PrivateKey, *, tenant: str, size: int, root: bytes,
             timestamp: float) -> Checkpoint:
        """Sign a checkpoint with ``key``."""
        timestamp = float(timestamp)
        sig = key.sign(cls.text(tenant, size, root, timestamp))
        return cls(tenant=tenant, size=size, root=root, timestamp=timestamp,
                   public_key=public_key_text(key.public_key()),
                   signature=base64.b64encode(sig).decode())

    @property
    def key_id(self) -> str:
        """A short name of the signing key."""
        return key_id(self.public_key)

    def check(self, public_key: str | Sequence[str] | None = None) -> None:
        """Check the signature, with ``public_key`` (base64) when given (pin it: a
        checkpoint's own key proves only that someone signed it), else the checkpoint's.
        Several keys (a rotation's old and new ones): it must be signed by one of them."""
        keys = pinned(public_key)
        for k in keys:
            public_key_from_text(k)  # a malformed pin is the caller's error
        if keys and self.public_key not in keys:
            expected = f"the expected key {key_id(keys[0])}" if len(keys) == 1 else \
                f"any of the expected keys ({', '.join(key_id(k) for k in keys)})"
            raise AuditProofError(
                f"checkpoint of size {self.size} of tenant {self.tenant!r} is signed by key "
                f"{self.key_id}, not by {expected}: if your own records (not this store) "
                f"say that key is the tenant's, before or after a key rotation, pin it too: "
                f"--public-key {self.public_key}")
        key = public_key_from_text(self.public_key)
        try:
            signature = base64.b64decode(self.signature)
            try:
                key.verify(signature, self.text(self.tenant, self.size, self.root,
                                                self.timestamp))
            except InvalidSignature:
                t = self.timestamp
                if not (isinstance(t, int | float) and float(t).is_integer()):
                    raise
                # (an earlier Convoy signed a whole-number time as an integer: 1800000000)
                key.verify(signature, self.text(self.tenant, self.size, self.root,
                                                self.timestamp).rsplit(b"\n", 2)[0]
                           + f"\n{int(t)}\n".encode())
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
        """Read the published form; :class:`~convoy.UserError` naming the field at fault
        (missing, of another JSON type, out of range) if it is not one."""
        if not isinstance(d, dict):
            raise UserError(f"not a Convoy audit checkpoint ({HEADER}): expected a JSON "
                            f"object, got {json_type(d)}")
        try:
            doc = Published.model_validate(d)
        except ValidationError as e:
            raise UserError(f"not a Convoy audit checkpoint ({HEADER}): "
                            f"{readable_validation_error(e)}") from None
        return cls.from_published(doc)

    @classmethod
    def from_published(cls, doc: Published) -> Checkpoint:
        """The checkpoint of a validated :class:`Published` form."""
        return cls(tenant=doc.tenant, size=doc.size, root=base64.b64decode(doc.root),
                   timestamp=doc.timestamp, public_key=doc.public_key,
                   signature=doc.signature)

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        """Read :meth:`to_json`'s output."""
        try:
            d = strict_json(text)
        except ValueError as e:  # (NaN, 1e999: said so)
            if str(e) == TOO_DEEP:
                raise UserError("a checkpoint must be a JSON object: this one nests arrays "
                                "or objects thousands of levels deep") from None
            raise UserError(f"a checkpoint must be JSON: {e}") from None
        return cls.from_dict(d)
