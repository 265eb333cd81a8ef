import asyncio, sys, statistics, tempfile, gc
from pathlib import Path
sys.path.insert(0, "bench")
from resilience_overhead import CLOCKS, timed, AGENTS
import convoy
from convoy.audit import AuditInterceptor
from convoy.audit import _interceptor as ai, _sealer
from convoy.audit._journal import kept
from convoy.observability import Metrics, Tracing, observe
real = _sealer.entries_of
_sealer.entries_of = lambda records, *a, **k: real([r if type(r) is tuple else kept(r) for r in records], *a, **k)
class RecTap(ai._RunTap):
    __slots__ = ()
    def __call__(self, record):
        self.last_at = record.at
        if record.status != "started":
            self.records.append(record)
class RecAudit(AuditInterceptor):
    async def session_run(self, input, next):
        ai._RunTap, saved = RecTap, ai._RunTap
        try:
            return await super().session_run(input, next)
        finally:
            ai._RunTap = saved
import time as _time
GCT = {"t": 0.0, "n": [0, 0, 0], "start": 0.0}
def _cb(phase, info):
    if phase == "start": GCT["start"] = _time.perf_counter()
    else:
        GCT["t"] += _time.perf_counter() - GCT["start"]; GCT["n"][info["generation"]] += 1
gc.callbacks.append(_cb)
GCS = {}
async def t(engine, tag, n, clock):
    before = (GCT["t"], list(GCT["n"]))
    r = await _t(engine, tag, n, clock)
    g = GCS.setdefault(tag.rstrip("0123456789").lstrip("w"), [0.0, [0, 0, 0]])
    g[0] += GCT["t"] - before[0]
    for i in range(3): g[1][i] += GCT["n"][i] - before[1][i]
    return r
async def _t(engine, tag, n, clock):
    t0 = clock()
    await timed(engine, tag, n, clock)
    for ic in engine.runtime.interceptors:
        if isinstance(ic, AuditInterceptor): await ic.sealed()
    return (clock() - t0) / (n * AGENTS) * 1e6
async def main():
    tick = CLOCKS["cpu"]
    mk = {"bare": lambda: [], "audit_rec": lambda: [RecAudit()], "audit_tuple": lambda: [AuditInterceptor()],
          "tma_rec": lambda: [*observe(Tracing(["store"]), Metrics()), RecAudit()],
          "tma_tuple": lambda: [*observe(Tracing(["store"]), Metrics()), AuditInterceptor()]}
    with tempfile.TemporaryDirectory() as tmp:
        es = {k: convoy.Engine(Path(tmp)/f"{k}.db", interceptors=c(), concurrency=1000) for k, c in mk.items()}
        for e in es.values(): await e.open()
        s = {k: [] for k in es}
        for k, e in es.items(): await t(e, "w"+k, 100, tick)
        for r in range(int(sys.argv[1])):
            for k, e in es.items():
                s[k].append(await t(e, f"{k}{r}", int(sys.argv[2]), tick))
        for e in es.values(): await e.aclose()
    b = s["bare"]
    print("bare us/step", round(statistics.median(b), 1))
    for k in es:
        if k != "bare":
            print(k, "paired +%", round(100*(statistics.median(x/y for x, y in zip(s[k], b))-1), 1))
    for a, bb in (("audit_tuple", "audit_rec"), ("tma_tuple", "tma_rec")):
        print(a, "vs", bb, round(100*(statistics.median(x/y for x, y in zip(s[a], s[bb]))-1), 1))
asyncio.run(main())
for k, v in GCS.items(): print('gc', k, round(v[0]*1000, 1), 'ms', v[1])
