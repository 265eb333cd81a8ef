import asyncio, sys, statistics, tempfile, gc, types
from pathlib import Path
sys.path.insert(0, "bench")
from resilience_overhead import CLOCKS, timed, AGENTS
import convoy
from convoy.audit import AuditInterceptor
from convoy.audit import _sealer
real_entries = _sealer.entries_of
MODE = {"entries": True}
def entries_of(records, *a, **k):
    if MODE["entries"]: return real_entries(records, *a, **k)
    return []
_sealer.entries_of = entries_of
def seal_nothing(self, seals):
    fut = asyncio.get_running_loop().create_future(); fut.set_result([True]*len(list(seals))); return fut
async def t(engine, tag, n, clock):
    t0 = clock()
    await timed(engine, tag, n, clock)
    for ic in engine.runtime.interceptors:
        if isinstance(ic, AuditInterceptor): await ic.sealed()
    return (clock() - t0) / (n * AGENTS) * 1e6
async def main():
    tick = CLOCKS["cpu"]
    mk = {"bare": (lambda: [], True, False), "audit": (lambda: [AuditInterceptor()], True, False),
          "audit_nosql": (lambda: [AuditInterceptor()], True, True),
          "audit_noentries": (lambda: [AuditInterceptor()], False, False),
          "audit_hooks_only": (lambda: [AuditInterceptor()], False, True)}
    with tempfile.TemporaryDirectory() as tmp:
        es = {k: (convoy.Engine(Path(tmp)/f"{k}.db", interceptors=c(), concurrency=1000), en, nosql) for k, (c, en, nosql) in mk.items()}
        for e, _, nosql in es.values():
            await e.open()
            if nosql: e.store.audit_seal = types.MethodType(seal_nothing, e.store)
        s = {k: [] for k in es}
        for k, (e, en, _) in es.items():
            MODE["entries"] = en; await t(e, "w"+k, 100, tick)
        for r in range(int(sys.argv[1])):
            for k, (e, en, _) in es.items():
                MODE["entries"] = en
                s[k].append(await t(e, f"{k}{r}", int(sys.argv[2]), tick))
        for e, _, _ in es.values(): await e.aclose()
    b = s["bare"]
    print("bare us/step", round(statistics.median(b), 1))
    for k in es:
        if k != "bare":
            print(k, "paired +%", round(100*(statistics.median(x/y for x, y in zip(s[k], b))-1), 1))
asyncio.run(main())
