import asyncio, sys, statistics, tempfile, gc
from pathlib import Path
sys.path.insert(0, "bench")
from resilience_overhead import CLOCKS, timed, AGENTS
import convoy
from convoy.stores import _audit_sql as q
from convoy.audit import AuditInterceptor
MULTI = dict(q.SQLITE_ENTRY_ROWS); SINGLE = {1: q.SQLITE_ENTRY_ROWS[1]}
async def t(engine, tag, n, clock):
    t0 = clock()
    await timed(engine, tag, n, clock)
    for ic in engine.runtime.interceptors:
        if isinstance(ic, AuditInterceptor): await ic.sealed()
    return (clock() - t0) / (n * AGENTS) * 1e6
async def main():
    tick = CLOCKS["cpu"]
    mk = {"bare": (lambda: [], MULTI), "audit_single": (lambda: [AuditInterceptor()], SINGLE), "audit_multi": (lambda: [AuditInterceptor()], MULTI)}
    with tempfile.TemporaryDirectory() as tmp:
        es = {k: (convoy.Engine(Path(tmp)/f"{k}.db", interceptors=c(), concurrency=1000), f) for k, (c, f) in mk.items()}
        for e, _ in es.values(): await e.open()
        s = {k: [] for k in es}
        for k, (e, f) in es.items():
            q.SQLITE_ENTRY_ROWS.clear(); q.SQLITE_ENTRY_ROWS.update(f); await t(e, "w"+k, 100, tick)
        for r in range(int(sys.argv[1])):
            for k, (e, f) in es.items():
                q.SQLITE_ENTRY_ROWS.clear(); q.SQLITE_ENTRY_ROWS.update(f); gc.collect()
                s[k].append(await t(e, f"{k}{r}", int(sys.argv[2]), tick))
        for e, _ in es.values(): await e.aclose()
    b = s["bare"]
    print("bare us/step", round(statistics.median(b), 1))
    for k in es:
        if k != "bare":
            print(k, "paired +%", round(100*(statistics.median(x/y for x, y in zip(s[k], b))-1), 1))
    print("multi vs single paired %", round(100*(statistics.median(x/y for x, y in zip(s["audit_multi"], s["audit_single"]))-1), 1))
asyncio.run(main())
