import asyncio, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, "/work/main/bench")
from resilience_overhead import timed
import convoy
from convoy.audit import AuditInterceptor, _sealer
from convoy.stores import _sqlite_audit
acc = {"entries": 0.0, "n": 0, "write": 0.0}
real = _sealer.entries_of
def wrapped(records, *a, **k):
    t = time.perf_counter(); out = real(records, *a, **k); acc["entries"] += time.perf_counter() - t; acc["n"] += len(out); return out
_sealer.entries_of = wrapped
realw = _sqlite_audit._write
def w(*a):
    t = time.perf_counter(); realw(*a); acc["write"] += time.perf_counter() - t
_sqlite_audit._write = w
async def main():
    with tempfile.TemporaryDirectory() as tmp:
        e = convoy.Engine(Path(tmp)/"x.db", interceptors=[AuditInterceptor()], concurrency=1000)
        await e.open(); await timed(e, "w", 200)
        for k in acc: acc[k] = 0
        t0 = time.perf_counter(); c0 = time.process_time()
        for r in range(10):
            await timed(e, f"r{r}", 1000)
        await e.runtime.interceptors[-1].sealed() if False else None
        for ic in e.runtime.interceptors:
            if isinstance(ic, AuditInterceptor): await ic.sealed()
        steps = 10*1000*5
        print("cpu us/step", (time.process_time()-c0)/steps*1e6, "entries us/entry", acc["entries"]/max(acc["n"],1)*1e6, "entries us/step", acc["entries"]/steps*1e6, "sql _write us/step", acc["write"]/steps*1e6)
        await e.aclose()
asyncio.run(main())
