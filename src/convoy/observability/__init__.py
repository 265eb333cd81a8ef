"""Observability: OpenTelemetry traces, Prometheus metrics, JSON logs, and the redaction of
personal data before any of them leaves the process."""

from convoy.observability._redact import PII_KINDS, Found, PiiKind, Redactor

__all__ = ["PII_KINDS", "Found", "PiiKind", "Redactor"]
