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
#: Version of the JSON the store keeps spans in (``convoy trace``).
SPANS_FORMAT = 1

Attrs = dict[str, Any]


def new_id(bits: int) -> int:
    """A random non-zero id of ``bits`` bits (W3C trace context ids)."""
    return _bits(bits) or 1


_bits = random.getrandbits
time_ns = time.time_ns


class SpanData:
    """One span, open or ended. Its attributes are ``base`` (shared by every span of its
    kind, agent and model: built once) updated with ``attrs`` (its own). ``links`` are
    ``(trace_id, span_id, attributes)``."""

    __slots__ = ("agent", "attempts", "attrs", "base", "end", "events", "key", "kind",
                 "links", "message", "name", "parent_id", "run", "span_id", "start",
                 "status", "trace_id")

    def __init__(self, run: _Run | None, name: str, trace_id: int, span_id: int,
                 parent_id: int | None, start: int, attrs: Attrs, kind: str = "internal",
                 agent: str | None = None, key: str = "", base: Attrs | None = None) -> None:
        self.run = run
        self.base = base
        self.name = name
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.start = start
        self.end = 0
        self.attrs = attrs
        self.kind = kind
        self.agent = agent
        self.key = key
        self.links: list[tuple[int, int, Attrs]] | None = None
        self.events: list[tuple[str, int, Attrs]] | None = None
        self.status = "unset"
        self.message: str | None = None
        self.attempts = 0

    def child(self, name: str, attrs: Attrs, kind: str = "internal",
              agent: str | None = None, key: str = "", base: Attrs | None = None
              ) -> SpanData:
        """A span under this one, starting now."""
        return SpanData(self.run, name, self.trace_id, _bits(64) or 1, self.span_id,
                        time_ns(), attrs, kind, agent, key, base)

    @property
    def attributes(self) -> Attrs:
        """All its attributes."""
        return {**self.base, **self.attrs} if self.base else self.attrs

    # -- as JSON, for the store --------------------------------------------------------------

    def to_row(self, base: int | None) -> tuple[Any, ...]:
        """The compact form the store keeps (see :func:`chunk_text`): the shared
        attributes as the index ``base`` of the chunk's table of them. (Ids as hex text:
        JSON encoders take the slow path for integers past 63 bits.)"""
        links, parent = self.links, self.parent_id
        # (``to_bytes().hex()``: the quickest 16-digit hex text, for 2-3 ids per span.)
        return (self.name, self.span_id.to_bytes(8, "big").hex(),
                parent.to_bytes(8, "big").hex() if parent else None, self.start, self.end,
                self.kind, self.status, base, self.attrs, self.message,
                [(s.to_bytes(8, "big").hex(), a) for _, s, a in links] if links else None,
                self.events)

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
            name=self.name, context=ctx, parent=parent, resource=resource,
            attributes=self.attributes, events=events, links=links,
            kind=SpanKind.CLIENT if self.kind == "client" else SpanKind.INTERNAL,
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
    """The JSON the store keeps for a batch of one session's ended spans: the trace id
    once, the shared attribute tables the spans use (each encoded once per process: the
    same few tables recur in every session), and each span as a row
    (:meth:`SpanData.to_row`)."""
    bases: dict[int, int] = {}
    table: list[str] = []
    rows = []
    encoded = _ENCODED
    for s in spans:
        b = s.base
        if b is None:
            rows.append(s.to_row(None))
            continue
        i = bases.get(id(b))
        if i is None:
            i = bases[id(b)] = len(table)
            found = encoded.get(id(b))
            if found is None or found[0] is not b:
                if len(encoded) > 10_000:
                    encoded.clear()
                found = encoded[id(b)] = (b, to_json(b).decode())
            table.append(found[1])
        rows.append(s.to_row(i))
    return (f'{{"v":{SPANS_FORMAT},"trace_id":"{spans[0].trace_id:032x}","bases":['
            f'{",".join(table)}],"spans":{to_json(rows).decode()}}}')


# id(shared attributes) -> (them, their JSON). Shared attribute dicts are never changed
# once made (Tracing.base); the reference kept makes the id stay theirs.
_ENCODED: dict[int, tuple[Attrs, str]] = {}


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
        if chunk.get("v") != SPANS_FORMAT:
            raise JournalError(f"stored spans are in format {chunk.get('v')!r}; this Convoy "
                               f"reads format {SPANS_FORMAT} (upgrade Convoy)")
        trace_id = chunk["trace_id"]
        bases = chunk["bases"]
        for name, sid, parent, start, end, kind, status, base, own, message, links, \
                events in chunk["spans"]:
            attrs = {**bases[base], **own} if base is not None else own
            spans.append({
                "name": name, "trace_id": trace_id, "span_id": sid, "parent_id": parent,
                "start": start, "end": end, "kind": kind, "status": status, "attrs": attrs,
                "message": message,
                "links": [{"trace_id": trace_id, "span_id": s, "attrs": a}
                          for s, a in links or ()],
                "events": [{"name": n, "time": t, "attrs": a} for n, t, a in events or ()]})
    spans.sort(key=lambda s: (s["start"], s["end"]))
    return spans


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


__all__ = ["CURRENT", "SCHEMA_URL", "SEMCONV_VERSION", "SPANS_FORMAT", "SpanData",
           "chunk_text", "format_traceparent", "load_chunks", "new_id", "parse_traceparent"]
