"""Spans as Convoy records them, and what they become for OpenTelemetry and the store.

A span is recorded as a :class:`SpanData` (a few slots, filled in place): starting one costs
a random id and a clock read, not the SDK's span machinery. What the spans of one kind,
agent, model or tool share (name, kind, attributes) is a :class:`Shape`, made once. Ended
spans go, as OpenTelemetry SDK :class:`~opentelemetry.sdk.trace.ReadableSpan` objects, to
the SDK span processors and exporters configured (OTLP, console, any ``SpanExporter``),
and, as JSON, to the embedded store (``convoy trace``). Ids are kept as lowercase hex text
(their W3C form): that is what logs, headers and the store write.

Attributes follow the OpenTelemetry semantic conventions for generative AI
(:data:`SEMCONV_VERSION`); Convoy's own are under ``convoy.``.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json

from convoy._trace_context import parse_traceparent
from convoy.stores._protocol import SPANS_NAMESPACE

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

#: The finish reasons providers document (OpenAI's and OpenAI-compatible servers', the
#: conventions' own, Anthropic's, Google's): ``gen_ai.response.finish_reasons`` is one of
#: them or ``other`` (:func:`finish_reason`).
FINISH_REASONS = frozenset({
    "stop", "length", "tool_calls", "content_filter", "function_call", "tool_call", "error",
    "end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal",
    "STOP", "MAX_TOKENS", "SAFETY", "RECITATION", "LANGUAGE", "OTHER", "BLOCKLIST",
    "PROHIBITED_CONTENT", "SPII", "MALFORMED_FUNCTION_CALL"})


def finish_reason(said: str) -> str:
    """A model's finish reason as spans carry it: one a provider documents, else
    ``other``. The adapters pass on what the server said, and a server (a proxy, a hostile
    one) may say anything, personal data included, which no redactor can tell from a
    reason."""
    return said if said in FINISH_REASONS else "other"


Attrs = dict[str, Any]
Link = tuple[str, Attrs]  # (span id, attributes): a span of the same trace
Event = tuple[str, int, Attrs]  # (name, time in ns, attributes)

#: The attribute that marks a failure the retry budget refused to retry (the failure
#: itself retryable), on the spans it failed, live or derived.
BUDGET_EXHAUSTED = "convoy.retry_budget.exhausted"
#: Whether the run of a session (by id) in this process holds a data subject's data: its
#: own subject's, or what it read of another's (``SealingStore.holds_personal_data``).
Holds = Callable[[str], bool]


def holds_of(store: object) -> Holds | None:
    """The :data:`Holds` of an engine's store (``None``: it seals nothing, no master
    key)."""
    return getattr(store, "holds_personal_data", None)

_bits = random.getrandbits
time_ns = time.time_ns


def new_span_id() -> str:
    """A random span id (16 hex digits, not all zero)."""
    return (_bits(64) or 1).to_bytes(8, "big").hex()


def new_trace_id() -> str:
    """A random trace id (32 hex digits, not all zero)."""
    return (_bits(128) or 1).to_bytes(16, "big").hex()


_shape_ids = itertools.count()


class Shape:
    """What the spans of one kind, agent, model or tool share: name, span kind and
    attributes. Made once (``Tracing.shape``) and never changed; ``json`` is how the store
    writes it (with its ``id``, which the spans' rows name)."""

    __slots__ = ("attrs", "id", "json", "kind", "name")

    def __init__(self, name: str, attrs: Attrs, kind: str = "internal") -> None:
        self.id = next(_shape_ids)
        self.name = name
        self.kind = kind
        self.attrs = attrs
        self.json = to_json([self.id, name, kind, attrs]).decode()


class SpanData:
    """One span, open or ended: its :class:`Shape` and its own attributes ``attrs`` (which
    win over the shape's). ``extra`` is ``None`` or ``[message, links, events]`` (a status
    message, :data:`Link` s and :data:`Event` s: most spans have none).

    ``SpanData(parent, ...)`` starts a span under ``parent`` now, with a new id;
    :meth:`root` makes a run's first span."""

    __slots__ = ("agent", "attempts", "attrs", "end", "extra", "key", "parent_id", "run",
                 "shape", "span_id", "start", "status", "trace_id")
    run: _Run
    shape: Shape
    trace_id: str
    span_id: str
    parent_id: str | None
    start: int
    end: int
    attrs: Attrs
    agent: str | None
    key: str
    status: str
    extra: list[Any] | None
    attempts: int

    def __init__(self, parent: SpanData, shape: Shape, attrs: Attrs,
                 agent: str | None = None, key: str = "") -> None:
        self.run = parent.run
        self.shape = shape
        self.trace_id = parent.trace_id
        # (``new_span_id()`` and ``time_ns()`` inlined: a span is made on every step.)
        self.span_id = (_bits(64) or 1).to_bytes(8, "big").hex()
        self.parent_id = parent.span_id
        self.start = time_ns()
        self.end = 0
        self.attrs = attrs
        self.agent = agent
        self.key = key
        self.status = "unset"
        self.extra = None
        self.attempts = 0

    @classmethod
    def root(cls, run: _Run, shape: Shape, trace_id: str, span_id: str,
             parent_id: str | None, attrs: Attrs) -> SpanData:
        """The first span of a run (its parent, if any, is not one of Convoy's)."""
        span = cls.__new__(cls)
        span.run, span.shape, span.trace_id = run, shape, trace_id
        span.span_id, span.parent_id, span.start, span.end = span_id, parent_id, time_ns(), 0
        span.attrs, span.agent, span.key, span.status = attrs, None, "", "unset"
        span.extra, span.attempts = None, 0
        return span

    @property
    def name(self) -> str:
        return self.shape.name

    @property
    def attributes(self) -> Attrs:
        """All its attributes."""
        base = self.shape.attrs
        return {**base, **self.attrs} if base else self.attrs

    @property
    def message(self) -> str | None:
        return self.extra[0] if self.extra else None

    @property
    def links(self) -> list[Link]:
        return (self.extra[1] if self.extra else None) or []

    @property
    def events(self) -> list[Event]:
        return (self.extra[2] if self.extra else None) or []

    def note(self, message: str | None = None, link: Link | None = None,
             event: Event | None = None) -> None:
        """Give it a status message, or one more link or event."""
        extra = self.extra
        if extra is None:
            extra = self.extra = [None, None, None]
        if message is not None:
            extra[0] = message
        if link is not None:
            extra[1] = [*(extra[1] or ()), link]
        if event is not None:
            extra[2] = [*(extra[2] or ()), event]

    # -- as an OpenTelemetry SDK span ------------------------------------------------------

    def to_readable(self, resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode

        flags = _SAMPLED
        trace_id = int(self.trace_id, 16)
        ctx = SpanContext(trace_id, int(self.span_id, 16), is_remote=False, trace_flags=flags)
        parent = SpanContext(trace_id, int(self.parent_id, 16), is_remote=False,
                             trace_flags=flags) if self.parent_id else None
        links = [Link(SpanContext(trace_id, int(s, 16), is_remote=False, trace_flags=flags), a)
                 for s, a in self.links]
        events = [Event(n, a, t) for n, t, a in self.events]
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
#: ``(tenant, session id)`` around a run of a session tracing leaves untraced (sampling):
#: its log records still say whose they are.
UNTRACED: ContextVar[tuple[str, str] | None] = ContextVar("convoy_untraced", default=None)

# A span's row in the store, and its shape: read in C, no Python code per span.
_ROW = attrgetter("shape.id", "span_id", "parent_id", "start", "end", "status", "attrs",
                  "extra")
_SHAPE = attrgetter("shape")


def chunk_text(spans: Sequence[SpanData]) -> str:
    """The JSON the store keeps for a batch of one session's ended spans (format 2): the
    trace id once, the shapes the spans use (``[id, name, kind, attributes]``, each
    encoded once per process), and a row per span: ``[shape id, span id, parent id,
    start, end, status, own attributes, extra]`` (times in ns since the epoch; ``extra``
    as in :class:`SpanData`)."""
    shapes = ",".join([shape.json for shape in set(map(_SHAPE, spans))])
    rows = to_json(list(map(_ROW, spans))).decode()
    return f'{{"v":{SPANS_FORMAT},"trace_id":"{spans[0].trace_id}","shapes":[{shapes}],' \
           f'"spans":{rows}}}'


def load_chunks(values: Iterable[str]) -> list[dict[str, Any]]:
    """Every span of the stored chunks as a dict, oldest first (unknown formats are
    refused): ``name``, ``trace_id``, ``span_id``, ``parent_id``, ``start`` and ``end``
    (ns since the epoch), ``kind``, ``status``, ``attrs``, ``message``, ``links`` and
    ``events``. A chunk that is not one (changed in the database) raises ``ValueError``
    saying why in plain words."""
    import json

    from convoy._errors import JournalError

    spans: list[dict[str, Any]] = []
    for text in values:
        try:
            chunk = json.loads(text)
            version = chunk.get("v") if isinstance(chunk, dict) else None
            if version == 2:
                _load_v2(chunk, spans)
            elif version == 1:
                _load_v1(chunk, spans)
            elif not isinstance(version, int) or isinstance(version, bool):
                raise _NotSpans(f"no format version: {text[:40]!r}")
            else:
                raise JournalError(f"stored spans are in format {version!r}; this Convoy "
                                   f"reads formats 1 and {SPANS_FORMAT} (upgrade Convoy)")
        except _NotSpans as e:
            raise ValueError(f"not a chunk of spans: {e}") from None
        except json.JSONDecodeError:
            raise ValueError("not a chunk of spans: it is not JSON") from None
        except RecursionError:
            raise ValueError("not a chunk of spans: it nests arrays and objects deeper "
                             "than JSON can be read") from None
        except (KeyError, TypeError, AttributeError, IndexError, ValueError):
            # (a field missing, of another type or shape than Convoy writes: the Python
            # exception's text would say nothing to the reader)
            raise ValueError("not a chunk of spans: its fields are not what Convoy "
                             "writes") from None
    spans.sort(key=lambda s: (s["start"], s["end"]))
    return spans


class _NotSpans(ValueError):
    """What :func:`load_chunks` found wrong with a chunk, said in plain words."""


#: A span's start and end are nanoseconds since the epoch that fit OpenTelemetry's 64
#: bits unsigned.
_MAX_NS = 2**64 - 1


def _span(name: str, trace_id: str, sid: str, parent: str | None, start: int, end: int,
          kind: str, status: str, attrs: Attrs, message: str | None, links: Any,
          events: Any) -> dict[str, Any]:
    # What ``convoy trace`` computes with or shows must be what Convoy wrote (a chunk
    # edited by hand is refused here, not as a TypeError while it is drawn).
    if not (isinstance(name, str) and isinstance(status, str) and isinstance(sid, str)
            and isinstance(trace_id, str) and isinstance(kind, str)
            and isinstance(message, str | None) and isinstance(parent, str | None)
            and isinstance(attrs, dict) and all(isinstance(k, str) for k in attrs)):
        raise _NotSpans("its fields are not what Convoy writes")
    if not (type(start) is int and type(end) is int and 0 <= start <= _MAX_NS
            and 0 <= end <= _MAX_NS):
        raise _NotSpans(f"a span's start or end is not a time in nanoseconds since the "
                        f"epoch ({name!r:.40})")
    return {"name": name, "trace_id": trace_id, "span_id": sid, "parent_id": parent,
            "start": start, "end": end, "kind": kind, "status": status, "attrs": attrs,
            "message": message,
            "links": [{"trace_id": trace_id, "span_id": s, "attrs": a} for s, a in links or ()],
            "events": [{"name": n, "time": t, "attrs": a} for n, t, a in events or ()]}


def _load_v2(chunk: dict[str, Any], spans: list[dict[str, Any]]) -> None:
    trace_id = chunk["trace_id"]
    shapes = {shape[0]: shape[1:] for shape in chunk["shapes"]}
    for shape, sid, parent, start, end, status, own, extra in chunk["spans"]:
        if shape not in shapes:
            raise _NotSpans(f"a span names shape {shape!r:.40}, which the chunk does not "
                            "have")
        name, kind, base = shapes[shape]
        message, links, events = extra or (None, None, None)
        spans.append(_span(name, trace_id, sid, parent, start, end, kind, status,
                           {**base, **own}, message, links, events))


def _load_v1(chunk: dict[str, Any], spans: list[dict[str, Any]]) -> None:
    trace_id, bases = chunk["trace_id"], chunk["bases"]
    for name, sid, parent, start, end, kind, status, base, own, message, links, \
            events in chunk["spans"]:
        attrs = {**bases[base], **own} if base is not None else own
        spans.append(_span(name, trace_id, sid, parent, start, end, kind, status, attrs,
                           message, links, events))


def traceparent_sampled(value: str | None) -> bool:
    """Whether a W3C ``traceparent`` header's flags have the sampled bit (``0x01``; the
    other bits, such as Level 2's random-trace-id flag, say nothing about sampling)."""
    if not value:
        return False
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[3]) < 2:
        return False
    try:
        return bool(int(parts[3][:2], 16) & 1)
    except ValueError:
        return False


def format_traceparent(trace_id: str, span_id: str, sampled: bool = True) -> str:
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


__all__ = ["BUDGET_EXHAUSTED", "CURRENT", "SCHEMA_URL", "SEMCONV_VERSION", "SPANS_FORMAT",
           "SPANS_NAMESPACE", "UNTRACED", "Event", "Link", "Shape", "SpanData", "chunk_text",
           "format_traceparent", "load_chunks", "new_span_id", "new_trace_id",
           "parse_traceparent", "traceparent_sampled"]
