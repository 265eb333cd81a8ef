"""W1 and W2 (shared/bench/WORKLOADS.md) on PostgreSQL beside SQLite, in one run.

Starts a private PostgreSQL cluster on loopback (``scripts/postgres.sh``) with the server's
durable defaults (``fsync=on``, ``synchronous_commit=on``: a commit survives a power loss),
then runs ``bench/convoy_peer.py`` alternately on SQLite (durability ``process``, the
default) and on PostgreSQL, ``--reps`` times each, a fresh store per run, and prints the
medians. Journaling and commit batching are the same on both stores: every model step is
committed before its session continues; sessions running at once share commits.

    python bench/postgres.py [--reps 3] [--w1-sessions 2000] [--w2-sessions 10000]

A third column runs PostgreSQL with ``synchronous_commit=off`` (set in the store URL): a
commit is acknowledged before the server flushes it, so it survives a crash of the engine
process but not of the server. Its W1 figure is what Convoy costs per step without the
server's fsync. And on the durable server, between the runs, a probe times a bare
``INSERT`` committed alone (psycopg, no Convoy): the floor under any durable step on this
machine at that moment (this shared VM's disk latency swings by 10x within minutes).

Output: a Markdown table on stdout, and every run's JSON in ``--out``
(``bench/out/<utc time>-postgres/results.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCRIPT = REPO / "scripts" / "postgres.sh"


def run_peer(workload: str, sessions: int, store_url: str | None) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p)}
    env.pop("CONVOY_BENCH_DB", None)
    if store_url is not None:
        env["CONVOY_BENCH_DB"] = store_url
    out = subprocess.run([sys.executable, str(HERE / "convoy_peer.py"), "--workload", workload,
                          "--sessions", str(sessions)], env=env, capture_output=True,
                         text=True, timeout=900, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        sys.exit(f"postgres.py: {workload} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    if result.get("error") or result.get("errors"):
        sys.exit(f"postgres.py: {workload} had errors: {result}")
    return result


def commit_probe(url: str, n: int = 300, *, durable: bool = True) -> float:
    """Median µs of one ``INSERT`` committed alone (autocommit) on the server at ``url``."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"SET synchronous_commit = {'on' if durable else 'off'}")
        conn.execute("CREATE TABLE IF NOT EXISTS bench_probe(id BIGSERIAL PRIMARY KEY, v TEXT)")
        times = []
        for _ in range(n):
            t = time.perf_counter()
            conn.execute("INSERT INTO bench_probe(v) VALUES('x')")
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r[key]) for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--w1-sessions", type=int, default=2000)
    ap.add_argument("--w2-sessions", type=int, default=10000)
    ap.add_argument("--out", type=Path,
                    default=HERE / "out" / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
                                           "-postgres")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["bash", str(SCRIPT), "install"], check=False).returncode != 0:
        sys.exit("postgres.py: no PostgreSQL server (see scripts/postgres.sh install)")
    cluster = Path(tempfile.mkdtemp(prefix="convoy-bench-pg-"))
    env = {k: v for k, v in os.environ.items() if k != "PG_SERVER_OPTIONS"}  # durable
    start = subprocess.run(["bash", str(SCRIPT), "start", str(cluster)], env=env,
                           capture_output=True, text=True, check=False)
    if start.returncode != 0:
        sys.exit(f"postgres.py: the cluster did not start: {start.stderr}")
    url = start.stdout.strip().splitlines()[-1]
    stores = {"sqlite": None, "postgres": "",
              "postgres-async": "&options=-csynchronous_commit%3Doff"}
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    probes: list[float] = []
    async_probes: list[float] = []
    load = [os.getloadavg()[0]]
    try:
        with (a.out / "results.jsonl").open("w") as f:
            for rep in range(a.reps):
                for workload, n in (("W1", a.w1_sessions), ("W2", a.w2_sessions)):
                    for store, extra in stores.items():
                        target = None if extra is None else \
                            f"{url}?schema=bench_{workload.lower()}_{rep}_{len(runs)}{extra}"
                        res = run_peer(workload, n, target)
                        res.update(rep=rep, store_kind=store)
                        f.write(json.dumps(res) + "\n")
                        runs.setdefault((workload, store), []).append(res)
                        print(f"rep {rep} {workload} {store}: "
                              f"{res.get('us_per_step') or res.get('sessions_per_s')}",
                              file=sys.stderr, flush=True)
                        load.append(os.getloadavg()[0])
                    probes.append(commit_probe(url))
                    async_probes.append(commit_probe(url, durable=False))
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(cluster)], capture_output=True,
                       check=False)
        shutil.rmtree(cluster, ignore_errors=True)

    def row(what: str, workload: str, fmt: str, key: str) -> str:
        cells = [format(median(runs[(workload, s)], key), fmt) for s in stores]
        return f"| {what} | " + " | ".join(cells) + " |"

    table = [
        f"| medians of {a.reps} runs | SQLite (process) | PostgreSQL (durable) | "
        "PostgreSQL (synchronous_commit=off) |",
        "|---|---:|---:|---:|",
        row(f"W1 µs per durable step ({a.w1_sessions:,} sessions one after another)", "W1",
            ",.0f", "us_per_step"),
        row("W1 commits per session (7 records)", "W1", ".1f", "commits_per_session"),
        row(f"W2 sessions/s ({a.w2_sessions:,} at once, 50 ms model latency)", "W2", ",.0f",
            "sessions_per_s"),
        row("W2 wall s", "W2", ".2f", "wall_s"),
        "| W2 records per commit | " + " | ".join(
            "{:,.0f}".format(statistics.median(r["store_records"] / r["store_commits"]
                                               for r in runs[("W2", s)])) for s in stores)
        + " |",
        "| W2 completed (of each run), errors | " + " | ".join(
            f"{min(r['completed'] for r in runs[('W2', s)])}, 0" for s in stores) + " |",
        "| a bare INSERT committed alone, µs (psycopg, no Convoy; probes between runs) | | "
        + " | ".join(f"{statistics.median(p):,.0f} (range {min(p):,.0f}–{max(p):,.0f})"
                     for p in (probes, async_probes)) + " |",
    ]
    text = "\n".join(table) + (
        f"\n\n1-minute load average during the runs: {min(load):.2f}–{max(load):.2f} "
        f"(median {statistics.median(load):.2f}). DBOS publishes 1–2 ms per durable step "
        "on PostgreSQL.\n")
    (a.out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
