"""What one audit entry says: an :class:`AuditEvent`, encoded as canonical JSON.

An event holds hashes and references, never raw prompts, outputs, arguments or values
(those may hold personal data): :func:`digest` fingerprints a value so a holder of the
original can show it is the one the log committed to.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, Literal

from pydantic import BaseModel

from convoy._errors import AuditError

#: The format of an encoded event; readers refuse a newer one.
EVENT_FORMAT = 1

AuditKind = Literal["agent_decision", "model_call", "tool_call", "handoff", "effect",
                    "state_write", "state_read", "policy_refusal", "approval", "human_decision",
                    "config_change", "session", "erasure"]


@dataclass(slots=True, frozen=True, kw_only=True)
class AuditEvent:
    """One accountable thing that happened in a tenant.

    Attributes:
        kind: what happened (see :data:`AuditKind`).
        status: how it ended: ``"ok"``, an error type (``"ToolError"``), ``"denied"``,
            ``"approved"``, ``"rejected"``, ``"conflict"``, ...
        at: when, from the engine's clock (seconds since the epoch).
        session_id: the session it belongs to (``None`` for engine-wide events).
        step_key: the step's position in the session's call tree.
        actor: who acted: an agent, or the person who decided.
        target: what was acted on: a model, a tool, the receiving agent, a state key.
        hashes: ``"sha256:<hex>"`` fingerprints (:func:`digest`) by name: ``prompt``,
            ``output``, ``args``, ``payload``, ``value``, ``config``.
        refs: references by name: ``trace_id``, ``task_id``, ``approval``, ``version``.
    """

    kind: AuditKind
    status: str
    at: float
    session_id: str | None = None
    step_key: str | None = None
    actor: str | None = None
    target: str | None = None
    hashes: Mapping[str, str] = field(default_factory=dict)
    refs: Mapping[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The canonical bytes the log stores and hashes (sorted keys, no spaces, UTF-8)."""
        return encode_event(self.kind, self.status, self.at, self.session_id, self.step_key,
                            self.actor, self.target, self.hashes, self.refs)

    @classmethod
    def decode(cls, body: bytes) -> AuditEvent:
        """Read an encoded event; :class:`~convoy.AuditError` if it is not one."""
        try:
            d = json.loads(body)
            if not isinstance(d, dict) or d.pop("v") != EVENT_FORMAT:
                raise ValueError("unknown format")
            return cls(**d)
        except (ValueError, TypeError, KeyError) as e:
            raise AuditError(f"not an audit event of format {EVENT_FORMAT}: {e}") from None


def encode_event(kind: str, status: str, at: float, session_id: str | None,
                 step_key: str | None, actor: str | None, target: str | None,
                 hashes: Mapping[str, str], refs: Mapping[str, str]) -> bytes:
    """:meth:`AuditEvent.encode` of an event with these fields, without building it: the
    canonical JSON written key by key in sorted order (what the interceptor appends for
    every step). Byte for byte what ``json.dumps(..., sort_keys=True)`` of the event's dict
    gives, which it falls back to when a field is not text (or ``at`` not a finite
    number)."""
    t = type(at)
    if (t is float and at - at == 0.0) or t is int:  # finite: ``repr`` is JSON's form
        s = encode_basestring  # JSON's own quoting (C), as ``ensure_ascii=False`` quotes
        try:
            out = "{"
            if actor is not None:
                out += '"actor":' + s(actor) + ","
            out += '"at":' + repr(at)
            if hashes:
                out += ',"hashes":{' + ",".join([s(k) + ":" + s(v)
                                                 for k, v in sorted(hashes.items())]) + "}"
            out += ',"kind":' + s(kind)
            if refs:
                out += ',"refs":{' + ",".join([s(k) + ":" + s(v)
                                               for k, v in sorted(refs.items())]) + "}"
            if session_id is not None:
                out += ',"session_id":' + s(session_id)
            out += ',"status":' + s(status)
            if step_key is not None:
                out += ',"step_key":' + s(step_key)
            if target is not None:
                out += ',"target":' + s(target)
            return (out + _TAIL).encode()
        except TypeError:  # a field that is not text: the general encoder
            pass
    d: dict[str, Any] = {"v": EVENT_FORMAT, "kind": kind, "status": status, "at": at}
    for name, value in (("session_id", session_id), ("step_key", step_key),
                        ("actor", actor), ("target", target)):
        if value is not None:
            d[name] = value
    if hashes:
        d["hashes"] = dict(hashes)
    if refs:
        d["refs"] = dict(refs)
    return _canonical(d)


_TAIL = f',"v":{EVENT_FORMAT}}}'


def _canonical(value: Any) -> bytes:
    if _iterencode is None:  # no C accelerator: the stdlib's encoder, as configured
        return _ENCODER.encode(value).encode()
    return "".join(_iterencode(value, 0)).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.hex()
    return repr(value)


# Canonical JSON: sorted keys, no spaces, UTF-8, ``_plain`` for what JSON has no type for.
# The encoder is built once (``json.dumps`` builds one per call): a digest is taken for
# every model call and agent run.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            default=_plain)
_iterencode = None if c_make_encoder is None else c_make_encoder(
    {}, _plain, encode_basestring, None, ":", ",", True, False, True)


def digest(value: Any) -> str:
    """``"sha256:<hex>"`` of ``value``'s canonical JSON (text and bytes are hashed as they
    are): what an audit entry keeps instead of the value."""
    if isinstance(value, str):
        data = value.encode()
    elif isinstance(value, bytes):
        data = value
    else:
        data = _canonical(value)
    return "sha256:" + hashlib.sha256(data).hexdigest()
