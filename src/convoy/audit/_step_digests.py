"""The digests every model step takes (its prompt, its response), written by pydantic's
encoder from dicts built in sorted key order: byte for byte :func:`~convoy.audit.digest`
of ``[m.to_dict() for m in messages]`` and of ``response.to_dict()``, which they fall back
to for a value the fast form does not cover (a field that is not text, a cost that is not
a finite number)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic_core import to_json

from convoy.audit._event import digest
from convoy.audit._merkle import sha256
from convoy.models._messages import Message, ModelResponse, ToolCall


def _sha(data: bytes) -> str:
    return "sha256:" + sha256(data).hexdigest()


def _calls(calls: Sequence[ToolCall]) -> list[dict[str, str]] | None:
    out = []
    for c in calls:
        if type(c.arguments) is not str or type(c.id) is not str or type(c.name) is not str:
            return None
        out.append({"arguments": c.arguments, "id": c.id, "name": c.name})
    return out


def _message(m: Message) -> dict[str, Any] | None:
    """``m.to_dict()`` with its keys in sorted order, if every value is text."""
    content, role = m.content, m.role
    if type(role) is not str or (content is not None and type(content) is not str):
        return None
    d: dict[str, Any] = {"content": content, "role": role}
    if m.tool_call_id is not None:
        if type(m.tool_call_id) is not str:
            return None
        d["tool_call_id"] = m.tool_call_id
    if m.tool_calls:
        calls = d["tool_calls"] = _calls(m.tool_calls)
        if calls is None:
            return None
    p = m.provenance
    if p is not None and p.tainted:
        label = d["untrusted"] = p.label
        if type(label) is not str:
            return None
    return d


def prompt_digest(messages: Sequence[Message]) -> str:
    """``digest([m.to_dict() for m in messages])``."""
    out = []
    for m in messages:
        d = _message(m)
        if d is None:
            return digest([m.to_dict() for m in messages])
        out.append(d)
    try:
        return _sha(to_json(out))
    except ValueError:  # text that is not UTF-8: as the general encoder fails
        return digest([m.to_dict() for m in messages])


def response_digest(r: ModelResponse) -> str:
    """``digest(r.to_dict())``. The cost is written by ``repr`` (``json.dumps``'s form of a
    finite float), not by pydantic: a call's cost is often below the range where both
    write floats alike (``1.35e-05`` USD)."""
    u = r.usage
    cost = r.cost
    head = '{"cached":true,' if r.cached else "{"
    ok = True
    if cost:
        t = type(cost)
        if t is int or (t is float and cost - cost == 0.0):
            head += '"cost":' + repr(cost) + ","
        else:
            ok = False
    d: dict[str, Any] = {}
    if r.finish_reason is not None:
        d["finish"] = r.finish_reason
    d["in"] = u.input_tokens
    d["model"] = r.model
    d["out"] = u.output_tokens
    if r.text is not None:
        d["text"] = r.text
    ok = (ok and type(u.input_tokens) is int and type(u.output_tokens) is int
          and type(r.model) is str and (r.text is None or type(r.text) is str)
          and (r.finish_reason is None or type(r.finish_reason) is str))
    if r.tool_calls:
        calls = d["tool_calls"] = _calls(r.tool_calls)
        ok = ok and calls is not None
    if ok:
        try:
            tail = to_json(d)  # "{...}": never empty ("in", "model", "out")
        except ValueError:
            return digest(r.to_dict())
        h = sha256(head.encode())
        h.update(memoryview(tail)[1:])
        return "sha256:" + h.hexdigest()
    return digest(r.to_dict())
