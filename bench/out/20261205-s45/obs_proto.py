"""bench/observability.py with the prototypes of proto_metrics.py beside its engines
(stop 45): proto_metrics, proto_tma (model calls and agent runs from the journal) and
proto_b_tma (model calls only). Run from the repository's root:

    PYTHONPATH=bench:bench/out/20261205-s45 python bench/out/20261205-s45/obs_proto.py \\
        --sessions 200 --runs 101 --warmup 100 --clock cpu \\
        --only bare,tracing_metrics_audit,proto_tma,proto_b_tma
"""
from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import observability
from proto_metrics import JournalMetrics

import convoy
from convoy.audit import AuditInterceptor
from convoy.observability import Tracing, observe

_engines = observability.engines


def engines(tmp: Path, otlp: str) -> dict[str, convoy.Engine]:
    def make(name: str, chain: list[convoy.Interceptor]) -> convoy.Engine:
        return convoy.Engine(tmp / f"{name}.db", interceptors=chain, concurrency=1000)

    return {**_engines(tmp, otlp),
            "proto_metrics": make("proto_metrics", observe(metrics=JournalMetrics())),
            "proto_tma": make("proto_tma", [*observe(Tracing(["store"]), JournalMetrics()),
                                            AuditInterceptor()]),
            "proto_b_tma": make("proto_b_tma", [
                *observe(Tracing(["store"]), JournalMetrics(agent_runs=False)),
                AuditInterceptor()])}


if __name__ == "__main__":
    observability.engines = engines
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--runs", type=int, default=101)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--clock", default="cpu")
    ap.add_argument("--only", default="bare,tracing_metrics_audit,proto_tma,proto_b_tma")
    a = ap.parse_args()
    print(json.dumps(asyncio.run(observability.main_async(
        a.sessions, a.runs, a.warmup, a.clock, a.only.split(",")))))
