"""Observability: OpenTelemetry traces, Prometheus metrics, JSON logs, and the redaction of
personal data before any of them leaves the process.

:func:`observe` assembles the interceptors for ``Engine(interceptors=...)``.
"""

from convoy.observability._logging import JsonFormatter, LogEvents, json_logging
from convoy.observability._metrics import AttemptMetrics, Metrics, MetricsServer
from convoy.observability._observe import observe
from convoy.observability._redact import PII_KINDS, Found, PiiKind, Redactor
from convoy.observability._spans import SEMCONV_VERSION
from convoy.observability._tracing import TRACE_HEADER, AttemptSpans, Tracing

__all__ = ["PII_KINDS", "SEMCONV_VERSION", "TRACE_HEADER", "AttemptMetrics", "AttemptSpans",
           "Found", "JsonFormatter", "LogEvents", "Metrics", "MetricsServer", "PiiKind",
           "Redactor", "Tracing", "json_logging", "observe"]
