"""A/B in one process: the audit log as a WITHOUT ROWID table (as stores make it today)
against a rowid table (a schema change tried, not made), same code, engines alternating,
paired per round.

    .venv/bin/python bench/out/20261204-s27/rowid_ab.py SESSIONS RUNS
"""
import asyncio, sys, tempfile, statistics, time, sqlite3, json
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from observability import sealed_timed
import convoy
from convoy.audit import AuditInterceptor
from convoy.observability import Metrics, Tracing, observe
from convoy.stores._audit_sql import SQLITE_MIGRATION

ROWID = """CREATE TABLE audit_log(tenant TEXT NOT NULL, idx INTEGER NOT NULL,
  body BLOB NOT NULL, leaf BLOB NOT NULL, PRIMARY KEY(tenant, idx))"""

def chain(name):
    return [AuditInterceptor()] if name.startswith("audit") else [*observe(Tracing(["store"]), Metrics()), AuditInterceptor()] if name.startswith("tma") else []

async def main(sessions, runs):
    with tempfile.TemporaryDirectory() as tmp:
        names = ["bare", "audit_wr", "audit_rowid", "tma_wr", "tma_rowid"]
        es = {}
        for n in names:
            p = Path(tmp) / f"{n}.db"
            e = convoy.Engine(p, interceptors=chain(n), concurrency=1000); await e.open(); await e.aclose()
            if n != "bare":  # each engine's audit_log made here, whatever the store's code makes
                with sqlite3.connect(p) as c:
                    c.execute("DROP TABLE audit_log")
                    c.executescript(SQLITE_MIGRATION if n.endswith("_wr") else ROWID)
                    sql = c.execute("SELECT sql FROM sqlite_master WHERE name='audit_log'").fetchone()[0]
                    assert ("WITHOUT ROWID" in sql) == n.endswith("_wr")
                c.close()
            es[n] = convoy.Engine(p, interceptors=chain(n), concurrency=1000); await es[n].open()
        for n, e in es.items(): await sealed_timed(e, "warm"+n, 100, time.process_time)
        s = {n: [] for n in es}
        for r in range(runs):
            for n, e in es.items():
                s[n].append(await sealed_timed(e, f"{n}-{r}", sessions, time.process_time))
        for e in es.values(): await e.aclose()
    out = {"sessions": sessions, "runs": runs, "us_per_step": {n: round(statistics.median(v), 1) for n, v in s.items()},
           "paired_added_pct": {n: round(100*(statistics.median(x/b for x, b in zip(v, s["bare"]))-1), 1) for n, v in s.items() if n != "bare"},
           "paired_rowid_vs_wr_pct": {k: round(100*(statistics.median(x/y for x, y in zip(s[k+"_rowid"], s[k+"_wr"]))-1), 1) for k in ("audit", "tma")},
           "samples": {n: [round(x, 1) for x in v] for n, v in s.items()}}
    print(json.dumps(out))
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
