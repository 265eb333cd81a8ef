"""Per-step overhead of tracing, metrics and logs against the bare engine (issue 11).

    .venv/bin/python bench/observability.py [--sessions 1000] [--runs 7] [--clock cpu]

The W1 workload of bench/resilience_overhead.py: 5 typed agents in sequence, a fake model
with zero latency (a canned answer, 50 tokens in / 10 out), journaling on (SQLite file,
durability "process"), sessions one after another. Engines, opened and warmed up before
timing, on stores of their own:

* bare:           ``Engine(...)``, no interceptors;
* tracing:        ``observe(Tracing(["store"]))``: spans derived from the journal when
                  read (``convoy trace``), nothing recorded per step;
* tracing_live:   ``observe(Tracing(["store"], live=True))``: every span recorded as the
                  session runs and kept in the store;
* tracing_otlp:   ``observe(Tracing([OTLPSpanExporter(...)]))``: spans exported over
                  OTLP/HTTP (the SDK's batch processor) to a receiver on loopback that
                  answers 200 and keeps nothing;
* metrics:        ``observe(metrics=Metrics())``;
* tracing_metrics: tracing to the store and metrics together (the issue's figure: at most
                  +25% per step with audit);
* all:            the same plus ``logs=True`` (LogEvents; JSON records at INFO to
                  /dev/null);
* tracing_10pct_metrics: metrics, and tracing of one session in ten
                  (``Tracing(sample_rate=0.1)``);
* audit:          ``AuditInterceptor()``: an audit entry per journaled step, appended when
                  the session's run ends;
* tracing_metrics_audit: tracing to the store, metrics and audit together (the issue's
                  figure);
* metrics_audit:  metrics and audit, no tracing;
* tracing_live_metrics_audit: the same with live spans (``live=True``).

An engine with the audit log seals what its runs queued before its run's clock stops (the
sealer would otherwise seal the last of it during the next engine's run, and that run
would be charged for it).

Runs alternate (bare, tracing, ..., bare, ...) ``--runs`` times each; prints the median µs
per agent step of each and the added percentages, as one JSON line, and the paired ones
(``paired_added_pct_NAME``: the median of each round's ratio to that round's bare run).
``--only NAME,...`` runs only those engines: under ``valgrind --tool=callgrind``, the
instructions of ``--sessions 300`` minus those of ``--sessions 100`` (``--runs 1``), over
1,000 steps, are the instructions per step, which a busy host does not move. ``--clock
cpu`` times the process's CPU time (all its threads: the OTLP exporter's too) instead of
elapsed time: on a shared host busy with other work, elapsed time mostly measures the
neighbours.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from resilience_overhead import AGENTS, CLOCKS, timed
from proto_metrics import JournalMetrics, ModelFromJournal

import convoy
from convoy.audit import AuditInterceptor
from convoy.observability import Metrics, Tracing, json_logging, observe


class _Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that accepts every export and keeps nothing."""

    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def engines(tmp: Path, otlp: str) -> dict[str, convoy.Engine]:
    def make(name: str, chain: list[convoy.Interceptor]) -> convoy.Engine:
        return convoy.Engine(tmp / f"{name}.db", interceptors=chain, concurrency=1000)

    return {
        "bare": make("bare", []),
        "tracing": make("tracing", observe(Tracing(["store"]))),
        "tracing_otlp": make("tracing_otlp", observe(Tracing([OTLPSpanExporter(
            endpoint=otlp)]))),
        "metrics": make("metrics", observe(metrics=Metrics())),
        "tracing_metrics": make("tracing_metrics", observe(Tracing(["store"]), Metrics())),
        "all": make("all", observe(Tracing(["store"]), Metrics(), logs=True)),
        "tracing_10pct_metrics": make("tracing_10pct_metrics", observe(
            Tracing(["store"], sample_rate=0.1), Metrics())),
        "audit": make("audit", [AuditInterceptor()]),
        "tracing_metrics_audit": make("tracing_metrics_audit", [
            *observe(Tracing(["store"]), Metrics()), AuditInterceptor()]),
        "proto_tma": make("proto_tma", [
            *observe(Tracing(["store"]), JournalMetrics()), AuditInterceptor()]),
        "proto_b_tma": make("proto_b_tma", [
            *observe(Tracing(["store"]), ModelFromJournal()), AuditInterceptor()]),
        "proto_metrics": make("proto_metrics", observe(metrics=JournalMetrics())),
        "metrics_audit": make("metrics_audit", [*observe(metrics=Metrics()),
                                                AuditInterceptor()]),
        "tracing_live": make("tracing_live", observe(Tracing(["store"], live=True))),
        "tracing_live_metrics_audit": make("tracing_live_metrics_audit", [
            *observe(Tracing(["store"], live=True), Metrics()), AuditInterceptor()]),
    }


async def sealed_timed(engine: convoy.Engine, tag: str, sessions: int,
                       tick: Callable[[], float]) -> float:
    """:func:`timed`, with the audit log sealed before the clock stops: the sealer seals
    what runs queued every ``seal_every`` seconds, and what is left at the end of a run
    would otherwise be sealed during the next engine's run, and counted there."""
    t0 = tick()
    await timed(engine, tag, sessions, tick)
    for ic in engine.runtime.interceptors:
        if isinstance(ic, AuditInterceptor):
            await ic.sealed()
    return (tick() - t0) / (sessions * AGENTS) * 1e6


async def main_async(sessions: int, runs: int, warmup: int, clock: str,
                     only: list[str] | None = None) -> dict[str, Any]:
    tick = CLOCKS[clock]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    devnull = open(os.devnull, "w")  # noqa: SIM115, ASYNC230 - closed below; no I/O
    handler = json_logging(logging.INFO, stream=devnull, logger_name="convoy")
    try:
        with tempfile.TemporaryDirectory(prefix="convoy-observability-") as tmp:
            es = engines(Path(tmp), f"http://127.0.0.1:{server.server_address[1]}/v1/traces")
            if only:
                es = {name: e for name, e in es.items() if name in only}
            samples: dict[str, list[float]] = {name: [] for name in es}
            for e in es.values():
                await e.open()
            try:
                for name, e in es.items():
                    if warmup:
                        await sealed_timed(e, f"warm-{name}", warmup, tick)
                for r in range(runs):
                    for name, e in es.items():
                        samples[name].append(await sealed_timed(e, f"{name}-{r}", sessions,
                                                                tick))
            finally:
                for e in es.values():
                    await e.aclose()
    finally:
        logging.getLogger("convoy").removeHandler(handler)
        devnull.close()
        server.shutdown()
        server.server_close()
    med = {name: statistics.median(xs) for name, xs in samples.items()}
    bare = med.get("bare")
    return {"workload": f"W1-like, {AGENTS} agents, zero latency, journaling on",
            "sessions_per_run": sessions, "runs": runs, "clock": clock,
            **{f"us_per_step_{n}": round(v, 1) for n, v in med.items()},
            **{f"added_pct_{n}": round(100 * (v - bare) / bare, 1)
               for n, v in med.items() if n != "bare" and bare},
            # each round's ratio to the bare run of the same round, the median of those:
            # a host whose speed drifts between rounds moves both sides of a ratio alike
            **{f"paired_added_pct_{n}": round(100 * (statistics.median(
                x / b for x, b in zip(xs, samples["bare"], strict=True)) - 1), 1)
               for n, xs in samples.items() if n != "bare" and "bare" in samples},
            "otlp_exports_received": _Sink.received,
            "target_pct_tracing_metrics_audit": 25,
            "samples": {name: [round(x, 1) for x in xs] for name, xs in samples.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=1000, help="sessions per timed run")
    ap.add_argument("--runs", type=int, default=7, help="timed runs per engine")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall: elapsed time; cpu: the process's CPU time (all its threads)")
    ap.add_argument("--only", default="", help="comma-separated engines to run (default all)")
    a = ap.parse_args()
    only = [n for n in a.only.split(",") if n]
    known = ("bare", "tracing", "tracing_otlp", "metrics", "tracing_metrics", "all",
             "tracing_10pct_metrics", "audit", "tracing_metrics_audit", "metrics_audit", "proto_tma", "proto_metrics", "proto_b_tma",
             "tracing_live", "tracing_live_metrics_audit")
    if any(n not in known for n in only):
        ap.error(f"--only: engines are {', '.join(known)}")
    if a.sessions < 1 or a.runs < 1 or a.warmup < 0:
        ap.error("--sessions and --runs must be >= 1, --warmup >= 0")
    print(json.dumps(asyncio.run(main_async(a.sessions, a.runs, a.warmup, a.clock, only))))


if __name__ == "__main__":
    main()
