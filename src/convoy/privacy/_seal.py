"""Sealed values: personal data encrypted under its subject's key (AES-256-GCM, a random
96-bit nonce each time), with associated data that binds it to where it belongs (tenant,
session, step or state key), so a sealed value moved elsewhere does not open.

A sealed value is JSON text that stands where the plain value was:
``{"$sealed": "<label>", "v": 2, "d": "<base64 of nonce and ciphertext>"}``, the label naming
the subject's key (:func:`~convoy.privacy._keys.key_label`); format 1 (earlier versions)
named the subject itself, and is read as before.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import TYPE_CHECKING, Any

from convoy._errors import UserError
from convoy.stores._protocol import SEALED_PREFIX
from convoy.stores._rows import damaged

if TYPE_CHECKING:
    from convoy.privacy._keys import SubjectKey



def is_sealed(text: str | None) -> bool:
    return text is not None and text.startswith(SEALED_PREFIX)


def sealed_label(text: str, where: str = "") -> tuple[str, int]:
    """The label a sealed value names its key by, and the value's format (``where``: its
    associated data, named in the error a damaged one gives)."""
    env = _envelope(text, where)
    version = env.get("v")
    if version not in (1, 2):
        raise UserError(f"a sealed value has format {version!r}; this Convoy reads formats 1 "
                        "and 2 (upgrade Convoy)")
    return str(env["$sealed"]), int(version)


def _envelope(text: str, where: str = "") -> dict[str, Any]:
    """A sealed value's envelope: a JSON object with its key's label and its data, or a
    one-line error naming ``where`` it is (a text that starts as one but is not: the store
    was edited). The text is never quoted: an opened layer holds personal data."""
    env = envelope_of(text)
    if env is None:
        raise damaged(f"a sealed value{f' ({where})' if where else ''}",
                      "it is damaged: not the JSON of a sealed envelope")
    return env


def envelope_of(text: str) -> dict[str, Any] | None:
    """``text``'s sealed envelope, if it is one: a JSON object with a string label
    (``$sealed``) and string data (``d``)."""
    try:
        env = json.loads(text)
    except ValueError:
        return None
    if not isinstance(env, dict) or not isinstance(env.get("$sealed"), str) or \
            not isinstance(env.get("d"), str):
        return None
    return env


def seal(key: SubjectKey, aad: str, text: str) -> str:
    nonce = secrets.token_bytes(12)
    data = base64.b64encode(nonce + key.aead.encrypt(nonce, text.encode(), aad.encode()))
    return json.dumps({"$sealed": key.label, "v": 2, "d": data.decode()},
                      separators=(",", ":"))


def unseal(key: SubjectKey, aad: str, text: str) -> str:
    from cryptography.exceptions import InvalidTag

    env = _envelope(text, aad)
    sealed_label(text, aad)  # a format this Convoy reads
    try:
        raw = base64.b64decode(env["d"], validate=True)
    except ValueError:
        raise damaged(f"a sealed value ({aad})", "it is damaged: its data is not base64"
                      ) from None
    try:
        return key.aead.decrypt(raw[:12], raw[12:], aad.encode()).decode()
    except (InvalidTag, ValueError):  # (ValueError: a nonce cut short, not UTF-8)
        raise damaged(f"a sealed value ({aad})", "it does not open with its subject's key "
                      "(it was moved or altered)") from None


def session_aad(tenant: str, session_id: str, part: str) -> str:
    return f"convoy/v1/{tenant}/session/{session_id}/{part}"


def step_aad(tenant: str, session_id: str, key: str) -> str:
    return f"convoy/v1/{tenant}/session/{session_id}/step/{key}"


def spans_aad(tenant: str, session_id: str, key: str) -> str:
    """Of a chunk of a session's spans in the embedded trace store (``key``: the chunk's)."""
    return f"convoy/v1/{tenant}/session/{session_id}/spans/{key}"


def signal_aad(tenant: str, session_id: str, name: str) -> str:
    """Of the payload of a signal sent to a session (``name``: the signal's)."""
    return f"convoy/v1/{tenant}/session/{session_id}/signal/{name}"


def state_aad(tenant: str, namespace: str, key: str, session_id: str | None,
              step_key: str | None) -> str:
    return f"convoy/v1/{tenant}/state/{namespace}/{key}/{session_id}/{step_key}"


__all__ = ["is_sealed", "seal", "sealed_label", "session_aad", "signal_aad", "spans_aad",
           "state_aad", "step_aad", "unseal"]
