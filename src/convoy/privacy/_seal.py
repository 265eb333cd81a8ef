"""Sealed values: personal data encrypted under its subject's key (AES-256-GCM, a random
96-bit nonce each time), with associated data that binds it to where it belongs (tenant,
session, step or state key), so a sealed value moved elsewhere does not open.

A sealed value is JSON text that stands where the plain value was:
``{"$sealed": "<subject>", "v": 1, "d": "<base64 of nonce and ciphertext>"}``.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import TYPE_CHECKING

from convoy._errors import UserError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_PREFIX = '{"$sealed"'


def is_sealed(text: str | None) -> bool:
    return text is not None and text.startswith(_PREFIX)


def sealed_subject(text: str) -> str:
    return str(json.loads(text)["$sealed"])


def seal(key: AESGCM, subject: str, aad: str, text: str) -> str:
    nonce = secrets.token_bytes(12)
    data = base64.b64encode(nonce + key.encrypt(nonce, text.encode(), aad.encode())).decode()
    return json.dumps({"$sealed": subject, "v": 1, "d": data}, separators=(",", ":"))


def unseal(key: AESGCM, aad: str, text: str) -> str:
    from cryptography.exceptions import InvalidTag

    env = json.loads(text)
    if env.get("v") != 1:
        raise UserError(f"a sealed value has version {env.get('v')!r}, not 1: upgrade Convoy")
    raw = base64.b64decode(env["d"])
    try:
        return key.decrypt(raw[:12], raw[12:], aad.encode()).decode()
    except InvalidTag:
        raise UserError(f"a sealed value ({aad}) does not open with its subject's key: it "
                        "was moved or altered") from None


def session_aad(tenant: str, session_id: str, part: str) -> str:
    return f"convoy/v1/{tenant}/session/{session_id}/{part}"


def step_aad(tenant: str, session_id: str, key: str) -> str:
    return f"convoy/v1/{tenant}/session/{session_id}/step/{key}"


def spans_aad(tenant: str, session_id: str, key: str) -> str:
    """Of a chunk of a session's spans in the embedded trace store (``key``: the chunk's)."""
    return f"convoy/v1/{tenant}/session/{session_id}/spans/{key}"


def state_aad(tenant: str, namespace: str, key: str, session_id: str | None,
              step_key: str | None) -> str:
    return f"convoy/v1/{tenant}/state/{namespace}/{key}/{session_id}/{step_key}"


__all__ = ["is_sealed", "seal", "sealed_subject", "session_aad", "spans_aad", "state_aad",
           "step_aad", "unseal"]
