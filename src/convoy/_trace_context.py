"""The trace a session's spans and audit entries are in: W3C ``traceparent`` headers, and
the ids a trace derived from a session's journal has (the same at every reading and in
every process, so the spans ``convoy trace`` derives and the entries the audit log keeps
name one trace). Kept apart from :mod:`convoy.observability`, which the audit log does
without."""

from __future__ import annotations

from collections.abc import Mapping
from hashlib import blake2b

#: The session header live tracing keeps a session's trace in (W3C ``traceparent`` form).
TRACE_HEADER = "convoy.trace"
_HEX = frozenset("0123456789abcdef")


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """``(trace id, span id)`` of a W3C ``traceparent`` header (lowercase hex), or
    ``None``."""
    if not value:
        return None
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    trace_id, span_id = parts[1].lower(), parts[2].lower()
    if not (_HEX.issuperset(trace_id) and _HEX.issuperset(span_id)):
        return None
    return (trace_id, span_id) if trace_id.strip("0") and span_id.strip("0") else None


def trace_ids(headers: Mapping[str, str], session_id: str) -> tuple[str, str, str | None]:
    """``(trace id, session span id, its parent's id)`` of a session's derived trace: the
    ids live tracing kept in its ``convoy.trace`` header (a run traced live), else a span
    of its caller's trace (its ``traceparent`` header), else a trace of its own; derived
    from the session id, the same at every reading and in every process."""
    kept = parse_traceparent(headers.get(TRACE_HEADER))
    caller = parse_traceparent(headers.get("traceparent"))
    parent = caller[1] if caller is not None else None
    if kept is not None:
        return kept[0], kept[1], parent if caller and caller[0] == kept[0] else None
    if caller is not None:
        return caller[0], derived_id(caller[0], session_id, "session"), parent
    trace_id = derived_id("convoy.session", session_id, size=16)
    return trace_id, derived_id(trace_id, "session"), None


def trace_id_of(headers: Mapping[str, str], session_id: str) -> str:
    """The first of :func:`trace_ids` (what an audit entry needs, at one hash)."""
    if TRACE_HEADER not in headers and "traceparent" not in headers:
        return derived_id("convoy.session", session_id, size=16)
    return trace_ids(headers, session_id)[0]


def step_span_id(trace_id: str, key: str) -> str:
    """The id of the derived span of the step at ``key`` (the parent of the spans of its
    retry attempts, kept as they ran)."""
    return derived_id(trace_id, key)


def derived_id(*parts: str, size: int = 8) -> str:
    """A span id (``size`` 8) or trace id (16) derived from ``parts``."""
    return blake2b("\x1f".join(parts).encode(), digest_size=size).hexdigest()


def decision_span_id(trace_id: str, task_id: str, at: float) -> str:
    """The span id of the decision on human task ``task_id`` made at ``at`` (the same
    whether live tracing recorded it as it was made or it is derived from the journal)."""
    return derived_id(trace_id, "decision", task_id, repr(float(at)))


__all__ = ["TRACE_HEADER", "decision_span_id", "derived_id", "parse_traceparent",
           "step_span_id", "trace_id_of", "trace_ids"]
