"""What one audit entry says: an :class:`AuditEvent`, encoded as canonical JSON.

An event holds hashes and references, never raw prompts, outputs, arguments or values
(those may hold personal data): :func:`digest` fingerprints a value so a holder of the
original can show it is the one the log committed to.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, Literal, get_args

from pydantic import BaseModel
from pydantic_core import to_json

from convoy._errors import AuditError
from convoy.audit._merkle import sha256

#: The format of an encoded event; readers refuse a newer one.
EVENT_FORMAT = 1

AuditKind = Literal["agent_decision", "model_call", "tool_call", "handoff", "effect",
                    "state_write", "state_read", "policy_refusal", "approval", "human_decision",
                    "config_change", "session", "erasure", "signal"]
_KINDS = frozenset(get_args(AuditKind))


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
        hashes: fingerprints by name: a step's ``"blake2b:<hex>"`` input fingerprint
            (``prompt``, ``args``, ``input``) and ``"sha256:<hex>"`` of its journaled
            result (``output``, ``result``, ``payload``); ``"sha256:<hex>"``
            (:func:`digest`) of a decision or a ``config``. In a data subject's session
            each is ``"hmac-sha256:<hex>"`` of that (:func:`keyed`).
        refs: references by name: ``trace_id``, ``task_id``, ``config``, ``decision``,
            ``tokens``, ``version``.
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
            event = cls(**d)
            _check_fields(event)
            return event
        except (ValueError, TypeError, KeyError) as e:
            raise AuditError(f"not an audit event of format {EVENT_FORMAT}: {e}") from None
        except RecursionError:
            raise AuditError(f"not an audit event of format {EVENT_FORMAT}: it nests arrays "
                             "and objects deeper than JSON can be read") from None


def _check_fields(e: AuditEvent) -> None:
    """``TypeError`` unless the fields of ``e`` (decoded) are what an encoded event holds:
    a known kind, text, a number for ``at``, maps of text."""
    if e.kind not in _KINDS:
        raise TypeError(f"unknown kind {e.kind!r:.40}")
    if type(e.at) not in (int, float) or e.at - e.at != 0:
        raise TypeError("'at' is not a number")
    for name in ("status", "session_id", "step_key", "actor", "target"):
        value = getattr(e, name)
        if not (type(value) is str or (value is None and name != "status")):
            raise TypeError(f"{name!r} is not text")
    for name in ("hashes", "refs"):
        value = getattr(e, name)
        if not isinstance(value, dict) or \
                not all(type(v) is str for v in value.values()):
            raise TypeError(f"{name!r} is not a map of text")


def encode_event(kind: str, status: str, at: float, session_id: str | None,
                 step_key: str | None, actor: str | None, target: str | None,
                 hashes: Mapping[str, str], refs: Mapping[str, str]) -> bytes:
    """:meth:`AuditEvent.encode` of an event with these fields, without building it (what
    the interceptor appends for every step): byte for byte what ``json.dumps(...,
    sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` of the event's dict gives.

    The dict is built in sorted key order and written by pydantic's (Rust) encoder, whose
    output is the same for text, integers, and floats from 1e-4 to 1e16 (a timestamp);
    anything else (a field that is not text, another ``at``) takes the general encoder."""
    t = type(at)
    if (t is float and (_LOW <= abs(at) < _HIGH or at == 0.0)) or t is int:
        ok = type(kind) is str and type(status) is str
        d: dict[str, Any] = {}
        if actor is not None:
            d["actor"] = actor
            ok = ok and type(actor) is str
        d["at"] = at
        if hashes:
            h = d["hashes"] = _text_map(hashes)
            ok = ok and h is not None
        d["kind"] = kind
        if refs:
            r = d["refs"] = _text_map(refs)
            ok = ok and r is not None
        if session_id is not None:
            d["session_id"] = session_id
            ok = ok and type(session_id) is str
        d["status"] = status
        if step_key is not None:
            d["step_key"] = step_key
            ok = ok and type(step_key) is str
        if target is not None:
            d["target"] = target
            ok = ok and type(target) is str
        d["v"] = EVENT_FORMAT
        if ok:
            try:
                return to_json(d)
            except ValueError:  # text that is not UTF-8 (a lone surrogate): as json fails
                pass
    d = {"v": EVENT_FORMAT, "kind": kind, "status": status, "at": at}
    for name, value in (("session_id", session_id), ("step_key", step_key),
                        ("actor", actor), ("target", target)):
        if value is not None:
            d[name] = value
    if hashes:
        d["hashes"] = dict(hashes)
    if refs:
        d["refs"] = dict(refs)
    return _canonical(d)


#: Where pydantic writes a float as ``json.dumps`` (``repr``) does: ``1e-4 <= |x| < 1e16``
#: (below, one writes ``1e-05``, the other ``0.00001``).
FLOAT_RANGE = (1e-4, 1e16)
_LOW, _HIGH = FLOAT_RANGE


def _text_map(m: Mapping[str, str]) -> Mapping[str, str] | None:
    """``m`` in sorted key order, if it maps text to text (else ``None``)."""
    if len(m) == 1:
        for k, v in m.items():
            return m if type(k) is str and type(v) is str else None
    items = sorted(m.items()) if all(type(k) is str for k in m) else ()
    for _, v in items:
        if type(v) is not str:
            return None
    return dict(items) if items else None


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


def digest(value: Any, mac: bytes | None = None) -> str:
    """``"sha256:<hex>"`` of ``value``'s canonical JSON (text and bytes are hashed as they
    are): what an audit entry keeps instead of the value; with ``mac`` (a data subject's
    session), that :func:`keyed`."""
    if isinstance(value, str):
        data = value.encode()
    elif isinstance(value, bytes):
        data = value
    else:
        data = _canonical(value)
    plain = "sha256:" + sha256(data).hexdigest()
    return plain if mac is None else keyed(mac, plain)


def keyed(mac: bytes, hashed: str) -> str:
    """A hash of a data subject's session keyed with a key derived from the subject's own
    (:class:`~convoy.privacy._keys.SubjectKey`): ``"hmac-sha256:<hex>"`` of the plain hash
    (``"sha256:..."``, ``"blake2b:..."``). Whoever holds the key can check a value against
    it; nobody can once the subject is erased (a guessable value, an e-mail address, can no
    longer be tested against the log)."""
    return "hmac-sha256:" + hmac.new(mac, hashed.encode(), hashlib.sha256).hexdigest()
