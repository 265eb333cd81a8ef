"""An OpenTelemetry span exporter that counts the spans its exporter failed to deliver.

The SDK's batch processor drops a batch its exporter could not deliver (a collector that
is down, refuses, or times out) and says so only in a log record, which a command-line
run or an application without logging configured never shows. :class:`CountingExporter`
keeps the count, so :attr:`Tracing.spans_lost <convoy.observability.Tracing.spans_lost>`
can tell.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import (
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)


class CountingExporter(SpanExporter):
    """``exporter``, counting the spans of every export that did not succeed.

    Args:
        exporter: the exporter that does the work.
        where: what it exports to, for messages (``"OTLP http://host:4318/v1/traces"``).
    """

    def __init__(self, exporter: SpanExporter, where: str) -> None:
        self.exporter = exporter
        self.where = where
        #: Spans handed to an export that failed.
        self.lost = 0
        #: Spans handed to an export that has not returned yet (one a collector holds up
        #: past the flush's bound: not delivered, as far as anyone waiting knows).
        self.in_flight = 0

    @property
    def timeout(self) -> float:
        """How long (seconds) one export may take: the exporter's own timeout (OTLP's,
        ``OTEL_EXPORTER_OTLP_TIMEOUT``), else 10 s."""
        e = self.exporter  # (the OTLP exporter keeps it on itself, or on its client)
        t = getattr(e, "_timeout", None) or getattr(getattr(e, "_client", None), "_timeout",
                                                    None)
        return float(t) if isinstance(t, int | float) and 0 < t < 3600 else 10.0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.in_flight += len(spans)
        try:
            result = self.exporter.export(spans)
        except Exception:
            self.lost += len(spans)
            raise
        finally:
            self.in_flight -= len(spans)
        if result is not SpanExportResult.SUCCESS:
            self.lost += len(spans)
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


def otlp_where(exporter: object) -> str:
    """``"OTLP <endpoint>"`` of an OTLP exporter (its endpoint when it says)."""
    from convoy.stores._url import redacted  # (a password in the user part, or a query's)

    endpoint = getattr(exporter, "_endpoint", None)
    return f"OTLP {redacted(endpoint)}" if isinstance(endpoint, str) else "OTLP"


__all__ = ["CountingExporter", "console_exporter", "otlp_where"]


def _one_line(span: ReadableSpan) -> str:
    return str(span.to_json(indent=None)) + os.linesep


def console_exporter(out: TextIO | None = None) -> ConsoleSpanExporter:
    """OpenTelemetry's console exporter, one span a line of JSON (its default indents each
    over some twenty lines), to ``out`` (stdout)."""
    return ConsoleSpanExporter(out=out or sys.stdout, formatter=_one_line)

