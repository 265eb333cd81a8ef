"""Spans as Convoy records them, and what they become for OpenTelemetry and the store.

A span is recorded as a :class:`SpanData` (a few slots, filled in place): starting one costs
a random id and a clock read, not the SDK's span machinery. When it ends it goes, as an
OpenTelemetry SDK :class:`~opentelemetry.sdk.trace.ReadableSpan`, to the SDK span
processors and exporters configured (OTLP, console, any ``SpanExporter``), and, as JSON,
to the embedded store (``convoy trace``).

Attributes follow the OpenTelemetry semantic conventions for generative AI
(:data:`SEMCONV_VERSION`); Convoy's own are under ``convoy.``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from convoy.observability._tracing import _Run

#: The OpenTelemetry semantic conventions followed: v1.41.0, the last release with the
#: generative-AI conventions (status: Development) in the main repository.
SEMCONV_VERSION = "1.41.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
#: Version of the JSON the store keeps spans in (``convoy trace``); format 1 is read too.
SPANS_FORMAT = 2

Attrs = dict[str, Any]


def new_id(bits: int) -> int:
    """A random non-zero id of ``bits`` bits (W3C trace context ids)."""
    return _bits(bits) or 1


_bits = random.getrandbits
time_ns = time.time_ns


class Shape:
    """What the spans of one kind, agent, model or tool share: name, span kind and
    attributes. Made once (``Tracing.shape``) and never changed, so the store encodes it
    once per process."""

    __slots__ = ("attrs", "json", "kind", "name")

    def __init__(self, name: str, attrs: Attrs, kind: str = "internal") -> None:
        self.name = name
        self.kind = kind
        self.attrs = attrs
        self.json = to_json([name, kind, attrs]).decode()


class SpanData:
    """One span, open or ended: its :class:`Shape` and its own attributes ``attrs`` (which
    win over the shape's). ``links`` are ``(trace_id, span_id, attributes)``."""

    __slots__ = ("agent", "attempts", "attrs", "end", "events", "key", "links", "message",
                 "parent_id", "run", "shape", "span_id", "start", "status", "trace_id")

    def __init__(self, run: _Run, shape: Shape, trace_id: int, span_id: int,
                 parent_id: int | None, start: int, attrs: Attrs, agent: str | None = None,
                 key: str = "") -> None:
        self.run = run
        self.shape = shape
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.start = start
        self.end = 0
        self.attrs = attrs
        self.agent = agent
        self.key = key
        self.links: list[tuple[int, int, Attrs]] | None = None
        self.events: list[tuple[str, int, Attrs]] | None = None
        self.status = "unset"
        self.message: str | None = None
        self.attempts = 0

    def child(self, shape: Shape, attrs: Attrs, agent: str | None = None, key: str = ""
              ) -> SpanData:
        """A span under this one, starting now."""
        return SpanData(self.run, shape, self.trace_id, _bits(64) or 1, self.span_id,
                        time_ns(), attrs, agent, key)

    @property
    def name(self) -> str:
        return self.shape.name

    @property
    def attributes(self) -> Attrs:
        """All its attributes."""
        base = self.shape.attrs
        return {**base, **self.attrs} if base else self.attrs

    # -- as an OpenTelemetry SDK span ------------------------------------------------------

    def to_readable(self, resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode

        flags = _SAMPLED
        ctx = SpanContext(self.trace_id, self.span_id, is_remote=False, trace_flags=flags)
        parent = SpanContext(self.trace_id, self.parent_id, is_remote=False,
                             trace_flags=flags) if self.parent_id else None
        links = [Link(SpanContext(t, s, is_remote=False, trace_flags=flags), a)
                 for t, s, a in self.links or ()]
        events = [Event(n, a, t) for n, t, a in self.events or ()]
        status = Status(StatusCode.ERROR, self.message) if self.status == "error" else \
            Status(StatusCode.OK) if self.status == "ok" else Status(StatusCode.UNSET)
        return ReadableSpan(
            name=self.shape.name, context=ctx, parent=parent, resource=resource,
            attributes=self.attributes, events=events, links=links,
            kind=SpanKind.CLIENT if self.shape.kind == "client" else SpanKind.INTERNAL,
            status=status, start_time=self.start, end_time=self.end,
            instrumentation_scope=scope)


def _flags() -> Any:
    try:
        from opentelemetry.trace import TraceFlags
    except ImportError:  # the store alone needs no OpenTelemetry package
        return None
    return TraceFlags(TraceFlags.SAMPLED)


_SAMPLED = _flags()

#: The span steps and logs run in: set around every session run, agent run and step.
CURRENT: ContextVar[SpanData | None] = ContextVar("convoy_span", default=None)


def chunk_text(spans: Sequence[SpanData]) -> str:
    """The JSON the store keeps for a batch of one session's ended spans (format 2): the
    trace id and a time origin once, the shapes the spans use (each encoded once per
    process), and a row per span: ``[shape, span id, parent id, start, duration, status,
    own attributes]`` (start from the origin, both in ns), then, only if the span has
    them, its status message, links (``[span id, attributes]``) and events (``[name,
    time, attributes]``). (Ids as hex text: JSON encoders take the slow path for integers
    past 63 bits.)"""
    at: dict[Shape, int] = {}
    table: list[str] = []
    rows: list[list[Any]] = []
    origin = spans[0].start
    for s in spans:
        shape = s.shape
        i = at.get(shape)
        if i is None:
            i = at[shape] = len(table)
            table.append(shape.json)
        parent, start = s.parent_id, s.start
        # (``to_bytes().hex()``: the quickest 16-digit hex text, for 2-3 ids per span.)
        row = [i, s.span_id.to_bytes(8, "big").hex(),
               parent.to_bytes(8, "big").hex() if parent else None, start - origin,
               s.end - start, s.status, s.attrs]
        if s.message is not None or s.links or s.events:
            row += (s.message, [(sid.to_bytes(8, "big").hex(), a) for _, sid, a in s.links]
                    if s.links else None, s.events)
        rows.append(row)
    return (f'{{"v":{SPANS_FORMAT},"trace_id":"{spans[0].trace_id:032x}","origin":{origin},'
            f'"shapes":[{",".join(table)}],"spans":{to_json(rows).decode()}}}')


def load_chunks(values: Iterable[str]) -> list[dict[str, Any]]:
    """Every span of the stored chunks as a dict, oldest first (unknown formats are
    refused): ``name``, ``trace_id``, ``span_id``, ``parent_id``, ``start`` and ``end``
    (ns since the epoch), ``kind``, ``status``, ``attrs``, ``message``, ``links`` and
    ``events``."""
    import json

    from convoy._errors import JournalError

    spans: list[dict[str, Any]] = []
    for text in values:
        chunk = json.loads(text)
        version = chunk.get("v")
        if version == 2:
            _load_v2(chunk, spans)
        elif version == 1:
            _load_v1(chunk, spans)
        else:
            raise JournalError(f"stored spans are in format {version!r}; this Convoy "
                               f"reads formats 1 and {SPANS_FORMAT} (upgrade Convoy)")
    spans.sort(key=lambda s: (s["start"], s["end"]))
    return spans


def _span(name: str, trace_id: str, sid: str, parent: str | None, start: int, end: int,
          kind: str, status: str, attrs: Attrs, message: str | None, links: Any,
          events: Any) -> dict[str, Any]:
    return {"name": name, "trace_id": trace_id, "span_id": sid, "parent_id": parent,
            "start": start, "end": end, "kind": kind, "status": status, "attrs": attrs,
            "message": message,
            "links": [{"trace_id": trace_id, "span_id": s, "attrs": a} for s, a in links or ()],
            "events": [{"name": n, "time": t, "attrs": a} for n, t, a in events or ()]}


def _load_v2(chunk: dict[str, Any], spans: list[dict[str, Any]]) -> None:
    trace_id, origin, shapes = chunk["trace_id"], chunk["origin"], chunk["shapes"]
    for shape, sid, parent, offset, took, status, own, *more in chunk["spans"]:
        name, kind, base = shapes[shape]
        message, links, events = (*more, None, None, None)[:3]
        start = origin + offset
        spans.append(_span(name, trace_id, sid, parent, start, start + took, kind, status,
                           {**base, **own}, message, links, events))


def _load_v1(chunk: dict[str, Any], spans: list[dict[str, Any]]) -> None:
    trace_id, bases = chunk["trace_id"], chunk["bases"]
    for name, sid, parent, start, end, kind, status, base, own, message, links, \
            events in chunk["spans"]:
        attrs = {**bases[base], **own} if base is not None else own
        spans.append(_span(name, trace_id, sid, parent, start, end, kind, status, attrs,
                           message, links, events))


def parse_traceparent(value: str | None) -> tuple[int, int] | None:
    """``(trace_id, span_id)`` of a W3C ``traceparent`` header, or ``None``."""
    if not value:
        return None
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        trace_id, span_id = int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None
    return (trace_id, span_id) if trace_id and span_id else None


def format_traceparent(trace_id: int, span_id: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-01"


__all__ = ["CURRENT", "SCHEMA_URL", "SEMCONV_VERSION", "SPANS_FORMAT", "Shape", "SpanData",
           "chunk_text", "format_traceparent", "load_chunks", "new_id", "parse_traceparent"]
