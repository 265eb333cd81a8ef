"""Bytes written per W1 step, bare and audited (issue 11).

    .venv/bin/python bench/audit_writes.py [--sessions 200] [--runs 100] [--warmup 20]

The W1 workload of bench/resilience_overhead.py (5 agents in sequence, a fake model with
zero latency, journaling on, SQLite), one engine per process (a child process each, so
that nothing else writes while it is counted): the bytes the process wrote per agent
step (Linux's ``wchar``: the WAL's writes and the checkpoints' copies into the database,
the audit's seals included) and its CPU time per step. Bytes move little on a busy host,
where time moves a lot: every byte written costs the kernel time that the CPU clock of
bench/observability.py counts. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from resilience_overhead import AGENTS, timed

import convoy
from convoy.audit import AuditInterceptor

ENGINES = ("bare", "audit")


def written() -> int:
    """Bytes this process has written so far (``wchar`` of ``/proc/self/io``)."""
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise SystemExit("no wchar in /proc/self/io: Linux only")


async def one(name: str, sessions: int, runs: int, warmup: int) -> dict[str, float]:
    chain: list[convoy.Interceptor] = [AuditInterceptor()] if name == "audit" else []
    with tempfile.TemporaryDirectory(prefix="convoy-writes-") as tmp:
        async with convoy.Engine(Path(tmp) / "w.db", interceptors=chain,
                                 concurrency=1000) as engine:
            async def run(tag: str) -> None:
                await timed(engine, tag, sessions, time.process_time)
                for ic in chain:
                    if isinstance(ic, AuditInterceptor):
                        await ic.sealed()

            for i in range(warmup):
                await run(f"warm-{i}")
            w0, t0 = written(), time.process_time()
            for i in range(runs):
                await run(f"run-{i}")
            steps = runs * sessions * AGENTS
            return {"bytes_per_step": round((written() - w0) / steps),
                    "cpu_us_per_step": round((time.process_time() - t0) / steps * 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=200, help="sessions per run")
    ap.add_argument("--runs", type=int, default=100, help="runs counted")
    ap.add_argument("--warmup", type=int, default=20, help="runs before counting")
    ap.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)  # (the child)
    a = ap.parse_args()
    if a.sessions < 1 or a.runs < 1 or a.warmup < 0:
        ap.error("--sessions and --runs must be >= 1, --warmup >= 0")
    if a.engine:
        print(json.dumps(asyncio.run(one(a.engine, a.sessions, a.runs, a.warmup))))
        return
    out: dict[str, object] = {"workload": f"W1, {AGENTS} agents, SQLite",
                              "sessions_per_run": a.sessions, "runs": a.runs}
    wrote: dict[str, int] = {}
    for name in ENGINES:
        child = subprocess.run(
            [sys.executable, __file__, "--engine", name, "--sessions", str(a.sessions),
             "--runs", str(a.runs), "--warmup", str(a.warmup)],
            check=True, capture_output=True, text=True)
        got = json.loads(child.stdout)
        wrote[name] = got["bytes_per_step"]
        out.update({f"{k}_{name}": v for k, v in got.items()})
    out["audit_added_bytes_per_step"] = wrote["audit"] - wrote["bare"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
