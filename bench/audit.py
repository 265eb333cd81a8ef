"""The audit log at scale: append throughput, then proof sizes and times at 1,000,000
entries.

    .venv/bin/python bench/audit.py                           # 1,000,000 entries, SQLite
    .venv/bin/python bench/audit.py --entries 100000 --db postgresql://USER@HOST/DB

Appends: ``--writers`` tasks (sessions, as the audit interceptor runs in them) each append
one entry at a time and wait for it to be committed, until ``--entries`` entries are in
one tenant's log; the store's group commit batches what arrives together. Reported:
entries/s over the whole run, and the commits it took.

Then, on that log: a signed checkpoint (reading every leaf hash, computing the root),
inclusion proofs of ``--proofs`` entries spread over the log (build: reading the leaf
hashes and hashing the siblings' subtrees; check: what a third party runs), a consistency
proof from half the log to all of it, and ``verify_log`` over every entry. Sizes are the
number of hashes (32 bytes each) and the bytes of the proof's JSON. Results: one JSON line
per measurement on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from convoy.audit import (
    AuditEvent,
    AuditLog,
    check_inclusion,
    digest,
    verify_consistency,
    verify_log,
)
from convoy.stores import store_from_url

TENANT = "bench"


def emit(**row: Any) -> None:
    print(json.dumps(row), flush=True)


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="convoy-audit-bench-"))
    url = args.db or str(tmp / "audit.db")
    store = store_from_url(url)
    await store.open()
    log = AuditLog(store, key_path=tmp / "audit.key")
    per = args.entries // args.writers
    prompt = digest("the prompt")

    async def writer(w: int) -> None:
        for i in range(per):
            e = AuditEvent(kind="model_call", status="ok", at=1e9 + i, session_id=f"s{w}",
                           step_key=f"0/{i}", actor="agent", target="sim",
                           hashes={"prompt": prompt, "output": prompt},
                           refs={"decision": "answer", "tokens": "12+34"})
            await log.append(TENANT, [e])

    commits0 = getattr(store, "commits", None)
    t0 = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(args.writers)))
    dt = time.perf_counter() - t0
    n = await store.audit_size(TENANT)
    commits = None if commits0 is None else getattr(store, "commits", 0) - commits0
    emit(what="append", store=url.split(":")[0] if "://" in url else "sqlite", entries=n,
         writers=args.writers, seconds=round(dt, 2), entries_per_s=round(n / dt),
         commits=commits)

    t0 = time.perf_counter()
    cp = await log.checkpoint(TENANT)
    emit(what="checkpoint", entries=n, seconds=round(time.perf_counter() - t0, 3),
         json_bytes=len(cp.to_json()))

    build, check, sizes, json_sizes = [], [], [], []
    for k in range(args.proofs):
        index = (k * 7_919_993 + 12_345) % n
        t0 = time.perf_counter()
        doc = await log.prove(TENANT, index)
        build.append(time.perf_counter() - t0)
        text = json.dumps(doc)
        t0 = time.perf_counter()
        check_inclusion(json.loads(text), public_key=cp.public_key)
        check.append(time.perf_counter() - t0)
        sizes.append(len(doc["proof"]))
        json_sizes.append(len(text))
    emit(what="inclusion_proof", entries=n, proofs=args.proofs,
         hashes=f"{min(sizes)}-{max(sizes)}", proof_bytes=32 * max(sizes),
         json_bytes=int(statistics.median(json_sizes)),
         build_ms_median=round(1000 * statistics.median(build), 1),
         check_us_median=round(1e6 * statistics.median(check), 1))

    half = n // 2
    t0 = time.perf_counter()
    proof = await log.consistency(TENANT, half, n)
    build_s = time.perf_counter() - t0
    leaves = await store.audit_leaves(TENANT, half)
    from convoy.audit import tree_root

    root1 = tree_root(leaves)
    t0 = time.perf_counter()
    verify_consistency(half, n, proof, root1, cp.root)
    emit(what="consistency_proof", size1=half, size2=n, hashes=len(proof),
         proof_bytes=32 * len(proof), build_ms=round(1000 * build_s, 1),
         check_us=round(1e6 * (time.perf_counter() - t0), 1))

    t0 = time.perf_counter()
    report = await verify_log(log, TENANT)
    emit(what="verify", entries=report.size, seconds=round(time.perf_counter() - t0, 2),
         entries_per_s=round(report.size / (time.perf_counter() - t0)))
    await store.aclose()
    if args.db is None:
        size = await asyncio.to_thread(os.path.getsize, url)
        emit(what="file", bytes=size, bytes_per_entry=round(size / n))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--writers", type=int, default=1000)
    p.add_argument("--proofs", type=int, default=20)
    p.add_argument("--db", default=None, help="a store URL (default: a fresh SQLite file)")
    a = p.parse_args()
    if a.entries % a.writers:
        sys.exit("--entries must be a multiple of --writers")
    asyncio.run(main(a))
