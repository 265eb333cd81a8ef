"""The OpenTelemetry environment variables that decide where OTLP spans go, checked
before any span is made: a value no span could be sent with (a URL that is not one, a
scheme or port no HTTP request takes, gRPC asked of the HTTP exporter, which reads no
protocol variable, a protocol that is none, a timeout that is no number, headers not
written KEY=VALUE) is one line at once, not one warning after every session ran, blaming
a collector, nor the SDK's own lines, or nothing at all."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from convoy._text import quoted
from convoy.stores._url import redacted

#: Where the OTLP/HTTP exporter sends spans, each variable before the next.
ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
TIMEOUTS = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
#: The traces' headers, when set, are sent instead of the general ones.
HEADERS = ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")


def endpoint_variable(environ: Mapping[str, str] = os.environ) -> str:
    """The variable that says where OTLP spans go (the default's, if none is set)."""
    return next((name for name in ENDPOINTS if environ.get(name)), ENDPOINTS[1])


def otlp_problem(environ: Mapping[str, str] = os.environ) -> str | None:
    """Why no span could be exported over OTLP/HTTP with these settings, or ``None``."""
    for name in PROTOCOLS:  # (the HTTP exporter reads none: it sends http/protobuf)
        value = environ.get(name)
        if value:
            if value.strip().lower() == "grpc":
                return (f"{name}={quoted(value, 60)}: Convoy exports OTLP over HTTP "
                        "(http/protobuf), not gRPC; unset it, or set it to "
                        "'http/protobuf' and the endpoint to the collector's HTTP port "
                        "(4318)")
            if value.strip().lower() not in ("http/protobuf", "http/json"):
                return (f"{name}={quoted(value, 60)} is not an OTLP protocol: use "
                        "'http/protobuf' (or unset it)")
            break
    for name in TIMEOUTS:  # (the exporter's own parsing drops a bad one in silence)
        value = environ.get(name)
        if value:
            try:
                seconds = float(value)
            except ValueError:
                seconds = math.nan
            if not math.isfinite(seconds) or seconds <= 0:
                return (f"{name}={quoted(value, 60)} is not a number of seconds (the "
                        "exporter's timeout; 10 by default)")
            break
    for name in HEADERS:  # (a malformed one is logged by the SDK in its own words, and
        value = environ.get(name)  # its header not sent; the one it reads)
        if value:
            bad = _bad_item(value)
            if bad is not None:  # (by its place, not its text: it may hold a token)
                return (f"{name}: its item {bad} is not KEY=VALUE; write headers as "
                        "key1=value1,key2=value2")
            break
    name = endpoint_variable(environ)
    value = environ.get(name)
    if not value:
        return None
    shown = f"{name}={quoted(redacted(value), 200)}"
    if not value.lower().startswith(("http://", "https://")):
        return f"{shown} is not an http:// or https:// URL"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as e:  # (a '[' with no ']'; a port that is no number, or past 65535)
        if "port" in str(e).lower():
            return f"{shown}: the port must be a number from 1 to 65535"
        return f"{shown} cannot be read as a URL: {e}"
    if port == 0:
        return f"{shown}: the port must be a number from 1 to 65535"
    if not parts.hostname:
        return f"{shown} names no host; write it as http://HOST:4318"
    return None


def resource_problem(environ: Mapping[str, str] = os.environ) -> str | None:
    """Why ``OTEL_RESOURCE_ATTRIBUTES`` cannot be read (an item not ``key=value``, which
    the SDK drops with lines of its own on stderr), or ``None``."""
    value = environ.get("OTEL_RESOURCE_ATTRIBUTES")
    bad = _bad_item(value) if value else None
    if bad is None:
        return None
    return (f"OTEL_RESOURCE_ATTRIBUTES: its item {bad} is not KEY=VALUE; write them as "
            "key1=value1,key2=value2")


def _bad_item(value: str) -> int | None:
    """The place (from 1) of the first item of a ``key=value,...`` list that is not one
    (empty items are let be), or ``None``."""
    return next((i for i, h in enumerate(value.split(","), 1) if h.strip() and
                 ("=" not in h or not h.partition("=")[0].strip())), None)

