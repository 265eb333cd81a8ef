import asyncio, sys, statistics, tempfile, gc, time
from pathlib import Path
sys.path.insert(0, "/work/main/bench")
from resilience_overhead import timed
import convoy
from convoy.audit import AuditInterceptor
from convoy.observability import Metrics, Tracing, observe
CH = {"bare": list, "audit": lambda: [AuditInterceptor()],
      "tma": lambda: [*observe(Tracing(["store"]), Metrics()), AuditInterceptor()],
      "metrics": lambda: observe(metrics=Metrics())}
async def t(e, tag, n):
    c=time.process_time; t0=c()
    await timed(e, tag, n)
    for ic in e.runtime.interceptors:
        if isinstance(ic, AuditInterceptor): await ic.sealed()
    return (c()-t0)/(n*5)*1e6
async def main(names, rounds, n):
    with tempfile.TemporaryDirectory() as tmp:
        es={k: convoy.Engine(Path(tmp)/f"{k}.db", interceptors=CH[k](), concurrency=1000) for k in names}
        for e in es.values(): await e.open()
        for k,e in es.items(): await t(e, "w"+k, 100)
        s={k:[] for k in es}
        for r in range(rounds):
            for k,e in es.items():
                s[k].append(await t(e, f"{k}{r}", n))
        for e in es.values(): await e.aclose()
    b=s["bare"]
    print("slice",n,"bare", round(statistics.median(b),1), {k: round(100*(statistics.median(x/y for x,y in zip(s[k],b))-1),1) for k in es if k!="bare"}, "ratio-of-sums", {k: round(100*(sum(s[k])/sum(b)-1),1) for k in es if k!="bare"})
asyncio.run(main(sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3])))
