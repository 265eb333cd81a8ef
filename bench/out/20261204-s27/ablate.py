import asyncio, resource, sys, tempfile, statistics, time
from pathlib import Path
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from observability import sealed_timed, AGENTS
sys.path.insert(0, str(Path(__file__).resolve().parent))
from user_sys import rounds
import convoy
from convoy.audit import AuditInterceptor
from convoy.audit._merkle import entry_leaves
from convoy.audit import _interceptor as ai

class NoStore:
    def __init__(self, store, leaves): self._s, self._leaves = store, leaves
    def __getattr__(self, k): return getattr(self._s, k)
    def audit_seal(self, seals):
        if self._leaves:
            for s in seals: entry_leaves(s.tenant, 0, s.bodies)
        f = asyncio.get_running_loop().create_future(); f.set_result([True]*len(seals)); return f

class NoSubmit:
    def __init__(self, sealer): self._s = sealer
    def __getattr__(self, k): return getattr(self._s, k)
    def submit(self, item): pass

async def main(names, sessions, runs):
    with tempfile.TemporaryDirectory() as tmp:
        es = {n: convoy.Engine(Path(tmp)/f"{n}.db", interceptors=[] if n=="bare" else [AuditInterceptor()], concurrency=1000) for n in names}
        for n, e in es.items():
            await e.open()
            if n == "bare": continue
            ic = e.runtime.interceptors[0] if not hasattr(e.runtime.interceptors[0], "_sealer") else e.runtime.interceptors[0]
            ic = [i for i in e.runtime.interceptors if isinstance(i, AuditInterceptor)][0]
            if n == "nostore": ic._sealer.store = NoStore(ic._sealer.store, False)
            if n == "leavesonly": ic._sealer.store = NoStore(ic._sealer.store, True)
            if n == "nosubmit": ic._sealer = NoSubmit(ic._sealer)
        out = await rounds(es, sessions, runs)
        for e in es.values(): await e.aclose()
    bu = out["bare"]["u"]; bs = out["bare"]["s"]
    for n, d in out.items():
        pu = statistics.median(x/b for x, b in zip(d["u"], bu)); ps = statistics.median(x/b for x, b in zip(d["s"], bs))
        tot = statistics.median((x+y)/(b+c) for x, y, b, c in zip(d["u"], d["s"], bu, bs))
        print(f"{n:12s} u {statistics.median(d['u']):7.2f} s {statistics.median(d['s']):6.2f}  paired u {100*(pu-1):+5.1f}% s {100*(ps-1):+5.1f}% total {100*(tot-1):+5.1f}%")
asyncio.run(main(sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3])))
