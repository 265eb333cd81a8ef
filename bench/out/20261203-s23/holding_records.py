import asyncio, sys, statistics, tempfile, gc, types
from pathlib import Path
sys.path.insert(0, "bench")
from resilience_overhead import CLOCKS, timed, AGENTS
import convoy
from convoy.audit import AuditInterceptor
from convoy.audit import _sealer
_sealer.entries_of = lambda records, *a, **k: []
def seal_nothing(self, seals):
    fut = asyncio.get_running_loop().create_future(); fut.set_result([True]*len(list(seals))); return fut
class Noop(convoy.Interceptor):
    async def session_run(self, input, next):
        return await next(input)
class NoopTap(convoy.Interceptor):
    async def session_run(self, input, next):
        held = []
        input.journal_taps.append(held.append)
        return await next(input)
class NoopHold(convoy.Interceptor):
    def __init__(self): self.q = []
    async def session_run(self, input, next):
        held = []
        input.journal_taps.append(held.append)
        end = await next(input)
        self.q.append(held)
        if len(self.q) > 200: self.q.clear()
        return end
class NoopHoldTuple(convoy.Interceptor):
    def __init__(self): self.q = []
    async def session_run(self, input, next):
        held = []
        add = held.append
        input.journal_taps.append(lambda r: add((r.key, r.kind, r.target, r.status, r.result, r.input_hash, r.agent, r.input_tokens, r.output_tokens, r.at, r.config)))
        end = await next(input)
        self.q.append(held)
        if len(self.q) > 200: self.q.clear()
        return end
async def t(engine, tag, n, clock):
    t0 = clock()
    await timed(engine, tag, n, clock)
    for ic in engine.runtime.interceptors:
        if isinstance(ic, AuditInterceptor): await ic.sealed()
    return (clock() - t0) / (n * AGENTS) * 1e6
async def main():
    tick = CLOCKS["cpu"]
    mk = {"bare": lambda: [], "noop": lambda: [Noop()], "nooptap": lambda: [NoopTap()], "noophold": lambda: [NoopHold()], "noopholdtuple": lambda: [NoopHoldTuple()],
          "audit_hooks_only": lambda: [AuditInterceptor()]}
    with tempfile.TemporaryDirectory() as tmp:
        es = {k: convoy.Engine(Path(tmp)/f"{k}.db", interceptors=c(), concurrency=1000) for k, c in mk.items()}
        for k, e in es.items():
            await e.open()
            if k == "audit_hooks_only": e.store.audit_seal = types.MethodType(seal_nothing, e.store)
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
asyncio.run(main())
