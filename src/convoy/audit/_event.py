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
        d: dict[str, Any] = {"v": EVENT_FORMAT, "kind": self.kind, "status": self.status,
                             "at": self.at}
        for name in ("session_id", "step_key", "actor", "target"):
            value = getattr(self, name)
            if value is not None:
                d[name] = value
        if self.hashes:
            d["hashes"] = dict(self.hashes)
        if self.refs:
            d["refs"] = dict(self.refs)
        return _canonical(d)

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


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_plain).encode()


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
